//! Volume lifecycle errors: refusals at create, wrong passphrase, foreign/duplicate/stale/read-only disks,
//! ENOSPC, and keyslot management.

mod store_common;

use std::sync::Arc;

use store_common::*;
use valencefs::store::{open_dir_disk, Disk, DiskState, Faults, KdfParams, Store};
use valencefs::Error;

#[test]
fn create_refuses_too_few_disks_with_a_reason() {
    let disks = mem_disks(4);
    let err = Store::create(as_dyn(&disks), &opts("personal"), PASS)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Invalid(_)), "{msg}");
    assert!(
        msg.contains("at least 5 disks") && msg.contains("got 4"),
        "{msg}"
    );
    // Nothing was written.
    assert!(disks.iter().all(|d| d.list("").unwrap().is_empty()));
    assert!("0+2".parse::<valencefs::store::Redundancy>().is_err());
    assert!("200+100".parse::<valencefs::store::Redundancy>().is_err());
    assert_eq!(
        "4+2"
            .parse::<valencefs::store::Redundancy>()
            .unwrap()
            .to_string(),
        "4+2"
    );
}

#[test]
fn create_refuses_non_empty_and_existing_volumes() {
    let disks = mem_disks(3);
    Store::create(as_dyn(&disks), &opts("minimal"), PASS).unwrap();
    let err = Store::create(as_dyn(&disks), &opts("minimal"), PASS)
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::BadDisk { reason, .. } if reason.contains("already holds")),
        "{err}"
    );
    let other = mem_disks(3);
    other[2].put("notes.txt", b"mine").unwrap();
    let err = Store::create(as_dyn(&other), &opts("minimal"), PASS)
        .err()
        .unwrap();
    assert!(
        matches!(&err, Error::BadDisk { reason, .. } if reason.contains("not empty")),
        "{err}"
    );
}

#[test]
fn wrong_passphrase_is_clear_and_touches_nothing() {
    let disks = mem_disks(3);
    drop(Store::create(as_dyn(&disks), &opts("minimal"), PASS).unwrap());
    let before: Vec<Vec<u8>> = disks
        .iter()
        .map(|d| d.get("valencefs.hdr").unwrap())
        .collect();
    let err = Store::open(as_dyn(&disks), b"hunter2").err().unwrap();
    assert!(matches!(err, Error::WrongPassphrase));
    assert_eq!(err.errno(), libc::EIO);
    let after: Vec<Vec<u8>> = disks
        .iter()
        .map(|d| d.get("valencefs.hdr").unwrap())
        .collect();
    assert_eq!(before, after);
    assert_eq!(
        disks
            .iter()
            .map(|d| d.list("").unwrap().len())
            .sum::<usize>(),
        3
    );
}

#[test]
fn empty_configuration_has_no_volume() {
    let disks = mem_disks(3);
    assert!(matches!(
        Store::open(as_dyn(&disks), PASS),
        Err(Error::Volume(_))
    ));
}

#[test]
fn foreign_disk_is_refused() {
    let a = mem_disks(3);
    let b = mem_disks(3);
    drop(Store::create(as_dyn(&a), &opts("minimal"), PASS).unwrap());
    drop(Store::create(as_dyn(&b), &opts("minimal"), PASS).unwrap());
    let mixed = vec![a[0].clone(), a[1].clone(), b[2].clone()];
    let err = Store::open(as_dyn(&mixed), PASS).err().unwrap();
    assert!(
        matches!(&err, Error::BadDisk { disk, reason } if reason.contains("another volume") && *disk == b[2].describe()),
        "{err}"
    );
}

#[test]
fn duplicate_and_misplaced_disk_indexes_are_refused() {
    let disks = mem_disks(5);
    drop(Store::create(as_dyn(&disks), &opts("personal"), PASS).unwrap());
    // A copy of disk 1 configured in place of disk 3.
    let copy = valencefs::store::MemDisk::new();
    for name in disks[1].list("").unwrap() {
        copy.put(&name, &disks[1].get(&name).unwrap()).unwrap();
    }
    let mut cfg = as_dyn(&disks);
    cfg[3] = Arc::new(copy);
    let err = Store::open(cfg, PASS).err().unwrap();
    assert!(
        matches!(&err, Error::BadDisk { reason, .. } if reason.contains("also claims")),
        "{err}"
    );
    // Two disks swapped.
    let mut cfg = as_dyn(&disks);
    cfg.swap(0, 4);
    let err = Store::open(cfg, PASS).err().unwrap();
    assert!(
        matches!(&err, Error::BadDisk { reason, .. } if reason.contains("configured at position")),
        "{err}"
    );
}

