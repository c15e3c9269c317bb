//! Replacing a lost disk rebuilds real shards: after replacing one disk (interrupted midway, then resumed) two
//! *other* disks can be lost and every file still reads back.

mod maint_common;

use maint_common::*;
use valencefs::maint::replace::replace;
use valencefs::maint::scrub::{scrub, ScrubOptions};
use valencefs::maint::status::status;
use valencefs::store::{DiskState, Store};

#[test]
fn replace_rebuilds_a_lost_disk_and_resumes_after_interruption() {
    let mut vol = Vol::new();
    let st = vol.store();
    let fs = vol.fs(st.clone());
    let files = write_files(&fs, 16 << 20, 0xd15c);
    fs.shutdown().unwrap();
    drop(fs);
    drop(st);

    // Disk 2 dies; a blank directory takes its slot.
    std::fs::remove_dir_all(&vol.disks[2]).unwrap();
    let new = vol.root.path().join("disk2-new");
    std::fs::create_dir(&new).unwrap();
    vol.disks[2] = new.clone();
    let st = vol.store();
    assert_eq!(st.health()[2].state, DiskState::Missing);
    let s = status(&st, None).unwrap();
    assert_eq!((s.redundancy_now, s.redundancy_target), (1, 2));

    // Interrupted after 40 chunks (as a crash would, but with the rebuilt part synced).
    let mut calls = 0;
    let first = replace(&st, 2, &mut |_p| {
        calls += 1;
        calls < 40
    })
    .unwrap();
    assert!(!first.complete);
    // Stopping takes effect at the end of a rebuild round of 16 chunks.
    assert_eq!(first.progress.chunks_done, 48);
    assert!(first.progress.shards_rebuilt > 0);
    drop(st);

    // Run again on a freshly opened volume: the slot now has a header; rebuilt shards are skipped.
    let st = vol.store();
    assert_eq!(st.health()[2].state, DiskState::Ok);
    let mut last = None;
    let second = replace(&st, 2, &mut |p| {
        last = Some(p.clone());
        true
    })
    .unwrap();
    assert!(second.complete, "{}", second.summary());
    assert!(second.failed.is_empty(), "{:?}", second.failed);
    assert_eq!(last.unwrap().chunks_done, second.progress.chunks_total);
    assert_eq!(
        second.progress.shards_present,
        first.progress.shards_rebuilt
    );
    assert_eq!(
        second.progress.shards_present + second.progress.shards_rebuilt,
        second.progress.chunks_total,
        "3+2 over 5 disks: every chunk has one shard on every disk"
    );
    let s = status(&st, None).unwrap();
    assert_eq!(s.disks[2].state, "ok");
    assert_eq!((s.redundancy_now, s.redundancy_target), (2, 2));
    assert_eq!(s.disks[2].shards, Some(second.progress.chunks_total));
    drop(st);

    // A keyless scrub of the whole volume is clean.
    let r = scrub(&vol.dir_disks(), None, &ScrubOptions::default()).unwrap();
    assert_eq!(r.bad_shards(), 0, "{}", r.summary());

    // Two other disks die: the rebuilt disk must hold real shards for every file to read back.
    std::fs::remove_dir_all(&vol.disks[0]).unwrap();
    std::fs::remove_dir_all(&vol.disks[4]).unwrap();
    let st = std::sync::Arc::new(Store::open(vol.dir_disks(), PW).unwrap());
    assert_eq!(st.health()[0].state, DiskState::Missing);
    let fs = vol.fs(st);
    check_files(&fs, &files);
    fs.shutdown().unwrap();
}

/// Child side of the kill test: runs a replace over the disks named in the environment, printing progress.
fn replace_child(paths: &str) {
    let disks = paths
        .split(':')
        .map(|p| valencefs::store::open_dir_disk(std::path::Path::new(p)))
        .collect();
    let st = Store::open(disks, PW).unwrap();
    replace(&st, 2, &mut |p| {
        use std::io::Write;
        println!("REPLACE-PROGRESS {}", p.chunks_done);
        std::io::stdout().flush().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        true
    })
    .unwrap();
    println!("REPLACE-DONE");
}

#[test]
fn replace_killed_midway_completes_on_rerun() {
    if let Ok(paths) = std::env::var("VFS_REPLACE_CHILD") {
        replace_child(&paths);
        return;
    }
    let mut vol = Vol::new();
    let st = vol.store();
    let fs = vol.fs(st.clone());
    let files = write_files(&fs, 8 << 20, 0xc4a5);
    fs.shutdown().unwrap();
    drop(fs);
    drop(st);
    std::fs::remove_dir_all(&vol.disks[2]).unwrap();
    vol.disks[2] = vol.root.path().join("disk2-new");
    std::fs::create_dir(&vol.disks[2]).unwrap();

    // kill -9 the rebuilding process once it reports 40 chunks done.
    use std::io::BufRead;
    let paths: Vec<String> = vol.disks.iter().map(|p| p.display().to_string()).collect();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "replace_killed_midway_completes_on_rerun",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VFS_REPLACE_CHILD", paths.join(":"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut killed_at = None;
    for line in out.lines() {
        let line = line.unwrap();
        assert_ne!(
            line, "REPLACE-DONE",
            "the rebuild finished before it could be killed"
        );
        if let Some(n) = line.strip_prefix("REPLACE-PROGRESS ") {
            if n.parse::<u64>().unwrap() >= 40 {
                child.kill().unwrap();
                killed_at = Some(n.to_string());
                break;
            }
        }
    }
    child.wait().unwrap();
    assert!(killed_at.is_some(), "child never reported progress");

    // Rerun: the slot was readmitted before the kill; what was rebuilt and made durable is skipped.
    let st = vol.store();
    assert_eq!(st.health()[2].state, DiskState::Ok);
    let r = replace(&st, 2, &mut |_| true).unwrap();
    assert!(r.complete && r.failed.is_empty(), "{}", r.summary());
    assert!(r.progress.shards_present >= 16, "{}", r.summary());
    assert!(r.progress.shards_rebuilt > 0, "{}", r.summary());
    drop(st);

    std::fs::remove_dir_all(&vol.disks[1]).unwrap();
    std::fs::remove_dir_all(&vol.disks[3]).unwrap();
    let fs = vol.fs(vol.store());
    check_files(&fs, &files);
    fs.shutdown().unwrap();
}
