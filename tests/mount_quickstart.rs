//! `valencefs quickstart`: creates and mounts on the first run, is idempotent on the second, remounts after umount.

mod common;
use common::*;

#[test]
fn quickstart_is_idempotent() {
    if !fuse_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mnt = dir.path().join("mnt"); // quickstart creates it
    let (d, m) = (data.to_str().unwrap(), mnt.to_str().unwrap());
    std::fs::create_dir(&mnt).unwrap();
    let g = MountGuard::new(&mnt);
    std::fs::remove_dir(&mnt).unwrap(); // quickstart creates a missing mount point
    let o = vfs(&["quickstart", "--data-dir", d, m]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(is_mounted(&mnt));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("created a personal (3+2) volume"), "{out}");
    let mode = std::fs::metadata(data.join("passphrase")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    for i in 1..=5 {
        assert!(data.join(format!("disk{i}")).is_dir());
    }
    std::fs::write(mnt.join("hello"), b"quick").unwrap();

    let o = vfs(&["quickstart", "--data-dir", d, m]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("already mounted"));

    g.umount();
    let o = vfs(&["quickstart", "--data-dir", d, m]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("created"));
    assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"quick");
    g.umount();
}
