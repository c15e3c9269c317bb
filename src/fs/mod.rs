//! The protocol-neutral filesystem core: POSIX semantics over the metadata database and the chunk store.
//!
//! Every operation returns [`Result`]; the FUSE adapter only translates. Operations that hand an inode to the
//! kernel (`lookup`, `create`, `mkdir`, `mknod`, `symlink`, `link`) add one to that inode's lookup count, and
//! [`Fs::forget`] takes them away, following the kernel's contract: an unlinked inode lives until both its lookup
//! count and its open handles reach zero.

mod types;

pub use types::*;

use crate::error::{Error, Result};
use crate::store::ChunkId;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;

/// What the core needs from a chunk store. `crate::store::Store` implements it; tests may use a simpler one.
pub trait Chunks: Send + Sync {
    /// Keyed content id of a chunk's plaintext.
    fn chunk_id(&self, data: &[u8]) -> ChunkId;
    /// Content-defined cut points: lengths of consecutive chunks covering `data`.
    fn chunk_lengths(&self, data: &[u8]) -> Vec<usize>;
    /// The largest chunk `chunk_lengths` produces.
    fn max_chunk_size(&self) -> usize;
    /// Stores a chunk (idempotent); returns the bytes it occupies on disks. Durable only after [`Chunks::sync`].
    fn put(&self, id: &ChunkId, data: &[u8]) -> Result<u64>;
    /// Reads a chunk back, verified.
    fn get(&self, id: &ChunkId) -> Result<Vec<u8>>;
    /// Removes a chunk's shards.
    fn delete(&self, id: &ChunkId) -> Result<()>;
    /// Makes every `put` that returned before this call durable.
    fn sync(&self) -> Result<()>;
}

/// The filesystem. Shared as `Arc<Fs>`; every method takes `&self` and is safe to call from many threads.
pub struct Fs {
    _chunks: Arc<dyn Chunks>,
}

#[allow(unused_variables)]
impl Fs {
    /// Opens (creating on first use) the metadata database in `state_dir` over the given chunk store.
    pub fn start(chunks: Arc<dyn Chunks>, state_dir: &Path, opts: FsOptions) -> Result<Arc<Fs>> {
        Err(Error::NotSupported)
    }
    /// Flushes all dirty data, commits durably and stops background threads. Called at unmount.
    pub fn shutdown(&self) -> Result<()> {
        Err(Error::NotSupported)
    }
    /// Makes everything written so far durable (syncfs).
    pub fn sync_all(&self) -> Result<()> {
        Err(Error::NotSupported)
    }
    pub fn lookup(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> Result<Attr> {
        Err(Error::NotSupported)
    }
    pub fn forget(&self, ino: Ino, nlookup: u64) {}
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        Err(Error::NotSupported)
    }
    pub fn setattr(&self, ctx: &Ctx, ino: Ino, set: &SetAttr) -> Result<Attr> {
        Err(Error::NotSupported)
    }
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        Err(Error::NotSupported)
    }
    /// `mode` includes the file type bits; `umask` is applied by the core.
    pub fn mknod(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> Result<Attr> {
        Err(Error::NotSupported)
    }
    pub fn mkdir(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<Attr> {
        Err(Error::NotSupported)
    }
    pub fn unlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> Result<()> {
        Err(Error::NotSupported)
    }
    pub fn rmdir(&self, ctx: &Ctx, parent: Ino, name: &OsStr) -> Result<()> {
        Err(Error::NotSupported)
    }
    pub fn symlink(&self, ctx: &Ctx, parent: Ino, name: &OsStr, target: &Path) -> Result<Attr> {
        Err(Error::NotSupported)
    }
    /// `flags`: 0, `libc::RENAME_NOREPLACE` or `libc::RENAME_EXCHANGE`.
    pub fn rename(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        Err(Error::NotSupported)
    }
    pub fn link(&self, ctx: &Ctx, ino: Ino, newparent: Ino, newname: &OsStr) -> Result<Attr> {
        Err(Error::NotSupported)
    }
    /// Opens a file; `flags` are the open(2) flags (O_TRUNC, O_APPEND and the access mode matter). Returns a handle.
    pub fn open(&self, ctx: &Ctx, ino: Ino, flags: i32) -> Result<u64> {
        Err(Error::NotSupported)
    }
    /// Creates and opens a regular file; adds a lookup like `lookup`.
    pub fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(Attr, u64)> {
        Err(Error::NotSupported)
    }
    /// Reads up to `size` bytes at `offset` (short only at end of file).
    pub fn read(&self, ino: Ino, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        Err(Error::NotSupported)
    }
    /// Writes `data` at `offset` (or at the end for handles opened with O_APPEND); returns bytes written.
    pub fn write(&self, ino: Ino, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        Err(Error::NotSupported)
    }
    /// Called at each close(2) of a descriptor.
    pub fn flush(&self, ino: Ino, fh: u64) -> Result<()> {
        Err(Error::NotSupported)
    }
    /// Last close of a handle.
    pub fn release(&self, ino: Ino, fh: u64) -> Result<()> {
        Err(Error::NotSupported)
    }
    /// Returns once the file's data and metadata are durable.
    pub fn fsync(&self, ino: Ino, fh: u64, datasync: bool) -> Result<()> {
        Err(Error::NotSupported)
    }
    /// `mode`: 0 or `libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE` (also KEEP_SIZE alone).
    pub fn fallocate(&self, ino: Ino, fh: u64, offset: u64, length: u64, mode: i32) -> Result<()> {
        Err(Error::NotSupported)
    }
    pub fn opendir(&self, ctx: &Ctx, ino: Ino, flags: i32) -> Result<u64> {
        Err(Error::NotSupported)
    }
    /// Entries after cookie `offset` (0 = from the start, including "." and ".."), at most `max` of them.
    pub fn readdir(&self, ino: Ino, fh: u64, offset: u64, max: usize) -> Result<Vec<DirEntry>> {
        Err(Error::NotSupported)
    }
    pub fn releasedir(&self, ino: Ino, fh: u64) -> Result<()> {
        Err(Error::NotSupported)
    }
    pub fn fsyncdir(&self, ino: Ino, fh: u64, datasync: bool) -> Result<()> {
        Err(Error::NotSupported)
    }
    pub fn statfs(&self) -> Result<StatFs> {
        Err(Error::NotSupported)
    }
    /// `flags`: 0, `libc::XATTR_CREATE` or `libc::XATTR_REPLACE`.
    pub fn setxattr(
        &self,
        ctx: &Ctx,
        ino: Ino,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        Err(Error::NotSupported)
    }
    pub fn getxattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        Err(Error::NotSupported)
    }
    /// Attribute names, each followed by a NUL byte.
    pub fn listxattr(&self, ctx: &Ctx, ino: Ino) -> Result<Vec<u8>> {
        Err(Error::NotSupported)
    }
    pub fn removexattr(&self, ctx: &Ctx, ino: Ino, name: &OsStr) -> Result<()> {
        Err(Error::NotSupported)
    }
    /// `mask`: `libc::F_OK` or a combination of R_OK/W_OK/X_OK.
    pub fn access(&self, ctx: &Ctx, ino: Ino, mask: i32) -> Result<()> {
        Err(Error::NotSupported)
    }
    /// SEEK_DATA / SEEK_HOLE support: next offset ≥ `offset` that is data (`whence` = libc::SEEK_DATA) or hole.
    pub fn lseek(&self, ino: Ino, fh: u64, offset: i64, whence: i32) -> Result<i64> {
        Err(Error::NotSupported)
    }
}
