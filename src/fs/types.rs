//! Plain data types that cross the core's API: attributes, caller context, setattr requests, directory entries.

use std::ffi::OsString;
use std::time::SystemTime;

/// An inode number. The root directory is [`ROOT_INO`].
pub type Ino = u64;

/// The root directory's inode number (the kernel's FUSE_ROOT_ID).
pub const ROOT_INO: Ino = 1;

/// Longest name accepted for a directory entry, in bytes.
pub const NAME_MAX: usize = 255;

/// The type of a file, as in the `S_IFMT` bits of a mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl FileKind {
    /// The kind encoded in a full mode's `S_IFMT` bits (a mode with no type bits is a regular file).
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            0 | libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Dir,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDev,
            libc::S_IFBLK => FileKind::BlockDev,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits for this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Dir => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDev => libc::S_IFCHR,
            FileKind::BlockDev => libc::S_IFBLK,
        }
    }
}

/// A file's attributes as `stat(2)` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub size: u64,
    /// 512-byte blocks actually stored for the file (sparse ranges cost none).
    pub blocks: u64,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    pub kind: FileKind,
    /// Permission bits including setuid/setgid/sticky (`mode & 0o7777`).
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    /// Inode generation: changes when an inode number is reused.
    pub generation: u64,
}

/// Who is asking: the credentials of the calling process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl Ctx {
    /// The superuser, for tools and tests.
    pub const ROOT: Ctx = Ctx {
        uid: 0,
        gid: 0,
        pid: 0,
    };
}

/// A time to set: the caller's clock now (`UTIME_NOW`) or a given instant. `None` in [`SetAttr`] is `UTIME_OMIT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    Now,
    At(SystemTime),
}

/// The fields of a `setattr` request; `None` leaves a field unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (`mode & 0o7777`); the file type never changes.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
    pub ctime: Option<SystemTime>,
    /// Open handle the request came through, if any (ftruncate).
    pub fh: Option<u64>,
}

/// One entry returned by `readdir`. `offset` is the cookie to pass to get the entries after this one; cookies stay
/// valid while the directory changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub offset: u64,
    pub kind: FileKind,
    pub name: OsString,
}

/// Figures for `statfs(2)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// Options that shape a mounted (or in-process) filesystem.
#[derive(Clone, Debug)]
pub struct FsOptions {
    /// Byte budget for dirty (not yet stored) file data held in memory.
    pub cache_size: u64,
    /// Byte budget for the clean-chunk read cache.
    pub read_cache_size: u64,
    /// Refuse every change with `EROFS`.
    pub read_only: bool,
    /// Every write and metadata change is durable before it returns (mount option `sync`).
    pub sync: bool,
    /// Do not update access times.
    pub noatime: bool,
    /// Check permissions in the core. Off when the kernel checks them (`default_permissions`).
    pub check_permissions: bool,
    /// Seconds between background durable commits of metadata (and flushes of old dirty data).
    pub commit_interval_secs: u64,
    /// Minimum seconds between metadata snapshots sealed onto the disks (also taken at shutdown). 0: at every
    /// durable commit.
    pub snapshot_interval_secs: u64,
    /// The kernel caches writes (FUSE writeback cache) and sends them with their final offsets: `O_APPEND` is then
    /// the kernel's business, and a write-only handle may be used for the kernel's page reads.
    pub kernel_writeback: bool,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            cache_size: 256 << 20,
            read_cache_size: 64 << 20,
            read_only: false,
            sync: false,
            noatime: false,
            check_permissions: true,
            commit_interval_secs: 5,
            snapshot_interval_secs: 30,
            kernel_writeback: false,
        }
    }
}
