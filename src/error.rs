//! The one error type of the library and its single mapping to errno.

use std::io;

/// Result with the library's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure the library can report, as typed variants. The FUSE adapter turns these into errno values only
/// through [`Error::errno`], so the mapping lives in exactly one place.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("permission denied")]
    Access,
    #[error("operation not permitted")]
    Perm,
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("file name too long")]
    NameTooLong,
    #[error("no such attribute")]
    NoXattr,
    #[error("value too large for buffer")]
    Range,
    #[error("argument list too long")]
    TooBig,
    #[error("no data or hole at or after this offset")]
    NoSuchOffset,
    #[error("file too large")]
    FileTooBig,
    #[error("too many links")]
    TooManyLinks,
    #[error("bad file handle")]
    BadHandle,
    #[error("operation not supported")]
    NotSupported,
    #[error("read-only volume")]
    ReadOnly,
    #[error("no space left on disk {disk}")]
    NoSpace { disk: String },
    #[error("cross-device link")]
    CrossDevice,
    #[error("invalid operation for this file type")]
    Loop,
    #[error("wrong passphrase (no keyslot opens with it)")]
    WrongPassphrase,
    #[error("disk {disk}: {reason}")]
    BadDisk { disk: String, reason: String },
    #[error("volume: {0}")]
    Volume(String),
    #[error("chunk {chunk} unreadable: {good} good shards, need {need}")]
    Unrecoverable {
        chunk: String,
        good: usize,
        need: usize,
    },
    #[error("data failed verification: {0}")]
    Corrupt(String),
    #[error("metadata database: {0}")]
    Meta(String),
    #[error("format: {0}")]
    Format(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The errno a POSIX caller sees for this error. The only place where errors become errno values.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotFound => libc::ENOENT,
            Error::Exists => libc::EEXIST,
            Error::NotDir => libc::ENOTDIR,
            Error::IsDir => libc::EISDIR,
            Error::NotEmpty => libc::ENOTEMPTY,
            Error::Access => libc::EACCES,
            Error::Perm => libc::EPERM,
            Error::Invalid(_) => libc::EINVAL,
            Error::NameTooLong => libc::ENAMETOOLONG,
            Error::NoXattr => libc::ENODATA,
            Error::Range => libc::ERANGE,
            Error::FileTooBig => libc::EFBIG,
            Error::TooBig => libc::E2BIG,
            Error::NoSuchOffset => libc::ENXIO,
            Error::TooManyLinks => libc::EMLINK,
            Error::BadHandle => libc::EBADF,
            Error::NotSupported => libc::EOPNOTSUPP,
            Error::ReadOnly => libc::EROFS,
            Error::NoSpace { .. } => libc::ENOSPC,
            Error::CrossDevice => libc::EXDEV,
            Error::Loop => libc::ELOOP,
            Error::Io { source, .. } => match source.raw_os_error() {
                Some(libc::ENOSPC) => libc::ENOSPC,
                Some(libc::EROFS) => libc::EROFS,
                _ => libc::EIO,
            },
            Error::WrongPassphrase
            | Error::BadDisk { .. }
            | Error::Volume(_)
            | Error::Unrecoverable { .. }
            | Error::Corrupt(_)
            | Error::Meta(_)
            | Error::Format(_) => libc::EIO,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl std::fmt::Display, source: io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            source,
        }
    }
}