#[test]
fn stale_disk_is_detected_and_its_old_keyslot_does_not_unlock() {
    let (faults, _mems) = fault_disks(5);
    let store = Store::create(as_dyn(&faults), &opts("personal"), PASS).unwrap();
    let data = mixed(300_000, 4);
    let ids = write_all(&store, &data);
    store.sync().unwrap();
    drop(store);
    // Disk 2 is away while the passphrase changes.
    faults[2].set(Faults {
        missing: true,
        ..Faults::default()
    });
    let store = Store::open(as_dyn(&faults), PASS).unwrap();
    assert_eq!(store.health()[2].state, DiskState::Missing);
    store
        .change_passphrase(PASS, b"new pass", &KdfParams::insecure_fast())
        .unwrap();
    drop(store);
    faults[2].set(Faults::default());
    assert!(matches!(
        Store::open(as_dyn(&faults), PASS),
        Err(Error::WrongPassphrase)
    ));
    let store = Store::open(as_dyn(&faults), b"new pass").unwrap();
    let h = store.health();
    assert_eq!(h[2].state, DiskState::Stale, "{:?}", h[2]);
    assert!(h[2].detail.as_ref().unwrap().contains("epoch"));
    assert!(h
        .iter()
        .enumerate()
        .all(|(i, d)| i == 2 || d.state == DiskState::Ok));
    assert_eq!(read_all(&store, &ids).unwrap(), data);
    // Readmitted, it gets the current header: the next open sees five healthy disks and the old passphrase
    // still fails.
    store.readmit(2).unwrap();
    drop(store);
    assert!(matches!(
        Store::open(as_dyn(&faults), PASS),
        Err(Error::WrongPassphrase)
    ));
    let store = Store::open(as_dyn(&faults), b"new pass").unwrap();
    assert!(store.health().iter().all(|d| d.state == DiskState::Ok));
}

#[test]
fn read_only_disk_opens_read_only() {
    let (faults, _mems) = fault_disks(3);
    let store = Store::create(as_dyn(&faults), &opts("minimal"), PASS).unwrap();
    let data = random(40_000, 1);
    let id = store.chunk_id(&data);
    store.put(&id, &data).unwrap();
    store.sync().unwrap();
    drop(store);
    faults[1].set(Faults {
        read_only: true,
        ..Faults::default()
    });
    let store = Store::open(as_dyn(&faults), PASS).unwrap();
    assert!(store.is_read_only());
    assert_eq!(store.health()[1].state, DiskState::ReadOnly);
    assert_eq!(store.get(&id).unwrap(), data);
    assert!(matches!(store.put(&id, &data), Err(Error::ReadOnly)));
    assert!(matches!(store.delete(&id), Err(Error::ReadOnly)));
    assert!(matches!(
        store.add_keyslot(b"x", &KdfParams::insecure_fast()),
        Err(Error::ReadOnly)
    ));
    assert_eq!(Error::ReadOnly.errno(), libc::EROFS);
}

#[test]
fn missing_directory_disk_is_reported() {
    let t = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..3).map(|i| t.path().join(format!("d{i}"))).collect();
    let disks: Vec<_> = paths.iter().map(|p| open_dir_disk(p)).collect();
    let store = Store::create(disks.clone(), &opts("minimal"), PASS).unwrap();
    let data = mixed(100_000, 2);
    let ids = write_all(&store, &data);
    store.sync().unwrap();
    drop(store);
    std::fs::remove_dir_all(&paths[0]).unwrap();
    let store = Store::open(disks.clone(), PASS).unwrap();
    let h = store.health();
    assert_eq!(h[0].state, DiskState::Missing);
    assert!(h[0].description.ends_with("d0"));
    assert_eq!(read_all(&store, &ids).unwrap(), data);
    // A put needs k+1 = 3 shards for 2+1: with a disk gone it fails, typed, and leaves no shard behind.
    let extra = random(10_000, 3);
    let xid = store.chunk_id(&extra);
    let err = store.put(&xid, &extra).err().unwrap();
    assert!(
        matches!(&err, Error::Volume(msg) if msg.contains("only 2 of 3 shards")),
        "{err}"
    );
    assert!(!store.list_chunks().unwrap().contains(&xid));
    drop(store);
    std::fs::remove_dir_all(&paths[1]).unwrap();
    let err = Store::open(disks, PASS).err().unwrap();
    assert!(
        matches!(&err, Error::Volume(msg) if msg.contains("survives only 1")),
        "{err}"
    );
}

