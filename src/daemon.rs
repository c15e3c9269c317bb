//! Mounting and unmounting a volume as a process: pre-flight checks, the re-exec daemon hand-shake, signals, and
//! `umount` waiting for the daemon to finish.
//!
//! Daemonizing never forks a process that has threads: the parent re-executes its own binary in foreground mode
//! (`--daemon-child`) in a new session with stdio on the state directory's log file, hands it the passphrase
//! through a pipe (fd 4), and waits on a status pipe (fd 3) for one line: `OK` once the mount is live, or
//! `ERR <code>\t<message>`. The parent prints the message and exits with the code, or exits 0.

use crate::cli::{Code, Failure};
use crate::error::Error;
use crate::fs::FsOptions;
use crate::fuse::{self, MountSettings};
use crate::mount_opts::MountOpts;
use crate::stats_server::StatsServer;
use crate::volume::{self, Config, StateLock};
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use zeroize::Zeroizing;

/// Descriptor on which a daemon child reports `OK` or `ERR code\tmessage`.
const STATUS_FD: RawFd = 3;
/// Descriptor from which a daemon child reads the passphrase.
const PASS_FD: RawFd = 4;
/// How long `mount` waits for a previous daemon on the same state directory to finish.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// How long `umount` waits for the daemon to flush and exit.
const UMOUNT_WAIT: Duration = Duration::from_secs(600);
/// Written by the daemon into the state directory as it exits: `ok` or the shutdown error.
const LAST_UNMOUNT: &str = "last-unmount";
/// The daemon's log file inside the state directory.
pub const LOG_FILE: &str = "valencefs.log";

/// Everything `valencefs mount` / `mount.valencefs` was asked to do.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub config: PathBuf,
    pub mountpoint: PathBuf,
    pub opts: MountOpts,
    /// Serve in this process instead of daemonizing.
    pub foreground: bool,
    /// mount(8) `-f`: do every check, mount nothing.
    pub fake: bool,
    /// This process is the daemon child of a `mount` without `-f`.
    pub daemon_child: bool,
}

/// Mounts a volume (daemonizing once the mount is live unless foreground).
pub fn mount(req: &MountRequest) -> Result<(), Failure> {
    // Before the passphrase is read or any key derived.
    if let Err(e) = forbid_core_dumps() {
        tracing::warn!(
            "cannot mark the process non-dumpable ({e}): a crash may write keys to a core file"
        );
    }
    if req.daemon_child {
        IS_DAEMON_CHILD.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let result = mount_inner(req);
    if req.daemon_child {
        // The parent prints our error; we only report it.
        let line = match &result {
            Ok(()) => return Ok(()), // OK was reported when the mount went live
            Err(f) => format!("ERR {}\t{}\n", f.code as u8, f.msg),
        };
        report(&line);
    }
    result
}

fn mount_inner(req: &MountRequest) -> Result<(), Failure> {
    let mountpoint = check_mountpoint(&req.mountpoint)?;
    let config_path = std::path::absolute(&req.config)
        .map_err(|e| Failure::new(Code::Config, format!("{}: {e}", req.config.display())))?;
    if !config_path.is_file() {
        return Err(Failure::new(
            Code::Config,
            format!("config file {} not found", config_path.display()),
        ));
    }
    let cfg = Config::load(&config_path)?;
    check_fuse()?;
    let passphrase = if req.daemon_child {
        read_passphrase_fd()?
    } else {
        crate::cli::passphrase(req.opts.passfile.as_deref(), false)?
    };
    if req.fake {
        return Ok(());
    }
    if req.foreground || req.daemon_child {
        serve(&config_path, &cfg, &mountpoint, &req.opts, passphrase)
    } else {
        spawn_daemon(&config_path, &cfg, &mountpoint, &req.opts, &passphrase)
    }
}

/// The mount point must exist, be a directory and not be mounted already. Returns its canonical path.
fn check_mountpoint(p: &Path) -> Result<PathBuf, Failure> {
    let fail = |m: String| Failure::new(Code::Mountpoint, m);
    let dead = || {
        fail(format!(
            "{} is a dead FUSE mount (its daemon is gone); run: valencefs umount {}",
            p.display(),
            p.display()
        ))
    };
    let canon = std::fs::canonicalize(p).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOTCONN) {
            dead()
        } else {
            fail(format!("mountpoint {} does not exist", p.display()))
        }
    })?;
    if let Some((source, fstype)) = mount_entry(&canon) {
        if let Err(e) = std::fs::metadata(&canon) {
            if e.raw_os_error() == Some(libc::ENOTCONN) {
                return Err(dead());
            }
        }
        return Err(fail(format!(
            "{} is already mounted ({fstype} from {source})",
            canon.display()
        )));
    }
    if !canon.is_dir() {
        return Err(fail(format!(
            "mountpoint {} is not a directory",
            p.display()
        )));
    }
    Ok(canon)
}

