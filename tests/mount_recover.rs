//! Lose the machine: a mounted volume's state directory and config are deleted after unmount, `valencefs recover`
//! rebuilds them from the disks and the passphrase, and the tree (names, modes, links, xattrs, bytes) is identical.
//! Then again with two of the five disks gone too.

mod common;
use common::*;

/// A listing of everything that should survive: path, type, mode, size, link count, content hash, link target.
fn manifest(m: &str) -> String {
    sh(&format!(
        "cd {m} && find . -mindepth 1 | LC_ALL=C sort | while read -r p; do \
           printf '%s %s ' \"$p\" \"$(stat -c '%F %a %s %h' \"$p\")\"; \
           if [ -L \"$p\" ]; then readlink \"$p\"; elif [ -f \"$p\" ]; then sha256sum < \"$p\" | cut -c1-16; else echo; fi; \
         done; python3 -c 'import os; print(os.getxattr(\"tree/data\", \"user.origin\"))'"
    ))
}

#[test]
fn recover_from_disks_and_passphrase_alone() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let m = v.mnt.display().to_string();
    let before = {
        let g = v.mount();
        sh(&format!(
            "mkdir -p {m}/tree/deep && chmod 750 {m}/tree && head -c 2500000 /dev/urandom > {m}/tree/data \
             && echo small > {m}/tree/deep/s && chmod 600 {m}/tree/deep/s && ln {m}/tree/data {m}/hard \
             && ln -s tree/deep/s {m}/link && mkfifo {m}/fifo && python3 -c 'import os; \
             os.setxattr(\"{m}/tree/data\", \"user.origin\", b\"nightly\")'"
        ));
        let b = manifest(&m);
        g.umount();
        b
    };
    assert!(
        before.contains("nightly") && before.contains("./hard"),
        "{before}"
    );
    let disks: Vec<String> = (1..=5).map(|i| v.disk(i).display().to_string()).collect();
    for round in 0..2 {
        std::fs::remove_dir_all(v.state()).unwrap();
        std::fs::remove_file(&v.config).unwrap();
        if round == 1 {
            // Also lose two disks: the rest still hold everything.
            std::fs::remove_dir_all(v.disk(2)).unwrap();
            std::fs::remove_dir_all(v.disk(4)).unwrap();
        }
        let present: Vec<&str> = disks
            .iter()
            .map(String::as_str)
            .filter(|d| std::path::Path::new(d).exists())
            .collect();
        // Disks may be given in any order.
        let mut args = vec![
            "recover",
            "--config",
            v.config.to_str().unwrap(),
            "--passfile",
            v.passfile.to_str().unwrap(),
        ];
        let state = v.state().display().to_string();
        args.extend(["--state", &state]);
        args.extend(present.iter().rev());
        let o = vfs(&args);
        assert!(
            o.status.success(),
            "round {round}: recover failed: {}",
            stderr(&o)
        );
        let g = if round == 0 {
            v.mount()
        } else {
            // With two disks gone the volume is read-only-safe to inspect; mount it read-only.
            let g = MountGuard::new(&v.mnt);
            let o = vfs(&[
                "mount",
                "-o",
                &format!("{},ro", v.passopt()),
                v.config.to_str().unwrap(),
                &m,
            ]);
            assert!(o.status.success(), "{}", stderr(&o));
            g
        };
        assert_eq!(manifest(&m), before, "round {round}");
        g.umount();
    }
    // A wrong passphrase is refused and writes nothing.
    std::fs::remove_dir_all(v.state()).unwrap();
    std::fs::remove_file(&v.config).unwrap();
    let bad = v.dir.path().join("bad");
    write_passfile(&bad, "wrong\n");
    let state = v.state().display().to_string();
    let o = vfs(&[
        "recover",
        "--config",
        v.config.to_str().unwrap(),
        "--passfile",
        bad.to_str().unwrap(),
        "--state",
        &state,
        &disks[0],
        &disks[2],
        &disks[4],
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("passphrase"), "{}", stderr(&o));
    assert!(!v.config.exists());
}

/// A rebuilt machine mounting before recovering (an fstab line restored without /var/lib), or a state directory
/// restored from an old backup, is refused with the way out: starting afresh would show an empty or outdated
/// volume and its first snapshot would replace the disks' pointer to the real metadata.
#[test]
fn a_lost_or_stale_state_directory_is_refused_with_the_way_out() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let m = v.mnt.display().to_string();
    let db = v.state().join("meta.redb");
    let g = v.mount();
    std::fs::write(v.mnt.join("first"), b"one").unwrap();
    g.umount();
    let old = std::fs::read(&db).unwrap();
    let g = v.mount();
    std::fs::write(v.mnt.join("second"), b"two").unwrap();
    g.umount();
    let mount = || {
        let g = MountGuard::new(&v.mnt);
        let o = vfs(&["mount", "-o", &v.passopt(), v.config.to_str().unwrap(), &m]);
        assert!(!is_mounted(&v.mnt), "mounted: {}", stderr(&o));
        drop(g);
        o
    };

    std::fs::remove_dir_all(v.state()).unwrap();
    let o = mount();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("holds no metadata database") && e.contains("valencefs recover"),
        "{e}"
    );
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(!db.exists(), "an empty database was created");
    // A zero-length file (what a power cut can leave of a file being written) is no database either.
    std::fs::write(&db, b"").unwrap();
    let o = mount();
    assert!(
        stderr(&o).contains("holds no metadata database"),
        "{}",
        stderr(&o)
    );

    std::fs::write(&db, &old).unwrap();
    let o = mount();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("older than the metadata on the disks") && e.contains("valencefs recover"),
        "{e}"
    );

    std::fs::remove_dir_all(v.state()).unwrap();
    let disks: Vec<String> = (1..=5).map(|i| v.disk(i).display().to_string()).collect();
    let state = v.state().display().to_string();
    let cfg = v.dir.path().join("recovered.toml");
    let mut args = vec![
        "recover",
        "--config",
        cfg.to_str().unwrap(),
        "--passfile",
        v.passfile.to_str().unwrap(),
        "--state",
        &state,
    ];
    args.extend(disks.iter().map(String::as_str));
    let o = vfs(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = v.mount();
    assert_eq!(std::fs::read(v.mnt.join("first")).unwrap(), b"one");
    assert_eq!(std::fs::read(v.mnt.join("second")).unwrap(), b"two");
    g.umount();
}
