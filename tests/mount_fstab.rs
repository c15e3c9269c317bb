//! `mount -t valencefs`, fstab lines (`mount -T`, `mount -a`) and the option noise of fstab/systemd, through the
//! `mount.valencefs` helper installed as /sbin/mount.valencefs (libmount searches only /sbin for helpers).

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

/// The helper path is global to the machine: tests that install it run one at a time.
static HELPER: Mutex<()> = Mutex::new(());

/// Installs `/sbin/mount.valencefs` → the test binary for its lifetime (leaves a pre-existing one alone).
struct Helper {
    installed: bool,
}

const HELPER_PATH: &str = "/sbin/mount.valencefs";

impl Helper {
    fn install() -> Option<Helper> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: installing {HELPER_PATH} needs root");
            return None;
        }
        let p = Path::new(HELPER_PATH);
        if p.symlink_metadata().is_ok() {
            if std::fs::read_link(p).ok().as_deref() == Some(Path::new(bin())) {
                return Some(Helper { installed: true });
            }
            eprintln!("SKIPPED: {HELPER_PATH} already exists and is not ours");
            return None;
        }
        std::os::unix::fs::symlink(bin(), p).unwrap();
        Some(Helper { installed: true })
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.installed {
            let _ = std::fs::remove_file(HELPER_PATH);
        }
    }
}

fn mount8(args: &[&str]) -> std::process::Output {
    Command::new("mount")
        .args(args)
        .env("VALENCEFS_INSECURE_FAST_KDF", "1")
        .output()
        .unwrap()
}

#[test]
fn mount8_shows_helper_errors() {
    let _l = HELPER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_h) = Helper::install() else { return };
    let v = Vol::new("personal");
    let (cfg, mnt) = (v.config.to_str().unwrap(), v.mnt.to_str().unwrap());
    let o = mount8(&["-t", "valencefs", "-o", "bogus", cfg, mnt]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown mount option 'bogus'"),
        "{}",
        stderr(&o)
    );
    let wrong = v.dir.path().join("wrong");
    write_passfile(&wrong, "nope");
    let o = mount8(&[
        "-t",
        "valencefs",
        "-o",
        &format!("passfile={}", wrong.display()),
        cfg,
        mnt,
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("wrong passphrase"), "{}", stderr(&o));
    assert!(!is_mounted(&v.mnt));
}

#[test]
fn mount_t_and_fstab_line() {
    let _l = HELPER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_h) = Helper::install() else { return };
    let v = Vol::new("personal");
    let (cfg, mnt) = (v.config.to_str().unwrap(), v.mnt.to_str().unwrap());
    {
        let g = MountGuard::new(&v.mnt);
        let o = mount8(&["-t", "valencefs", "-o", &v.passopt(), cfg, mnt]);
        assert!(o.status.success(), "{}\n{}", stderr(&o), v.log());
        assert!(is_mounted(&v.mnt));
        std::fs::write(v.mnt.join("via-mount-t"), b"1").unwrap();
        g.umount();
    }
    let fstab = v.dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# test fstab\n{cfg} {mnt} valencefs {},_netdev,nofail,noauto,x-systemd.automount 0 0\n",
            v.passopt()
        ),
    )
    .unwrap();
    let g = MountGuard::new(&v.mnt);
    let o = mount8(&["-T", fstab.to_str().unwrap(), mnt]);
    assert!(o.status.success(), "{}\n{}", stderr(&o), v.log());
    assert_eq!(std::fs::read(v.mnt.join("via-mount-t")).unwrap(), b"1");
    // Plain umount(8) works too; the guard then waits for nothing.
    let o = Command::new("umount").arg(mnt).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("daemon exit", std::time::Duration::from_secs(20), || {
        !Path::new(&v.state()).join("lock").exists() || {
            let out = vfs(&["status", cfg, "--json"]);
            let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            j["daemon_pid"].is_null()
        }
    });
    drop(g);
}

/// Runs the binary as the helper (it dispatches on argv[0]), as mount(8) would, with fast key derivation.
fn helper(args: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    Command::new(bin())
        .arg0("mount.valencefs")
        .args(args)
        .env("VALENCEFS_INSECURE_FAST_KDF", "1")
        .env_remove("VALENCEFS_PASSPHRASE")
        .output()
        .unwrap()
}

