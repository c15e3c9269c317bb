//! fsx in miniature on a real mount: random pwrite / pread / truncate / punch hole / zero range / fallocate / fsync / reopen on
//! two files from two threads, each checked against an in-memory copy after every read and at the end, with a small
//! write-back cache so flushes and back-pressure happen all the time; then unmount, remount, compare, fsck.
//! Bounded in time (about 12 s of operations). `FSX_SEED=n` replays a run. For long runs use `bench/fsx.sh`
//! with the real fsx.

mod common;
use common::*;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

const MAX_LEN: u64 = 400_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn open(p: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .unwrap()
}

fn fallocate(f: &File, mode: i32, off: u64, len: u64) {
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) };
    assert_eq!(
        r,
        0,
        "fallocate({mode}, {off}, {len}): {}",
        std::io::Error::last_os_error()
    );
}

/// Runs random operations on `path` until `deadline`; returns the model of the file's bytes and the op count.
fn exercise(path: &Path, seed: u64, deadline: Instant) -> (Vec<u8>, u64) {
    let mut rng = Rng(seed | 1);
    let mut f = open(path);
    let mut model: Vec<u8> = Vec::new();
    let mut log: Vec<String> = Vec::new();
    let mut ops = 0u64;
    while Instant::now() < deadline {
        ops += 1;
        let op = rng.below(100);
        let off = rng.below(MAX_LEN);
        // Mostly small operations (patch chunks), sometimes large ones (re-chunked regions).
        let len = if rng.below(4) == 0 {
            1 + rng.below(120_000)
        } else {
            1 + rng.below(5_000)
        };
        let len = len.min(MAX_LEN - off).max(1);
        let entry = match op {
            0..=39 => {
                let byte = (ops % 251) as u8 + 1;
                let data: Vec<u8> = (0..len).map(|i| byte ^ (i % 13) as u8).collect();
                f.write_all_at(&data, off).unwrap();
                let end = (off + len) as usize;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
                format!("write {off:#x} +{len:#x}")
            }
            40..=64 => {
                let mut buf = vec![0u8; len as usize];
                let n = f.read_at(&mut buf, off).unwrap();
                let have = model.get(off as usize..).unwrap_or(&[]);
                let want = have.len().min(len as usize);
                let good = n == want && buf[..n] == have[..n];
                let entry = format!("read {off:#x} +{len:#x} -> {n:#x}");
                if !good {
                    let at = (0..n.min(want)).find(|&i| buf[i] != have[i]);
                    log.push(entry);
                    let tail = log[log.len().saturating_sub(30)..].join("\n");
                    panic!(
                        "seed {seed}: op {ops}: read {off:#x} +{len:#x} got {n:#x} bytes, want {want:#x}; \
                         first bad byte at {:?}; file size {:#x}\nlast ops:\n{tail}",
                        at.map(|i| off as usize + i),
                        model.len()
                    );
                }
                entry
            }
            65..=74 => {
                let size = rng.below(MAX_LEN);
                f.set_len(size).unwrap();
                model.resize(size as usize, 0);
                format!("truncate {size:#x}")
            }
            81..=84 => {
                let keep = rng.below(2) == 0;
                let mode =
                    libc::FALLOC_FL_ZERO_RANGE | if keep { libc::FALLOC_FL_KEEP_SIZE } else { 0 };
                fallocate(&f, mode, off, len);
                let end = (off + len) as usize;
                if !keep && model.len() < end {
                    model.resize(end, 0);
                }
                let stop = end.min(model.len());
                if (off as usize) < stop {
                    model[off as usize..stop].fill(0);
                }
                format!("zero range {off:#x} +{len:#x} keep_size={keep}")
            }
            75..=80 => {
                fallocate(
                    &f,
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    off,
                    len,
                );
                let end = ((off + len) as usize).min(model.len());
                if (off as usize) < end {
                    model[off as usize..end].fill(0);
                }
                format!("punch {off:#x} +{len:#x}")
            }
            85..=89 => {
                fallocate(&f, 0, off, len);
                let end = (off + len) as usize;
                if model.len() < end {
                    model.resize(end, 0);
                }
                format!("fallocate {off:#x} +{len:#x}")
            }
            90..=94 => {
                f.sync_all().unwrap();
                "fsync".to_string()
            }
            _ => {
                drop(f);
                f = open(path);
                "close+open".to_string()
            }
        };
        log.push(entry);
        let size = f.metadata().unwrap().len();
        assert_eq!(
            size,
            model.len() as u64,
            "seed {seed}: op {ops} ({}): size",
            log.last().unwrap()
        );
    }
    (model, ops)
}

#[test]
fn random_ops_match_a_model_through_a_small_cache() {
    if !fuse_available() {
        return;
    }
    let seed: u64 = std::env::var("FSX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("FSX_SEED={seed}");
    let v = Vol::new("minimal");
    let g = v.mount_with("cache_size=256K");
    let deadline = Instant::now() + Duration::from_secs(12);
    let paths = [v.mnt.join("a"), v.mnt.join("b")];
    let results: Vec<(Vec<u8>, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                s.spawn(move || exercise(p, seed.wrapping_add(i as u64 * 7919), deadline))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    eprintln!("ops: {:?}", results.iter().map(|r| r.1).collect::<Vec<_>>());
    g.umount();
    let g = v.mount();
    for (p, (model, _)) in paths.iter().zip(&results) {
        let got = std::fs::read(p).unwrap();
        assert!(
            got == *model,
            "seed {seed}: {} differs after remount",
            p.display()
        );
    }
    g.umount();
    let out = vfs(&["fsck", v.config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "fsck: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}
