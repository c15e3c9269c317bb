//! gc: frees chunks no committed metadata references — rows with a zero refcount, and shards on the disks that
//! have no row at all (leftovers of a crash between storing shards and committing, or between committing a
//! deletion and removing the shards), and held chunks no usable snapshot references any more. Never frees a chunk
//! any extent references, whatever its refcount says, nor a metadata snapshot chunk named by the disks' snapshot
//! pointers, nor a chunk such a snapshot references (`valencefs recover` could bring it back).

use std::collections::BTreeSet;
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::meta::{Meta, SimFile};
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
    /// Held chunks (no longer referenced, kept for `recover`: FORMAT.md §10) that no usable snapshot references
    /// any more: freed.
    pub held_freed: u64,
    /// Chunks without a reference that a metadata snapshot named by the pointers may reference: held, not freed.
    pub held_kept: u64,
    /// Chunks on the disks with no row or hold that such a snapshot may reference: kept.
    pub snapshot_referenced_kept: u64,
    /// Snapshots named by the pointers that did not read back (when one of the newest pointer's is among them,
    /// nothing a snapshot might reference is freed).
    pub snapshots_unreadable: u64,
    /// Format v3: the stripes repacked after the unreferenced chunks went (their bytes are in `bytes_freed` too).
    pub repack: crate::store::RepackReport,
    pub seconds: f64,
}

/// A v3 stripe whose live bytes are under this fraction of its bytes is repacked: the disks then hold at most
/// 1/0.8 = 1.25× the live pieces, for a write amplification of at most 0.8/0.2 = 4 bytes written per byte freed
/// (short stripes merged cost more: they free only their headers).
pub const REPACK_BELOW: f64 = 0.8;

impl GcReport {
    pub fn summary(&self) -> String {
        format!(
            "gc: freed {} chunks ({} unreferenced rows, {} held, {} orphans), {:.1} MB{}{}",
            self.rows_freed + self.held_freed + self.orphan_chunks_freed,
            self.rows_freed,
            self.held_freed,
            self.orphan_chunks_freed,
            self.bytes_freed as f64 / 1e6,
            if self.held_kept + self.snapshot_referenced_kept > 0 {
                format!(
                    "; kept {} unreferenced chunks a metadata snapshot may reference (held for recover){}",
                    self.held_kept + self.snapshot_referenced_kept,
                    if self.snapshots_unreadable > 0 {
                        format!(", {} snapshots unreadable", self.snapshots_unreadable)
                    } else {
                        String::new()
                    }
                )
            } else {
                String::new()
            },
            if self.kept_referenced > 0 {
                format!(
                    "; kept {} rows with refcount 0 that extents reference (run fsck --repair)",
                    self.kept_referenced
                )
            } else {
                String::new()
            }
        ) + &if self.repack.stripes_deleted > 0 {
            format!(
                "; repacked {} stripes ({} chunks moved, {:.1} MB written, write amplification {:.2}), deleted {}",
                self.repack.stripes_repacked,
                self.repack.chunks_moved,
                self.repack.bytes_written as f64 / 1e6,
                self.repack.write_amplification(),
                self.repack.stripes_deleted
            )
        } else {
            String::new()
        }
    }
}

