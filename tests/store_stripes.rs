//! Format v3 packed stripes (experimental): many chunks per stripe file, the chunk → stripe map rebuilt from the
//! disks at open, short stripes at sync, degraded reads, deletes, and the write quorum.

mod store_common;
use store_common::*;

use std::sync::Arc;

use valencefs::store::format::{FORMAT_V3, STRIPE_DIR};
use valencefs::store::stripe::parse_stripe_name;
use valencefs::store::{CreateOptions, Disk, MemDisk, ShardFault, Store};

fn v3() -> CreateOptions {
    CreateOptions {
        format: FORMAT_V3,
        ..opts("3+2")
    }
}

fn stripe_files(disks: &[Arc<MemDisk>]) -> Vec<Vec<String>> {
    disks
        .iter()
        .map(|d| d.list(&format!("{STRIPE_DIR}/")).unwrap())
        .collect()
}

#[test]
fn many_chunks_share_few_files_and_read_back_after_reopen() {
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &v3(), PASS).unwrap();
    assert_eq!(store.format_version(), FORMAT_V3);
    let data = mixed(40 << 20, 1);
    let ids = write_all(&store, &data);
    // Before any sync, full stripes went to the disks and the rest is readable from memory.
    assert_eq!(read_all(&store, &ids).unwrap(), data);
    store.sync().unwrap();
    let files = stripe_files(&disks);
    let per_disk: Vec<usize> = files.iter().map(|f| f.len()).collect();
    let chunks = ids.len();
    assert!(chunks > 200, "{chunks} chunks");
    // 40 MiB of chunks in ~16 MiB stripes: a handful of files per disk, not one per chunk.
    assert!(
        per_disk.iter().all(|&n| (1..=6).contains(&n)),
        "{per_disk:?}"
    );
    assert!(disks.iter().all(|d| d.list("shards/").unwrap().is_empty()));
    let stripes = store.stripe_count().unwrap();
    assert_eq!(per_disk.iter().sum::<usize>(), stripes * 5);
    drop(store);
    // The map is rebuilt from the stripe files alone.
    let store = Store::open(as_dyn(&disks), PASS).unwrap();
    assert_eq!(store.stripe_count(), Some(stripes));
    for id in &ids {
        let (_, report) = store.get_report(id).unwrap();
        assert!(report.fast_path);
    }
    assert_eq!(read_all(&store, &ids).unwrap(), data);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(store.list_chunks().unwrap(), unique);
}

#[test]
fn a_sync_writes_a_short_stripe_not_a_full_one() {
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &v3(), PASS).unwrap();
    let small = b"one small file".to_vec();
    let id = store.chunk_id(&small);
    store.put(&id, &small).unwrap();
    assert!(stripe_files(&disks).iter().all(|f| f.is_empty()));
    store.sync().unwrap();
    let files = stripe_files(&disks);
    assert!(files.iter().all(|f| f.len() == 1), "{files:?}");
    let bytes: u64 = disks.iter().map(|d| d.bytes()).sum();
    // Header, index and one piece per disk (plus the disk headers): kilobytes, not a 16 MiB stripe of padding.
    assert!(bytes < 64 << 10, "{bytes} bytes on the disks");
    // The same chunk again adds nothing; a second sync writes no second stripe.
    store.put(&id, &small).unwrap();
    store.sync().unwrap();
    assert!(stripe_files(&disks).iter().all(|f| f.len() == 1));
    assert_eq!(store.get(&id).unwrap(), small);
}

