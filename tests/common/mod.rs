//! Shared scaffolding for mounted tests: a temporary volume, and a mount guard that always unmounts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_valencefs")
}

/// Mounted tests need root (or fusermount3) and /dev/fuse; say so loudly rather than fail obscurely.
pub fn fuse_available() -> bool {
    let ok = Path::new("/dev/fuse").exists();
    if !ok {
        eprintln!("SKIPPED: /dev/fuse is missing");
    }
    ok
}

/// Runs the valencefs binary with fast KDF settings.
pub fn vfs(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("VALENCEFS_INSECURE_FAST_KDF", "1")
        .env_remove("VALENCEFS_PASSPHRASE")
        .output()
        .expect("run valencefs")
}

pub fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "script failed: {script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A volume in a temporary directory: five disks, a passfile, a state dir and a mount point.
pub struct Vol {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub passfile: PathBuf,
    pub mnt: PathBuf,
}

impl Vol {
    pub fn new(redundancy: &str) -> Vol {
        Vol::new_with(redundancy, |_| {})
    }

    /// Like [`Vol::new`], with `before_init(dir)` run first (to put the disk directories on special mounts).
    pub fn new_with(redundancy: &str, before_init: impl FnOnce(&Path)) -> Vol {
        Vol::new_init(redundancy, &[], before_init)
    }

    /// Like [`Vol::new_with`], with more `init` options (e.g. `--chunk-size 64K`).
    pub fn new_init(redundancy: &str, init_args: &[&str], before_init: impl FnOnce(&Path)) -> Vol {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        before_init(p);
        let passfile = p.join("pass");
        write_passfile(&passfile, "correct horse battery staple\n");
        let mnt = p.join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let config = p.join("vol.toml");
        let disks: Vec<String> = (1..=5)
            .map(|i| p.join(format!("disk{i}")).display().to_string())
            .collect();
        let mut args = vec![
            "init",
            "--config",
            config.to_str().unwrap(),
            "--redundancy",
            redundancy,
            "--passfile",
            passfile.to_str().unwrap(),
            "--state",
        ];
        let state = p.join("state").display().to_string();
        args.push(&state);
        args.extend_from_slice(init_args);
        args.extend(disks.iter().map(String::as_str));
        let out = vfs(&args);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        Vol {
            dir,
            config,
            passfile,
            mnt,
        }
    }

    pub fn disk(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("disk{i}"))
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn passopt(&self) -> String {
        format!("passfile={}", self.passfile.display())
    }

    /// Mounts (daemonized) and returns the guard; panics with the CLI's message on failure.
    pub fn mount(&self) -> MountGuard {
        self.mount_with("")
    }

    /// Like [`Vol::mount`], with extra comma-separated `-o` options.
    pub fn mount_with(&self, extra: &str) -> MountGuard {
        let guard = MountGuard::new(&self.mnt);
        let mut opts = self.passopt();
        if !extra.is_empty() {
            opts = format!("{opts},{extra}");
        }
        let out = vfs(&[
            "mount",
            "-o",
            &opts,
            self.config.to_str().unwrap(),
            self.mnt.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "mount failed: {}\nlog:\n{}",
            stderr(&out),
            self.log()
        );
        assert!(
            is_mounted(&self.mnt),
            "mount returned 0 but nothing is mounted"
        );
        guard
    }

    /// The daemon's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state().join("valencefs.log")).unwrap_or_default()
    }
}

/// Whether `/proc/mounts` lists this directory as a mount point.
pub fn is_mounted(p: &Path) -> bool {
    let canon = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let want = canon.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&want))
}

/// Unmounts on drop, on every path including panics: `valencefs umount`, then lazy `umount2`/`fusermount3 -u -z`.
pub struct MountGuard {
    mnt: PathBuf,
}

impl MountGuard {
    pub fn new(mnt: &Path) -> MountGuard {
        MountGuard {
            mnt: std::fs::canonicalize(mnt).unwrap_or_else(|_| mnt.to_path_buf()),
        }
    }

    /// `valencefs umount`, asserting success (the guard then has nothing left to do).
    pub fn umount(&self) {
        let out = vfs(&["umount", self.mnt.to_str().unwrap()]);
        assert!(out.status.success(), "umount failed: {}", stderr(&out));
        assert!(!is_mounted(&self.mnt), "still mounted after umount");
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if !is_mounted(&self.mnt) {
            return;
        }
        let _ = vfs(&["umount", self.mnt.to_str().unwrap()]);
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_mounted(&self.mnt) && Instant::now() < deadline {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).output();
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mnt)
                .output();
            std::thread::sleep(Duration::from_millis(100));
        }
        if is_mounted(&self.mnt) && !std::thread::panicking() {
            panic!("stale mount left at {}", self.mnt.display());
        }
    }
}

/// The daemon pid recorded in the state directory's lock file.
pub fn daemon_pid(state: &Path) -> Option<i32> {
    std::fs::read_to_string(state.join("lock"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `len` pseudo-random bytes from a xorshift64 generator started at `state` (non-zero): cheap, deterministic test
/// data that does not compress or dedup. The golden-volume test depends on this exact sequence.
pub fn xorshift(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// [`xorshift`] from a seed spread over the state (any seed, 0 included, gives a distinct stream).
pub fn pseudo(len: usize, seed: u64) -> Vec<u8> {
    xorshift(len, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
}

/// Writes a passfile as a user should: mode 0600 (valencefs refuses one that group or others can read).
pub fn write_passfile(path: &Path, contents: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}
