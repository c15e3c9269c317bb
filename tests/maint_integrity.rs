//! The integrity proof (`scrub --integrity`): the stripe hashes recorded in the metadata and the Merkle root sealed
//! with each snapshot catch what a keyless scrub cannot: a chunk whose every shard vanished, a shard forged with a
//! self-consistent header, and disks rolled back to an older generation.

mod store_common;

use std::ffi::OsStr;
use std::sync::Arc;

use store_common::*;
use valencefs::fs::{Chunks, Ctx, Fs, FsOptions, ROOT_INO};
use valencefs::maint::integrity::verify;
use valencefs::maint::scrub::{scrub, ScrubOptions};
use valencefs::meta::Meta;
use valencefs::store::format::{shard_name, ShardHeader, SHARD_HEADER_LEN};
use valencefs::store::{ChunkId, Disk, MemDisk, Store};

const C: Ctx = Ctx::ROOT;

fn write_files(fs: &Fs, prefix: &str, n: usize) {
    for i in 0..n {
        let (a, fh) = fs
            .create(
                &C,
                ROOT_INO,
                OsStr::new(&format!("{prefix}{i}")),
                0o644,
                0,
                libc::O_RDWR,
            )
            .unwrap();
        fs.write(
            a.ino,
            fh,
            0,
            &mixed(150_000 + i * 1000, i as u64 + prefix.len() as u64 * 100),
        )
        .unwrap();
        fs.release(a.ino, fh).unwrap();
    }
}

/// A volume over memory disks with files written and unmounted (so its newest snapshot is exact).
struct Vol {
    mems: Vec<Arc<MemDisk>>,
    state: tempfile::TempDir,
}

impl Vol {
    fn new() -> Vol {
        let mems = mem_disks(5);
        Store::create(as_dyn(&mems), &opts("personal"), PASS).unwrap();
        let v = Vol {
            mems,
            state: tempfile::tempdir().unwrap(),
        };
        v.session(|fs| write_files(fs, "f", 8));
        v
    }
    fn store(&self) -> Store {
        Store::open(as_dyn(&self.mems), PASS).unwrap()
    }
    fn session(&self, f: impl FnOnce(&Fs)) {
        let fs = Fs::start(
            Arc::new(self.store()) as Arc<dyn Chunks>,
            self.state.path(),
            FsOptions::default(),
        )
        .unwrap();
        f(&fs);
        fs.shutdown().unwrap();
    }
    fn local(&self) -> Meta {
        Meta::open(&self.state.path().join("meta.redb")).unwrap()
    }
    /// Referenced chunk ids, from the local database.
    fn chunks(&self) -> Vec<ChunkId> {
        let m = self.local();
        let mut tx = m.write().unwrap();
        tx.all_chunks()
            .unwrap()
            .into_iter()
            .filter(|(_, r)| r.refs > 0)
            .map(|(id, _)| id)
            .collect()
    }
}

fn keyless_scrub_clean(store: &Store) -> bool {
    scrub(&store.disks(), None, &ScrubOptions::default())
        .unwrap()
        .clean()
}

#[test]
fn a_clean_volume_is_proven_chunk_by_chunk() {
    let v = Vol::new();
    let r = verify(&v.store(), Some(&v.local()), None).unwrap();
    assert!(r.ok(), "{}", r.summary());
    assert!(r.root_matches);
    assert!(r.referenced >= 8, "{}", r.summary());
    assert_eq!(r.proven, r.referenced, "{}", r.summary());
    assert_eq!(r.recorded.unwrap().chunks, r.referenced);
    // A sample checks a part, and still proves what it checks.
    let r = verify(&v.store(), None, Some((50.0, 7))).unwrap();
    assert!(
        r.ok() && r.checked < r.referenced && r.checked > 0,
        "{}",
        r.summary()
    );
    assert_eq!(r.proven, r.checked);
}

#[test]
fn a_chunk_gone_from_every_disk_is_found_though_keyless_scrub_sees_nothing() {
    let v = Vol::new();
    let victim = v.chunks()[3];
    for m in &v.mems {
        for i in 0..5 {
            m.delete(&shard_name(&victim.0, i)).unwrap();
        }
    }
    let store = v.store();
    assert!(
        keyless_scrub_clean(&store),
        "keyless scrub cannot know the chunk should exist"
    );
    let r = verify(&store, Some(&v.local()), None).unwrap();
    assert!(!r.ok());
    assert_eq!(r.lost, vec![victim.to_hex()], "{}", r.summary());
}

#[test]
fn a_forged_shard_with_a_consistent_header_is_a_mismatch() {
    let v = Vol::new();
    let victim = v.chunks()[1];
    let name = shard_name(&victim.0, 0);
    let forged = v.mems.iter().any(|m| {
        m.tamper(&name, |file| {
            let mut h = ShardHeader::decode(file).unwrap();
            file[SHARD_HEADER_LEN + 10] ^= 0xff;
            h.payload_hash = *blake3::hash(&file[SHARD_HEADER_LEN..]).as_bytes();
            file[..SHARD_HEADER_LEN].copy_from_slice(&h.encode());
        })
    });
    assert!(forged);
    let store = v.store();
    assert!(
        keyless_scrub_clean(&store),
        "the forgery passes the keyless checks"
    );
    let r = verify(&store, Some(&v.local()), None).unwrap();
    assert!(!r.ok());
    assert_eq!(r.mismatched, vec![victim.to_hex()], "{}", r.summary());
}

#[test]
fn disks_rolled_back_to_an_older_generation_are_caught() {
    let v = Vol::new();
    // Keep a copy of every disk as it is now.
    let copies: Vec<Arc<MemDisk>> = v
        .mems
        .iter()
        .map(|m| {
            let c = Arc::new(MemDisk::new());
            for name in m.list("").unwrap() {
                c.put(&name, &m.get(&name).unwrap()).unwrap();
            }
            c.sync().unwrap();
            c
        })
        .collect();
    v.session(|fs| write_files(fs, "later", 3));
    let now = verify(&v.store(), Some(&v.local()), None).unwrap();
    assert!(now.ok(), "{}", now.summary());
    // The old disks are a perfectly consistent volume on their own...
    let old = Store::open(as_dyn(&copies), PASS).unwrap();
    let alone = verify(&old, None, None).unwrap();
    assert!(alone.ok(), "{}", alone.summary());
    // ...but this machine recorded a newer generation.
    let r = verify(&old, Some(&v.local()), None).unwrap();
    assert!(r.rolled_back && !r.ok(), "{}", r.summary());
    assert!(r.local_generation.unwrap() > r.snapshot_generation);
}
