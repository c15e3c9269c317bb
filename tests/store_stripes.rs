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
    let v = DirVolume::new();
    let (paths, disks, state) = (&v.paths, || v.disks(), v.root.path().join("state"));
    let st = Arc::new(Store::create(disks(), &v3(), PASS).unwrap());
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
    let state2 = v.root.path().join("state2");
    let st = Arc::new(Store::open(disks(), PASS).unwrap());
    valencefs::fs::recover_state(&st, &state2).unwrap();
    let fs = Fs::start(st as Arc<dyn Chunks>, &state2, FsOptions::default()).unwrap();
    check(&fs);
    fs.shutdown().unwrap();
}

/// Five directory disks in a temporary directory.
struct DirVolume {
    root: tempfile::TempDir,
    paths: Vec<std::path::PathBuf>,
}

impl DirVolume {
    fn new() -> DirVolume {
        let root = tempfile::tempdir().unwrap();
        let paths = (0..5).map(|i| root.path().join(format!("d{i}"))).collect();
        DirVolume { root, paths }
    }

    fn disks(&self) -> Vec<Arc<dyn Disk>> {
        self.paths
            .iter()
            .map(|p| valencefs::store::open_dir_disk(p))
            .collect()
    }
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

/// status's census counts stripe files: a stripe missing a file is one unit short, on the disk that lacks it.
#[test]
fn status_counts_the_files_of_every_stripe() {
    let v = DirVolume::new();
    let store = Store::create(v.disks(), &v3(), PASS).unwrap();
    let data = random(3 << 20, 8);
    write_all(&store, &data);
    store.sync().unwrap();
    let s = valencefs::maint::status::status(&store, None).unwrap();
    assert_eq!(s.census.chunks_short, 0, "{}", s.summary());
    assert_eq!(s.redundancy_now, 2);
    assert!(
        s.disks.iter().all(|d| d.shards == Some(1)),
        "one stripe file per disk"
    );
    // Disk 3 loses its stripe file.
    std::fs::remove_dir_all(v.paths[3].join(STRIPE_DIR)).unwrap();
    let s = valencefs::maint::status::status_keyless(&v.disks(), None).unwrap();
    assert_eq!(s.census.chunks_short, 1, "{}", s.summary());
    assert_eq!(s.disks[3].lacking, Some(1));
    assert_eq!(s.redundancy_now, 1, "one more loss, not two");
    let fixed = scrub(&v.disks(), Some(&store));
    assert_eq!(fixed.exit_code(), 0, "{}", fixed.summary());
    let s = valencefs::maint::status::status(&store, None).unwrap();
    assert_eq!((s.census.chunks_short, s.redundancy_now), (0, 2));
}

fn scrub(disks: &[Arc<dyn Disk>], repair: Option<&Store>) -> valencefs::maint::scrub::ScrubReport {
    valencefs::maint::scrub::scrub(
        disks,
        repair,
        &valencefs::maint::scrub::ScrubOptions::default(),
    )
    .unwrap()
}

#[test]
fn scrub_checks_every_piece_of_every_stripe_and_repair_rewrites_bad_files() {
    let v = DirVolume::new();
    let store = Store::create(v.disks(), &v3(), PASS).unwrap();
    let data = mixed(6 << 20, 40);
    let ids = write_all(&store, &data);
    store.sync().unwrap();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    let clean = scrub(&v.disks(), None);
    assert_eq!(clean.exit_code(), 0, "{}", clean.summary());
    assert_eq!(clean.chunks_checked as usize, unique.len());
    assert!(clean.stripes_checked >= 1);
    let on_disks: u64 = v.paths.iter().map(|p| sh_bytes(&p.join(STRIPE_DIR))).sum();
    assert_eq!(
        clean.bytes_checked, on_disks,
        "every byte of every stripe file read"
    );
    // Rot one byte in the middle of a file on disk 1, and delete a file on disk 3.
    let files = |d: usize| -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for sub in std::fs::read_dir(v.paths[d].join(STRIPE_DIR)).unwrap() {
            for f in std::fs::read_dir(sub.unwrap().path()).unwrap() {
                out.push(f.unwrap().path());
            }
        }
        out
    };
    let rot = files(1)[0].clone();
    let mut b = std::fs::read(&rot).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    std::fs::write(&rot, &b).unwrap();
    std::fs::remove_file(&files(3)[0]).unwrap();
    let found = scrub(&v.disks(), None);
    assert_eq!(found.exit_code(), 1, "{}", found.summary());
    assert!(
        found.disks[1].corrupt >= 1 && found.disks[3].missing >= 1,
        "{found:?}"
    );
    assert_eq!(found.unrecoverable, 0);
    // Reads are still right, from the other files.
    assert_eq!(read_all(&store, &ids).unwrap(), data);
    let fixed = scrub(&v.disks(), Some(&store));
    assert!(fixed.stripe_files_repaired >= 2, "{}", fixed.summary());
    assert_eq!(fixed.exit_code(), 0, "{:?}", fixed.bad_chunks);
    let again = scrub(&v.disks(), None);
    assert_eq!(again.exit_code(), 0, "{}", again.summary());
    assert_eq!(again.bad_shards(), 0);
    drop(store);
    let store = Store::open(v.disks(), PASS).unwrap();
    assert_eq!(read_all(&store, &ids).unwrap(), data);
}

