//! The narrow `Disk` trait every storage backend implements, and its implementations (directory, memory, fault
//! injection, S3 bucket).
//!
//! Names are relative `/`-separated paths (`valencefs.hdr`, `shards/ab/cd/<hex>.<i>`). The contract, checked by
//! one conformance suite (`tests/store_disk.rs`) for every implementation:
//! - `put` replaces the object atomically: a reader sees the old content, nothing, or the new content, never a
//!   mix; it is durable only after a later `sync` returns. A crash before that `sync` leaves the old content,
//!   nothing, or the new content, except that a *new* shard (a name under `shards/` that did not exist) may be
//!   left torn: shards verify themselves and nothing durable names a shard before the `sync` (see `DirDisk`).
//! - `get` of an absent name is `Error::NotFound`; `delete` of an absent name is `Ok`.
//! - `get_limited(name, max)` never reads or allocates more than `min(max, MAX_OBJECT_LEN) + 1` bytes: a larger
//!   object (a sparse multi-GB file or a huge S3 object planted by whoever holds the disk) is `Error::Corrupt`,
//!   refused from its size (fstat, Content-Length) before reading, and bounded while reading in case it grows.
//!   `get` is `get_limited(name, MAX_OBJECT_LEN)`.
//! - `get_range(name, offset, len)` returns the bytes `[offset, offset + len)`, fewer at the end of the object
//!   (none at or past it), like `pread`; never more than `min(len, MAX_OBJECT_LEN)` bytes.
//! - `list(prefix)` returns every stored name starting with `prefix`, in no particular order, and never
//!   temporary names.
//! - `sync` makes every `put`/`delete` that returned before it durable.

mod beneath;
mod dir;
mod fault;
mod mem;
mod s3;

use std::path::Path;
use std::sync::Arc;

pub use dir::DirDisk;
pub use fault::{FaultDisk, Faults};
pub use mem::MemDisk;
pub use s3::{is_s3_url, open_s3_disk, parse_s3_url, S3Disk, S3Settings, DEFAULT_S3_TIMEOUT};

use crate::error::{Error, Result};

/// The largest object any [`Disk`] read returns: 256 MiB. Objects are shards (128-byte header + ⌈envelope / k⌉,
/// at most ~16 MiB for data chunks with the largest chunker setting), the 864-byte disk header and the sealed
/// metadata pointer; the one large object is a shard of a metadata snapshot (the redb file as one chunk), which
/// this bound limits to k × 256 MiB of sealed (compressed) database. Without a bound, k sparse multi-GB shard
/// files read in parallel would exhaust memory at the cost of nothing to whoever holds the disks.
pub const MAX_OBJECT_LEN: u64 = 256 << 20;

/// The error for an object over the read limit (`len` = its size, or `limit + 1` if it grew while read).
pub(crate) fn too_large(disk: &str, name: &str, len: u64, limit: u64) -> Error {
    Error::Corrupt(format!(
        "{disk}: object {name} is {len} bytes or more, over the {limit}-byte read limit"
    ))
}

/// `[offset, offset + len)` of `data`, clipped to its end and to [`MAX_OBJECT_LEN`].
pub(crate) fn range_of(data: &[u8], offset: u64, len: u64) -> &[u8] {
    let start = offset.min(data.len() as u64) as usize;
    let end = offset
        .saturating_add(len.min(MAX_OBJECT_LEN))
        .min(data.len() as u64) as usize;
    &data[start..end]
}

/// The effective limit of a `get_limited(_, max)`.
pub(crate) fn read_limit(max: u64) -> u64 {
    max.min(MAX_OBJECT_LEN)
}

/// What a disk can say about itself without reading any object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskStat {
    /// The backing location exists (a directory disk whose directory is gone is not present).
    pub present: bool,
    /// Writes are accepted (probed, not guessed from permission bits: tests run as root).
    pub writable: bool,
}

/// A place that stores named byte objects. Implementations are shared between threads.
pub trait Disk: Send + Sync {
    /// A human description for reports (the directory path for a directory disk).
    fn describe(&self) -> String;
    /// Stores `data` under `name`, atomically replacing any previous object.
    fn put(&self, name: &str, data: &[u8]) -> Result<()>;
    /// [`Disk::put`] of the concatenation of `parts` (a stripe file: its head, then every chunk's piece). Disks
    /// that can write the parts one after the other override this default, which concatenates them first.
    fn put_parts(&self, name: &str, parts: &[&[u8]]) -> Result<()> {
        self.put(name, &parts.concat())
    }
    /// Reads the whole object if it holds at most `max` bytes (never more than [`MAX_OBJECT_LEN`], whatever
    /// `max` says); a larger object is `Error::Corrupt` and is not read. Callers that know how large an object
    /// can legally be (a shard of a chunk) pass that bound.
    fn get_limited(&self, name: &str, max: u64) -> Result<Vec<u8>>;
    /// Reads the whole object, up to [`MAX_OBJECT_LEN`] bytes (see [`Disk::get_limited`]). Not overridden by
    /// implementations.
    fn get(&self, name: &str) -> Result<Vec<u8>> {
        self.get_limited(name, MAX_OBJECT_LEN)
    }
    /// Reads up to `len` bytes from `offset` (fewer at the object's end; see the module contract). Implementations
    /// that can read a part of an object without the rest override this default, which reads the whole object.
    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let all = self.get(name)?;
        Ok(range_of(&all, offset, len).to_vec())
    }
    /// Removes the object; absent is not an error.
    fn delete(&self, name: &str) -> Result<()>;
    /// Every name starting with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// Makes every completed `put`/`delete` durable.
    fn sync(&self) -> Result<()>;
    /// Presence and writability.
    fn stat(&self) -> DiskStat;
    /// Whether concurrent I/O to this disk pays off (false for in-memory disks, where a thread costs more than
    /// the copy). A hint for the store's scheduling only.
    fn parallel_io(&self) -> bool {
        true
    }
    /// (total, free) bytes of the backing storage, if it can tell.
    fn space(&self) -> Option<(u64, u64)> {
        None
    }
}

/// A directory disk at `path`. Never fails: a missing directory shows up as `DiskStat::present == false`, which
/// `Store::open` reports, and `Store::create` creates the directory.
pub fn open_dir_disk(path: &Path) -> Arc<dyn Disk> {
    Arc::new(DirDisk::new(path))
}

/// Rejects names that could escape the disk root or collide with temporary files.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || name.contains(".tmp-");
    if bad {
        Err(Error::Invalid(format!("bad object name {name:?}")))
    } else {
        Ok(())
    }
}
