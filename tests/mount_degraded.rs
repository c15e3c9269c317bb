//! Two of five disks deleted while mounted (personal 3+2): every file still reads back, before and after remount.

mod common;
use common::*;

#[test]

fn two_disks_deleted_while_mounted() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    let m = v.mnt.display().to_string();
    let sums = {
        let g = v.mount();
        sh(&format!(
            "head -c 5000000 /dev/urandom > {m}/a && head -c 1234 /dev/urandom > {m}/b \
             && mkdir {m}/d && head -c 300000 /dev/urandom > {m}/d/c && sync -f {m}/a"
        ));
        let sums = sh(&format!("cd {m} && sha256sum a b d/c"));
        g.umount();
        sums
    };
    let g = v.mount();
    std::fs::remove_dir_all(v.disk(1)).unwrap();
    std::fs::remove_dir_all(v.disk(4)).unwrap();
    sh("echo 3 > /proc/sys/vm/drop_caches || true");
    assert_eq!(
        sh(&format!("cd {m} && sha256sum a b d/c")),
        sums,
        "{}",
        v.log()
    );
    g.umount();
    let g = v.mount();
    assert_eq!(
        sh(&format!("cd {m} && sha256sum a b d/c")),
        sums,
        "{}",
        v.log()
    );
    g.umount();
}