#[test]
fn disk_replace_rebuilds_the_stripe_files_of_a_dead_disk() {
    let v = DirVolume::new();
    let store = Store::create(v.disks(), &v3(), PASS).unwrap();
    let data = mixed(6 << 20, 41);
    let ids = write_all(&store, &data);
    store.sync().unwrap();
    drop(store);
    // Disk 2 dies; a blank directory takes its place.
    std::fs::remove_dir_all(&v.paths[2]).unwrap();
    std::fs::create_dir_all(&v.paths[2]).unwrap();
    let store = Store::open(v.disks(), PASS).unwrap();
    let r = valencefs::maint::replace::replace(&store, 2, &mut |_| true).unwrap();
    eprintln!("{}", r.summary());
    assert!(r.failed.is_empty(), "{:?}", r.failed);
    assert!(
        r.stripe_files >= 1 && r.progress.shards_rebuilt == r.stripe_files,
        "{r:?}"
    );
    let after = scrub(&v.disks(), None);
    assert_eq!(after.exit_code(), 0, "{}", after.summary());
    assert_eq!(after.disks[2].missing, 0);
    // The volume now survives two more losses, disk 2 included.
    drop(store);
    for d in [0, 4] {
        let moved = v.paths[d].with_extension("away");
        std::fs::rename(&v.paths[d], &moved).unwrap();
    }
    let store = Store::open(v.disks(), PASS).unwrap();
    assert_eq!(read_all(&store, &ids).unwrap(), data);
}

/// Bytes of every stripe file on the disks.
fn stripe_bytes(disks: &[Arc<MemDisk>]) -> u64 {
    disks
        .iter()
        .flat_map(|d| {
            d.list(&format!("{STRIPE_DIR}/"))
                .unwrap()
                .into_iter()
                .map(move |n| d.get(&n).unwrap().len() as u64)
        })
        .sum()
}

#[test]
fn repack_rewrites_sparse_stripes_and_merges_short_ones() {
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &v3(), PASS).unwrap();
    let a_data = random(4 << 20, 10);
    let a = write_all(&store, &a_data);
    store.sync().unwrap();
    let b_data = random(4 << 20, 11);
    let b = write_all(&store, &b_data);
    store.sync().unwrap();
    // Three short stripes of one small chunk each.
    let mut smalls = Vec::new();
    for i in 0..3u64 {
        let s = random(3000 + i as usize, 20 + i);
        let id = store.chunk_id(&s);
        store.put(&id, &s).unwrap();
        store.sync().unwrap();
        smalls.push((id, s));
    }
    assert_eq!(store.stripe_count(), Some(5));
    // Stripe A keeps a quarter of its chunks; B stays whole.
    let keep = a.len() / 4;
    for id in &a[keep..] {
        store.delete(id).unwrap();
    }
    let before = stripe_bytes(&disks);
    let r = store.repack(0.8).unwrap();
    eprintln!("{r:?}, write amplification {:.2}", r.write_amplification());
    assert_eq!(r.stripes_repacked, 4, "A (sparse) and the three short ones");
    assert_eq!(r.chunks_moved as usize, keep + 3);
    assert_eq!(r.stripes_deleted, 4);
    assert!(r.write_amplification() > 0.0 && r.write_amplification() < 0.5);
    store.sync().unwrap();
    assert!(stripe_bytes(&disks) < before, "space came back");
    // B, the moved quarter of A and the small chunks read back, now and after a reopen.
    let check = |store: &Store| {
        assert_eq!(read_all(store, &b).unwrap(), b_data);
        for (i, id) in a[..keep].iter().enumerate() {
            let off: usize = a[..i].iter().map(|x| store.get(x).unwrap().len()).sum();
            let got = store.get(id).unwrap();
            assert_eq!(got, a_data[off..off + got.len()]);
        }
        for (id, s) in &smalls {
            assert_eq!(&store.get(id).unwrap(), s);
        }
    };
    check(&store);
    assert_eq!(store.stripe_count(), Some(2), "B and one new stripe");
    drop(store);
    let store = Store::open(as_dyn(&disks), PASS).unwrap();
    check(&store);
    // Nothing left to do.
    let r = store.repack(0.8).unwrap();
    assert_eq!((r.stripes_repacked, r.stripes_deleted), (0, 0), "{r:?}");
}