/// Marks this process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`): an abort or fatal signal writes no core file,
/// which would hold the master key, the passphrase and cached plaintext, and other processes of the same user can
/// no longer ptrace it or read its `/proc/PID/mem` and `environ`. The flag survives until exec (a re-exec'ed
/// daemon child calls this again) and is reset by the kernel on a setuid change, which the daemon never makes.
pub fn forbid_core_dumps() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only; touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Checks that this machine can mount FUSE filesystems at all.
pub fn check_fuse() -> Result<(), Failure> {
    if !Path::new("/dev/fuse").exists() {
        return Err(Failure::new(
            Code::Fuse,
            "/dev/fuse is missing: load the module (modprobe fuse) or, in a container, pass --device /dev/fuse",
        ));
    }
    let root = unsafe { libc::geteuid() } == 0;
    if !root && which("fusermount3").is_none() {
        return Err(Failure::new(
            Code::Fuse,
            "fusermount3 not found: install FUSE 3 (Debian/Ubuntu: sudo apt-get install fuse3)",
        ));
    }
    Ok(())
}

/// Finds an executable in `$PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn read_passphrase_fd() -> Result<Zeroizing<Vec<u8>>, Failure> {
    // SAFETY: the parent set up PASS_FD for us and nothing else in this process owns it.
    let mut f = unsafe { File::from_raw_fd(PASS_FD) };
    let mut buf = Zeroizing::new(Vec::new());
    f.read_to_end(&mut buf).map_err(|e| {
        Failure::new(
            Code::Failure,
            format!("reading passphrase from parent: {e}"),
        )
    })?;
    Ok(buf)
}

/// Set when this process is a daemon child, i.e. when [`STATUS_FD`] is ours to write.
static IS_DAEMON_CHILD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes one status line to the parent, once (nothing in foreground mode).
fn report(line: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if !IS_DAEMON_CHILD.load(Ordering::SeqCst) || DONE.swap(true, Ordering::SeqCst) {
        return;
    }
    // SAFETY: the parent set up STATUS_FD for us; ManuallyDrop-like: we close it right after writing.
    let mut f = unsafe { File::from_raw_fd(STATUS_FD) };
    let _ = f.write_all(line.as_bytes());
}

