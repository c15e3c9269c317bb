//! The store's per-disk counters (metrics, and the totals `status` shows): each bad shard counted once on its
//! disk, repairs counted, a healthy read counting no error, and an absent chunk blaming no disk.

mod store_common;

use store_common::*;
use valencefs::metrics::DiskCounts;
use valencefs::store::{Disk, Faults, Store};

fn counts(store: &Store) -> Vec<DiskCounts> {
    store.sample().disks.iter().map(|d| d.counts).collect()
}

#[test]
fn bad_shards_repairs_and_io_are_counted_per_disk() {
    let (faults, mems) = fault_disks(5);
    let store = Store::create(as_dyn(&faults), &opts("personal"), PASS).unwrap();
    let data = random(100_000, 7);
    let id = store.chunk_id(&data);
    store.put(&id, &data).unwrap();
    // 3+2 over 5 disks: one shard written to each disk.
    for c in counts(&store) {
        assert_eq!((c.shard_writes, c.errors), (1, 0));
        assert!(c.shard_write_bytes > 0);
    }
    // A healthy read: the k data shards, nothing else, no error.
    store.get(&id).unwrap();
    let c = counts(&store);
    assert_eq!(c.iter().map(|c| c.shard_reads).sum::<u64>(), 3);
    assert!(c.iter().all(|c| c.errors == 0 && c.degraded_reads == 0));
    let s = store.sample();
    assert_eq!(
        (s.disks_usable, s.disks_target, s.degraded_reads),
        (5, 5, 0)
    );

    // Rot data shard 0 wherever it is: one error, one degraded read and one repair on that disk only.
    let d0 = (0..5)
        .find(|&d| {
            mems[d]
                .list("shards/")
                .unwrap()
                .iter()
                .any(|n| n.ends_with(".0"))
        })
        .unwrap();
    for name in mems[d0].list("shards/").unwrap() {
        mems[d0].tamper(&name, |b| {
            let last = b.len() - 1;
            b[last] ^= 1;
        });
    }
    let (bytes, report) = store.get_report(&id).unwrap();
    assert_eq!(bytes, data);
    assert_eq!(report.healed, vec![0]);
    let c = counts(&store);
    for (d, c) in c.iter().enumerate() {
        let expect = u64::from(d == d0);
        assert_eq!(
            (c.errors, c.degraded_reads, c.repairs),
            (expect, expect, expect),
            "disk {d}"
        );
    }
    assert_eq!(c[d0].shard_writes, 2, "the repair is a shard write");
    assert_eq!(store.sample().degraded_reads, 1);
    assert_eq!(store.health()[d0].errors, 1);

    // An unreadable disk (EIO): counted as an error on it; not repaired (the disk is not answering).
    faults[d0].set(Faults {
        eio_read: true,
        ..Faults::default()
    });
    store.get(&id).unwrap();
    let c = counts(&store);
    assert_eq!((c[d0].errors, c[d0].repairs), (2, 1));

    // A chunk that was never stored (or was freed under a reader): an error for the caller, no disk blamed.
    faults[d0].set(Faults::default());
    let other = random(5_000, 8);
    let before = counts(&store);
    assert!(store.get(&store.chunk_id(&other)).is_err());
    assert_eq!(counts(&store), before);
    assert_eq!(store.sample().unrecoverable_reads, 0);
}
