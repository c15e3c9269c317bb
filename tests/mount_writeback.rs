//! The kernel's writeback cache (on by default): the same sequence of awkward writes on a valencefs mount and on
//! the local disk gives the same bytes, sizes and visibility, before and after a remount; `sync` and
//! `no_writeback_cache` turn it off.

mod common;
use common::*;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Appends from two descriptors, write-only partial-page overwrites, a hole, truncation while pages are dirty and
/// a read-back through a second descriptor before any flush; returns what each step observed.
fn exercise(dir: &Path) -> Vec<String> {
    let mut seen = Vec::new();
    let p = dir.join("log");
    let mut a = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .unwrap();
    let mut b = OpenOptions::new().append(true).open(&p).unwrap();
    for i in 0..300 {
        let line = format!("line {i} {}\n", "x".repeat(i % 37));
        if i % 3 == 0 {
            b.write_all(line.as_bytes()).unwrap()
        } else {
            a.write_all(line.as_bytes()).unwrap()
        }
    }
    seen.push(format!(
        "append size {}",
        std::fs::metadata(&p).unwrap().len()
    ));
    // Write-only, unaligned overwrites inside existing pages (the kernel must read those pages first).
    let w = OpenOptions::new().write(true).open(&p).unwrap();
    w.write_all_at(b"OVERWRITE", 4090).unwrap();
    w.write_all_at(b"Z", 1).unwrap();
    // Past the end: a hole, then data.
    w.write_all_at(b"tail", 70_000).unwrap();
    seen.push(format!(
        "after hole size {}",
        std::fs::metadata(&p).unwrap().len()
    ));
    let mut r = File::open(&p).unwrap();
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    seen.push(format!(
        "read back {} bytes, blake3 {}",
        all.len(),
        blake3::hash(&all)
    ));
    // Truncate below dirty pages, then extend by writing.
    w.set_len(5000).unwrap();
    w.write_all_at(b"after-truncate", 6000).unwrap();
    drop((a, b, w));
    let mut f = File::open(&p).unwrap();
    f.seek(SeekFrom::Start(4990)).unwrap();
    let mut mid = vec![0u8; 30];
    f.read_exact(&mut mid).unwrap();
    seen.push(format!("around the truncation {mid:?}"));
    // A write-only file (mode 0200) written in pieces by its owner.
    let q = dir.join("wonly");
    let mut o = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o200)
        .open(&q)
        .unwrap();
    o.write_all(&[7u8; 10_000]).unwrap();
    o.write_all_at(&[9u8; 3], 4095).unwrap();
    drop(o);
    std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o600)).unwrap();
    seen.push(format!(
        "write-only file {}",
        blake3::hash(&std::fs::read(&q).unwrap())
    ));
    seen
}

fn contents(dir: &Path) -> Vec<String> {
    ["log", "wonly"]
        .iter()
        .map(|n| {
            let d = std::fs::read(dir.join(n)).unwrap();
            format!("{n}: {} bytes {}", d.len(), blake3::hash(&d))
        })
        .collect()
}

#[test]
fn writeback_cache_matches_the_local_disk_and_survives_remount() {
    if !fuse_available() {
        return;
    }
    let local = tempfile::tempdir().unwrap();
    let want = exercise(local.path());
    let want_contents = contents(local.path());
    let v = Vol::new("personal");
    {
        let _m = v.mount();
        assert_eq!(exercise(&v.mnt), want);
        assert_eq!(contents(&v.mnt), want_contents);
    }
    let log = v.log();
    assert!(
        log.contains("kernel writeback cache on"),
        "the default is on: {log}"
    );
    let _m = v.mount();
    assert_eq!(contents(&v.mnt), want_contents, "after remount");
}

#[test]
fn sync_and_no_writeback_cache_turn_it_off_and_contradictions_are_refused() {
    if !fuse_available() {
        return;
    }
    let v = Vol::new("personal");
    {
        let _m = v.mount_with("no_writeback_cache");
        assert_eq!(
            exercise(&v.mnt),
            exercise(tempfile::tempdir().unwrap().path())
        );
    }
    assert!(
        v.log().contains("kernel writeback cache off"),
        "{}",
        v.log()
    );
    let out = vfs(&[
        "mount",
        "-o",
        &format!("{},sync,writeback_cache", v.passopt()),
        v.config.to_str().unwrap(),
        v.mnt.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("contradict"), "{}", stderr(&out));
    assert!(!is_mounted(&v.mnt));
}
