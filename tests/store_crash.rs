//! Crash consistency: a power cut (every disk drops unsynced writes) after any prefix of an operation sequence,
//! or in the middle of a put that hits full disks, never loses a synced chunk and never yields wrong bytes.

mod store_common;

use std::sync::Arc;

use store_common::*;
use valencefs::store::{ChunkId, Faults, Store};
use valencefs::Error;

#[derive(Clone, Copy, Debug)]
enum Op {
    Put(usize),
    Delete(usize),
    Sync,
}

/// Checks after reopening: chunks in `durable` read back exactly; any other chunk reads back exactly or fails
/// with a typed error.
fn check(store: &Store, chunks: &[(ChunkId, Vec<u8>)], durable: &[bool], ctx: &str) {
    for (i, (id, data)) in chunks.iter().enumerate() {
        match store.get(id) {
            Ok(bytes) => assert_eq!(&bytes, data, "{ctx}: chunk {i} wrong bytes"),
            Err(Error::Unrecoverable { .. }) if !durable[i] => {}
            Err(e) => panic!("{ctx}: chunk {i} (durable {}) failed: {e}", durable[i]),
        }
    }
}

#[test]
fn crash_after_every_prefix_keeps_synced_chunks() {
    let seq = [
        Op::Put(0),
        Op::Put(1),
        Op::Sync,
        Op::Put(2),
        Op::Delete(0),
        Op::Put(3),
        Op::Sync,
        Op::Delete(1),
        Op::Put(0),
        Op::Sync,
    ];
    for cut in 0..=seq.len() {
        let (faults, _mems) = fault_disks(5);
        let store = Store::create(as_dyn(&faults), &opts("personal"), PASS).unwrap();
        let chunks: Vec<(ChunkId, Vec<u8>)> = (0..4)
            .map(|i| {
                let d = mixed(70_000 + i * 1000, i as u64);
                (store.chunk_id(&d), d)
            })
            .collect();
        // Model: a chunk is durable once a sync follows its put (and no delete followed by a sync since).
        let mut pending_put = [false; 4];
        let mut durable = [false; 4];
        for op in &seq[..cut] {
            match *op {
                Op::Put(i) => {
                    store.put(&chunks[i].0, &chunks[i].1).unwrap();
                    pending_put[i] = true;
                }
                Op::Delete(i) => {
                    store.delete(&chunks[i].0).unwrap();
                    pending_put[i] = false;
                    // Until the next sync a deleted chunk may or may not survive a crash.
                    durable[i] = false;
                }
                Op::Sync => {
                    store.sync().unwrap();
                    for i in 0..4 {
                        if pending_put[i] {
                            durable[i] = true;
                        }
                        pending_put[i] = false;
                    }
                }
            }
        }
        drop(store);
        for f in &faults {
            assert!(f.crash());
        }
        let store = Store::open(as_dyn(&faults), PASS).unwrap();
        check(&store, &chunks, &durable, &format!("cut {cut}"));
    }
}

#[test]
fn crash_during_a_put_that_runs_out_of_space() {
    for full in 0..=5usize {
        let (faults, _mems) = fault_disks(5);
        let store = Arc::new(Store::create(as_dyn(&faults), &opts("personal"), PASS).unwrap());
        let a = mixed(90_000, 1);
        let ia = store.chunk_id(&a);
        store.put(&ia, &a).unwrap();
        store.sync().unwrap();
        for f in faults.iter().take(full) {
            f.set(Faults {
                enospc: true,
                ..Faults::default()
            });
        }
        let b = mixed(90_000, 2);
        let ib = store.chunk_id(&b);
        let r = store.put(&ib, &b);
        // k+1 = 4 shards needed: at most one full disk is tolerated.
        assert_eq!(r.is_ok(), full <= 1, "{full} full disks: {r:?}");
        if let Err(e) = r {
            assert!(matches!(e, Error::NoSpace { .. }), "{e}");
        }
        drop(store);
        for f in &faults {
            f.set(Faults::default());
            assert!(f.crash());
        }
        let store = Store::open(as_dyn(&faults), PASS).unwrap();
        let chunks = vec![(ia, a), (ib, b)];
        check(&store, &chunks, &[true, false], &format!("{full} full"));
    }
}

/// A disk whose sync fails may have lost what it was given. `sync` still succeeds while every chunk put since the
/// last sync keeps k+1 shards on disks that synced, and fails (the caller must not call its data durable) below.
#[test]
fn sync_tolerates_failed_disks_only_while_every_new_chunk_keeps_the_write_quorum() {
    for failing in 0..=3usize {
        let (faults, _mems) = fault_disks(5);
        let store = Store::create(as_dyn(&faults), &opts("personal"), PASS).unwrap();
        let a = mixed(90_000, failing as u64);
        let ia = store.chunk_id(&a);
        store.put(&ia, &a).unwrap(); // five shards, one per disk
        for f in faults.iter().take(failing) {
            f.set(Faults {
                eio_write: true,
                ..Faults::default()
            });
        }
        let r = store.sync();
        // Four of five shards (k+1 for 3+2) must be durable.
        assert_eq!(
            r.is_ok(),
            failing <= 1,
            "{failing} disks failing sync: {r:?}"
        );
        // With nothing new put since, a later sync has nothing to vouch for.
        if failing > 1 {
            store.sync().unwrap();
        }
        drop(store);
        for f in &faults {
            f.set(Faults::default());
            assert!(f.crash());
        }
        let store = Store::open(as_dyn(&faults), PASS).unwrap();
        if failing <= 2 {
            assert_eq!(store.get(&ia).unwrap(), a, "{failing} failing");
        }
    }
}
