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
