//! Disk replacement: rebuild every shard that belongs on one disk slot (a blank directory standing in for a dead or
//! removed disk) from the other disks. Restartable: shards already present and verified are skipped, so running it
//! again after an interruption or a crash continues where it stopped.

use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::scan::{check_shard, ShardCheck};
use crate::store::{DiskState, Store};

use super::state_name;

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

/// Rebuilds slot `slot` of `store`, whose disk there is a blank (or partly rebuilt) directory of this volume.
/// The slot is first readmitted (its header written with the current epoch). `progress` is called after each
/// chunk; returning `false` stops (what was rebuilt is synced and stays; a later run skips it).
pub fn replace(
    store: &Store,
    slot: usize,
    progress: &mut dyn FnMut(&ReplaceProgress) -> bool,
) -> Result<ReplaceReport> {
    let start = Instant::now();
    let disks = store.disks();
    let disk = disks
        .get(slot)
        .ok_or_else(|| Error::Invalid(format!("no disk #{slot}")))?
        .clone();
    store.readmit(slot)?;
    let expect = store.shard_expect();
    let n = (expect.k + expect.m) as usize;
    let ids = store.list_chunks()?;
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
    let p = &mut report.progress;
    for id in &ids {
        if let Some(i) = (0..n).find(|&i| store.shard_disk(id, i) == slot) {
            match check_shard(disk.as_ref(), id, i, &expect) {
                ShardCheck::Good { .. } => p.shards_present += 1,
                _ => match store.scrub(id) {
                    Ok(r) if r.healed.contains(&i) => {
                        p.shards_rebuilt += 1;
                        if let ShardCheck::Good { bytes, .. } =
                            check_shard(disk.as_ref(), id, i, &expect)
                        {
                            p.bytes_rebuilt += bytes;
                        }
                    }
                    Ok(_) => report.failed.push((
                        id.to_hex(),
                        "shard not rewritten (disk refused the write?)".into(),
                    )),
                    Err(e) => report.failed.push((id.to_hex(), e.to_string())),
                },
            }
        }
        p.chunks_done += 1;
        if p.chunks_done % SYNC_EVERY == 0 {
            store.sync()?;
        }
        if !progress(p) {
            report.complete = p.chunks_done == p.chunks_total;
            break;
        }
    }
    store.sync()?;
    let health = store.health();
    report.state = state_name(health[slot].state).to_string();
    if health[slot].state != DiskState::Ok {
        return Err(Error::Volume(format!(
            "disk #{slot} is {} after rebuild",
            report.state
        )));
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
