//! Shared helpers of the maintenance tests: a 3+2 volume over five directory disks with small chunks (so a few tens
//! of MiB make hundreds of chunks), varied files written through the filesystem core, and a read-back check.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use valencefs::fs::{Chunks, Ctx, Fs, FsOptions, ROOT_INO};
use valencefs::store::{open_dir_disk, ChunkerParams, CreateOptions, Disk, KdfParams, Store};

pub const C: Ctx = Ctx::ROOT;
pub const PW: &[u8] = b"maint-test";

pub struct Vol {
    pub root: tempfile::TempDir,
    /// Current directory of each disk slot.
    pub disks: Vec<PathBuf>,
}

impl Vol {
    pub fn new() -> Vol {
        let root = tempfile::tempdir().unwrap();
        let disks: Vec<PathBuf> = (0..5)
            .map(|i| root.path().join(format!("disk{i}")))
            .collect();
        let opts = CreateOptions {
            kdf: KdfParams::insecure_fast(),
            chunker: ChunkerParams {
                min: 16 * 1024,
                avg: 64 * 1024,
                max: 256 * 1024,
            },
            ..Default::default()
        };
        let d = disks.iter().map(|p| open_dir_disk(p)).collect();
        Store::create(d, &opts, PW).unwrap();
        Vol { root, disks }
    }

    pub fn state(&self) -> PathBuf {
        self.root.path().join("state")
    }

    pub fn dir_disks(&self) -> Vec<Arc<dyn Disk>> {
        self.disks.iter().map(|p| open_dir_disk(p)).collect()
    }

    pub fn store(&self) -> Arc<Store> {
        Arc::new(Store::open(self.dir_disks(), PW).unwrap())
    }

    pub fn fs(&self, store: Arc<Store>) -> Arc<Fs> {
        Fs::start(
            store as Arc<dyn Chunks>,
            &self.state(),
            // No timer may commit or snapshot mid-script: a snapshot taken at an unpredictable point changes which
            // freed chunks stay held for `recover` (FORMAT.md §10). Unmount still commits and snapshots.
            FsOptions {
                commit_interval_secs: 3600,
                snapshot_interval_secs: 3600,
                ..Default::default()
            },
        )
        .unwrap()
    }
}

pub fn xorshift(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn random_bytes(len: usize, seed: &mut u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&xorshift(seed).to_le_bytes());
    }
    v.truncate(len);
    v
}

fn text_bytes(len: usize, seed: &mut u64) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "scrub ", "shard ", "parity ", "chunk ", "disk\n", "redb ", "inode ", "extent ",
    ];
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(WORDS[(xorshift(seed) % 8) as usize].as_bytes());
    }
    v.truncate(len);
    v
}

/// Writes about `total` bytes of varied files (random, text, duplicates, tiny, empty) under two directories;
/// returns path → BLAKE3 of content.
pub fn write_files(fs: &Fs, total: usize, seed: u64) -> BTreeMap<String, blake3::Hash> {
    let mut seed = seed | 1;
    let mut out = BTreeMap::new();
    let dirs = [
        ROOT_INO,
        fs.mkdir(&C, ROOT_INO, OsStr::new("a"), 0o755, 0)
            .unwrap()
            .ino,
        fs.mkdir(&C, ROOT_INO, OsStr::new("b"), 0o755, 0)
            .unwrap()
            .ino,
    ];
    let dir_names = ["", "a/", "b/"];
    let mut written = 0;
    let mut n = 0;
    let mut last: Vec<u8> = Vec::new();
    while written < total {
        let kind = xorshift(&mut seed) % 10;
        let len = match kind {
            0 => 0,
            1 => (xorshift(&mut seed) % 3000) as usize,
            _ => (xorshift(&mut seed) % (3 << 20)) as usize,
        };
        let data = match kind {
            2 | 3 => text_bytes(len, &mut seed),
            // A duplicate of the previous file: dedup must keep both readable.
            4 if !last.is_empty() => last.clone(),
            _ => random_bytes(len, &mut seed),
        };
        let d = (xorshift(&mut seed) % 3) as usize;
        let name = format!("f{n:04}");
        n += 1;
        let (attr, fh) = fs
            .create(&C, dirs[d], OsStr::new(&name), 0o644, 0, libc::O_RDWR)
            .unwrap();
        for (i, part) in data.chunks(1 << 20).enumerate() {
            fs.write(attr.ino, fh, (i << 20) as u64, part).unwrap();
        }
        fs.release(attr.ino, fh).unwrap();
        fs.forget(attr.ino, 1);
        written += data.len();
        out.insert(format!("{}{name}", dir_names[d]), blake3::hash(&data));
        last = data;
    }
    fs.sync_all().unwrap();
    out
}

/// Reads every file back through the core and compares hashes.
pub fn check_files(fs: &Fs, files: &BTreeMap<String, blake3::Hash>) {
    for (path, want) in files {
        let mut ino = ROOT_INO;
        for part in path.split('/') {
            ino = fs.lookup(&C, ino, OsStr::new(part)).unwrap().ino;
        }
        let fh = fs.open(&C, ino, libc::O_RDONLY).unwrap();
        let mut h = blake3::Hasher::new();
        let mut off = 0u64;
        loop {
            let b = fs
                .read(ino, fh, off, 1 << 20)
                .unwrap_or_else(|e| panic!("{path}: read at {off}: {e}"));
            if b.is_empty() {
                break;
            }
            h.update(&b);
            off += b.len() as u64;
        }
        fs.release(ino, fh).unwrap();
        assert_eq!(h.finalize(), *want, "{path}: content differs");
    }
}

/// Every shard file under a disk directory.
pub fn shard_files(disk: &Path) -> Vec<PathBuf> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&disk.join("shards"), &mut out);
    out.sort();
    out
}

/// Total bytes of files under the given directories.
pub fn du(paths: &[PathBuf]) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(md) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        if md.is_dir() {
            std::fs::read_dir(p)
                .unwrap()
                .map(|e| walk(&e.unwrap().path()))
                .sum()
        } else {
            md.len()
        }
    }
    paths.iter().map(|p| walk(p)).sum()
}
