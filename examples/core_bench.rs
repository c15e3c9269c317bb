//! In-process benchmark of the core (no FUSE): metadata operations per second and sequential/random I/O.
//! Run: `cargo run --release --example core_bench -- [DIR]` (see bench/core.sh).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Instant;
use valencefs::fs::{Ctx, Fs, FsOptions, MemChunks, ROOT_INO};

fn main() {
    let files: usize = std::env::var("FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let fs = Fs::start(Arc::new(MemChunks::new()), dir.path(), FsOptions::default()).unwrap();
    let c = Ctx::ROOT;
    let names: Vec<String> = (0..files).map(|i| format!("file{i}")).collect();
    let t = Instant::now();
    for n in &names {
        let (a, fh) = fs
            .create(&c, ROOT_INO, OsStr::new(n), 0o644, 0, libc::O_RDWR)
            .unwrap();
        fs.release(a.ino, fh).unwrap();
    }
    let create = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for n in &names {
        fs.lookup(&c, ROOT_INO, OsStr::new(n)).unwrap();
    }
    let stat = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for n in &names {
        fs.unlink(&c, ROOT_INO, OsStr::new(n)).unwrap();
    }
    let unlink = t.elapsed().as_secs_f64();
    let f = files as f64;
    println!("create {:.0}/s  stat {:.0}/s  unlink {:.0}/s  (create+stat+unlink of {files}: {:.0} files/s)",
        f / create, f / stat, f / unlink, f / (create + stat + unlink));
    fs.shutdown().unwrap();
}
