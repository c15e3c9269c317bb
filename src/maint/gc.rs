//! gc: frees chunks no committed metadata references — rows with a zero refcount, and shards on the disks that
//! have no row at all (leftovers of a crash between storing shards and committing, or between committing a
//! deletion and removing the shards). Never frees a chunk any extent references, whatever its refcount says, nor a
//! metadata snapshot chunk named by the disks' snapshot pointers.

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::meta::Meta;
use crate::store::scan::shard_name_of;
use crate::store::{ChunkId, Store};

/// What gc freed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    /// Chunk rows with refcount 0 (and no extent) deleted.
    pub rows_freed: u64,
    /// Chunks found on the disks with no row and no extent.
    pub orphan_chunks_freed: u64,
    /// Shard bytes removed from the disks.
    pub bytes_freed: u64,
    /// Rows with refcount 0 that extents still reference: kept; run fsck.
    pub kept_referenced: u64,
    /// Chunks whose shards could not all be removed (a disk unavailable or failing).
    pub delete_errors: u64,
    /// Chunks holding metadata snapshots (referenced from the disks' snapshot pointers, not from rows): kept.
    pub snapshot_chunks_kept: u64,
    pub seconds: f64,
}

impl GcReport {
    pub fn summary(&self) -> String {
        format!(
            "gc: freed {} chunks ({} unreferenced rows, {} orphans), {:.1} MB{}",
            self.rows_freed + self.orphan_chunks_freed,
            self.rows_freed,
            self.orphan_chunks_freed,
            self.bytes_freed as f64 / 1e6,
            if self.kept_referenced > 0 {
                format!(
                    "; kept {} rows with refcount 0 that extents reference (run fsck --repair)",
                    self.kept_referenced
                )
            } else {
                String::new()
            }
        )
    }
}

/// Collects garbage. `meta` must be opened exclusively (see [`super::open_meta`], which refuses a mounted
/// volume). Ordering (FORMAT.md §8): the row deletions commit durably before any shard is deleted.
pub fn gc(store: &Store, meta: &Meta) -> Result<GcReport> {
    let start = Instant::now();
    if store.is_read_only() {
        return Err(Error::ReadOnly);
    }
    let mut report = GcReport::default();
    let mut tx = meta.write()?;
    let referenced: BTreeSet<ChunkId> = tx
        .all_extents()?
        .into_iter()
        .map(|(_, e)| e.chunk)
        .collect();
    let mut rows = BTreeSet::new();
    let mut free = Vec::new();
    for (id, row) in tx.all_chunks()? {
        if row.refs > 0 {
            rows.insert(id);
        } else if referenced.contains(&id) {
            report.kept_referenced += 1;
            rows.insert(id);
        } else if tx.forget_chunk_if_unused(&id)?.is_some() {
            report.rows_freed += 1;
            free.push(id);
        }
    }
    // The commit point: after this no committed metadata names the freed chunks.
    tx.commit(true)?;
    // Chunks put after a crash never got a row; anything on the disks outside the rows, the extents and the metadata
    // snapshots (which `valencefs recover` needs) is unreferenced.
    let snapshots: BTreeSet<ChunkId> = store.snapshot_chunks().into_iter().collect();
    for id in store.list_chunks()? {
        if snapshots.contains(&id) {
            report.snapshot_chunks_kept += 1;
            continue;
        }
        if !rows.contains(&id) && !referenced.contains(&id) && !free.contains(&id) {
            report.orphan_chunks_freed += 1;
            free.push(id);
        }
    }
    let disks = store.disks();
    let n = (store.redundancy().k + store.redundancy().m) as usize;
    for id in &free {
        for i in 0..n {
            if let Ok(f) = disks[store.shard_disk(id, i)].get(&shard_name_of(id, i)) {
                report.bytes_freed += f.len() as u64;
            }
        }
        if store.delete(id).is_err() {
            report.delete_errors += 1;
        }
    }
    store.sync()?;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
