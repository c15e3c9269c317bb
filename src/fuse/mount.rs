//! Getting the adapter onto a mount point and off it again: mount(2) or fusermount3, the session, unmount.

use super::{Adapter, Outcome};
use crate::error::Error;
use crate::fs::Fs;
use fuser::{MountOption, Session, SessionACL};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

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

/// Readahead the kernel is asked to use on a valencefs mount: one full 1 MiB request (`max_pages` allows it).
const READ_AHEAD_KIB: u32 = 1024;

/// Raises the mount's readahead through its backing-device entry in sysfs (root only; best effort). The kernel
/// offers FUSE only its default ceiling (128 KiB) at init, which would cut every read into 128 KiB requests.
/// Call it after the kernel has processed INIT (e.g. once a stat of the mount point returned): INIT resets it.
pub fn raise_readahead(mountpoint: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let want = mountpoint.to_string_lossy();
    let Some(dev) = info.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && f[4] == want).then(|| f[2].to_string())
    }) else {
        return;
    };
    let path = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    if let Err(e) = std::fs::write(&path, READ_AHEAD_KIB.to_string()) {
        tracing::info!("readahead not raised ({path}: {e})");
    }
}

/// Unmounts `mountpoint`: `umount2` as root (lazily if busy), else `fusermount3 -u`.
pub fn unmount(mountpoint: &Path, lazy: bool) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let flags = if lazy { libc::MNT_DETACH } else { 0 };
        // A descriptor closed a moment ago (or briefly duplicated into a forking process before its exec) keeps
        // the mount busy for a few milliseconds: retry EBUSY for up to a second before reporting it.
        let mut tries = 0;
        let err = loop {
            // SAFETY: `c` is a valid NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EBUSY) || tries >= 20 {
                break err;
            }
            tries += 1;
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
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
