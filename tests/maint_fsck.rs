//! fsck detects each kind of metadata damage it claims to (exit 4 before repair), repair fixes it (exit 1), and a
//! second run is clean (exit 0); no file content is lost along the way.

mod maint_common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use maint_common::{xorshift, C};
use valencefs::fs::{Chunks, Fs, FsOptions, ROOT_INO};
use valencefs::maint::fsck::{exit_code_for, fsck};
use valencefs::maint::open_meta;
use valencefs::meta::{Inode, Meta};
use valencefs::store::scan::shard_name_of;
use valencefs::store::{ChunkerParams, CreateOptions, Disk, KdfParams, MemDisk, Store};

struct Setup {
    _dir: tempfile::TempDir,
    state: PathBuf,
    store: Arc<Store>,
    mem: Vec<Arc<MemDisk>>,
    /// path → content
    files: Vec<(String, Vec<u8>)>,
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..len).map(|_| xorshift(&mut s) as u8).collect()
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mem: Vec<Arc<MemDisk>> = (0..5).map(|_| Arc::new(MemDisk::new())).collect();
    let disks: Vec<Arc<dyn Disk>> = mem.iter().map(|m| m.clone() as Arc<dyn Disk>).collect();
    let opts = CreateOptions {
        kdf: KdfParams::insecure_fast(),
        chunker: ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        },
        ..Default::default()
    };
    let store = Arc::new(Store::create(disks, &opts, b"pw").unwrap());
    let fs = start(&store, &state);
    let d = fs.mkdir(&C, ROOT_INO, OsStr::new("d"), 0o755, 0).unwrap();
    fs.mkdir(&C, d.ino, OsStr::new("e"), 0o755, 0).unwrap();
    let files = vec![
        ("x".to_string(), data(1 << 20, 1)),
        ("d/y".to_string(), data(300_000, 2)),
        ("d/e/w".to_string(), data(5000, 3)),
    ];
    let mut x_ino = 0;
    for (path, content) in &files {
        let (parent, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (lookup(&fs, dir), name),
            None => (ROOT_INO, path.as_str()),
        };
        let (a, fh) = fs
            .create(&C, parent, OsStr::new(name), 0o644, 0, libc::O_RDWR)
            .unwrap();
        fs.write(a.ino, fh, 0, content).unwrap();
        fs.release(a.ino, fh).unwrap();
        if path == "x" {
            x_ino = a.ino;
        }
    }
    fs.link(&C, x_ino, d.ino, OsStr::new("z")).unwrap();
    fs.shutdown().unwrap();
    let mut files = files;
    files.push(("d/z".to_string(), files[0].1.clone()));
    Setup {
        _dir: dir,
        state,
        store,
        mem,
        files,
    }
}

fn start(store: &Arc<Store>, state: &Path) -> Arc<Fs> {
    Fs::start(
        store.clone() as Arc<dyn Chunks>,
        state,
        FsOptions::default(),
    )
    .unwrap()
}

fn lookup(fs: &Fs, path: &str) -> u64 {
    let mut ino = ROOT_INO;
    for part in path.split('/') {
        ino = fs.lookup(&C, ino, OsStr::new(part)).unwrap().ino;
    }
    ino
}

fn read_all(fs: &Fs, path: &str) -> Vec<u8> {
    let ino = lookup(fs, path);
    let fh = fs.open(&C, ino, libc::O_RDONLY).unwrap();
    let mut out = Vec::new();
    loop {
        let b = fs.read(ino, fh, out.len() as u64, 1 << 20).unwrap();
        if b.is_empty() {
            break;
        }
        out.extend_from_slice(&b);
    }
    fs.release(ino, fh).unwrap();
    out
}

fn inode_of(meta: &Meta, parent: u64, name: &str) -> Inode {
    let mut tx = meta.write().unwrap();
    let ino = tx.lookup(parent, name.as_bytes()).unwrap().unwrap();
    tx.inode(ino).unwrap().unwrap()
}