#[test]
fn enospc_is_typed_and_leaves_nothing_behind() {
    let (faults, _mems) = fault_disks(5);
    let store = Store::create(as_dyn(&faults), &opts("personal"), PASS).unwrap();
    // One full disk: 4 of 5 shards written, k+1 = 4 reached.
    faults[0].set(Faults {
        enospc: true,
        ..Faults::default()
    });
    let a = random(60_000, 1);
    let ia = store.chunk_id(&a);
    store.put(&ia, &a).unwrap();
    assert_eq!(store.get(&ia).unwrap(), a);
    // Two full disks: below quorum → NoSpace, and the shards that did land are removed again.
    faults[1].set(Faults {
        enospc: true,
        ..Faults::default()
    });
    let b = random(60_000, 2);
    let ib = store.chunk_id(&b);
    let err = store.put(&ib, &b).err().unwrap();
    assert!(matches!(err, Error::NoSpace { .. }), "{err}");
    assert_eq!(err.errno(), libc::ENOSPC);
    assert_eq!(store.list_chunks().unwrap(), vec![ia]);
    assert!(store.health()[1].errors > 0);
}

#[test]
fn dir_disk_enospc_on_a_tiny_tmpfs_if_available() {
    // Real ENOSPC needs a small filesystem; /dev/shm is usually large, so this only checks the mapping when a
    // write fails with ENOSPC through a FaultDisk over a directory disk.
    let t = tempfile::tempdir().unwrap();
    let inner = open_dir_disk(t.path());
    let f = valencefs::store::FaultDisk::new(inner);
    f.set(Faults {
        puts_before_enospc: Some(0),
        ..Faults::default()
    });
    assert!(matches!(f.put("x", b"1"), Err(Error::NoSpace { .. })));
}

#[test]
fn keyslots_add_change_remove() {
    let disks = mem_disks(3);
    let store = Store::create(as_dyn(&disks), &opts("minimal"), PASS).unwrap();
    let vid = store.volume_id();
    let shards_before = disks[0].list("shards/").unwrap();
    let slot = store
        .add_keyslot(b"second", &KdfParams::insecure_fast())
        .unwrap();
    assert_eq!(slot, 1);
    assert_eq!(store.keyslots(), vec![0, 1]);
    drop(store);
    let s2 = Store::open(as_dyn(&disks), b"second").unwrap();
    assert_eq!(s2.volume_id(), vid);
    let fast = KdfParams::insecure_fast();
    s2.change_passphrase(b"second", b"third", &fast).unwrap();
    assert_eq!(s2.keyslot_kdf(1), Some(fast));
    assert_eq!(s2.keyslot_kdf(2), None);
    assert!(matches!(
        s2.change_passphrase(b"nope", b"x", &fast),
        Err(Error::WrongPassphrase)
    ));
    s2.remove_keyslot(0).unwrap();
    assert!(matches!(s2.remove_keyslot(1), Err(Error::Invalid(_))));
    assert!(matches!(s2.remove_keyslot(5), Err(Error::Invalid(_))));
    drop(s2);
    assert!(matches!(
        Store::open(as_dyn(&disks), PASS),
        Err(Error::WrongPassphrase)
    ));
    assert!(matches!(
        Store::open(as_dyn(&disks), b"second"),
        Err(Error::WrongPassphrase)
    ));
    let s3 = Store::open(as_dyn(&disks), b"third").unwrap();
    assert_eq!(s3.volume_id(), vid);
    assert_eq!(disks[0].list("shards/").unwrap(), shards_before);
}

