//! The FUSE adapter: translates kernel requests into [`Fs`] calls and replies; the only module that imports `fuser`.
//!
//! No filesystem logic lives here. Errors become errno values only through [`crate::Error::errno`]. The FUSE
//! session thread stays cheap: every request that may do chunk I/O (read, write, flush, release, fsync, open,
//! create, setattr, unlink, rename, fallocate, ...) is queued to a small pool of worker threads, which reply
//! themselves (fuser replies are `Send`). Metadata lookups answer inline.
//!
//! The kernel is always mounted with `default_permissions`: it checks modes, owners and groups itself against the
//! attributes we return, so the core runs with `FsOptions::check_permissions = false`.

use crate::error::Error;
use crate::fs::{Attr, Ctx, FileKind, Fs, SetAttr, SetTime};
use fuser::consts;
use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, Session, SessionACL, TimeOrNow,
};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// How long the kernel may cache attributes and directory entries we return.
const TTL: Duration = Duration::from_secs(1);
/// Largest write request we ask the kernel for (it also sizes `max_pages`).
const MAX_WRITE: u32 = 1 << 20;
/// `st_blksize` we report: tools such as `cp` size their buffers from it.
const BLKSIZE: u32 = 128 << 10;
/// Entries fetched from the core per `readdir` call while filling one kernel buffer.
const READDIR_BATCH: usize = 1024;

/// Kernel-facing mount settings (everything else is the core's business, in `FsOptions`).
#[derive(Clone, Debug)]
pub struct MountSettings {
    /// Shown as the mount's source in `/proc/mounts` (we use the config file's path).
    pub fsname: String,
    pub allow_other: bool,
    pub read_only: bool,
    pub noatime: bool,
    /// Passed to the kernel (`nodev` and `nosuid` are always on, as for every FUSE mount).
    pub noexec: bool,
    /// Let the kernel cache writes in the page cache (FUSE_WRITEBACK_CACHE). Off by default; an option to measure.
    pub writeback_cache: bool,
    /// Worker threads answering requests that may do I/O.
    pub workers: usize,
}

impl Default for MountSettings {
    fn default() -> Self {
        MountSettings {
            fsname: "valencefs".into(),
            allow_other: false,
            read_only: false,
            noatime: false,
            noexec: false,
            writeback_cache: false,
            workers: 4,
        }
    }
}

/// A live mount whose request loop has not started yet: the kernel queues requests until [`Mounted::run`].
pub struct Mounted {
    session: Session<Adapter>,
    outcome: Outcome,
}

/// Where `destroy` leaves the result of `Fs::shutdown` for [`Mounted::run`] to return.
type Outcome = Arc<Mutex<Option<crate::Result<()>>>>;

impl Mounted {
    /// Answers kernel requests until the filesystem is unmounted, then drains the workers and calls
    /// `Fs::shutdown` (flush + durable commit). Returns the first failure of the loop or the shutdown.
    pub fn run(mut self) -> crate::Result<()> {
        let result = self.session.run();
        let outcome = Arc::clone(&self.outcome);
        drop(self.session); // fuser calls `destroy` here unless the kernel already sent DESTROY
        result.map_err(|e| Error::io("/dev/fuse", e))?;
        let shutdown = outcome.lock().map(|mut o| o.take()).unwrap_or(None);
        shutdown.unwrap_or(Ok(()))
    }
}

