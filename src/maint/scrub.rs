//! Scrub: read every shard of every chunk on every disk and verify it against its header's BLAKE3 checksums,
//! without the key; optionally repair what is bad through the opened store (which needs the key).
//!
//! The keyless scan learns the volume (id, k, m, disk count) from the disk headers, the chunk set from the shard
//! names, and each shard's health from its header and payload checksums (FORMAT.md §12). Chunks are visited in id
//! order so a progress file holding the last id done makes an interrupted scrub resumable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::crypto::hex;
use crate::store::scan::{
    check_shard, check_stripe, list_shards, list_stripes, read_disk_header, shard_disk,
    stripe_disk, ShardCheck, ShardExpect,
};
use crate::store::{ChunkId, Disk, Store};

/// How to scrub.
#[derive(Clone, Debug)]
pub struct ScrubOptions {
    /// Verify only this percentage of the chunks (a deterministic pseudo-random subset chosen by `sample_seed`).
    pub sample_percent: Option<f64>,
    pub sample_seed: u64,
    /// Throttle reads to about this many MB/s (10^6 bytes).
    pub rate_mb_s: Option<f64>,
    /// Where to keep the last chunk id done; an existing file of this volume makes the scrub resume after it. It is
    /// removed when a scrub completes.
    pub progress_file: Option<PathBuf>,
    /// Verifier threads.
    pub threads: usize,
    /// Stop (resumably) after this many chunks.
    pub max_chunks: Option<usize>,
}

impl Default for ScrubOptions {
    fn default() -> Self {
        ScrubOptions {
            sample_percent: None,
            sample_seed: 0,
            rate_mb_s: None,
            progress_file: None,
            threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(8),
            max_chunks: None,
        }
    }
}

/// Per-disk counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiskScrub {
    pub index: usize,
    pub path: String,
    /// What the keyless scan made of the disk header: ok, missing, unreadable, stale, foreign.
    pub state: String,
    /// Shards expected on this disk that were looked at.
    pub checked: u64,
    pub missing: u64,
    pub corrupt: u64,
    /// Read errors from the disk.
    pub unreadable: u64,
    /// Shards rewritten by `--repair`.
    pub repaired: u64,
    /// Bytes of shard files read and verified.
    pub bytes: u64,
}

/// A chunk with at least one bad or missing shard.
#[derive(Clone, Debug, Serialize)]
pub struct BadChunk {
    pub id: String,
    pub missing: Vec<usize>,
    pub corrupt: Vec<usize>,
    pub unreadable: Vec<usize>,
    pub good: usize,
    /// At least k good shards: the chunk can be rebuilt.
    pub recoverable: bool,
    /// Shard indexes rewritten by repair.
    pub repaired: Vec<usize>,
    pub repair_error: Option<String>,
}

/// What a scrub found (and repaired).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScrubReport {
    pub volume_id: String,
    pub k: u8,
    pub m: u8,
    pub disks: Vec<DiskScrub>,
    /// Chunk ids seen on the disks.
    pub chunks_total: u64,
    pub chunks_checked: u64,
    /// Left out by `sample_percent`.
    pub chunks_sampled_out: u64,
    /// Skipped because an earlier, interrupted scrub already did them.
    pub chunks_resumed_past: u64,
    pub resumed_after: Option<String>,
    pub bad_chunks: Vec<BadChunk>,
    /// Chunks with fewer than k good shards.
    pub unrecoverable: u64,
    /// Shard files lying on a disk other than the one their index maps to (ignored).
    pub misplaced_shards: u64,
    /// Packed stripes (format v3) whose files were all read and whose chunks are counted in the chunk figures.
    pub stripes_checked: u64,
    /// Stripes no file of which has a readable index: their chunks are unknown, and unrecoverable.
    pub stripes_unreadable: u64,
    /// Stripe files rewritten by `--repair`.
    pub stripe_files_repaired: u64,
    pub bytes_checked: u64,
    pub seconds: f64,
    /// The whole (sampled) chunk set was visited; false when stopped by `max_chunks`.
    pub complete: bool,
    pub repair: bool,
}

