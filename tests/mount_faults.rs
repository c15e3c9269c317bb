//! Disk faults while mounted: a disk filling up, a disk going read-only, a disk's drive unmounted from under the
//! volume. Writes either go on (while k+1 disks take shards) or fail with a clear errno — never a hang, never a
//! panic; everything that was durable stays readable; once the fault is fixed, the volume carries on.
//! Disks are small tmpfs mounts so faults are real kernel errors, not simulations.

mod common;
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A tmpfs (or bind) mount that is lazily unmounted on drop, on every path.
struct Mnt(PathBuf);

impl Mnt {
    fn tmpfs(dir: &Path, mib: u64) -> Mnt {
        std::fs::create_dir_all(dir).unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={mib}m valencefs-test '{}'",
            dir.display()
        ));
        Mnt(dir.to_path_buf())
    }
    fn bind(from: &Path, to: &Path) -> Mnt {
        std::fs::create_dir_all(to).unwrap();
        sh(&format!(
            "mount --bind '{}' '{}'",
            from.display(),
            to.display()
        ));
        Mnt(to.to_path_buf())
    }
}

impl Drop for Mnt {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .output();
    }
}

/// The volume and the mounts under its disks; the mounts go before the temporary directory is removed.
struct Rig {
    mounts: Vec<Mnt>,
    v: Vol,
}

/// Writes `data` to `path` and fsyncs, on a thread: returns the errno of the first failing call, and panics if
/// the filesystem does not answer within two minutes (a hang is a failure, not a slow pass).
fn write_file(path: &Path, data: Vec<u8>) -> Result<(), i32> {
    let path = path.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = (|| {
            let mut f = std::fs::File::create(&path)?;
            for piece in data.chunks(1 << 20) {
                f.write_all(piece)?;
            }
            f.sync_all()
        })();
        let _ = tx.send(r.map_err(|e| e.raw_os_error().unwrap_or(-1)));
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("write + fsync did not return within 120 s: the mount hangs")
}

fn assert_reads(v: &Vol, name: &str, want: &[u8]) {
    let got =
        std::fs::read(v.mnt.join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{}", v.log()));
    assert!(
        got == want,
        "{name}: {} bytes back, content differs",
        got.len()
    );
}

fn assert_no_panic(v: &Vol) {
    let log = v.log();
    assert!(!log.contains("panicked"), "the daemon panicked:\n{log}");
}

#[test]
fn a_full_disk_fails_writes_with_enospc_and_the_volume_recovers() {
    if !fuse_available() {
        return;
    }
    let mut mounts = Vec::new();
    let v = Vol::new_with("personal", |p| {
        for i in [1, 2] {
            mounts.push(Mnt::tmpfs(&p.join(format!("disk{i}")), 8));
        }
    });
    let rig = Rig { mounts, v };
    let v = &rig.v;
    let g = v.mount();
    let keep = pseudo(2 << 20, 1);
    write_file(&v.mnt.join("keep"), keep.clone()).unwrap();
    // Two of five disks fill up: a chunk then finds only three disks for its five shards, short of the four
    // (k+1) a write needs.
    let r = write_file(&v.mnt.join("big"), pseudo(60 << 20, 2));
    assert_eq!(r, Err(libc::ENOSPC), "filling two disks\n{}", v.log());
    assert_reads(v, "keep", &keep);
    // Room again: writes go on without a remount.
    for d in &rig.mounts {
        sh(&format!("mount -o remount,size=256m '{}'", d.0.display()));
    }
    let after = pseudo(3 << 20, 3);
    write_file(&v.mnt.join("after"), after.clone()).unwrap();
    assert_reads(v, "after", &after);
    assert_reads(v, "keep", &keep);
    g.umount();
    assert_no_panic(v);
    let g = v.mount();
    assert_reads(v, "keep", &keep);
    assert_reads(v, "after", &after);
    g.umount();
}

#[test]
fn read_only_disks_writes_go_on_with_one_and_fail_with_erofs_on_two() {
    if !fuse_available() {
        return;
    }
    let mut mounts = Vec::new();
    let v = Vol::new_with("personal", |p| {
        for i in [2, 3] {
            mounts.push(Mnt::tmpfs(&p.join(format!("disk{i}")), 128));
        }
    });
    let rig = Rig { mounts, v };
    let v = &rig.v;
    let g = v.mount();
    let keep = pseudo(2 << 20, 4);
    write_file(&v.mnt.join("keep"), keep.clone()).unwrap();

    sh(&format!(
        "mount -o remount,ro '{}'",
        rig.mounts[1].0.display()
    ));
    let one = pseudo(2 << 20, 5);
    write_file(&v.mnt.join("one_ro"), one.clone())
        .unwrap_or_else(|e| panic!("one read-only disk of five: errno {e}\n{}", v.log()));

    sh(&format!(
        "mount -o remount,ro '{}'",
        rig.mounts[0].0.display()
    ));
    let r = write_file(&v.mnt.join("two_ro"), pseudo(2 << 20, 6));
    assert_eq!(r, Err(libc::EROFS), "two read-only disks\n{}", v.log());
    assert_reads(v, "keep", &keep);
    assert_reads(v, "one_ro", &one);

    for d in &rig.mounts {
        sh(&format!("mount -o remount,rw '{}'", d.0.display()));
    }
    let after = pseudo(2 << 20, 7);
    write_file(&v.mnt.join("after"), after.clone()).unwrap();
    g.umount();
    assert_no_panic(v);
    let g = v.mount();
    for (n, d) in [("keep", &keep), ("one_ro", &one), ("after", &after)] {
        assert_reads(v, n, d);
    }
    g.umount();
}

#[test]
fn a_disk_whose_drive_is_unmounted_is_left_alone_and_comes_back() {
    if !fuse_available() {
        return;
    }
    let mut mounts = Vec::new();
    let v = Vol::new_with("personal", |p| {
        // disk4 is a bind mount of its own tmpfs: unmounting it leaves the bare mount point behind, as an
        // unmounted drive does.
        let real = p.join("real4");
        mounts.push(Mnt::tmpfs(&real, 128));
        mounts.push(Mnt::bind(&real, &p.join("disk4")));
    });
    let mut rig = Rig { mounts, v };
    let g = rig.v.mount();
    let keep = pseudo(3 << 20, 8);
    write_file(&rig.v.mnt.join("keep"), keep.clone()).unwrap();

    let disk4 = rig.v.disk(4);
    sh(&format!("umount -l '{}'", disk4.display()));
    let bind = rig.mounts.pop().unwrap();
    std::mem::forget(bind);
    let v = &rig.v;
    let gone = pseudo(3 << 20, 9);
    write_file(&v.mnt.join("gone"), gone.clone())
        .unwrap_or_else(|e| panic!("one disk of five gone: errno {e}\n{}", v.log()));
    assert_reads(v, "keep", &keep);
    assert_reads(v, "gone", &gone);
    let strays: Vec<_> = std::fs::read_dir(&disk4).unwrap().collect();
    assert!(
        strays.is_empty(),
        "shards were written into the bare mount point of the unmounted disk: {strays:?}"
    );

    let real = v.dir.path().join("real4");
    rig.mounts.push(Mnt::bind(&real, &disk4));
    let v = &rig.v;
    let after = pseudo(3 << 20, 10);
    write_file(&v.mnt.join("after"), after.clone()).unwrap();
    g.umount();
    assert_no_panic(v);
    let g = v.mount();
    for (n, d) in [("keep", &keep), ("gone", &gone), ("after", &after)] {
        assert_reads(v, n, d);
    }
    g.umount();
}
