//! Disk replacement: rebuild every shard that belongs on one disk slot (a blank directory standing in for a dead or
//! removed disk) from the other disks. Restartable: shards already present and verified are skipped, so running it
//! again after an interruption or a crash continues where it stopped.

use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::scan::{check_shard, ShardCheck};
use crate::store::{ChunkId, DiskState, Store};

/// Progress after each chunk, for a progress bar.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplaceProgress {
    pub chunks_done: u64,
    pub chunks_total: u64,
    pub shards_rebuilt: u64,
    pub shards_present: u64,
    pub bytes_rebuilt: u64,
}

/// What a replace did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplaceReport {
    pub slot: usize,
    pub path: String,
    pub progress: ReplaceProgress,
    /// Chunks whose shard for this slot could not be rebuilt: (chunk id, reason).
    pub failed: Vec<(String, String)>,
    pub seconds: f64,
    /// Every chunk was visited (false when the callback stopped it).
    pub complete: bool,
    /// The slot's state afterwards.
    pub state: String,
    /// Packed stripes (format v3) with a file on the slot; each file counts as one shard in `progress`.
    pub stripe_files: u64,
}

impl ReplaceReport {
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.progress.bytes_rebuilt as f64 / 1e6 / self.seconds
        } else {
            0.0
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "disk replace #{} {}: {} of {} chunks, {} shards rebuilt ({:.1} MB, {:.0} MB/s), {} already present, {} failed{}",
            self.slot,
            self.path,
            self.progress.chunks_done,
            self.progress.chunks_total,
            self.progress.shards_rebuilt,
            self.progress.bytes_rebuilt as f64 / 1e6,
            self.mb_per_s(),
            self.progress.shards_present,
            self.failed.len(),
            if self.complete { "" } else { " — interrupted, run again to continue" }
        )
    }
}

/// Shards made durable per batch: a crash loses at most this many chunks' worth of rebuild work.
const SYNC_EVERY: u64 = 64;

/// Chunks rebuilt in parallel per round; the progress callback runs after each round, once per chunk.
const ROUND: usize = 16;

/// Outcome for one chunk.
enum Step {
    Present,
    Rebuilt(u64),
    Failed(String),
    /// No shard of this chunk belongs on the slot.
    NotHere,
}

fn rebuild_one(store: &Store, disk: &dyn crate::store::Disk, slot: usize, id: &ChunkId) -> Step {
    let expect = store.shard_expect();
    let n = (expect.k + expect.m) as usize;
    let Some(i) = (0..n).find(|&i| store.shard_disk(id, i) == slot) else {
        return Step::NotHere;
    };
    if let ShardCheck::Good { .. } = check_shard(disk, id, i, &expect) {
        return Step::Present;
    }
    match store.scrub(id) {
        Ok(r) if r.healed.contains(&i) => match check_shard(disk, id, i, &expect) {
            ShardCheck::Good { bytes, .. } => Step::Rebuilt(bytes),
            other => Step::Failed(format!("rebuilt shard does not verify: {other:?}")),
        },
        Ok(_) => Step::Failed("shard not rewritten (disk refused the write?)".into()),
        Err(e) => Step::Failed(e.to_string()),
    }
}

/// Rebuilds slot `slot` of `store`, whose disk there is a blank (or partly rebuilt) directory of this volume.
/// The slot is first readmitted (its header written with the current epoch). Chunks are rebuilt a round of 16 at
/// a time on `threads` threads; `progress` is called after each chunk; returning `false` stops at the end of the
/// round (what was rebuilt is synced and stays; a later run skips it).
pub fn replace(
    store: &Store,
    slot: usize,
    progress: &mut dyn FnMut(&ReplaceProgress) -> bool,
) -> Result<ReplaceReport> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    replace_with(store, slot, threads, progress)
}

/// [`replace`] with an explicit number of rebuild threads.
pub fn replace_with(
    store: &Store,
    slot: usize,
    threads: usize,
    progress: &mut dyn FnMut(&ReplaceProgress) -> bool,
) -> Result<ReplaceReport> {
    let start = Instant::now();
    let disks = store.disks();
    let disk = disks
        .get(slot)
        .ok_or_else(|| Error::Invalid(format!("no disk #{slot}")))?
        .clone();
    store.readmit(slot)?;
    // Chunks in packed stripes are rebuilt a stripe file at a time, after the per-chunk shards.
    let ids: Vec<ChunkId> = store
        .list_chunks()?
        .into_iter()
        .filter(|id| !store.in_stripe(id))
        .collect();
    let mut report = ReplaceReport {
        slot,
        path: disk.describe(),
        progress: ReplaceProgress {
            chunks_total: ids.len() as u64,
            ..Default::default()
        },
        complete: true,
        ..Default::default()
    };
    let threads = threads.max(1);
    let mut since_sync = 0;
    for round in ids.chunks(ROUND) {
        let steps: Vec<Step> = std::thread::scope(|s| {
            let disk = disk.as_ref();
            let handles: Vec<_> = (0..threads.min(round.len()))
                .map(|t| {
                    s.spawn(move || {
                        round
                            .iter()
                            .enumerate()
                            .filter(|(j, _)| j % threads == t)
                            .map(|(j, id)| (j, rebuild_one(store, disk, slot, id)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut all: Vec<(usize, Step)> = handles
                .into_iter()
                .flat_map(|h| h.join().expect("rebuild thread panicked"))
                .collect();
            all.sort_by_key(|(j, _)| *j);
            all.into_iter().map(|(_, st)| st).collect()
        });
        since_sync += round.len();
        if since_sync >= SYNC_EVERY as usize {
            store.sync()?;
            since_sync = 0;
        }
        let mut go_on = true;
        for (id, step) in round.iter().zip(steps) {
            let p = &mut report.progress;
            match step {
                Step::Present => p.shards_present += 1,
                Step::Rebuilt(bytes) => {
                    p.shards_rebuilt += 1;
                    p.bytes_rebuilt += bytes;
                }
                Step::Failed(why) => report.failed.push((id.to_hex(), why)),
                Step::NotHere => {}
            }
            report.progress.chunks_done += 1;
            // Once told to stop, the rest of the round (already rebuilt) is still counted, without asking again.
            if go_on {
                go_on = progress(&report.progress);
            }
        }
        if !go_on {
            report.complete = report.progress.chunks_done == report.progress.chunks_total;
            break;
        }
    }
    if report.complete {
        let r = store.rebuild_stripes_on(slot)?;
        report.progress.shards_present += r.present;
        report.progress.shards_rebuilt += r.rebuilt;
        report.progress.bytes_rebuilt += r.bytes;
        report.stripe_files = r.stripes;
        report.failed.extend(r.failed);
    }
    store.sync()?;
    let health = store.health();
    report.state = health[slot].state.name().to_string();
    if health[slot].state != DiskState::Ok {
        return Err(Error::Volume(format!(
            "disk #{slot} is {} after rebuild",
            report.state
        )));
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
