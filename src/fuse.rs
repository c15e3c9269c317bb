//! The FUSE adapter: translates kernel requests into [`Fs`] calls and replies; the only module that imports `fuser`.
//!
//! No filesystem logic lives here. Errors become errno values only through [`crate::Error::errno`]. The FUSE
//! session thread stays cheap: every request that may do chunk I/O (read, write, flush, release, fsync, open,
//! create, setattr, unlink, rename, fallocate, ...) is queued to a small pool of worker threads, which reply
//! themselves (fuser replies are `Send`). Metadata lookups answer inline.
//!
//! The kernel is always mounted with `default_permissions`: it checks modes, owners and groups itself against the
//! attributes we return, so the core runs with `FsOptions::check_permissions = false`. With FUSE_POSIX_ACL it also
//! enforces POSIX ACLs, which the core stores, keeps in step with the mode and inherits.

mod mount;
mod pool;

pub use mount::{mount, raise_readahead, unmount, MountSettings, Mounted};

use crate::fs::{Attr, Ctx, FileKind, Fs, SetAttr, SetTime};
use crate::metrics::{self, FsMetrics, OpTimer};
use fuser::consts;
use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow,
};
use pool::Pool;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where `destroy` leaves the result of `Fs::shutdown` for [`Mounted::run`] to return.
type Outcome = Arc<Mutex<Option<crate::Result<()>>>>;

/// How long the kernel may cache attributes and directory entries we return.
const TTL: Duration = Duration::from_secs(1);
/// Largest write request we ask the kernel for (it also sizes `max_pages`).
const MAX_WRITE: u32 = crate::fs::REQUEST_BUF as u32;
/// `st_blksize` we report: tools such as `cp` size their buffers from it.
const BLKSIZE: u32 = 128 << 10;
/// Entries fetched from the core per `readdir` call while filling one kernel buffer.
const READDIR_BATCH: usize = 1024;

/// The `fuser::Filesystem` implementation: one method per kernel request, each a call into [`Fs`].
struct Adapter {
    fs: Arc<Fs>,
    pool: Pool,
    writeback_cache: bool,
    outcome: Outcome,
    finished: bool,
}

impl Adapter {
    fn new(fs: Arc<Fs>, settings: &MountSettings, outcome: Outcome) -> Adapter {
        let pool = Pool::new(&fs, settings.workers);
        Adapter {
            fs,
            pool,
            writeback_cache: settings.writeback_cache,
            outcome,
            finished: false,
        }
    }

    fn spawn(&self, job: impl FnOnce(&Fs) + Send + 'static) {
        self.pool.submit(Box::new(job), &self.fs);
    }
}

fn ctx(req: &Request<'_>) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDev => FileType::CharDevice,
        FileKind::BlockDev => FileType::BlockDevice,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.ctime,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(at) => SetTime::At(at),
    })
}

fn entry(reply: ReplyEntry, r: crate::Result<Attr>) {
    match r {
        Ok(a) => reply.entry(&TTL, &file_attr(&a), a.generation),
        Err(e) => reply.error(e.errno()),
    }
}

fn empty(reply: ReplyEmpty, r: crate::Result<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e.errno()),
    }
}

/// Records a finished request in the core's metrics and passes its result on. A missing name or attribute
/// (`ENOENT`, `ENODATA`) is an answer, not a failure: shells and `ls` ask for them all the time.
fn done<T>(fs: &Fs, t: OpTimer, r: crate::Result<T>) -> crate::Result<T> {
    let failed = r
        .as_ref()
        .err()
        .is_some_and(|e| !matches!(e.errno(), libc::ENOENT | libc::ENODATA));
    fs.metrics().finish(t, !failed);
    r
}

/// Answers an xattr request: a size-0 probe gets the length, a too-small buffer gets ERANGE.
fn xattr(reply: ReplyXattr, size: u32, r: crate::Result<Vec<u8>>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(libc::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(e.errno()),
    }
}

