//! CLI contract without a live mount: exit codes and one-line messages for every refusal the issue names.

mod common;
use common::*;
use valencefs::store::{open_dir_disk, KdfParams, Store};

fn code(o: &std::process::Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn assert_one_line(o: &std::process::Output, needle: &str) {
    let e = stderr(o);
    assert!(e.contains(needle), "stderr lacks {needle:?}: {e}");
    assert_eq!(e.trim_end().lines().count(), 1, "more than one line: {e}");
}

#[test]
fn mount_refusals_have_codes_and_one_line() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let (cfg, mnt) = (v.config.to_str().unwrap(), v.mnt.to_str().unwrap());

    let o = vfs(&["mount", "-o", &format!("{},bogus", v.passopt()), cfg, mnt]);
    assert_eq!(code(&o), 2);
    assert_one_line(&o, "unknown mount option 'bogus'");

    let o = vfs(&["mount", "-o", "passfile=/nonexistent/pass", cfg, mnt]);
    assert_eq!(code(&o), 5);
    assert_one_line(&o, "passfile /nonexistent/pass");

    let o = vfs(&["mount", cfg, mnt]);
    assert_eq!(code(&o), 5, "no passphrase source at all");
    assert_one_line(&o, "no passphrase");

    let wrong = v.dir.path().join("wrong");
    write_passfile(&wrong, "not the passphrase\n");
    let o = vfs(&[
        "mount",
        "-o",
        &format!("passfile={}", wrong.display()),
        cfg,
        mnt,
    ]);
    assert_eq!(code(&o), 4);
    assert_one_line(&o, "wrong passphrase");
    assert!(!is_mounted(&v.mnt));

    let missing = v.dir.path().join("nowhere");
    let o = vfs(&["mount", "-o", &v.passopt(), cfg, missing.to_str().unwrap()]);
    assert_eq!(code(&o), 7);
    assert_one_line(&o, "does not exist");

    let o = vfs(&["mount", "-o", &v.passopt(), "/nonexistent.toml", mnt]);
    assert_eq!(code(&o), 3);

    // Three of five disks gone: personal (3+2) tolerates two.
    for i in 1..=3 {
        std::fs::remove_dir_all(v.disk(i)).unwrap();
    }
    let o = vfs(&["mount", "-o", &v.passopt(), cfg, mnt]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert_one_line(&o, "disk");
    assert!(!is_mounted(&v.mnt));
}

#[test]
fn passphrase_from_environment() {
    let v = Vol::new("minimal");
    let o = std::process::Command::new(bin())
        .args([
            "mount",
            "-o",
            "bogus_after_passphrase=1",
            v.config.to_str().unwrap(),
            v.mnt.to_str().unwrap(),
        ])
        .env("VALENCEFS_PASSPHRASE", "x")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "options are checked before anything else");
    let o = std::process::Command::new(bin())
        .args(["status", v.config.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["health"], "healthy");
    assert_eq!(j["disks"].as_array().unwrap().len(), 5);
    assert!(j["mountpoint"].is_null());
}

#[test]
fn init_refusals() {
    let v = Vol::new("personal");
    let d = v.dir.path();
    let o = vfs(&[
        "init",
        "--config",
        v.config.to_str().unwrap(),
        "--passfile",
        v.passfile.to_str().unwrap(),
        d.join("x").to_str().unwrap(),
        d.join("y").to_str().unwrap(),
        d.join("z").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 3);
    assert_one_line(&o, "already exists");

    let cfg2 = d.join("two.toml");
    let o = vfs(&[
        "init",
        "--config",
        cfg2.to_str().unwrap(),
        "--passfile",
        v.passfile.to_str().unwrap(),
        "--state",
        d.join("s2").to_str().unwrap(),
        d.join("a").to_str().unwrap(),
        d.join("b").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 3);
    assert_one_line(&o, "needs 5 disks");
    assert!(!cfg2.exists());

    let o = vfs(&[
        "init",
        "--config",
        cfg2.to_str().unwrap(),
        "--passfile",
        v.passfile.to_str().unwrap(),
        "--redundancy",
        "lots",
        d.join("a").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 3);
    assert_one_line(&o, "lots");
}

#[test]
fn umount_of_something_else() {
    let dir = tempfile::tempdir().unwrap();
    let o = vfs(&["umount", dir.path().to_str().unwrap()]);
    assert_eq!(code(&o), 10);
    assert_one_line(&o, "is not mounted");
    let o = vfs(&["umount", "/proc"]);
    assert_eq!(code(&o), 10);
    assert_one_line(&o, "not valencefs");
}

#[test]
fn helper_via_argv0() {
    // mount(8) runs /sbin/mount.valencefs; a symlink with that name in a temp dir exercises the same dispatch.
    let v = Vol::new("personal");
    let helper = v.dir.path().join("mount.valencefs");
    std::os::unix::fs::symlink(bin(), &helper).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(&helper)
            .args(args)
            .env("VALENCEFS_INSECURE_FAST_KDF", "1")
            .output()
            .unwrap()
    };
    let (cfg, mnt) = (v.config.to_str().unwrap(), v.mnt.to_str().unwrap());
    let o = run(&[cfg, mnt, "-o", "rw,bogus"]);
    assert_eq!(code(&o), 2);
    assert_one_line(&o, "mount.valencefs: unknown mount option 'bogus'");
    // -f is mount(8)'s fake mode: every check, no mount.
    let o = run(&[
        cfg,
        mnt,
        "-fnv",
        "-o",
        &format!("{},_netdev,nofail,x-systemd.automount", v.passopt()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!is_mounted(&v.mnt));
    // -s (sloppy) drops unknown options with a warning.
    let o = run(&[cfg, mnt, "-sf", "-o", &format!("{},bogus", v.passopt())]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[cfg]);
    assert_eq!(code(&o), 2);
}

#[test]
fn passwd_changes_the_passphrase() {
    let v = Vol::new("personal");
    let newpass = v.dir.path().join("new");
    write_passfile(&newpass, "a new passphrase\n");
    let cfg = v.config.to_str().unwrap();
    let o = vfs(&[
        "passwd",
        cfg,
        "--passfile",
        newpass.to_str().unwrap(),
        "--new-passfile",
        newpass.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 4, "old passphrase must be right: {}", stderr(&o));
    let o = vfs(&[
        "passwd",
        cfg,
        "--passfile",
        v.passfile.to_str().unwrap(),
        "--new-passfile",
        newpass.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The test's fast KDF is loud about what it costs.
    assert!(stderr(&o).contains("INSECURE fast KDF"), "{}", stderr(&o));
    // The old one no longer opens the volume (checked before any mount happens).
    let o = vfs(&[
        "passwd",
        cfg,
        "--passfile",
        v.passfile.to_str().unwrap(),
        "--new-passfile",
        newpass.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 4);
    // Without the fast option, the new slot gets the default KDF costs, not the old slot's weak ones.
    let newer = v.dir.path().join("newer");
    write_passfile(&newer, "a newer passphrase\n");
    let o = std::process::Command::new(bin())
        .args(["passwd", cfg, "--passfile", newpass.to_str().unwrap()])
        .args(["--new-passfile", newer.to_str().unwrap()])
        .env_remove("VALENCEFS_INSECURE_FAST_KDF")
        .env_remove("VALENCEFS_PASSPHRASE")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("INSECURE"), "{}", stderr(&o));
    let conf = valencefs::volume::Config::load(&v.config).unwrap();
    let disks = conf.disks.iter().map(|d| open_dir_disk(d)).collect();
    let store = Store::open(disks, b"a newer passphrase").unwrap();
    let slots = store.keyslots();
    assert_eq!(slots.len(), 1);
    assert_eq!(store.keyslot_kdf(slots[0]), Some(KdfParams::default()));
}

#[test]
fn passfile_open_to_group_or_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let v = Vol::new("personal");
    let (cfg, pf) = (v.config.to_str().unwrap(), v.passfile.to_str().unwrap());
    let passwd = || vfs(&["passwd", cfg, "--passfile", pf, "--new-passfile", pf]);
    for mode in [0o644, 0o640, 0o602] {
        std::fs::set_permissions(&v.passfile, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = passwd();
        assert_eq!(code(&o), 5, "mode {mode:o}: {}", stderr(&o));
        assert_one_line(&o, &format!("run: chmod 600 {pf}"));
    }
    std::fs::set_permissions(&v.passfile, std::fs::Permissions::from_mode(0o400)).unwrap();
    let o = passwd();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn env_passphrase_leaves_the_environment_of_a_foreground_mount() {
    if !fuse_available() {
        return;
    }
    const PASS: &str = "correct horse battery staple";
    let v = Vol::new("personal");
    let guard = MountGuard::new(&v.mnt);
    let mut child = std::process::Command::new(bin())
        .args(["mount", "-f", v.config.to_str().unwrap()])
        .arg(&v.mnt)
        .env("VALENCEFS_INSECURE_FAST_KDF", "1")
        .env("VALENCEFS_PASSPHRASE", PASS)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the mount", std::time::Duration::from_secs(30), || {
        is_mounted(&v.mnt)
    });
    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    guard.umount();
    child.wait().unwrap();
    assert!(
        !environ.windows(PASS.len()).any(|w| w == PASS.as_bytes()),
        "the passphrase is still in /proc/PID/environ"
    );
    assert!(
        environ.windows(12).any(|w| w == b"INSECURE_FAS"),
        "read the wrong process's environment"
    );
}