#[test]
fn a_power_cut_during_a_repack_loses_no_chunk() {
    let (faults, mems) = fault_disks(5);
    let store = Store::create(as_dyn(&faults), &v3(), PASS).unwrap();
    let data = random(4 << 20, 12);
    let ids = write_all(&store, &data);
    store.sync().unwrap();
    let keep = ids.len() / 3;
    for id in &ids[keep..] {
        store.delete(id).unwrap();
    }
    store.sync().unwrap();
    let want: Vec<Vec<u8>> = ids[..keep]
        .iter()
        .map(|id| store.get(id).unwrap())
        .collect();
    // The repack makes its new stripe durable, then deletes the old files; the cut comes before those deletes
    // are synced, so both stripes are on the disks afterwards.
    let r = store.repack(0.8).unwrap();
    assert_eq!(r.stripes_repacked, 1);
    drop(store);
    for m in &mems {
        m.crash();
    }
    let store = Store::open(as_dyn(&faults), PASS).unwrap();
    assert_eq!(
        store.stripe_count(),
        Some(2),
        "old and new stripe both survived the cut"
    );
    for (id, w) in ids[..keep].iter().zip(&want) {
        assert_eq!(&store.get(id).unwrap(), w);
    }
    // The old stripe's index names the deleted chunks again: as after any crash, they are unreferenced chunks for
    // gc to delete (the store alone cannot tell). Then the next repack leaves one stripe.
    for id in &ids[keep..] {
        store.delete(id).unwrap();
    }
    store.repack(0.8).unwrap();
    store.sync().unwrap();
    assert_eq!(store.stripe_count(), Some(1));
    for (id, w) in ids[..keep].iter().zip(&want) {
        assert_eq!(&store.get(id).unwrap(), w);
    }
}

/// The core over v3: four files written together (one stripe), two overwritten in scattered 4 KiB pieces (patch
/// chunks, in a stripe of their own) and one deleted, which leaves the first stripe a quarter dead; `gc` repacks
/// it, the disks then hold little more than the live data needs, and every file reads back.
/// (Patched-over bytes inside chunks that are still partly referenced stay: reclaiming them needs the core to
/// rewrite those chunks, which no repack of stripes can do.)
#[test]
fn gc_repacks_what_overwrites_and_deletes_left_behind() {
    use std::ffi::OsStr;
    use valencefs::fs::{Chunks, Ctx, Fs, FsOptions, ROOT_INO};
    const C: Ctx = Ctx::ROOT;
    let v = DirVolume::new();
    let (paths, disks, state) = (&v.paths, || v.disks(), v.root.path().join("state"));
    let st = Arc::new(Store::create(disks(), &v3(), PASS).unwrap());
    let fs = Fs::start(st.clone() as Arc<dyn Chunks>, &state, FsOptions::default()).unwrap();
    let size = 3 << 20;
    let mut files: Vec<(String, Vec<u8>)> = (0..4u64)
        .map(|i| (format!("f{i}"), random(size, 30 + i)))
        .collect();
    for (name, body) in &files {
        let (a, fh) = fs
            .create(&C, ROOT_INO, OsStr::new(name), 0o644, 0, libc::O_RDWR)
            .unwrap();
        fs.write(a.ino, fh, 0, body).unwrap();
        fs.release(a.ino, fh).unwrap();
    }
    fs.sync_all().unwrap();
    // Overwrite half of f0 and f1 in 4 KiB pieces, one every 8 KiB; delete f3.
    for (name, body) in files.iter_mut().take(2) {
        let a = fs.lookup(&C, ROOT_INO, OsStr::new(name)).unwrap();
        let fh = fs.open(&C, a.ino, libc::O_RDWR).unwrap();
        for (n, off) in (0..size).step_by(8192).enumerate() {
            let piece = random(4096, n as u64 + 1000);
            fs.write(a.ino, fh, off as u64, &piece).unwrap();
            body[off..off + 4096].copy_from_slice(&piece);
        }
        fs.fsync(a.ino, fh, false).unwrap();
        fs.release(a.ino, fh).unwrap();
    }
    // The kernel's lookups of f3 (create + this lookup) are forgotten, or the unlinked inode stays open.
    let f3 = fs.lookup(&C, ROOT_INO, OsStr::new("f3")).unwrap().ino;
    fs.unlink(&C, ROOT_INO, OsStr::new("f3")).unwrap();
    fs.forget(f3, 2);
    files.pop();
    fs.sync_all().unwrap();
    // Two snapshots release what the snapshot the disks pointed at still held.
    fs.snapshot_now().unwrap();
    fs.snapshot_now().unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    let du = || -> u64 { paths.iter().map(|p| sh_bytes(&p.join("stripes"))).sum() };
    let before = du();
    let meta = valencefs::maint::open_meta(&state).unwrap();
    let r = valencefs::maint::gc::gc(&st, &meta).unwrap();
    drop(meta);
    eprintln!("{}", r.summary());
    let after = du();
    // What the live data needs on the disks, coded 3+2: three files of 3 MiB and the 2 × 1.5 MiB of patches
    // (whose chunks the overwritten originals still partly share).
    let live = (4 * size) as u64 * 5 / 3;
    eprintln!(
        "stripe bytes before gc {before}, after {after}; live data needs {live}: {:.2}x",
        after as f64 / live as f64
    );
    assert!(r.repack.stripes_repacked > 0, "{r:?}");
    // f3's quarter of the first stripe came back.
    assert!(
        before - after >= (size as u64 * 5 / 3) * 9 / 10,
        "{before} -> {after}"
    );
    assert!(
        after as f64 <= 1.25 * live as f64,
        "{after} on disks for {live} live"
    );
    drop(st);
    let st = Arc::new(Store::open(disks(), PASS).unwrap());
    let fs = Fs::start(st as Arc<dyn Chunks>, &state, FsOptions::default()).unwrap();
    for (name, body) in &files {
        let a = fs.lookup(&C, ROOT_INO, OsStr::new(name)).unwrap();
        let fh = fs.open(&C, a.ino, libc::O_RDONLY).unwrap();
        let mut got = Vec::new();
        while got.len() < size {
            let b = fs.read(a.ino, fh, got.len() as u64, 1 << 20).unwrap();
            assert!(!b.is_empty());
            got.extend_from_slice(&b);
        }
        assert!(got == *body, "{name} differs after gc");
        fs.release(a.ino, fh).unwrap();
    }
    fs.shutdown().unwrap();
}