#[test]
fn any_two_disks_lost_or_rotten_and_every_chunk_still_reads() {
    let (faults, mems) = fault_disks(5);
    let store = Store::create(as_dyn(&faults), &v3(), PASS).unwrap();
    let data = mixed(20 << 20, 2);
    let ids = write_all(&store, &data);
    store.sync().unwrap();
    drop(store);
    for (a, b) in [(0, 1), (1, 3), (2, 4)] {
        faults[a].update(|f| f.missing = true);
        faults[b].update(|f| f.flip_bits = true);
        let store = Store::open(as_dyn(&faults), PASS).unwrap();
        assert_eq!(
            read_all(&store, &ids).unwrap(),
            data,
            "disks {a} gone, {b} rotten"
        );
        faults[a].update(|f| f.missing = false);
        faults[b].update(|f| f.flip_bits = false);
    }
    // A piece rotten inside a stripe file is found by its checksum and the chunk rebuilt from the others.
    let store = Store::open(as_dyn(&faults), PASS).unwrap();
    // File 0 of some stripe (a data shard: the fast path reads it), wherever it lies.
    let (rot, name) = (0..5)
        .find_map(|d| {
            let names = mems[d].list(&format!("{STRIPE_DIR}/")).unwrap();
            let n = names
                .into_iter()
                .find(|n| parse_stripe_name(n).is_some_and(|(_, i)| i == 0))?;
            Some((d, n))
        })
        .expect("some disk holds file 0 of a stripe");
    mems[rot].tamper(&name, |b| {
        let n = b.len();
        b[n - 100] ^= 0xff;
    });
    let mut saw_corrupt = false;
    for id in &ids {
        let (bytes, report) = store.get_report(id).unwrap();
        assert_eq!(store.chunk_id(&bytes), *id);
        saw_corrupt |= report
            .bad_shards
            .iter()
            .any(|b| b.disk == rot && b.shard == 0 && b.fault == ShardFault::Corrupt);
    }
    assert!(saw_corrupt, "the rotten piece was noticed");
    assert_eq!(read_all(&store, &ids).unwrap(), data);
}

#[test]
fn deleting_every_chunk_of_a_stripe_removes_its_files_and_nothing_else() {
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &v3(), PASS).unwrap();
    let first = random(3 << 20, 3);
    let a = write_all(&store, &first);
    store.sync().unwrap();
    let second = random(3 << 20, 4);
    let b = write_all(&store, &second);
    store.sync().unwrap();
    assert_eq!(store.stripe_count(), Some(2));
    let before = stripe_files(&disks);
    // Half of the first stripe: its files stay (the rest is live).
    for id in &a[..a.len() / 2] {
        store.delete(id).unwrap();
    }
    assert_eq!(stripe_files(&disks), before);
    for id in &a[a.len() / 2..] {
        store.delete(id).unwrap();
    }
    assert_eq!(store.stripe_count(), Some(1));
    assert!(stripe_files(&disks).iter().all(|f| f.len() == 1));
    assert_eq!(read_all(&store, &b).unwrap(), second);
    let mut left = store.list_chunks().unwrap();
    left.sort();
    let mut want = b.clone();
    want.sort();
    want.dedup();
    assert_eq!(left, want);
    drop(store);
    let store = Store::open(as_dyn(&disks), PASS).unwrap();
    assert_eq!(read_all(&store, &b).unwrap(), second);
}

#[test]
fn a_stripe_below_the_write_quorum_fails_the_sync_and_stays_readable() {
    let (faults, _) = fault_disks(5);
    let store = Store::create(as_dyn(&faults), &v3(), PASS).unwrap();
    let data = random(1 << 20, 5);
    let ids = write_all(&store, &data);
    for f in &faults[..2] {
        f.update(|x| x.enospc = true);
    }
    // 3 of 5 files would land: the quorum is k+1 = 4.
    assert!(store.sync().is_err());
    assert_eq!(read_all(&store, &ids).unwrap(), data, "kept in memory");
    for f in &faults[..2] {
        f.update(|x| x.enospc = false);
    }
    store.sync().unwrap();
    drop(store);
    let store = Store::open(as_dyn(&faults), PASS).unwrap();
    assert_eq!(read_all(&store, &ids).unwrap(), data);
}

#[test]
fn what_a_sync_acknowledged_survives_a_power_cut() {
    let (faults, mems) = fault_disks(5);
    let store = Store::create(as_dyn(&faults), &v3(), PASS).unwrap();
    let synced = mixed(6 << 20, 6);
    let a = write_all(&store, &synced);
    store.sync().unwrap();
    let later = random(2 << 20, 7);
    let _b = write_all(&store, &later);
    drop(store);
    for m in &mems {
        m.crash();
    }
    let store = Store::open(as_dyn(&faults), PASS).unwrap();
    assert_eq!(read_all(&store, &a).unwrap(), synced);
}