impl ScrubReport {
    /// No bad shard left unrepaired.
    pub fn clean(&self) -> bool {
        self.bad_chunks.iter().all(|b| {
            b.repair_error.is_none()
                && b.repaired.len() == b.missing.len() + b.corrupt.len() + b.unreadable.len()
        })
    }

    /// Shards found bad (missing, corrupt or unreadable).
    pub fn bad_shards(&self) -> u64 {
        self.disks
            .iter()
            .map(|d| d.missing + d.corrupt + d.unreadable)
            .sum()
    }

    pub fn repaired_shards(&self) -> u64 {
        self.disks.iter().map(|d| d.repaired).sum()
    }

    /// 0 clean (or everything repaired), 1 bad shards found and not (all) repaired, 4 data unrecoverable.
    pub fn exit_code(&self) -> i32 {
        if self.unrecoverable > 0 || self.stripes_unreadable > 0 {
            4
        } else if !self.clean() {
            1
        } else {
            0
        }
    }

    /// MB/s (10^6 bytes) of shard bytes verified.
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes_checked as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }

    /// One summary line.
    pub fn summary(&self) -> String {
        format!(
            "scrub {}: {} chunks checked ({} shards bad, {} repaired, {} chunks unrecoverable), {:.1} MB in {:.1} s ({:.0} MB/s){}",
            if self.complete { "done" } else { "paused" },
            self.chunks_checked,
            self.bad_shards(),
            self.repaired_shards(),
            self.unrecoverable,
            self.bytes_checked as f64 / 1e6,
            self.seconds,
            self.mb_per_s(),
            if self.complete { "" } else { " — run again to resume" }
        )
    }
}

/// The volume as the disk headers describe it, without the key.
pub struct KeylessVolume {
    pub expect: ShardExpect,
    /// The format version of the newest header (unauthenticated here: no key).
    pub format_version: u16,
    pub disk_count: usize,
    /// Per configured disk: usable for reading shards, and its state name.
    pub disks: Vec<(bool, String)>,
}

/// Reads the headers of `disks` and works out the volume (the id most disks carry, the newest epoch's layout).
pub fn keyless_volume(disks: &[Arc<dyn Disk>]) -> Result<KeylessVolume> {
    let headers: Vec<Result<Option<crate::store::format::DiskHeader>>> =
        disks.iter().map(|d| read_disk_header(d.as_ref())).collect();
    let mut votes: BTreeMap<[u8; 16], usize> = BTreeMap::new();
    for h in headers.iter().flatten().flatten() {
        *votes.entry(h.volume_id).or_default() += 1;
    }
    let Some((&vol, _)) = votes.iter().max_by_key(|(_, &n)| n) else {
        return Err(Error::Volume(format!(
            "none of the {} disks holds a readable valencefs header",
            disks.len()
        )));
    };
    let newest = headers
        .iter()
        .flatten()
        .flatten()
        .filter(|h| h.volume_id == vol)
        .max_by_key(|h| h.epoch)
        .expect("voted")
        .clone();
    if newest.disk_count as usize != disks.len() {
        return Err(Error::Volume(format!(
            "volume has {} disks, {} configured",
            newest.disk_count,
            disks.len()
        )));
    }
    let states = headers
        .iter()
        .enumerate()
        .map(|(i, h)| match h {
            Ok(None) => (false, "missing".to_string()),
            Err(_) => (false, "unreadable".to_string()),
            Ok(Some(h)) if h.volume_id != vol => (false, "foreign".to_string()),
            Ok(Some(h)) if h.disk_index as usize != i => (false, "wrong-slot".to_string()),
            // A stale disk missed a header rewrite but its shards are still checksummed and valid.
            Ok(Some(h)) if h.epoch < newest.epoch => (true, "stale".to_string()),
            Ok(Some(_)) => (true, "ok".to_string()),
        })
        .collect();
    Ok(KeylessVolume {
        expect: ShardExpect {
            volume_id: vol,
            k: newest.k,
            m: newest.m,
        },
        format_version: newest.version,
        disk_count: disks.len(),
        disks: states,
    })
}

/// Result of checking every shard of one chunk.
pub(crate) struct ChunkResult {
    id: ChunkId,
    /// Per shard index: (disk, check).
    pub(crate) shards: Vec<(usize, ShardCheck)>,
}