/// The parent half of daemonizing: re-exec ourselves as the daemon and wait for its verdict.
fn spawn_daemon(
    config_path: &Path,
    cfg: &Config,
    mountpoint: &Path,
    opts: &MountOpts,
    passphrase: &[u8],
) -> Result<(), Failure> {
    let fail = |msg: String| Failure::new(Code::Failure, msg);
    let exe = std::env::current_exe().map_err(|e| fail(format!("finding own binary: {e}")))?;
    crate::fs::ensure_private(&cfg.state_dir).map_err(|e| fail(e.to_string()))?;
    let log_path = cfg.state_dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| fail(format!("{}: {e}", log_path.display())))?;
    let (status_r, status_w) = pipe().map_err(|e| fail(format!("pipe: {e}")))?;
    let (pass_r, pass_w) = pipe().map_err(|e| fail(format!("pipe: {e}")))?;

    let mut args: Vec<OsString> = vec!["mount".into(), "--daemon-child".into()];
    let o = opts_to_string(opts);
    if !o.is_empty() {
        args.push("-o".into());
        args.push(o.into());
    }
    args.push(config_path.into());
    args.push(mountpoint.into());

    let mut cmd = Command::new(&exe);
    cmd.args(&args)
        .current_dir("/")
        .env_remove("VALENCEFS_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| fail(e.to_string()))?)
        .stderr(log);
    // SAFETY: only async-signal-safe calls (setsid, dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            for (from, to) in [(status_w, STATUS_FD), (pass_r, PASS_FD)] {
                if from == to {
                    libc::fcntl(to, libc::F_SETFD, 0);
                } else if libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = cmd.spawn();
    // SAFETY: we own these descriptors; the child has its own copies now.
    let (status_r, mut pass_w) = unsafe {
        libc::close(status_w);
        libc::close(pass_r);
        (File::from_raw_fd(status_r), File::from_raw_fd(pass_w))
    };
    let mut child = child.map_err(|e| fail(format!("starting daemon {}: {e}", exe.display())))?;
    let _ = pass_w.write_all(passphrase);
    drop(pass_w);

    let mut line = String::new();
    let _ = BufReader::new(status_r).read_line(&mut line);
    let line = line.trim_end();
    if line == "OK" {
        return Ok(());
    }
    if let Some(rest) = line.strip_prefix("ERR ") {
        let (code, msg) = rest.split_once('\t').unwrap_or(("1", rest));
        return Err(Failure::new(Code::from_u8(code.parse().unwrap_or(1)), msg));
    }
    let status = child.wait().ok();
    Err(fail(format!(
        "daemon exited before the mount went live ({}); see {}",
        status.map_or("unknown status".into(), |s| s.to_string()),
        log_path.display()
    )))
}

/// A pipe whose both ends are close-on-exec (the child gets explicit `dup2` copies).
fn pipe() -> std::io::Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

/// Re-serializes the options the daemon child needs (the passfile was already read by the parent).
fn opts_to_string(o: &MountOpts) -> String {
    let mut v: Vec<String> = Vec::new();
    if let Some(c) = o.cache_size {
        v.push(format!("cache_size={c}"));
    }
    if let Some(w) = o.workers {
        v.push(format!("workers={w}"));
    }
    if let Some(a) = o.metrics {
        v.push(format!("metrics={a}"));
    }
    if let Some(l) = &o.log {
        v.push(format!("log={l}"));
    }
    for (on, name) in [
        (o.allow_other, "allow_other"),
        (o.read_only, "ro"),
        (o.sync, "sync"),
        (o.noatime, "noatime"),
        (o.nodev, "nodev"),
        (o.nosuid, "nosuid"),
        (o.noexec, "noexec"),
        (o.writeback_cache == Some(true), "writeback_cache"),
        (o.writeback_cache == Some(false), "no_writeback_cache"),
    ] {
        if on {
            v.push(name.into());
        }
    }
    v.join(",")
}