/// Chunk ids that the metadata snapshots named by the disks' pointers reference (their chunk rows and extents),
/// how many named snapshots did not read back, and whether the newest pointer's snapshots (the ones `recover`
/// tries first) all did. A snapshot that does not read back cannot be recovered from either; but when one of the
/// newest pointer's cannot, gc keeps everything a snapshot might reference rather than guess.
fn snapshot_references(store: &Store) -> (BTreeSet<ChunkId>, u64, bool) {
    let pointers = store.snapshot_pointers();
    let newest = pointers.first().map(|p| p.generation);
    let mut refs = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let (mut unreadable, mut complete) = (0, true);
    for p in &pointers {
        for id in std::iter::once(p.current).chain(p.previous) {
            if !seen.insert(id) {
                continue;
            }
            let read = store.get(&id).and_then(|db| {
                // Read-only use: nothing this opening writes becomes durable anywhere.
                let snap = Meta::open_sim(SimFile::new(db, || false))?;
                let mut tx = snap.write()?;
                let rows = tx.all_chunks()?;
                let extents = tx.all_extents()?;
                Ok(rows
                    .into_iter()
                    .map(|(id, _)| id)
                    .chain(extents.into_iter().map(|(_, e)| e.chunk))
                    .collect::<Vec<_>>())
            });
            match read {
                Ok(ids) => refs.extend(ids),
                Err(e) => {
                    tracing::warn!(
                        "gc: metadata snapshot {} (pointer generation {}) unreadable: {e}",
                        id.to_hex(),
                        p.generation
                    );
                    unreadable += 1;
                    if Some(p.generation) == newest {
                        complete = false;
                    }
                }
            }
        }
    }
    (refs, unreadable, complete)
}

/// Collects garbage. `meta` must be opened exclusively (see [`super::open_meta`], which refuses a mounted
/// volume). Ordering (FORMAT.md §8, §12): the row and hold deletions commit durably before any shard is deleted,
/// and no shard is deleted that a metadata snapshot named by the disks' pointers references (`recover` could bring
/// that snapshot back): such chunks are held (FORMAT.md §10) and freed by a later gc or mount.
pub fn gc(store: &Store, meta: &Meta) -> Result<GcReport> {
    let start = Instant::now();
    if store.is_read_only() {
        return Err(Error::ReadOnly);
    }
    let mut report = GcReport::default();
    let (in_snapshots, unreadable, complete) = snapshot_references(store);
    report.snapshots_unreadable = unreadable;
    let keep = |id: &ChunkId| !complete || in_snapshots.contains(id);
    let mut tx = meta.write()?;
    let referenced: BTreeSet<ChunkId> = tx
        .all_extents()?
        .into_iter()
        .map(|(_, e)| e.chunk)
        .collect();
    let since = tx.setting("snapshot_generation")?;
    let mut rows = BTreeSet::new();
    let mut held = BTreeSet::new();
    let mut free = Vec::new();
    for (id, row) in tx.all_chunks()? {
        if row.refs > 0 {
            rows.insert(id);
        } else if referenced.contains(&id) {
            report.kept_referenced += 1;
            rows.insert(id);
        } else if let Some(row) = tx.forget_chunk_if_unused(&id)? {
            if keep(&id) {
                tx.hold_chunk(&id, since, &row)?;
                report.held_kept += 1;
                held.insert(id);
            } else {
                report.rows_freed += 1;
                free.push(id);
            }
        }
    }
    for (id, _, _) in tx.all_held()? {
        if held.contains(&id) {
            continue;
        }
        if rows.contains(&id) {
            // Referenced again: its row owns the shards.
            tx.release_held(&id)?;
        } else if keep(&id) {
            report.held_kept += 1;
            held.insert(id);
        } else {
            tx.release_held(&id)?;
            report.held_freed += 1;
            free.push(id);
        }
    }
    // The commit point: after this no committed metadata names the freed chunks.
    tx.commit(true)?;
    // Chunks put after a crash never got a row; anything on the disks outside the rows, the extents, the holds and
    // the metadata snapshots (which `valencefs recover` needs) and what they reference is unreferenced.
    let snapshots: BTreeSet<ChunkId> = store.snapshot_chunks().into_iter().collect();
    for id in store.list_chunks()? {
        if snapshots.contains(&id) {
            report.snapshot_chunks_kept += 1;
            continue;
        }
        if rows.contains(&id)
            || referenced.contains(&id)
            || held.contains(&id)
            || free.contains(&id)
        {
            continue;
        }
        if keep(&id) {
            report.snapshot_referenced_kept += 1;
        } else {
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
    // Packed stripes: what is left in the map is live (referenced, held, or a snapshot's); the repack makes its new
    // stripes durable before it deletes old ones.
    report.repack = store.repack(REPACK_BELOW)?;
    report.bytes_freed += report.repack.bytes_freed();
    store.sync()?;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