/// Mounts `fs` at `mountpoint`. When this returns the mount is visible; call [`Mounted::run`] to serve it.
///
/// As root we call mount(2) ourselves, so the kernel records the type as `fuse.valencefs` (fuser's own root path
/// says plain `fuse`); otherwise fuser goes through `fusermount3`, which sets the same subtype.
pub fn mount(fs: Arc<Fs>, mountpoint: &Path, settings: &MountSettings) -> io::Result<Mounted> {
    let outcome: Outcome = Arc::default();
    let adapter = Adapter::new(fs, settings, Arc::clone(&outcome));
    if let Some(fd) = mount_syscall(mountpoint, settings)? {
        let acl = if settings.allow_other {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        let session = Session::from_fd(adapter, fd, acl);
        return Ok(Mounted { session, outcome });
    }
    let mut options = vec![
        MountOption::FSName(settings.fsname.clone()),
        MountOption::Subtype("valencefs".into()),
        MountOption::DefaultPermissions,
    ];
    if settings.allow_other {
        options.push(MountOption::AllowOther);
    }
    options.push(if settings.read_only {
        MountOption::RO
    } else {
        MountOption::RW
    });
    for (on, opt) in [
        (settings.noatime, MountOption::NoAtime),
        (settings.noexec, MountOption::NoExec),
    ] {
        if on {
            options.push(opt);
        }
    }
    let session = Session::new(adapter, mountpoint, &options)?;
    Ok(Mounted { session, outcome })
}

/// mount(2) with type `fuse.valencefs`; `Ok(None)` when not permitted (then fusermount3 does it).
fn mount_syscall(mountpoint: &Path, settings: &MountSettings) -> io::Result<Option<OwnedFd>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")?;
    let rootmode = std::fs::metadata(mountpoint)?.mode() & libc::S_IFMT;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut data = format!(
        "fd={},rootmode={rootmode:o},user_id={uid},group_id={gid},default_permissions",
        dev.as_raw_fd()
    );
    if settings.allow_other {
        data.push_str(",allow_other");
    }
    // nodev and nosuid unless the kernel flags say otherwise: the conservative defaults of every FUSE mount.
    let mut flags = libc::MS_NODEV | libc::MS_NOSUID;
    for (on, flag) in [
        (settings.read_only, libc::MS_RDONLY),
        (settings.noatime, libc::MS_NOATIME),
        (settings.noexec, libc::MS_NOEXEC),
    ] {
        if on {
            flags |= flag;
        }
    }
    let cstr = |b: &[u8]| {
        std::ffi::CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    };
    let source = cstr(settings.fsname.as_bytes())?;
    let target = cstr(mountpoint.as_os_str().as_bytes())?;
    let fstype = cstr(b"fuse.valencefs")?;
    let data = cstr(data.as_bytes())?;
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EPERM) => Ok(None),
            _ => Err(err),
        };
    }
    Ok(Some(OwnedFd::from(dev)))
}

/// Unmounts `mountpoint`: `umount2` as root (lazily if busy), else `fusermount3 -u`.
pub fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let flags = if lazy { libc::MNT_DETACH } else { 0 };
        // SAFETY: `c` is a valid NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EPERM) {
            return Err(err);
        }
    }
    let mut cmd = std::process::Command::new("fusermount3");
    cmd.arg("-u");
    if lazy {
        cmd.arg("-z");
    }
    let out = cmd.arg(mountpoint).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

type Job = Box<dyn FnOnce(&Fs) + Send>;

