//! The status report adds up: per-disk shard counts and space, redundancy, and usage figures from the metadata.

mod maint_common;

use maint_common::*;
use valencefs::maint::open_meta;
use valencefs::maint::status::status;
use valencefs::store::scan::shard_name_of;

#[test]
fn status_reports_disks_redundancy_and_usage() {
    let vol = Vol::new();
    let st = vol.store();
    let fs = vol.fs(st.clone());
    let files = write_files(&fs, 6 << 20, 0x57a7);
    fs.shutdown().unwrap();
    drop(fs);
    let meta = open_meta(&vol.state()).unwrap();
    let s = status(&st, Some(&meta)).unwrap();
    eprintln!("{}", s.summary());
    assert_eq!(
        (s.k, s.m, s.redundancy_now, s.redundancy_target),
        (3, 2, 2, 2)
    );
    assert_eq!(s.format_version, valencefs::store::format::FORMAT_VERSION);
    assert!(s.summary().contains("(format v2)"), "{}", s.summary());
    assert_eq!(s.disks.len(), 5);
    let chunks = st.list_chunks().unwrap().len() as u64;
    for d in &s.disks {
        assert_eq!(d.state, "ok");
        assert_eq!(
            d.shards,
            Some(chunks),
            "3+2 over 5 disks: one shard of every chunk per disk"
        );
        assert!(d.free_bytes.unwrap() <= d.total_bytes.unwrap());
    }
    let u = s.usage.as_ref().unwrap();
    assert_eq!(u.files, files.len() as u64);
    // Shard bytes of the data chunks (metadata snapshot chunks are not counted in the usage totals).
    let snapshots = st.snapshot_chunks();
    let disks = st.disks();
    let stored: u64 = st
        .list_chunks()
        .unwrap()
        .into_iter()
        .filter(|id| !snapshots.contains(id))
        .flat_map(|id| (0..5).map(move |i| (id, i)))
        .map(|(id, i)| {
            disks[st.shard_disk(&id, i)]
                .get(&shard_name_of(&id, i))
                .unwrap()
                .len() as u64
        })
        .sum();
    assert!(du(&vol.disks) > stored);
    assert_eq!(
        u.stored_bytes, stored,
        "stored bytes equal the shard files' sizes"
    );
    assert!(
        u.dedup_ratio >= 1.0,
        "duplicates and compression: {}",
        u.dedup_ratio
    );
    assert!(
        (1.6..1.9).contains(&u.parity_overhead),
        "{}",
        u.parity_overhead
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["disks"][0]["state"], "ok");
    assert!(json["usage"]["logical_bytes"].as_u64().unwrap() >= 6 << 20);
}

/// A disk that comes back after missing writes (it was away, or restored from an older copy) is "present" and
/// its header is fine, but it lacks the shards written meanwhile: status must count them and lower the losses the
/// volume survives, and `scrub --repair` must bring it back to whole.
#[test]
fn status_counts_shards_a_returning_disk_lacks() {
    use valencefs::maint::status::status_keyless;
    let vol = Vol::new();
    let st = vol.store();
    let fs = vol.fs(st.clone());
    write_files(&fs, 4 << 20, 0x1ac5);
    fs.shutdown().unwrap();
    drop(fs);
    let whole = status_keyless(&vol.dir_disks(), None).unwrap();
    assert_eq!(whole.census.chunks_short, 0);
    assert_eq!(whole.census.worst_spare, Some(2));
    assert_eq!(whole.redundancy_now, 2);
    assert!(whole.disks.iter().all(|d| d.lacking == Some(0)));

    // Disk #1 misses the shards of three chunks; one of them also misses its shard on another disk.
    let ids = st.list_chunks().unwrap();
    assert!(ids.len() >= 4, "{} chunks", ids.len());
    let disks = st.disks();
    let mut other = None;
    for id in &ids[..3] {
        let i = (0..5).find(|&i| st.shard_disk(id, i) == 1).unwrap();
        disks[1].delete(&shard_name_of(id, i)).unwrap();
        if other.is_none() {
            let j = (i + 1) % 5;
            other = Some(st.shard_disk(id, j));
            disks[st.shard_disk(id, j)]
                .delete(&shard_name_of(id, j))
                .unwrap();
        }
    }
    let s = status_keyless(&vol.dir_disks(), None).unwrap();
    eprintln!("{}", s.summary());
    assert_eq!(s.census.chunks_short, 3);
    assert_eq!(s.census.chunks_below_k, 0);
    assert_eq!(
        s.census.worst_spare,
        Some(0),
        "one chunk has only k shards left"
    );
    assert_eq!(
        s.redundancy_now, 0,
        "every disk is ok, yet one more loss can lose data"
    );
    assert_eq!(s.disks[1].lacking, Some(3));
    assert_eq!(s.disks[other.unwrap()].lacking, Some(1));
    assert_eq!(s.disks[1].shards, Some(ids.len() as u64 - 3));

    // Chunks down to fewer than k shards are counted apart: without the database all as possibly unreadable;
    // with it, those files use apart from leftovers nothing references.
    let meta = open_meta(&vol.state()).unwrap();
    let used = meta
        .write()
        .unwrap()
        .all_chunks()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| !ids[..3].contains(id))
        .expect("a file's chunk not already short");
    let stray = b"a chunk no file references, as a disk that was away brings back".to_vec();
    let leftover = st.chunk_id(&stray);
    st.put(&leftover, &stray).unwrap();
    st.sync().unwrap();
    for id in [used, leftover] {
        for i in 0..3 {
            disks[st.shard_disk(&id, i)]
                .delete(&shard_name_of(&id, i))
                .unwrap();
        }
    }
    let s = status_keyless(&vol.dir_disks(), None).unwrap();
    assert_eq!((s.census.chunks_below_k, s.census.chunks_leftover), (2, 0));
    assert!(!s.census.metadata_checked);
    let s = status_keyless(&vol.dir_disks(), Some(&meta)).unwrap();
    assert_eq!((s.census.chunks_below_k, s.census.chunks_leftover), (1, 1));
    assert!(s.census.metadata_checked);
    let s = status_keyless(&vol.dir_disks(), None).unwrap();

    // The keyed report agrees, and a repairing scrub makes the readable ones whole again.
    let keyed = status(&st, None).unwrap();
    assert_eq!(keyed.census, s.census);
    let r = valencefs::maint::scrub::scrub(
        &vol.dir_disks(),
        Some(&st),
        &valencefs::maint::scrub::ScrubOptions::default(),
    )
    .unwrap();
    assert!(r.repaired_shards() >= 4, "{}", r.summary());
    let s = status_keyless(&vol.dir_disks(), None).unwrap();
    assert_eq!(s.census.chunks_short, 0);
    assert_eq!(s.redundancy_now, 2);
    assert!(s.disks.iter().all(|d| d.lacking == Some(0)));
}