/// Blocks the termination signals in this thread, so that every thread started afterwards inherits the mask and
/// only the dedicated signal thread (which `sigwait`s) ever sees them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain signal-set manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// The foreground daemon: lock, open, mount, report, serve until unmounted, shut down durably.
fn serve(
    config_path: &Path,
    cfg: &Config,
    mountpoint: &Path,
    opts: &MountOpts,
    passphrase: Zeroizing<Vec<u8>>,
) -> Result<(), Failure> {
    let sigset = block_signals();
    let _lock = StateLock::acquire(&cfg.state_dir, LOCK_WAIT)
        .map_err(|e| Failure::new(Code::Busy, e.to_string()))?;
    let fs_opts = FsOptions {
        cache_size: match opts.cache_size {
            Some(c) => c,
            None => cfg.cache_size.bytes()?,
        },
        read_only: opts.read_only,
        sync: opts.sync,
        noatime: opts.noatime,
        kernel_writeback: opts.kernel_writeback(),
        // The kernel checks permissions: we always mount with `default_permissions`.
        check_permissions: false,
        ..FsOptions::default()
    };
    let fs = volume::open(cfg, &passphrase, fs_opts)?;
    drop(passphrase);
    // Before the mount goes live, so that an unusable metrics address fails the mount with a clear message.
    let stats = match StatsServer::start(&fs, &cfg.state_dir, mountpoint, opts.metrics) {
        Ok(s) => s,
        Err(e) => {
            let _ = fs.shutdown();
            return Err(Failure::new(Code::Failure, e));
        }
    };
    let settings = MountSettings {
        fsname: config_path.display().to_string(),
        allow_other: opts.allow_other,
        read_only: opts.read_only,
        noatime: opts.noatime,
        noexec: opts.noexec,
        writeback_cache: opts.kernel_writeback(),
        workers: opts.workers.unwrap_or(MountSettings::default().workers),
    };
    let mounted = match fuse::mount(std::sync::Arc::clone(&fs), mountpoint, &settings) {
        Ok(m) => m,
        Err(e) => {
            drop(stats);
            let _ = fs.shutdown();
            return Err(Failure::new(
                Code::Fuse,
                format!("mounting at {}: {e}", mountpoint.display()),
            ));
        }
    };
    // The kernel resets readahead when it processes our INIT reply, so raise it only once the mount answers.
    let ra_mp = mountpoint.to_path_buf();
    let _ = std::thread::Builder::new()
        .name("readahead".into())
        .spawn(move || {
            if std::fs::metadata(&ra_mp).is_ok() {
                fuse::raise_readahead(&ra_mp);
            }
        });
    let mp = mountpoint.to_path_buf();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig = 0;
            // SAFETY: `sigset` is a valid, initialised set; `sig` is a valid out-pointer.
            if unsafe { libc::sigwait(&sigset, &mut sig) } != 0 {
                continue;
            }
            tracing::info!("signal {sig}: unmounting {}", mp.display());
            if let Err(e) = fuse::unmount(&mp, false) {
                tracing::warn!("unmount: {e}; detaching lazily");
                if let Err(e) = fuse::unmount(&mp, true) {
                    tracing::error!("lazy unmount: {e}");
                }
            }
        })
        .map_err(|e| Failure::new(Code::Failure, format!("signal thread: {e}")))?;
    tracing::info!(
        "{} mounted at {} (pid {}; kernel writeback cache {})",
        config_path.display(),
        mountpoint.display(),
        std::process::id(),
        if opts.kernel_writeback() { "on" } else { "off" }
    );
    report("OK\n");
    let result = mounted.run();
    drop(stats);
    // `run` ended with `Fs::shutdown` (flush + durable commit). Close the metadata database now, while the state
    // lock is still held, so the next mount never finds the database open by an exiting daemon.
    drop(fs);
    if let Err(e) = &result {
        tracing::error!("shutdown after unmount failed: {e}");
    }
    let verdict = match &result {
        Ok(()) => "ok\n".to_string(),
        Err(e) => format!("error: {e}\n"),
    };
    let _ = std::fs::write(cfg.state_dir.join(LAST_UNMOUNT), verdict);
    match result {
        Ok(()) => {
            tracing::info!("unmounted {} cleanly", mountpoint.display());
            Ok(())
        }
        Err(e) => Err(Failure::new(
            Code::Failure,
            format!("shutdown after unmount failed: {e}"),
        )),
    }
}

