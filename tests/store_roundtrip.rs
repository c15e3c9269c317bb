//! Round trips through chunk_lengths + put + get for every preset, lost-disk combinations, bit rot, dedup.

mod store_common;

use std::collections::HashSet;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use store_common::*;
use valencefs::store::{
    ChunkId, CreateOptions, Disk, Faults, KdfParams, MemDisk, ShardFault, Store,
};
use valencefs::Error;

#[test]
fn sizes_round_trip_for_every_preset() {
    for preset in ["minimal", "personal", "federation", "paranoid"] {
        let o = opts(preset);
        let n = (o.redundancy.k + o.redundancy.m) as usize;
        let disks = mem_disks(n);
        let store = Store::create(as_dyn(&disks), &o, PASS).unwrap();
        let c = o.chunker;
        let mut sizes = vec![0usize, 1, 2, 511, 512, 513];
        for base in [c.min, c.avg, c.max] {
            sizes.extend([base as usize - 1, base as usize, base as usize + 1]);
        }
        sizes.extend([2 * c.max as usize + 3, 3 * 1024 * 1024 + 17]);
        for (i, &len) in sizes.iter().enumerate() {
            let data = mixed(len, i as u64);
            let ids = write_all(&store, &data);
            assert!(store
                .chunk_lengths(&data)
                .iter()
                .all(|&l| l <= store.max_chunk_size()));
            assert_eq!(read_all(&store, &ids).unwrap(), data, "{preset} size {len}");
        }
        // A single chunk of each edge size, stored directly (including the empty chunk).
        for len in [0usize, 1, c.max as usize] {
            let data = random(len, 99);
            let id = store.chunk_id(&data);
            let stored = store.put(&id, &data).unwrap();
            assert!(stored >= (n * 128) as u64);
            assert_eq!(store.get(&id).unwrap(), data);
        }
    }
}

#[test]
fn oversized_and_highly_compressible_chunks_round_trip() {
    let disks = mem_disks(3);
    let store = Store::create(as_dyn(&disks), &opts("minimal"), PASS).unwrap();
    for data in [vec![0u8; 2 << 20], vec![7u8; 300_000], mixed(1 << 20, 4)] {
        assert!(data.len() > store.max_chunk_size());
        let id = store.chunk_id(&data);
        let stored = store.put(&id, &data).unwrap();
        assert_eq!(store.get(&id).unwrap(), data);
        assert!(stored > 0);
    }
    // Compression pays: 300 kB of one byte value stores far less than its size.
    let data = vec![7u8; 200_000];
    let id = store.chunk_id(&data);
    assert!(store.put(&id, &data).unwrap() < 20_000);
}

#[test]
fn sixteen_mib_with_default_chunker_round_trips() {
    // 16 MiB (not 100 MiB: the bench covers that) of random data with the production chunker sizes.
    let o = CreateOptions {
        kdf: KdfParams::insecure_fast(),
        ..CreateOptions::default()
    };
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &o, PASS).unwrap();
    let data = random(16 << 20, 7);
    let ids = write_all(&store, &data);
    assert!(ids.len() >= 4 && ids.len() <= 64, "{} chunks", ids.len());
    store.sync().unwrap();
    assert_eq!(read_all(&store, &ids).unwrap(), data);
    // Random data does not compress: stored bytes ≈ (k+m)/k × data + headers and padding (< 2 % extra).
    let stored: u64 = disks.iter().map(|d| d.bytes()).sum();
    let ratio = stored as f64 / data.len() as f64;
    assert!(
        ratio > 5.0 / 3.0 && ratio < 5.0 / 3.0 * 1.02,
        "ratio {ratio}"
    );
}

