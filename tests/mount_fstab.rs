//! `mount -t valencefs` and an fstab line, through the `mount.valencefs` helper installed as /sbin/mount.valencefs.

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
    std::fs::write(&wrong, "nope").unwrap();
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