/// A fixed pool of threads running jobs against the filesystem.
struct Pool {
    tx: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(fs: &Arc<Fs>, n: usize) -> Pool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..n.max(1))
            .map(|i| {
                let rx = Arc::clone(&rx);
                let fs = Arc::clone(fs);
                std::thread::Builder::new()
                    .name(format!("fuse-worker-{i}"))
                    .spawn(move || loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&fs),
                            Err(_) => return,
                        }
                    })
                    .expect("spawn worker thread")
            })
            .collect();
        Pool {
            tx: Some(tx),
            threads,
        }
    }

    fn submit(&self, job: Job, fs: &Fs) {
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    job(fs)
                }
            }
            None => job(fs),
        }
    }

    /// Runs every queued job, then stops the threads.
    fn drain(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

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

/// Answers an xattr request: a size-0 probe gets the length, a too-small buffer gets ERANGE.
fn xattr(reply: ReplyXattr, size: u32, r: crate::Result<Vec<u8>>) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(libc::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(e.errno()),
    }
}

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
            | consts::FUSE_CACHE_SYMLINKS;
        if self.writeback_cache {
            wanted |= consts::FUSE_WRITEBACK_CACHE;
        }
        for bit in (0..32).map(|i| 1u32 << i).filter(|b| wanted & b != 0) {
            if config.add_capabilities(bit).is_err() {
                log::info!("kernel lacks FUSE capability {bit:#x}; continuing without it");
            }
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
        entry(reply, self.fs.lookup(&ctx(req), parent, name));
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        self.fs.forget(ino, nlookup);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.fs.getattr(ino) {
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
        self.spawn(move |fs| match fs.setattr(&ctx, ino, &set) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(e.errno()),
        });
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.fs.readlink(ino) {
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
        entry(
            reply,
            self.fs.mknod(&ctx(req), parent, name, mode, umask, rdev),
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
        entry(reply, self.fs.mkdir(&ctx(req), parent, name, mode, umask));
    }

    fn unlink(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let (ctx, name) = (ctx(req), name.to_owned());
        self.spawn(move |fs| empty(reply, fs.unlink(&ctx, parent, &name)));
    }

    fn rmdir(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.fs.rmdir(&ctx(req), parent, name));
    }

    fn symlink(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        entry(reply, self.fs.symlink(&ctx(req), parent, link_name, target));
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
        // Replacing a file may release its chunks: off the session thread.
        let (ctx, name, newname) = (ctx(req), name.to_owned(), newname.to_owned());
        self.spawn(move |fs| {
            empty(
                reply,
                fs.rename(&ctx, parent, &name, newparent, &newname, flags),
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
        entry(reply, self.fs.link(&ctx(req), ino, newparent, newname));
    }

    fn open(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let ctx = ctx(req);
        // O_TRUNC may drop chunks: off the session thread.
        self.spawn(move |fs| match fs.open(&ctx, ino, flags) {
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
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        self.spawn(move |fs| match fs.read(ino, fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e.errno()),
        });
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(libc::EINVAL);
        };
        // The request buffer is reused by the session loop, so the bytes are copied once here.
        let data = data.to_vec();
        self.spawn(move |fs| match fs.write(ino, fh, offset, &data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e.errno()),
        });
    }

    fn flush(&mut self, _req: &Request<'_>, ino: u64, fh: u64, _owner: u64, reply: ReplyEmpty) {
        self.spawn(move |fs| empty(reply, fs.flush(ino, fh)));
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
        self.spawn(move |fs| empty(reply, fs.release(ino, fh)));
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, fh: u64, datasync: bool, reply: ReplyEmpty) {
        self.spawn(move |fs| empty(reply, fs.fsync(ino, fh, datasync)));
    }

    fn opendir(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        match self.fs.opendir(&ctx(req), ino, flags) {
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
        let mut cookie = offset.max(0) as u64;
        loop {
            let batch = match self.fs.readdir(ino, fh, cookie, READDIR_BATCH) {
                Ok(b) => b,
                Err(e) => return reply.error(e.errno()),
            };
            let last_batch = batch.len() < READDIR_BATCH;
            for e in batch {
                if reply.add(e.ino, e.offset as i64, kind(e.kind), &e.name) {
                    return reply.ok(); // buffer full; the kernel asks again from this cookie
                }
                cookie = e.offset;
            }
            if last_batch {
                return reply.ok();
            }
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
        empty(reply, self.fs.releasedir(ino, fh));
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |fs| empty(reply, fs.fsyncdir(ino, fh, datasync)));
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        match self.fs.statfs() {
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
        empty(reply, self.fs.setxattr(&ctx(req), ino, name, value, flags));
    }

    fn getxattr(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        xattr(reply, size, self.fs.getxattr(&ctx(req), ino, name));
    }

    fn listxattr(&mut self, req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        xattr(reply, size, self.fs.listxattr(&ctx(req), ino));
    }

    fn removexattr(&mut self, req: &Request<'_>, ino: u64, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.fs.removexattr(&ctx(req), ino, name));
    }

    fn access(&mut self, req: &Request<'_>, ino: u64, mask: i32, reply: ReplyEmpty) {
        empty(reply, self.fs.access(&ctx(req), ino, mask));
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
        let (ctx, name) = (ctx(req), name.to_owned());
        self.spawn(
            move |fs| match fs.create(&ctx, parent, &name, mode, umask, flags) {
                Ok((a, fh)) => reply.created(&TTL, &file_attr(&a), a.generation, fh, OPEN_FLAGS),
                Err(e) => reply.error(e.errno()),
            },
        );
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
        let (Ok(offset), Ok(length)) = (u64::try_from(offset), u64::try_from(length)) else {
            return reply.error(libc::EINVAL);
        };
        self.spawn(move |fs| empty(reply, fs.fallocate(ino, fh, offset, length, mode)));
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
        self.spawn(move |fs| match fs.lseek(ino, fh, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(e.errno()),
        });
    }
}