/// Every subset of at most m disks lost (reopened without them) still reads back identical bytes; losing m+1
/// disks is refused at open, and on an open store a chunk with m+1 lost shards is a typed error.
fn lost_disk_combinations(preset: &str) {
    let o = opts(preset);
    let (k, m) = (o.redundancy.k as usize, o.redundancy.m as usize);
    let n = k + m;
    let (faults, _mems) = fault_disks(n);
    let ids;
    // Smaller data for 5+4: it opens and reads the volume 256 times.
    let data = mixed(if n > 5 { 250_000 } else { 600_000 }, 3);
    {
        let store = Store::create(as_dyn(&faults), &o, PASS).unwrap();
        ids = write_all(&store, &data);
        store.sync().unwrap();
    }
    let mut combos = 0;
    for mask in 0u32..(1 << n) {
        let lost = mask.count_ones() as usize;
        if lost > m + 1 {
            continue;
        }
        for (i, f) in faults.iter().enumerate() {
            f.set(Faults {
                missing: mask & (1 << i) != 0,
                ..Faults::default()
            });
        }
        let opened = Store::open(as_dyn(&faults), PASS);
        if lost <= m {
            let store = opened.unwrap_or_else(|e| panic!("{preset} mask {mask:b}: {e}"));
            let missing = store
                .health()
                .iter()
                .filter(|h| h.state != valencefs::store::DiskState::Ok)
                .count();
            assert_eq!(missing, lost);
            assert_eq!(
                read_all(&store, &ids).unwrap(),
                data,
                "{preset} mask {mask:b}"
            );
            combos += 1;
        } else {
            assert!(
                matches!(opened, Err(Error::Volume(_))),
                "{preset} mask {mask:b}"
            );
        }
    }
    assert_eq!(combos, (0..=m).map(|j| binom(n, j)).sum::<usize>());
    // Disks vanishing under an open store: m+1 gone → Unrecoverable, never bytes.
    for f in &faults {
        f.set(Faults::default());
    }
    let store = Store::open(as_dyn(&faults), PASS).unwrap();
    for f in faults.iter().take(m + 1) {
        f.set(Faults {
            missing: true,
            ..Faults::default()
        });
    }
    let mut saw_error = false;
    for id in &ids {
        match store.get(id) {
            Err(Error::Unrecoverable { need, .. }) => {
                assert_eq!(need, k);
                saw_error = true;
            }
            Ok(_) => panic!("read succeeded with {} of {n} disks gone", m + 1),
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(saw_error);
}

fn binom(n: usize, k: usize) -> usize {
    (0..k).fold(1, |acc, i| acc * (n - i) / (i + 1))
}

#[test]
fn every_combination_of_lost_disks_3_2() {
    lost_disk_combinations("personal");
}

#[test]
fn every_combination_of_lost_disks_5_4() {
    lost_disk_combinations("federation");
}

/// Random bit flips in stored shard files (seeded, 40 cases): a read returns identical bytes or a typed error,
/// never other bytes; with at most m damaged shards per chunk it must succeed.
#[test]
fn bit_flips_never_yield_wrong_bytes() {
    for seed in 0..40u64 {
        let o = opts(if seed % 2 == 0 { "personal" } else { "minimal" });
        let m = o.redundancy.m as usize;
        let n = (o.redundancy.k + o.redundancy.m) as usize;
        let disks = mem_disks(n);
        let store = Store::create(as_dyn(&disks), &o, PASS).unwrap();
        let data = mixed(200_000, seed);
        let ids = write_all(&store, &data);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut damaged: Vec<HashSet<(usize, usize)>> = vec![HashSet::new(); ids.len()];
        for _ in 0..rng.gen_range(1..=6) {
            let c = rng.gen_range(0..ids.len());
            let d = rng.gen_range(0..n);
            let name = disks[d]
                .list("shards/")
                .unwrap()
                .into_iter()
                .find(|s| s.contains(&ids[c].to_hex()));
            let Some(name) = name else { continue };
            let flipped = disks[d].tamper(&name, |b| {
                let pos = rng.gen_range(0..b.len());
                b[pos] ^= 1 << rng.gen_range(0..8);
            });
            assert!(flipped);
            damaged[c].insert((d, 0));
        }
        for (c, id) in ids.iter().enumerate() {
            let mut off = 0;
            let lens = store.chunk_lengths(&data);
            for l in &lens[..c] {
                off += l;
            }
            let want = &data[off..off + lens[c]];
            match store.get_report(id) {
                Ok((bytes, report)) => {
                    assert_eq!(bytes, want, "seed {seed}: wrong bytes");
                    if !damaged[c].is_empty() && !report.fast_path {
                        assert!(report
                            .bad_shards
                            .iter()
                            .all(|b| b.fault == ShardFault::Corrupt));
                    }
                }
                Err(Error::Unrecoverable { .. }) | Err(Error::Corrupt(_)) => {
                    assert!(
                        damaged[c].len() > m,
                        "seed {seed}: failed with only {} damaged shards",
                        damaged[c].len()
                    );
                }
                Err(e) => panic!("seed {seed}: untyped error {e}"),
            }
        }
    }
}

#[test]
fn corrupt_truncated_and_unreadable_shards_are_reported_and_healed() {
    let o = opts("personal");
    let (faults, mems) = fault_disks(5);
    let store = Store::create(as_dyn(&faults), &o, PASS).unwrap();
    let data = random(100_000, 11);
    let id = store.chunk_id(&data);
    store.put(&id, &data).unwrap();
    // Placement depends on the (random-keyed) id: find the disk of each shard index.
    let disk_of = |shard: usize| {
        (0..5)
            .find(|&d| {
                mems[d]
                    .list("shards/")
                    .unwrap()
                    .iter()
                    .any(|n| n.ends_with(&format!(".{shard}")))
            })
            .unwrap()
    };
    // Rot a byte of data shard 0 and truncate parity shard 3: both must be rebuilt, parity included.
    let (d0, d3) = (disk_of(0), disk_of(3));
    for name in mems[d0].list("shards/").unwrap() {
        mems[d0].tamper(&name, |b| b[200] ^= 0x40);
    }
    for name in mems[d3].list("shards/").unwrap() {
        mems[d3].tamper(&name, |b| b.truncate(b.len() - 7));
    }
    let (bytes, report) = store.get_report(&id).unwrap();
    assert_eq!(bytes, data);
    assert!(!report.fast_path);
    let mut bad: Vec<(usize, usize)> = report
        .bad_shards
        .iter()
        .map(|b| (b.shard, b.disk))
        .collect();
    bad.sort();
    assert_eq!(bad, vec![(0, d0), (3, d3)]);
    assert_eq!(report.healed, vec![0, 3]);
    // Healed: the next read takes the fast path and finds nothing bad.
    let (bytes, report) = store.get_report(&id).unwrap();
    assert_eq!(bytes, data);
    assert!(report.fast_path && report.bad_shards.is_empty());
    // Data shards 1 and 2 unreadable (EIO) and rotten: the read needs the healed shards 0 and 3 plus 4.
    let (d1, d2) = (disk_of(1), disk_of(2));
    faults[d1].set(Faults {
        eio_read: true,
        ..Faults::default()
    });
    faults[d2].set(Faults {
        flip_bits: true,
        ..Faults::default()
    });
    let (bytes, report) = store.get_report(&id).unwrap();
    assert_eq!(bytes, data);
    assert!(report
        .bad_shards
        .iter()
        .any(|b| b.disk == d1 && b.fault == ShardFault::Unreadable));
    assert!(report
        .bad_shards
        .iter()
        .any(|b| b.disk == d2 && b.fault == ShardFault::Corrupt));
    // The EIO disk is not written to; the rotten one is rewritten.
    assert_eq!(report.healed, vec![2]);
    assert!(store.health()[d1].errors > 0);
}

#[test]
fn same_data_twice_stores_once() {
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &opts("personal"), PASS).unwrap();
    let data = mixed(2 << 20, 5);
    let ids1 = write_all(&store, &data);
    let bytes1: u64 = disks.iter().map(|d| d.bytes()).sum();
    let files1: usize = disks.iter().map(|d| d.list("shards/").unwrap().len()).sum();
    let ids2 = write_all(&store, &data);
    assert_eq!(ids1, ids2);
    assert_eq!(disks.iter().map(|d| d.bytes()).sum::<u64>(), bytes1);
    assert_eq!(
        disks
            .iter()
            .map(|d| d.list("shards/").unwrap().len())
            .sum::<usize>(),
        files1
    );
    let unique: HashSet<ChunkId> = ids1.iter().copied().collect();
    assert_eq!(store.list_chunks().unwrap().len(), unique.len());
    assert_eq!(files1, unique.len() * 5);
}

#[test]
fn insert_in_the_middle_of_64_mib_changes_one_or_two_chunks() {
    // Chunking and ids over the full 64 MiB with the production chunker; storage checked on the new chunks only.
    let o = CreateOptions {
        kdf: KdfParams::insecure_fast(),
        ..CreateOptions::default()
    };
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &o, PASS).unwrap();
    let a = random(64 << 20, 1);
    let mut b = a.clone();
    let mid = a.len() / 2;
    b.splice(mid..mid, random(100, 2));
    let ids = |d: &[u8]| -> Vec<ChunkId> {
        let mut off = 0;
        store
            .chunk_lengths(d)
            .into_iter()
            .map(|l| {
                off += l;
                store.chunk_id(&d[off - l..off])
            })
            .collect()
    };
    let ia = ids(&a);
    let ib = ids(&b);
    let old: HashSet<ChunkId> = ia.iter().copied().collect();
    let new: Vec<&ChunkId> = ib.iter().filter(|i| !old.contains(i)).collect();
    assert!(ia.len() > 30, "{} chunks", ia.len());
    assert!(
        !new.is_empty() && new.len() <= 2,
        "{} new chunks of {}",
        new.len(),
        ib.len()
    );
}

