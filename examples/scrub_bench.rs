//! Scrub and rebuild throughput: builds a 3+2 volume over five directory disks, then measures `cat` of every shard
//! file to /dev/null, the keyless scrub (1 and 2 threads) over the same files, and `disk replace` of one disk.
//! Usage: `cargo run --example scrub_bench -- [MiB of data, default 256] [work dir, default a temp dir]`
//! (see `bench/scrub.sh`). Page cache warm for every pass (the first cat warms it), so this measures the CPU side.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use valencefs::maint::replace::replace;
use valencefs::maint::scrub::{scrub, ScrubOptions};
use valencefs::store::{open_dir_disk, CreateOptions, Disk, KdfParams, Store};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map(|s| s.parse().expect("MiB")).unwrap_or(256);
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let mut paths: Vec<PathBuf> = (0..5)
        .map(|i| root.join(format!("bench-disk{i}")))
        .collect();
    let disks =
        |p: &[PathBuf]| -> Vec<Arc<dyn Disk>> { p.iter().map(|p| open_dir_disk(p)).collect() };
    let opts = CreateOptions {
        kdf: KdfParams::insecure_fast(),
        compression: false,
        ..Default::default()
    };
    let store = Store::create(disks(&paths), &opts, b"bench").unwrap();
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for b in buf.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            b.copy_from_slice(&seed.to_le_bytes());
        }
        let id = store.chunk_id(&buf);
        store.put(&id, &buf).unwrap();
    }
    store.sync().unwrap();
    drop(store);
    let dirs: Vec<String> = paths
        .iter()
        .map(|p| p.join("shards").display().to_string())
        .collect();
    let cat = || {
        let t = Instant::now();
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find {} -type f -print0 | xargs -0 cat > /dev/null",
                dirs.join(" ")
            ))
            .status()
            .unwrap();
        assert!(st.success());
        t.elapsed().as_secs_f64()
    };
    cat(); // warm the page cache
    let mut cat_s = f64::MAX;
    let mut scrub1 = (0.0, f64::MAX);
    let mut scrub2 = (0.0, f64::MAX);
    for _ in 0..3 {
        cat_s = cat_s.min(cat());
        for (threads, best) in [(1, &mut scrub1), (2, &mut scrub2)] {
            let r = scrub(
                &disks(&paths),
                None,
                &ScrubOptions {
                    threads,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(r.bad_shards(), 0);
            if r.seconds < best.1 {
                *best = (r.bytes_checked as f64, r.seconds);
            }
        }
    }
    let bytes = scrub1.0;
    let cat_mbs = bytes / 1e6 / cat_s;
    println!(
        "data {mib} MiB, shard bytes {:.1} MB in {} disks",
        bytes / 1e6,
        paths.len()
    );
    println!("cat of all shard files   : {cat_mbs:8.0} MB/s (best of 3, warm cache)");
    for (name, (b, s)) in [
        ("keyless scrub, 1 thread ", scrub1),
        ("keyless scrub, 2 threads", scrub2),
    ] {
        let mbs = b / 1e6 / s;
        println!("{name}: {mbs:8.0} MB/s = {:.2}x cat", mbs / cat_mbs);
    }
    // Rebuild: disk 2 is lost, a blank directory replaces it.
    std::fs::remove_dir_all(&paths[2]).unwrap();
    paths[2] = root.join("bench-disk2-new");
    std::fs::create_dir_all(&paths[2]).unwrap();
    let store = Store::open(disks(&paths), b"bench").unwrap();
    let r = replace(&store, 2, &mut |_| true).unwrap();
    assert!(r.complete && r.failed.is_empty());
    println!(
        "disk replace            : {:8.0} MB/s of rebuilt shards ({:.1} MB in {:.2} s)",
        r.mb_per_s(),
        r.progress.bytes_rebuilt as f64 / 1e6,
        r.seconds
    );
    for p in &paths {
        let _ = std::fs::remove_dir_all(p);
    }
}