#[test]
fn sealed_blobs_round_trip_and_bind_their_label() {
    let disks = mem_disks(3);
    let store = Store::create(as_dyn(&disks), &opts("minimal"), PASS).unwrap();
    let sealed = store.seal_blob(b"meta-snapshot", b"some metadata");
    assert_eq!(
        store.open_blob(b"meta-snapshot", &sealed).unwrap(),
        b"some metadata"
    );
    assert!(matches!(
        store.open_blob(b"other", &sealed),
        Err(Error::Corrupt(_))
    ));
    let mut bad = sealed.clone();
    bad[15] ^= 1;
    assert!(store.open_blob(b"meta-snapshot", &bad).is_err());
    assert_ne!(
        store.seal_blob(b"meta-snapshot", b"some metadata"),
        sealed,
        "random nonce"
    );
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
    assert_send_sync::<std::sync::Arc<Store>>();
}

#[test]
fn replaced_disk_is_readmitted_and_rebuilt_by_scrub() {
    let t = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..5).map(|i| t.path().join(format!("d{i}"))).collect();
    let disks: Vec<_> = paths.iter().map(|p| open_dir_disk(p)).collect();
    let store = Store::create(disks.clone(), &opts("personal"), PASS).unwrap();
    let data = mixed(400_000, 6);
    let ids = write_all(&store, &data);
    store.sync().unwrap();
    drop(store);
    // Disk 1 dies and is replaced by a blank directory.
    std::fs::remove_dir_all(&paths[1]).unwrap();
    std::fs::create_dir(&paths[1]).unwrap();
    let store = Store::open(disks.clone(), PASS).unwrap();
    assert_eq!(store.health()[1].state, DiskState::Missing);
    store.readmit(1).unwrap();
    assert_eq!(store.health()[1].state, DiskState::Ok);
    let mut healed = 0;
    for id in &ids {
        let report = store.scrub(id).unwrap();
        assert!(!report.fast_path);
        healed += report.healed.len();
        assert!(
            store.scrub(id).unwrap().bad_shards.is_empty(),
            "scrub healed everything"
        );
    }
    assert_eq!(
        healed,
        ids.len(),
        "every chunk has exactly one shard on disk 1"
    );
    store.sync().unwrap();
    drop(store);
    // Disks 0 and 2 gone: the rebuilt disk 1 carries its share.
    std::fs::remove_dir_all(&paths[0]).unwrap();
    std::fs::remove_dir_all(&paths[2]).unwrap();
    let store = Store::open(disks, PASS).unwrap();
    assert_eq!(read_all(&store, &ids).unwrap(), data);
}

#[test]
fn readmit_refuses_a_foreign_disk() {
    let (faults, _mems) = fault_disks(3);
    drop(Store::create(as_dyn(&faults), &opts("minimal"), PASS).unwrap());
    let other = mem_disks(3);
    drop(Store::create(as_dyn(&other), &opts("minimal"), PASS).unwrap());
    faults[0].set(Faults {
        missing: true,
        ..Faults::default()
    });
    let store = Store::open(as_dyn(&faults), PASS).unwrap();
    // While the disk is away, someone puts another volume's disk in its place.
    for name in other[0].list("").unwrap() {
        faults[0]
            .inner()
            .put(&name, &other[0].get(&name).unwrap())
            .unwrap();
    }
    faults[0].set(Faults::default());
    let err = store.readmit(0).err().unwrap();
    assert!(
        matches!(&err, Error::BadDisk { reason, .. } if reason.contains("another volume")),
        "{err}"
    );
    assert_eq!(store.health()[0].state, DiskState::Missing);
}

/// A disk whose metadata pointer is older than another's missed a snapshot (it was away, or restored from an
/// older copy): the store names it, with both generations, so the mount can warn about it.
#[test]
fn disks_with_an_older_metadata_pointer_are_named() {
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &opts("personal"), PASS).unwrap();
    assert!(
        store.disks_behind().is_empty(),
        "no pointer yet: nothing to compare"
    );
    store.save_snapshot(1, b"first database", None).unwrap();
    assert!(store.disks_behind().is_empty());
    let old = disks[2].get("meta/pointer").unwrap();
    store.save_snapshot(2, b"second database", None).unwrap();
    assert!(store.disks_behind().is_empty());
    disks[2].put("meta/pointer", &old).unwrap();
    disks[4].delete("meta/pointer").unwrap();
    assert_eq!(store.disks_behind(), vec![(2, 1, 2), (4, 0, 2)]);
    // The next snapshot brings them level again.
    store.save_snapshot(3, b"third database", None).unwrap();
    assert!(store.disks_behind().is_empty());
}