fn sh_bytes(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                sh_bytes(&e.path())
            } else {
                e.metadata().unwrap().len()
            }
        })
        .sum()
}

/// fsck's shard check and `scrub --integrity` follow chunks into their stripes: a stripe file deleted on one disk
/// shows as degraded chunks, fsck --repair rebuilds it, and the proof holds again.
#[test]
fn fsck_and_the_integrity_proof_see_inside_stripes() {
    use std::ffi::OsStr;
    use valencefs::fs::{Chunks, Ctx, Fs, FsOptions, ROOT_INO};
    use valencefs::maint::{fsck::fsck, integrity::verify, open_meta};
    const C: Ctx = Ctx::ROOT;
    let v = DirVolume::new();
    let state = v.root.path().join("state");
    let st = Arc::new(Store::create(v.disks(), &v3(), PASS).unwrap());
    let fs = Fs::start(st.clone() as Arc<dyn Chunks>, &state, FsOptions::default()).unwrap();
    for i in 0..20u64 {
        let (a, fh) = fs
            .create(
                &C,
                ROOT_INO,
                OsStr::new(&format!("f{i}")),
                0o644,
                0,
                libc::O_RDWR,
            )
            .unwrap();
        fs.write(a.ino, fh, 0, &mixed(50_000 + i as usize * 7_000, i))
            .unwrap();
        fs.release(a.ino, fh).unwrap();
    }
    fs.shutdown().unwrap();
    drop(fs);
    let meta = open_meta(&state).unwrap();
    let proof = verify(&st, Some(&meta), None).unwrap();
    assert!(
        proof.ok() && proof.proven > 0 && proof.degraded == 0,
        "{}",
        proof.summary()
    );
    let clean = fsck(&meta, Some(&st), false).unwrap();
    assert_eq!(clean.errors(), 0, "{}", clean.summary());
    // Disk 1 loses its stripe files (the disk itself stays).
    let dir = v.paths[1].join(STRIPE_DIR);
    let before = walkdir_count(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let found = fsck(&meta, Some(&st), false).unwrap();
    assert!(found.errors() > 0, "{}", found.summary());
    assert!(
        found.problems.iter().all(|p| p.kind == "chunk-degraded"),
        "{:?}",
        found.problems
    );
    let proof = verify(&st, Some(&meta), None).unwrap();
    assert!(proof.degraded > 0, "{}", proof.summary());
    let fixed = fsck(&meta, Some(&st), true).unwrap();
    assert!(
        fixed.problems.iter().all(|p| p.fixed),
        "{:?}",
        fixed.problems
    );
    assert!(
        walkdir_count(&dir) > 0 && walkdir_count(&dir) <= before,
        "stripe files rebuilt"
    );
    assert_eq!(fsck(&meta, Some(&st), false).unwrap().errors(), 0);
    let proof = verify(&st, Some(&meta), None).unwrap();
    assert!(proof.ok() && proof.degraded == 0, "{}", proof.summary());
}
