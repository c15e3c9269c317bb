//! The core over the real chunk store on directory disks: memory stays bounded, deleted data returns its space,
//! and files survive a reopen of the whole volume.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use valencefs::fs::{Chunks, Ctx, Fs, FsOptions, ROOT_INO};
use valencefs::store::{open_dir_disk, CreateOptions, KdfParams, Store};

const C: Ctx = Ctx::ROOT;

fn disks(root: &Path) -> Vec<PathBuf> {
    (0..5).map(|i| root.join(format!("disk{i}"))).collect()
}

fn store(root: &Path, create: bool) -> Arc<Store> {
    let d = disks(root).iter().map(|p| open_dir_disk(p)).collect();
    let s = if create {
        let opts = CreateOptions {
            kdf: KdfParams::insecure_fast(),
            ..Default::default()
        };
        Store::create(d, &opts, b"pw").unwrap()
    } else {
        Store::open(d, b"pw").unwrap()
    };
    Arc::new(s)
}

fn du(paths: &[PathBuf]) -> u64 {
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

fn vm_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn pseudo_random(buf: &mut [u8], seed: &mut u64) {
    for b in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let v = seed.to_le_bytes();
        b.copy_from_slice(&v[..b.len()]);
    }
}

/// One test per binary concern: peak RSS is per process, so this file holds the memory test alone with the
/// space test run after it in the same function.
#[test]
fn memory_stays_bounded_and_deletes_return_space() {
    // As the daemon does (valencefs::tune_allocator): large buffers come from mmap and go back when freed.
    valencefs::tune_allocator();
    let root = tempfile::tempdir().unwrap();
    let st = store(root.path(), true);
    let empty = du(&disks(root.path()));
    let budget: u64 = 32 << 20;
    let opts = FsOptions {
        cache_size: budget,
        read_cache_size: 4 << 20,
        ..Default::default()
    };
    let state = root.path().join("state");
    let fs = Fs::start(st.clone() as Arc<dyn Chunks>, &state, opts.clone()).unwrap();
    let before = vm_kib("VmRSS:");
    let (a, fh) = fs
        .create(&C, ROOT_INO, OsStr::new("big"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    let total: u64 = 4 * budget;
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut peak = 0;
    for i in 0..total / buf.len() as u64 {
        pseudo_random(&mut buf, &mut seed);
        hasher.update(&buf);
        fs.write(a.ino, fh, i * buf.len() as u64, &buf).unwrap();
        peak = peak.max(vm_kib("VmRSS:"));
    }
    fs.fsync(a.ino, fh, false).unwrap();
    fs.release(a.ino, fh).unwrap();
    let grown_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "resident memory grew {grown_mib} MiB writing {} MiB",
        total >> 20
    );
    assert!(
        grown_mib < (budget >> 20) + 64,
        "resident memory grew {grown_mib} MiB writing {} MiB with a {} MiB budget",
        total >> 20,
        budget >> 20
    );
    let stored = du(&disks(root.path())) - empty;
    assert!(
        stored > total,
        "3+2 stores more than it is given: {stored} for {total}"
    );
    fs.shutdown().unwrap();
    drop(fs);

    // Reopen everything from the disks and the state directory: the bytes are the same.
    let st = store(root.path(), false);
    let fs = Fs::start(st as Arc<dyn Chunks>, &state, opts).unwrap();
    let a = fs.lookup(&C, ROOT_INO, OsStr::new("big")).unwrap();
    assert_eq!(a.size, total);
    let fh = fs.open(&C, a.ino, libc::O_RDONLY).unwrap();
    let mut check = blake3::Hasher::new();
    let mut off = 0;
    while off < total {
        let b = fs.read(a.ino, fh, off, 1 << 20).unwrap();
        assert!(!b.is_empty());
        check.update(&b);
        off += b.len() as u64;
    }
    fs.release(a.ino, fh).unwrap();
    assert_eq!(check.finalize(), hasher.finalize());

    // Deleting the file and committing holds its chunks: the metadata snapshot the disks point at (taken at the
    // unmount) still names them, and `recover` could bring it back (FORMAT.md §10).
    fs.unlink(&C, ROOT_INO, OsStr::new("big")).unwrap();
    fs.forget(a.ino, 1);
    fs.sync_all().unwrap();
    let held = du(&disks(root.path()));
    assert!(
        held > total,
        "freed before a snapshot replaced the one naming them: {held} bytes left"
    );
    // The next snapshot still keeps it as the pointer's fallback; the one after that replaces it too, and the
    // disks return to (near) their empty usage.
    fs.snapshot_now().unwrap();
    assert!(
        du(&disks(root.path())) > total,
        "freed while still the fallback"
    );
    fs.snapshot_now().unwrap();
    let left = du(&disks(root.path()));
    assert!(
        left < empty + (1 << 20),
        "after delete: {left} bytes on disks, empty volume had {empty}"
    );
    fs.shutdown().unwrap();
}