/// What fstab, systemd and mount(8) put in an options field is accepted and ignored; nonsense is refused with one
/// clear line and exit code 2. `-f` (fake) does every check without mounting.
#[test]
fn helper_ignores_fstab_options_and_refuses_nonsense() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let (cfg, mnt) = (v.config.to_str().unwrap(), v.mnt.to_str().unwrap());
    let noise = [
        "x-systemd.automount",
        "x-systemd.idle-timeout=10min",
        "x-systemd.requires=network-online.target",
        "x-systemd.mount-timeout=30",
        "x-initrd.mount",
        "nofail",
        "_netdev",
        "noauto",
        "auto",
        "user",
        "users",
        "user=alice",
        "owner",
        "group",
        "defaults",
        "comment=systemd.automount",
        "rw",
        "relatime",
    ]
    .join(",");
    let opts = format!("{},{noise}", v.passopt());
    let o = helper(&[cfg, mnt, "-f", "-n", "-v", "-t", "valencefs", "-o", &opts]);
    assert!(o.status.success(), "fake mount refused: {}", stderr(&o));
    assert!(!is_mounted(&v.mnt), "-f must not mount");

    let refused = [
        ("frobnicate", "unknown mount option 'frobnicate'"),
        ("ro=yes", "unknown mount option 'ro=yes'"),
        (
            "cache_size=lots",
            "mount option cache_size: 'lots' is not a size",
        ),
        ("workers=0", "mount option workers=0: expected 1..64"),
        ("passfile", "mount option passfile needs a value"),
        ("x", "unknown mount option 'x'"),
    ];
    for (bad, msg) in refused {
        let o = helper(&[cfg, mnt, "-o", &format!("{},{bad}", v.passopt())]);
        assert_eq!(o.status.code(), Some(2), "-o {bad}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.lines().count() == 1 && err.starts_with(&format!("mount.valencefs: {msg}")),
            "-o {bad}: want one line 'mount.valencefs: {msg}...', got: {err}"
        );
        assert!(!is_mounted(&v.mnt));
    }
    let o = helper(&[cfg, mnt, "-x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unexpected argument '-x'") && stderr(&o).contains("usage:"),
        "{}",
        stderr(&o)
    );
    // -s (sloppy) drops what it does not know, with a warning, and carries on.
    let o = helper(&[
        cfg,
        mnt,
        "-sf",
        "-o",
        &format!("frobnicate,{}", v.passopt()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ignoring: unknown mount option 'frobnicate'"),
        "{}",
        stderr(&o)
    );
}

/// The README's automount fstab line, mounted by `mount -a` from a private fstab (-T), never /etc/fstab.
#[test]
fn mount_a_mounts_an_automount_fstab_line() {
    let _l = HELPER.lock().unwrap_or_else(|e| e.into_inner());
    let Some(_h) = Helper::install() else { return };
    let v = Vol::new("personal");
    let (cfg, mnt) = (v.config.to_str().unwrap(), v.mnt.to_str().unwrap());
    let fstab = v.dir.path().join("fstab");
    std::fs::write(
        &fstab,
        format!(
            "# test fstab\n{cfg} {mnt} valencefs {},_netdev,nofail,x-systemd.automount,x-systemd.idle-timeout=10min 0 0\n",
            v.passopt()
        ),
    )
    .unwrap();
    let fstab = fstab.to_str().unwrap();
    let mounts_here = || {
        let canon = std::fs::canonicalize(&v.mnt).unwrap();
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .filter(|l| l.split(' ').nth(1) == canon.to_str())
            .map(|l| l.split(' ').nth(2).unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    let g = MountGuard::new(&v.mnt);
    let o = mount8(&["-a", "-T", fstab]);
    // nofail can hide a failed mount from mount -a's exit code: check the mount itself.
    assert!(o.status.success(), "{}\n{}", stderr(&o), v.log());
    assert_eq!(mounts_here(), vec!["fuse.valencefs"], "{}", v.log());
    std::fs::write(v.mnt.join("via-mount-a"), b"automount line").unwrap();
    // A second mount -a (as at every boot or `mount -a` by an admin) sees it mounted and leaves it alone.
    let o = mount8(&["-a", "-T", fstab]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(mounts_here(), vec!["fuse.valencefs"]);
    g.umount();
    {
        let g = MountGuard::new(&v.mnt);
        let o = mount8(&["-a", "-T", fstab]);
        assert!(o.status.success(), "{}\n{}", stderr(&o), v.log());
        assert_eq!(
            std::fs::read(v.mnt.join("via-mount-a")).unwrap(),
            b"automount line"
        );
        g.umount();
    }

    // A nonsense option on such a line: mount -a reports the helper's message and mounts nothing.
    let bad = v.dir.path().join("fstab.bad");
    std::fs::write(
        &bad,
        format!(
            "{cfg} {mnt} valencefs {},_netdev,frobnicate 0 0\n",
            v.passopt()
        ),
    )
    .unwrap();
    let g = MountGuard::new(&v.mnt);
    let o = mount8(&["-a", "-T", bad.to_str().unwrap()]);
    assert!(!o.status.success(), "mount -a accepted a bad option");
    assert!(
        stderr(&o).contains("unknown mount option 'frobnicate'"),
        "{}",
        stderr(&o)
    );
    assert!(mounts_here().is_empty());
    drop(g);
}