/// Injects damage, then checks: fsck reports `kind` with exit 4, repair exits 1, a re-run exits 0, and the files
/// (plus `extra`, where repair put things) read back.
fn damage_and_repair(kind: &str, inject: impl FnOnce(&Meta, &Store), extra: impl FnOnce(&Fs)) {
    let s = setup();
    {
        let meta = open_meta(&s.state).unwrap();
        let clean = fsck(&meta, Some(&s.store), false).unwrap();
        assert_eq!(clean.exit_code(), 0, "fresh volume: {:?}", clean.problems);
        inject(&meta, &s.store);
        meta.commit_durable().unwrap();
        let found = fsck(&meta, Some(&s.store), false).unwrap();
        assert!(
            found.problems.iter().any(|p| p.kind == kind && !p.fixed),
            "{kind} not reported: {:?}",
            found.problems
        );
        assert_eq!(found.exit_code(), 4);
        let fixed = fsck(&meta, Some(&s.store), true).unwrap();
        assert_eq!(fixed.exit_code(), 1, "{:?}", fixed.problems);
        let again = fsck(&meta, Some(&s.store), false).unwrap();
        assert_eq!(again.exit_code(), 0, "after repair: {:?}", again.problems);
    }
    let fs = start(&s.store, &s.state);
    for (path, content) in &s.files {
        if kind == "orphan-inode" && path == "d/y" {
            continue;
        }
        assert!(
            read_all(&fs, path) == *content,
            "{path} differs after repairing {kind}"
        );
    }
    extra(&fs);
    fs.shutdown().unwrap();
}

#[test]
fn wrong_nlink_is_found_and_fixed() {
    damage_and_repair(
        "wrong-nlink",
        |meta, _| {
            let mut x = inode_of(meta, ROOT_INO, "x");
            assert_eq!(x.nlink, 2);
            x.nlink = 7;
            let mut d = inode_of(meta, ROOT_INO, "d");
            d.nlink = 9;
            let mut tx = meta.write().unwrap();
            tx.put_inode(&x).unwrap();
            tx.put_inode(&d).unwrap();
        },
        |fs| assert_eq!(fs.getattr(lookup(fs, "x")).unwrap().nlink, 2),
    );
}

#[test]
fn orphan_inode_goes_to_lost_found_with_its_data() {
    let y_ino = std::cell::Cell::new(0);
    damage_and_repair(
        "orphan-inode",
        |meta, _| {
            let d = inode_of(meta, ROOT_INO, "d");
            let mut tx = meta.write().unwrap();
            y_ino.set(tx.remove_dirent(d.ino, b"y").unwrap().unwrap());
        },
        |fs| {
            let name = format!("lost+found/#{}", y_ino.get());
            assert_eq!(read_all(fs, &name), data(300_000, 2));
            assert_eq!(fs.getattr(lookup(fs, &name)).unwrap().nlink, 1);
        },
    );
}

#[test]
fn dangling_dirent_is_removed() {
    damage_and_repair(
        "dangling-dirent",
        |meta, _| {
            let mut tx = meta.write().unwrap();
            let mut root = tx.inode(ROOT_INO).unwrap().unwrap();
            tx.add_dirent(&mut root, b"ghost", 999_999, libc::S_IFREG)
                .unwrap();
            tx.put_inode(&root).unwrap();
        },
        |fs| assert!(fs.lookup(&C, ROOT_INO, OsStr::new("ghost")).is_err()),
    );
}

#[test]
fn wrong_refcount_and_sizes_are_fixed() {
    damage_and_repair(
        "wrong-refcount",
        |meta, _| {
            let mut tx = meta.write().unwrap();
            let (id, mut row) = tx.all_chunks().unwrap()[0];
            row.refs += 3;
            tx.put_chunk_row(&id, &row).unwrap();
            let mut x = tx.inode(2).unwrap().unwrap();
            x.data_bytes += 1;
            tx.put_inode(&x).unwrap();
        },
        |_| {},
    );
}

#[test]
fn degraded_chunk_is_found_and_rebuilt() {
    damage_and_repair(
        "chunk-degraded",
        |_, store| {
            // Lose one shard of a few chunks, on different disks.
            let disks = store.disks();
            for (n, id) in store.list_chunks().unwrap().iter().take(5).enumerate() {
                let d = store.shard_disk(id, n);
                disks[d].delete(&shard_name_of(id, n)).unwrap();
            }
        },
        |_| {},
    );
}

#[test]
fn locked_metadata_is_an_operational_error() {
    let s = setup();
    let fs = start(&s.store, &s.state);
    let r = open_meta(&s.state).and_then(|m| fsck(&m, None, false));
    let msg = r.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("mounted"), "{msg}");
    assert_eq!(exit_code_for(&r), 8);
    fs.shutdown().unwrap();
    drop(s.mem);
}