#[test]
fn concurrent_puts_of_the_same_and_different_chunks() {
    let (faults, _m) = fault_disks(5);
    for f in &faults {
        // Slow disks make the store use threads, and widen the race window.
        f.set(Faults {
            slow: Some(std::time::Duration::from_micros(200)),
            ..Faults::default()
        });
    }
    let store = Arc::new(Store::create(as_dyn(&faults), &opts("personal"), PASS).unwrap());
    let shared = mixed(150_000, 8);
    let sid = store.chunk_id(&shared);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let store = store.clone();
            let shared = &shared;
            s.spawn(move || {
                for j in 0..5u64 {
                    store.put(&sid, shared).unwrap();
                    let own = random(20_000, t * 100 + j);
                    let id = store.chunk_id(&own);
                    store.put(&id, &own).unwrap();
                    assert_eq!(store.get(&id).unwrap(), own);
                }
            });
        }
    });
    let (bytes, report) = store.get_report(&sid).unwrap();
    assert_eq!(bytes, shared);
    assert!(report.fast_path);
    assert_eq!(store.list_chunks().unwrap().len(), 21);
}

#[test]
fn delete_removes_every_shard_and_tolerates_missing_ones() {
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &opts("personal"), PASS).unwrap();
    let data = random(50_000, 9);
    let id = store.chunk_id(&data);
    store.put(&id, &data).unwrap();
    let one = disks
        .iter()
        .find_map(|d| d.list("shards/").unwrap().pop().map(|n| (d.clone(), n)))
        .unwrap();
    one.0.delete(&one.1).unwrap();
    store.delete(&id).unwrap();
    store.delete(&id).unwrap();
    assert!(disks.iter().all(|d| d.list("shards/").unwrap().is_empty()));
    assert!(matches!(
        store.get(&id),
        Err(Error::Unrecoverable { good: 0, .. })
    ));
    assert!(store.list_chunks().unwrap().is_empty());
}

#[test]
fn unsynced_puts_are_lost_in_a_crash_synced_ones_survive() {
    let disks = mem_disks(3);
    let store = Store::create(as_dyn(&disks), &opts("minimal"), PASS).unwrap();
    let a = random(30_000, 1);
    let b = random(30_000, 2);
    let (ia, ib) = (store.chunk_id(&a), store.chunk_id(&b));
    store.put(&ia, &a).unwrap();
    store.sync().unwrap();
    store.put(&ib, &b).unwrap();
    drop(store);
    for d in &disks {
        d.crash();
    }
    let store = Store::open(as_dyn(&disks), PASS).unwrap();
    assert_eq!(store.get(&ia).unwrap(), a);
    assert!(matches!(store.get(&ib), Err(Error::Unrecoverable { .. })));
    let _ = MemDisk::new().describe();
}