/// `valencefs umount`: unmount, then wait for the daemon to flush, commit and let go of the state directory.
pub fn umount(mountpoint: &Path) -> Result<(), Failure> {
    // A mount whose daemon died answers ENOTCONN to everything, canonicalize included: fall back to the
    // lexically absolute path so that such a mount can still be cleared.
    let canon = std::fs::canonicalize(mountpoint)
        .or_else(|_| std::path::absolute(mountpoint))
        .map_err(|e| Failure::new(Code::Mountpoint, format!("{}: {e}", mountpoint.display())))?;
    let Some((source, fstype)) = mount_entry(&canon) else {
        return Err(Failure::new(
            Code::NotMounted,
            format!("{} is not mounted", canon.display()),
        ));
    };
    let config = Config::load(Path::new(&source)).ok();
    // Plain `fuse` is what a mount made through another path (older builds) records; its source tells.
    if fstype != "fuse.valencefs" && !(fstype == "fuse" && config.is_some()) {
        return Err(Failure::new(
            Code::NotMounted,
            format!("{} is a {fstype} mount, not valencefs", canon.display()),
        ));
    }
    let state_dir = config.map(|c| c.state_dir);
    if let Some(dir) = &state_dir {
        let _ = std::fs::remove_file(dir.join(LAST_UNMOUNT));
    }
    fuse::unmount(&canon, false).map_err(|e| {
        let code = if e.raw_os_error() == Some(libc::EBUSY) {
            Code::Busy
        } else {
            Code::Failure
        };
        Failure::new(code, format!("unmounting {}: {e}", canon.display()))
    })?;
    let Some(dir) = state_dir else {
        eprintln!(
            "valencefs: unmounted; config {source} unreadable, so not waiting for the daemon"
        );
        return Ok(());
    };
    if !StateLock::wait_released(&dir, UMOUNT_WAIT) {
        return Err(Failure::new(
            Code::Busy,
            format!(
                "unmounted, but the daemon is still flushing after {} s (see {})",
                UMOUNT_WAIT.as_secs(),
                dir.join(LOG_FILE).display()
            ),
        ));
    }
    match std::fs::read_to_string(dir.join(LAST_UNMOUNT)) {
        Ok(v) if v.trim() != "ok" => Err(Failure::new(
            Code::Failure,
            format!("daemon reported: {}", v.trim()),
        )),
        _ => Ok(()),
    }
}

/// The (source, fstype) of the mount at `mountpoint` (canonical), from `/proc/self/mountinfo`.
pub fn mount_entry(mountpoint: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.to_string_lossy();
    info.lines().rev().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if unescape(left.split(' ').nth(4)?) != want {
            return None;
        }
        let mut r = right.split(' ');
        let fstype = r.next()?.to_string();
        Some((unescape(r.next()?), fstype))
    })
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let code = match &e {
            Error::WrongPassphrase => Code::WrongPassphrase,
            Error::BadDisk { .. } | Error::Unrecoverable { .. } => Code::Disks,
            Error::Volume(_) | Error::Format(_) | Error::Exists | Error::Invalid(_) => Code::Config,
            _ => Code::Failure,
        };
        Failure::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/mnt/a\040b"), "/mnt/a b");
        assert_eq!(unescape(r"/x\\y"), r"/x\\y");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn forbid_core_dumps_makes_the_process_non_dumpable() {
        // In a forked child, so the test process itself stays dumpable. The child calls only prctl and _exit
        // (async-signal-safe), as required after fork in a multi-threaded process.
        // SAFETY: see above; the parent only waits for the child.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let before = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
            let ok = forbid_core_dumps().is_ok();
            let after = unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) };
            unsafe {
                libc::_exit(if before == 1 && ok && after == 0 {
                    0
                } else {
                    1
                })
            };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid out-pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child saw the process still dumpable (status {status:#x})"
        );
    }

    #[test]
    fn root_is_mounted() {
        assert!(mount_entry(Path::new("/")).is_some());
    }
}
