//! Keyless scrub finds every flipped bit, scrub --repair fixes every bad shard, a second scrub is clean, and every
//! file reads back; sampling, throttling and resuming behave.

mod maint_common;

use std::collections::{BTreeMap, BTreeSet};

use maint_common::*;
use valencefs::maint::scrub::{scrub, ScrubOptions};
use valencefs::store::format::parse_shard_name;

/// (chunk hex, shard index) of every bad shard a report lists as corrupt.
fn corrupt_set(r: &valencefs::maint::scrub::ScrubReport) -> BTreeSet<(String, usize)> {
    r.bad_chunks
        .iter()
        .flat_map(|b| b.corrupt.iter().map(move |&i| (b.id.clone(), i)))
        .collect()
}

/// The scale by default: ≥ 200 MiB of varied files, 1,000 flipped shards. VALENCEFS_SCRUB_MIB and
/// VALENCEFS_SCRUB_FLIPS scale it (bench/scrub.sh measures throughput separately).
fn scale() -> (usize, usize) {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (
        env("VALENCEFS_SCRUB_MIB", 200),
        env("VALENCEFS_SCRUB_FLIPS", 1000),
    )
}

#[test]
fn scrub_finds_and_repairs_every_flipped_shard() {
    let (mib, flips) = scale();
    let vol = Vol::new();
    let st = vol.store();
    let fs = vol.fs(st.clone());
    let files = write_files(&fs, mib << 20, 0x5eed);
    fs.shutdown().unwrap();
    drop(fs);
    drop(st);

    // Flip one random bit in `flips` random shard files, at most m = 2 per chunk so every chunk stays recoverable.
    let mut all: Vec<(usize, std::path::PathBuf)> = Vec::new();
    for (d, p) in vol.disks.iter().enumerate() {
        all.extend(shard_files(p).into_iter().map(|f| (d, f)));
    }
    assert!(all.len() > 2 * flips, "only {} shard files", all.len());
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut per_chunk: BTreeMap<String, usize> = BTreeMap::new();
    let mut flipped = BTreeSet::new();
    while flipped.len() < flips {
        let (_, path) = &all[(xorshift(&mut seed) % all.len() as u64) as usize];
        let (id, idx) = parse_shard_name(path.to_str().unwrap()).unwrap();
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        if flipped.contains(&(hex.clone(), idx)) || per_chunk.get(&hex).copied().unwrap_or(0) >= 2 {
            continue;
        }
        let mut bytes = std::fs::read(path).unwrap();
        let bit = xorshift(&mut seed) % (bytes.len() as u64 * 8);
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        std::fs::write(path, &bytes).unwrap();
        *per_chunk.entry(hex.clone()).or_default() += 1;
        flipped.insert((hex, idx));
    }

    // A 10 % sample sees about a tenth of the chunks and only real corruption.
    let disks = vol.dir_disks();
    let sample = scrub(
        &disks,
        None,
        &ScrubOptions {
            sample_percent: Some(10.0),
            ..Default::default()
        },
    )
    .unwrap();
    let frac = sample.chunks_checked as f64 / sample.chunks_total as f64;
    assert!((0.05..0.15).contains(&frac), "sampled {frac}");
    assert!(corrupt_set(&sample).is_subset(&flipped));

    // A keyless scrub in two sittings (stopped after 100 chunks, then resumed) finds exactly the flipped shards.
    let progress = vol.root.path().join("scrub.progress");
    let opts = ScrubOptions {
        progress_file: Some(progress.clone()),
        max_chunks: Some(100),
        ..Default::default()
    };
    let first = scrub(&disks, None, &opts).unwrap();
    assert!(!first.complete);
    assert_eq!(first.chunks_checked, 100);
    assert!(progress.exists());
    let second = scrub(
        &disks,
        None,
        &ScrubOptions {
            max_chunks: None,
            ..opts.clone()
        },
    )
    .unwrap();
    assert!(second.complete);
    assert!(second.resumed_after.is_some());
    assert_eq!(second.chunks_resumed_past, 100);
    assert_eq!(
        first.chunks_checked + second.chunks_checked,
        first.chunks_total
    );
    assert!(
        !progress.exists(),
        "a complete scrub removes its progress file"
    );
    let found: BTreeSet<_> = corrupt_set(&first)
        .union(&corrupt_set(&second))
        .cloned()
        .collect();
    assert_eq!(
        found, flipped,
        "keyless scrub must find exactly the flipped shards"
    );
    assert_eq!(first.unrecoverable + second.unrecoverable, 0);
    let per_disk: u64 = first
        .disks
        .iter()
        .chain(&second.disks)
        .map(|d| d.corrupt)
        .sum();
    assert_eq!(per_disk, flips as u64);
    assert_eq!(first.exit_code(), 1);

    // Repair (with the key) rewrites every bad shard.
    let st = vol.store();
    let fixed = scrub(&disks, Some(&st), &ScrubOptions::default()).unwrap();
    assert_eq!(corrupt_set(&fixed), flipped);
    assert_eq!(fixed.repaired_shards(), flips as u64);
    assert!(fixed.clean(), "{}", fixed.summary());
    assert_eq!(fixed.exit_code(), 0);
    st.sync().unwrap();
    drop(st);

    // A second keyless scrub is clean, throttled to 40 MB/s over a part of the volume.
    let again = scrub(&disks, None, &ScrubOptions::default()).unwrap();
    assert_eq!(again.bad_shards(), 0, "{:?}", again.bad_chunks.first());
    assert!(again.complete && again.clean());
    let slow = scrub(
        &disks,
        None,
        &ScrubOptions {
            rate_mb_s: Some(40.0),
            max_chunks: Some(128),
            ..Default::default()
        },
    )
    .unwrap();
    let floor = slow.bytes_checked as f64 / 40e6;
    assert!(
        slow.seconds >= floor * 0.9,
        "{} s for {} bytes at 40 MB/s",
        slow.seconds,
        slow.bytes_checked
    );
    serde_json::to_string(&again).unwrap();

    // Every file reads back right.
    let st = vol.store();
    let fs = vol.fs(st);
    check_files(&fs, &files);
    fs.shutdown().unwrap();
}