pub(crate) fn check_chunk(
    disks: &[Arc<dyn Disk>],
    vol: &KeylessVolume,
    id: ChunkId,
) -> ChunkResult {
    let n = (vol.expect.k + vol.expect.m) as usize;
    let shards = (0..n)
        .map(|i| {
            let d = shard_disk(&id, i, vol.disk_count);
            let c = if vol.disks[d].0 {
                check_shard(disks[d].as_ref(), &id, i, &vol.expect)
            } else {
                ShardCheck::Missing
            };
            (d, c)
        })
        .collect();
    ChunkResult { id, shards }
}

/// The stripe hash of a chunk as its shards on the disks say (keyless); `None` unless every shard is good.
pub fn stripe_on_disks(
    disks: &[Arc<dyn Disk>],
    vol: &KeylessVolume,
    id: &ChunkId,
) -> Option<[u8; 32]> {
    stripe_of(&check_chunk(disks, vol, *id))
}

pub(crate) fn stripe_of(r: &ChunkResult) -> Option<[u8; 32]> {
    let hashes: Option<Vec<[u8; 32]>> = r
        .shards
        .iter()
        .map(|(_, c)| match c {
            ShardCheck::Good { header, .. } => Some(header.payload_hash),
            _ => None,
        })
        .collect();
    hashes.map(|h| crate::store::format::stripe_hash(&h))
}

/// Counts of good shards per chunk, keyless; used by fsck to check that referenced chunks are readable.
pub fn good_shards(disks: &[Arc<dyn Disk>], vol: &KeylessVolume, id: &ChunkId) -> usize {
    check_chunk(disks, vol, *id)
        .shards
        .iter()
        .filter(|(_, c)| matches!(c, ShardCheck::Good { .. }))
        .count()
}

pub(crate) fn sampled(seed: u64, id: &ChunkId, percent: f64) -> bool {
    let mut h = blake3::Hasher::new();
    h.update(b"valencefs scrub sample");
    h.update(&seed.to_le_bytes());
    h.update(&id.0);
    let v = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8"));
    ((v % 1_000_000) as f64) < percent * 10_000.0
}

const PROGRESS_MAGIC: &str = "valencefs-scrub-progress v1";

fn read_progress(path: &PathBuf, vol: &[u8; 16]) -> Option<ChunkId> {
    let s = std::fs::read_to_string(path).ok()?;
    let mut it = s.split_whitespace();
    let magic = [it.next()?, it.next()?].join(" ");
    if magic != PROGRESS_MAGIC || it.next()? != hex(vol) {
        return None;
    }
    let h = it.next()?;
    let mut id = [0u8; 32];
    if h.len() != 64 {
        return None;
    }
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(ChunkId(id))
}

fn write_progress(path: &PathBuf, vol: &[u8; 16], last: &ChunkId) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let body = format!("{PROGRESS_MAGIC} {} {}\n", hex(vol), last.to_hex());
    std::fs::write(&tmp, body).map_err(|e| Error::io(tmp.display(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display(), e))
}

/// Chunks verified per batch: the unit of parallelism, throttling and progress saving.
const BATCH: usize = 64;

/// Scrubs the volume on `disks` (configuration order). Without `repair` this needs no key and writes nothing to the
/// disks. With `repair` (a `Store` opened over the same disks, so with the key) every chunk with a bad or missing
/// shard goes through [`Store::scrub`], which rebuilds from any k good shards and rewrites the bad ones.
pub fn scrub(
    disks: &[Arc<dyn Disk>],
    repair: Option<&Store>,
    opts: &ScrubOptions,
) -> Result<ScrubReport> {
    scrub_with_progress(disks, repair, opts, &mut |_, _| {})
}