/// The filesystem core over a v3 volume on directory disks: a tree of small files lands in a few stripe files,
/// reads back after a reopen, and the state directory is rebuilt from the disks alone (promise 5).
#[test]
fn the_core_over_packed_stripes_small_files_reopen_and_recover() {
    use std::ffi::OsStr;
    use valencefs::fs::{Chunks, Ctx, Fs, FsOptions, ROOT_INO};
    const C: Ctx = Ctx::ROOT;
    let root = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..5).map(|i| root.path().join(format!("d{i}"))).collect();
    let disks = || -> Vec<Arc<dyn Disk>> {
        paths
            .iter()
            .map(|p| valencefs::store::open_dir_disk(p))
            .collect()
    };
    let st = Arc::new(Store::create(disks(), &v3(), PASS).unwrap());
    let state = root.path().join("state");
    let fs = Fs::start(st.clone() as Arc<dyn Chunks>, &state, FsOptions::default()).unwrap();
    let mut files = Vec::new();
    for i in 0..400u64 {
        let body = mixed(200 + (i as usize * 997) % 20_000, i);
        let name = format!("f{i}");
        let (a, fh) = fs
            .create(&C, ROOT_INO, OsStr::new(&name), 0o644, 0, libc::O_RDWR)
            .unwrap();
        fs.write(a.ino, fh, 0, &body).unwrap();
        fs.release(a.ino, fh).unwrap();
        files.push((name, body));
    }
    fs.sync_all().unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    let count = |sub: &str| -> usize { paths.iter().map(|p| walkdir_count(&p.join(sub))).sum() };
    let stripe_files = count("stripes");
    eprintln!(
        "{} user files -> {stripe_files} stripe files on 5 disks",
        files.len()
    );
    assert_eq!(count("shards"), 0);
    // Target: at most one file per disk per 64 user files (each sync and each snapshot may seal a short stripe).
    assert!(
        stripe_files * 64 <= files.len() * 5,
        "{stripe_files} stripe files"
    );
    let check = |fs: &Fs| {
        for (name, body) in &files {
            let a = fs.lookup(&C, ROOT_INO, OsStr::new(name)).unwrap();
            let fh = fs.open(&C, a.ino, libc::O_RDONLY).unwrap();
            assert_eq!(&fs.read(a.ino, fh, 0, 1 << 20).unwrap(), body, "{name}");
            fs.release(a.ino, fh).unwrap();
        }
    };
    drop(st);
    let st = Arc::new(Store::open(disks(), PASS).unwrap());
    let fs = Fs::start(st.clone() as Arc<dyn Chunks>, &state, FsOptions::default()).unwrap();
    check(&fs);
    fs.shutdown().unwrap();
    drop(fs);
    // The machine is lost: only the disks and the passphrase remain.
    let state2 = root.path().join("state2");
    let st = Arc::new(Store::open(disks(), PASS).unwrap());
    valencefs::fs::recover_state(&st, &state2).unwrap();
    let fs = Fs::start(st as Arc<dyn Chunks>, &state2, FsOptions::default()).unwrap();
    check(&fs);
    fs.shutdown().unwrap();
}

fn walkdir_count(p: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                walkdir_count(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn tools_that_do_not_read_stripes_yet_refuse_rather_than_report_nothing() {
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &v3(), PASS).unwrap();
    let data = random(1 << 20, 8);
    write_all(&store, &data);
    store.sync().unwrap();
    let refused = |r: valencefs::Result<()>, what: &str| match r {
        Err(valencefs::Error::Invalid(msg)) => {
            assert!(msg.contains("packed-stripe"), "{what}: {msg}")
        }
        other => panic!("{what}: {other:?}"),
    };
    refused(
        valencefs::maint::scrub::scrub(
            &as_dyn(&disks),
            None,
            &valencefs::maint::scrub::ScrubOptions::default(),
        )
        .map(|_| ()),
        "scrub",
    );
    refused(
        valencefs::maint::status::status(&store, None).map(|_| ()),
        "status",
    );
    refused(
        valencefs::maint::replace::replace(&store, 1, &mut |_| true).map(|_| ()),
        "replace",
    );
}