/// INIT flag (protocol 7.33, absent from fuser 0.15): this filesystem clears setuid/setgid itself on write, truncate
/// and chown. In return the kernel may mark inodes S_NOSEC after one look at their `security.capability`, instead
/// of asking for it (a round trip) before every write(2): pg_dump's 8 KiB writes made 59,573 such requests per
/// 466 MB dump, on the writer's critical path. Capabilities are still removed by the kernel: it re-checks an inode
/// whenever a security xattr is set or its attributes are refreshed from us, and we are the only client.
const FUSE_HANDLE_KILLPRIV_V2: u32 = 1 << 28;
/// WRITE flag (7.33): the writer lacks CAP_FSETID; clear setuid/setgid.
const FUSE_WRITE_KILL_SUIDGID: u32 = 1 << 2;

/// Open flags sent back with every file handle: keep the page cache across opens (only this mount changes data).
const OPEN_FLAGS: u32 = consts::FOPEN_KEEP_CACHE;

impl Filesystem for Adapter {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        // Each call may fail on an old kernel; we keep whatever it allows.
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        // The kernel offers its readahead ceiling; take all of it.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        let mut wanted = consts::FUSE_ASYNC_READ
            | consts::FUSE_BIG_WRITES
            | consts::FUSE_PARALLEL_DIROPS
            | consts::FUSE_ATOMIC_O_TRUNC
            | consts::FUSE_MAX_PAGES
            | consts::FUSE_CACHE_SYMLINKS
            | FUSE_HANDLE_KILLPRIV_V2;
        if self.writeback_cache {
            wanted |= consts::FUSE_WRITEBACK_CACHE;
        }
        for bit in (0..32).map(|i| 1u32 << i).filter(|b| wanted & b != 0) {
            if config.add_capabilities(bit).is_err() {
                tracing::info!("kernel lacks FUSE capability {bit:#x}; continuing without it");
            }
        }
        // POSIX ACLs: the kernel checks them (with default_permissions) and leaves the umask to us, which the core
        // applies unless a default ACL is inherited. Both or neither: without them setting an ACL is EOPNOTSUPP.
        if config
            .add_capabilities(consts::FUSE_POSIX_ACL | consts::FUSE_DONT_MASK)
            .is_ok()
        {
            self.fs.enable_posix_acl();
        } else {
            tracing::info!(
                "kernel lacks FUSE_POSIX_ACL; POSIX ACLs are not supported on this mount"
            );
        }
        Ok(())
    }

    fn destroy(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.pool.drain();
        let result = self.fs.shutdown();
        if let Ok(mut o) = self.outcome.lock() {
            *o = Some(result);
        }
    }

    fn lookup(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let t = OpTimer::start(const { metrics::op("lookup") });
        entry(
            reply,
            done(&self.fs, t, self.fs.lookup(&ctx(req), parent, name)),
        );
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        let t = OpTimer::start(const { metrics::op("forget") });
        self.fs.forget(ino, nlookup);
        self.fs.metrics().finish(t, true);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let t = OpTimer::start(const { metrics::op("getattr") });
        match done(&self.fs, t, self.fs.getattr(ino)) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn setattr(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let t = OpTimer::start(const { metrics::op("setattr") });
        let set = SetAttr {
            mode: mode.map(|m| m & 0o7777),
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
            ctime,
            fh,
        };
        let ctx = ctx(req);
        // A size change may flush or drop chunks: off the session thread.
        self.spawn(move |fs| match done(fs, t, fs.setattr(&ctx, ino, &set)) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(e.errno()),
        });
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let t = OpTimer::start(const { metrics::op("readlink") });
        match done(&self.fs, t, self.fs.readlink(ino)) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn mknod(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let t = OpTimer::start(const { metrics::op("mknod") });
        entry(
            reply,
            done(
                &self.fs,
                t,
                self.fs.mknod(&ctx(req), parent, name, mode, umask, rdev),
            ),
        );
    }

    fn mkdir(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let t = OpTimer::start(const { metrics::op("mkdir") });
        entry(
            reply,
            done(
                &self.fs,
                t,
                self.fs.mkdir(&ctx(req), parent, name, mode, umask),
            ),
        );
    }

    fn unlink(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let t = OpTimer::start(const { metrics::op("unlink") });
        let (ctx, name) = (ctx(req), name.to_owned());
        self.spawn(move |fs| empty(reply, done(fs, t, fs.unlink(&ctx, parent, &name))));
    }

    fn rmdir(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let t = OpTimer::start(const { metrics::op("rmdir") });
        empty(
            reply,
            done(&self.fs, t, self.fs.rmdir(&ctx(req), parent, name)),
        );
    }

    fn symlink(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let t = OpTimer::start(const { metrics::op("symlink") });
        entry(
            reply,
            done(
                &self.fs,
                t,
                self.fs.symlink(&ctx(req), parent, link_name, target),
            ),
        );
    }

    fn rename(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let t = OpTimer::start(const { metrics::op("rename") });
        // Replacing a file may release its chunks: off the session thread.
        let (ctx, name, newname) = (ctx(req), name.to_owned(), newname.to_owned());
        self.spawn(move |fs| {
            empty(
                reply,
                done(
                    fs,
                    t,
                    fs.rename(&ctx, parent, &name, newparent, &newname, flags),
                ),
            )
        });
    }

    fn link(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let t = OpTimer::start(const { metrics::op("link") });
        entry(
            reply,
            done(
                &self.fs,
                t,
                self.fs.link(&ctx(req), ino, newparent, newname),
            ),
        );
    }

    fn open(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let t = OpTimer::start(const { metrics::op("open") });
        let ctx = ctx(req);
        // O_TRUNC may drop chunks: off the session thread.
        self.spawn(move |fs| match done(fs, t, fs.open(&ctx, ino, flags)) {
            Ok(fh) => reply.opened(fh, OPEN_FLAGS),
            Err(e) => reply.error(e.errno()),
        });
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let t = OpTimer::start(const { metrics::op("read") });
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        self.spawn(
            move |fs| match done(fs, t, fs.read(ino, fh, offset, size)) {
                Ok(data) => {
                    FsMetrics::add(&fs.metrics().read_bytes, data.len() as u64);
                    reply.data(&data)
                }
                Err(e) => reply.error(e.errno()),
            },
        );
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let kill = write_flags & FUSE_WRITE_KILL_SUIDGID != 0;
        let t = OpTimer::start(const { metrics::op("write") });
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        // Straight from the request buffer when the core can take it at once (the usual case); otherwise the
        // buffer is reused by the session loop, so the bytes are copied for a worker that may wait for room.
        if let Some(r) = self.fs.try_write_now(ino, fh, offset, data, kill) {
            return match done(&self.fs, t, r) {
                Ok(n) => {
                    FsMetrics::add(&self.fs.metrics().written_bytes, n as u64);
                    reply.written(n)
                }
                Err(e) => reply.error(e.errno()),
            };
        }
        let mut buf = self.fs.request_pool().take();
        buf.extend_from_slice(data);
        self.spawn(move |fs| {
            let r = done(fs, t, fs.write_with(ino, fh, offset, &buf, kill));
            fs.request_pool().give(buf);
            match r {
                Ok(n) => {
                    FsMetrics::add(&fs.metrics().written_bytes, n as u64);
                    reply.written(n)
                }
                Err(e) => reply.error(e.errno()),
            }
        });
    }

    fn flush(&mut self, _req: &Request<'_>, ino: u64, fh: u64, _owner: u64, reply: ReplyEmpty) {
        let t = OpTimer::start(const { metrics::op("flush") });
        self.spawn(move |fs| empty(reply, done(fs, t, fs.flush(ino, fh))));
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let t = OpTimer::start(const { metrics::op("release") });
        self.spawn(move |fs| empty(reply, done(fs, t, fs.release(ino, fh))));
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, fh: u64, datasync: bool, reply: ReplyEmpty) {
        let t = OpTimer::start(const { metrics::op("fsync") });
        self.spawn(move |fs| empty(reply, done(fs, t, fs.fsync(ino, fh, datasync))));
    }

    fn opendir(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let t = OpTimer::start(const { metrics::op("opendir") });
        match done(&self.fs, t, self.fs.opendir(&ctx(req), ino, flags)) {
            Ok(fh) => reply.opened(fh, 0),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let t = OpTimer::start(const { metrics::op("readdir") });
        let mut cookie = offset.max(0) as u64;
        let result = loop {
            let batch = match self.fs.readdir(ino, fh, cookie, READDIR_BATCH) {
                Ok(b) => b,
                Err(e) => break Err(e),
            };
            let last_batch = batch.len() < READDIR_BATCH;
            let mut full = false;
            for e in batch {
                if reply.add(e.ino, e.offset as i64, kind(e.kind), &e.name) {
                    full = true; // buffer full; the kernel asks again from this cookie
                    break;
                }
                cookie = e.offset;
            }
            if full || last_batch {
                break Ok(());
            }
        };
        match done(&self.fs, t, result) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        let t = OpTimer::start(const { metrics::op("releasedir") });
        empty(reply, done(&self.fs, t, self.fs.releasedir(ino, fh)));
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let t = OpTimer::start(const { metrics::op("fsyncdir") });
        self.spawn(move |fs| empty(reply, done(fs, t, fs.fsyncdir(ino, fh, datasync))));
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let t = OpTimer::start(const { metrics::op("statfs") });
        match done(&self.fs, t, self.fs.statfs()) {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(e.errno()),
        }
    }

    fn setxattr(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let t = OpTimer::start(const { metrics::op("setxattr") });
        empty(
            reply,
            done(
                &self.fs,
                t,
                self.fs.setxattr(&ctx(req), ino, name, value, flags),
            ),
        );
    }

    fn getxattr(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let t = OpTimer::start(const { metrics::op("getxattr") });
        xattr(
            reply,
            size,
            done(&self.fs, t, self.fs.getxattr(&ctx(req), ino, name)),
        );
    }

    fn listxattr(&mut self, req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        let t = OpTimer::start(const { metrics::op("listxattr") });
        xattr(
            reply,
            size,
            done(&self.fs, t, self.fs.listxattr(&ctx(req), ino)),
        );
    }

    fn removexattr(&mut self, req: &Request<'_>, ino: u64, name: &OsStr, reply: ReplyEmpty) {
        let t = OpTimer::start(const { metrics::op("removexattr") });
        empty(
            reply,
            done(&self.fs, t, self.fs.removexattr(&ctx(req), ino, name)),
        );
    }

    fn access(&mut self, req: &Request<'_>, ino: u64, mask: i32, reply: ReplyEmpty) {
        let t = OpTimer::start(const { metrics::op("access") });
        empty(
            reply,
            done(&self.fs, t, self.fs.access(&ctx(req), ino, mask)),
        );
    }

    fn create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let t = OpTimer::start(const { metrics::op("create") });
        let (ctx, name) = (ctx(req), name.to_owned());
        self.spawn(move |fs| {
            match done(fs, t, fs.create(&ctx, parent, &name, mode, umask, flags)) {
                Ok((a, fh)) => reply.created(&TTL, &file_attr(&a), a.generation, fh, OPEN_FLAGS),
                Err(e) => reply.error(e.errno()),
            }
        });
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let t = OpTimer::start(const { metrics::op("fallocate") });
        let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length)) else {
            return reply.error(libc::EINVAL);
        };
        self.spawn(move |fs| {
            empty(
                reply,
                done(fs, t, fs.fallocate(ino, fh, offset, length, mode)),
            )
        });
    }

    fn lseek(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let t = OpTimer::start(const { metrics::op("lseek") });
        self.spawn(
            move |fs| match done(fs, t, fs.lseek(ino, fh, offset, whence)) {
                Ok(o) => reply.offset(o),
                Err(e) => reply.error(e.errno()),
            },
        );
    }
}