/// [`scrub`], calling `progress(chunks done, chunks to do)` after every batch (for a progress bar).
pub fn scrub_with_progress(
    disks: &[Arc<dyn Disk>],
    repair: Option<&Store>,
    opts: &ScrubOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ScrubReport> {
    let start = Instant::now();
    let vol = keyless_volume(disks)?;
    let (k, m) = (vol.expect.k as usize, vol.expect.m as usize);
    let mut report = ScrubReport {
        volume_id: hex(&vol.expect.volume_id),
        k: vol.expect.k,
        m: vol.expect.m,
        repair: repair.is_some(),
        disks: disks
            .iter()
            .enumerate()
            .map(|(i, d)| DiskScrub {
                index: i,
                path: d.describe(),
                state: vol.disks[i].1.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let mut ids = BTreeSet::new();
    for (d, disk) in disks.iter().enumerate() {
        if !vol.disks[d].0 {
            continue;
        }
        for (id, i) in list_shards(disk.as_ref())? {
            if i >= k + m || shard_disk(&id, i, vol.disk_count) != d {
                report.misplaced_shards += 1;
                continue;
            }
            ids.insert(id);
        }
    }
    report.chunks_total = ids.len() as u64;
    let resume = opts
        .progress_file
        .as_ref()
        .and_then(|p| read_progress(p, &vol.expect.volume_id));
    report.resumed_after = resume.map(|r| r.to_hex());
    let mut todo = Vec::with_capacity(ids.len());
    for id in ids {
        if resume.is_some_and(|r| id <= r) {
            report.chunks_resumed_past += 1;
        } else if opts
            .sample_percent
            .is_some_and(|p| !sampled(opts.sample_seed, &id, p))
        {
            report.chunks_sampled_out += 1;
        } else {
            todo.push(id);
        }
    }
    let limit = opts.max_chunks.unwrap_or(usize::MAX);
    let threads = opts.threads.max(1);
    let mut done = 0usize;
    report.complete = true;
    for batch in todo.chunks(BATCH) {
        if done >= limit {
            report.complete = false;
            break;
        }
        let batch = &batch[..batch.len().min(limit - done)];
        let results: Vec<ChunkResult> = if threads == 1 || batch.len() == 1 {
            batch
                .iter()
                .map(|&id| check_chunk(disks, &vol, id))
                .collect()
        } else {
            std::thread::scope(|s| {
                let vol = &vol;
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        s.spawn(move || {
                            batch
                                .iter()
                                .enumerate()
                                .filter(|(j, _)| j % threads == t)
                                .map(|(j, &id)| (j, check_chunk(disks, vol, id)))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let mut all: Vec<(usize, ChunkResult)> = handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("scrub thread panicked"))
                    .collect();
                all.sort_by_key(|(j, _)| *j);
                all.into_iter().map(|(_, r)| r).collect()
            })
        };
        let mut batch_bytes = 0u64;
        for r in results {
            tally(&mut report, r, repair, k, &mut batch_bytes);
        }
        done += batch.len();
        report.chunks_checked += batch.len() as u64;
        report.bytes_checked += batch_bytes;
        // Repaired shards are durable before the progress file says their batch is done.
        if let Some(store) = repair.filter(|_| report.repaired_shards() > 0) {
            store.sync()?;
        }
        if let Some(p) = &opts.progress_file {
            write_progress(p, &vol.expect.volume_id, batch.last().expect("non-empty"))?;
        }
        progress(done as u64, todo.len().min(limit) as u64);
        if let Some(rate) = opts.rate_mb_s.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(report.bytes_checked as f64 / (rate * 1e6));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    // Packed stripes (format v3): every stripe in full, after the per-chunk shards (no sampling, no resume yet).
    if report.complete {
        scrub_stripes(disks, &vol, repair, &mut report)?;
    }
    if report.complete {
        if let Some(p) = &opts.progress_file {
            let _ = std::fs::remove_file(p);
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// Checks every packed stripe (keyless: heads, then each chunk's pieces against their checksums) and, with a
/// store, rewrites its bad files from the good ones ([`Store::repair_stripe`]).
fn scrub_stripes(
    disks: &[Arc<dyn Disk>],
    vol: &KeylessVolume,
    repair: Option<&Store>,
    report: &mut ScrubReport,
) -> Result<()> {
    let (k, n) = (
        vol.expect.k as usize,
        (vol.expect.k + vol.expect.m) as usize,
    );
    let usable: Vec<bool> = vol.disks.iter().map(|(u, _)| *u).collect();
    let mut ids = BTreeSet::new();
    for (d, disk) in disks.iter().enumerate() {
        if !usable[d] {
            continue;
        }
        for (id, i) in list_stripes(disk.as_ref())? {
            if i >= n || stripe_disk(&id, i, vol.disk_count) != d {
                report.misplaced_shards += 1;
                continue;
            }
            ids.insert(id);
        }
    }
    for id in ids {
        let check = check_stripe(disks, &usable, &vol.expect, &id);
        report.stripes_checked += 1;
        report.bytes_checked += check.bytes;
        if check.chunks.is_empty() {
            report.stripes_unreadable += 1;
            continue;
        }
        let first_bad = report.bad_chunks.len();
        let bad_files = check.bad_files();
        for (chunk, shards) in check.chunks {
            report.chunks_total += 1;
            report.chunks_checked += 1;
            let mut bytes = 0;
            tally(
                report,
                ChunkResult { id: chunk, shards },
                None,
                k,
                &mut bytes,
            );
        }
        let Some(store) = repair.filter(|_| !bad_files.is_empty()) else {
            continue;
        };
        match store.repair_stripe(&id, &bad_files) {
            Ok(written) => {
                report.stripe_files_repaired += written.len() as u64;
                for i in &written {
                    let d = stripe_disk(&id, *i, vol.disk_count);
                    report.disks[d].repaired += 1;
                }
                for b in &mut report.bad_chunks[first_bad..] {
                    b.repaired = [&b.missing, &b.corrupt, &b.unreadable]
                        .into_iter()
                        .flatten()
                        .copied()
                        .filter(|i| written.contains(i))
                        .collect();
                    b.repaired.sort_unstable();
                    let bad = b.missing.len() + b.corrupt.len() + b.unreadable.len();
                    if b.repaired.len() < bad {
                        b.repair_error = Some(
                            "some stripe files could not be rewritten (disk unavailable or read-only)"
                                .into(),
                        );
                    }
                }
                store.sync()?;
            }
            Err(e) => {
                for b in &mut report.bad_chunks[first_bad..] {
                    b.repair_error = Some(e.to_string());
                }
            }
        }
    }
    Ok(())
}

fn tally(
    report: &mut ScrubReport,
    r: ChunkResult,
    repair: Option<&Store>,
    k: usize,
    bytes: &mut u64,
) {
    let mut bad = BadChunk {
        id: r.id.to_hex(),
        missing: Vec::new(),
        corrupt: Vec::new(),
        unreadable: Vec::new(),
        good: 0,
        recoverable: false,
        repaired: Vec::new(),
        repair_error: None,
    };
    for (i, (d, c)) in r.shards.iter().enumerate() {
        let ds = &mut report.disks[*d];
        ds.checked += 1;
        match c {
            ShardCheck::Good { bytes: b, .. } => {
                ds.bytes += b;
                *bytes += b;
                bad.good += 1;
            }
            ShardCheck::Missing => {
                ds.missing += 1;
                bad.missing.push(i);
            }
            ShardCheck::Unreadable(_) => {
                ds.unreadable += 1;
                bad.unreadable.push(i);
            }
            ShardCheck::Corrupt { bytes: b, .. } => {
                ds.bytes += b;
                *bytes += b;
                ds.corrupt += 1;
                bad.corrupt.push(i);
            }
        }
    }
    if bad.good == r.shards.len() {
        return;
    }
    bad.recoverable = bad.good >= k;
    if !bad.recoverable {
        report.unrecoverable += 1;
    }
    if let Some(store) = repair {
        match store.scrub(&r.id) {
            Ok(rep) => {
                for i in rep.healed {
                    report.disks[r.shards[i].0].repaired += 1;
                    bad.repaired.push(i);
                }
                bad.repaired.sort_unstable();
                if bad.repaired.len() < bad.missing.len() + bad.corrupt.len() + bad.unreadable.len()
                {
                    bad.repair_error = Some(
                        "some shards could not be rewritten (disk unavailable or read-only)".into(),
                    );
                }
            }
            Err(e) => bad.repair_error = Some(e.to_string()),
        }
    }
    report.bad_chunks.push(bad);
}
