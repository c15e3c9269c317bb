//! Metadata snapshots on the disks: the sealed redb file stored as an erasure-coded chunk, found again through a
//! small sealed pointer object on every disk, so a volume can be recovered from its disks and passphrase alone.
//!
//! Pointer (`meta/pointer` on each disk) = `seal_blob("valencefs meta pointer", body)`, body =
//! generation (u64 LE) ‖ current snapshot chunk id (32) ‖ previous snapshot chunk id (32, zero if none).
//! The snapshot chunk holds the redb file's bytes; its id is the keyed BLAKE3 of those bytes like any chunk.
//! Ordering: the snapshot chunk is durable before any pointer names it; the previous snapshot's chunk is deleted
//! only after the new pointers are durable (and the pointer keeps naming it as a fallback until the next round).

use super::{ChunkId, Store};
use crate::error::{Error, Result};

const POINTER: &str = "meta/pointer";
const LABEL: &[u8] = b"valencefs meta pointer";

/// A decoded pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPointer {
    pub generation: u64,
    pub current: ChunkId,
    pub previous: Option<ChunkId>,
}

/// A metadata snapshot read back by [`Store::load_snapshot`], with the pointer that led to it.
#[derive(Clone, Debug)]
pub struct LoadedSnapshot {
    /// The redb file's bytes (verified: a chunk like any other).
    pub db: Vec<u8>,
    /// The pointer it was reached through.
    pub pointer: SnapshotPointer,
    /// It is `pointer`'s previous snapshot, taken because the pointer's current one did not read back. A pointer
    /// does not record its previous snapshot's generation: the snapshot itself does (`snapshot_generation`).
    pub is_previous: bool,
    /// The newest generation any readable pointer on the disks names.
    pub newest: u64,
}

impl LoadedSnapshot {
    /// The generation the pointer seals for this snapshot; `None` for a previous snapshot, whose generation only
    /// the snapshot itself records (never assume `pointer.generation - 1`: saves that failed skip generations).
    pub fn pointer_generation(&self) -> Option<u64> {
        (!self.is_previous).then_some(self.pointer.generation)
    }
}

impl Store {
    /// Stores `db` (the redb file's bytes) as snapshot `generation` and points every usable disk at it. Returns
    /// the snapshot's chunk id. Durable when it returns.
    pub fn save_snapshot(
        &self,
        generation: u64,
        db: &[u8],
        previous: Option<ChunkId>,
    ) -> Result<ChunkId> {
        let id = self.chunk_id(db);
        self.put(&id, db)?;
        self.sync()?;
        let mut body = Vec::with_capacity(72);
        body.extend_from_slice(&generation.to_le_bytes());
        body.extend_from_slice(&id.0);
        body.extend_from_slice(&previous.map(|p| p.0).unwrap_or([0; 32]));
        let sealed = self.seal_blob(LABEL, &body);
        let mut written = 0;
        let mut first_err = None;
        for (d, slot) in self.slots.iter().enumerate() {
            if !self.usable(d) {
                continue;
            }
            match slot.disk.put(POINTER, &sealed) {
                Ok(()) => written += 1,
                Err(e) => {
                    self.note_error(d);
                    first_err.get_or_insert(e);
                }
            }
        }
        self.sync()?;
        let k = self.redundancy().k as usize;
        if written < k {
            return Err(first_err
                .unwrap_or_else(|| Error::Volume("no disk took the metadata pointer".into())));
        }
        Ok(id)
    }

    /// The pointer on one disk, if it has a readable one.
    fn pointer_on(&self, disk: usize) -> Option<SnapshotPointer> {
        let slot = &self.slots[disk];
        let sealed = slot.disk.get(POINTER).ok()?;
        let Ok(body) = self.open_blob(LABEL, &sealed) else {
            tracing::warn!(
                "{}: metadata pointer fails authentication; ignored",
                slot.disk.describe()
            );
            return None;
        };
        if body.len() != 72 {
            return None;
        }
        let prev: [u8; 32] = body[40..72].try_into().expect("length checked");
        Some(SnapshotPointer {
            generation: u64::from_le_bytes(body[..8].try_into().expect("length checked")),
            current: ChunkId(body[8..40].try_into().expect("length checked")),
            previous: (prev != [0; 32]).then_some(ChunkId(prev)),
        })
    }

    /// Every readable pointer, newest generation first (disks can disagree after a crash or a stale disk).
    pub fn snapshot_pointers(&self) -> Vec<SnapshotPointer> {
        let mut out: Vec<SnapshotPointer> = Vec::new();
        for p in (0..self.slots.len()).filter_map(|d| self.pointer_on(d)) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.generation));
        out
    }

    /// Usable disks whose pointer is older than the newest (or absent while another disk has one), as (disk,
    /// its generation or 0, newest generation). Such a disk missed a metadata snapshot: it was away, or restored
    /// from an older copy, while the volume was written (and then lacks those shards), or the machine crashed
    /// between two disks' pointer writes (and it lacks nothing).
    pub fn disks_behind(&self) -> Vec<(usize, u64, u64)> {
        let usable: Vec<usize> = (0..self.slots.len()).filter(|&d| self.usable(d)).collect();
        let generations: Vec<(usize, Option<u64>)> = usable
            .iter()
            .map(|&d| (d, self.pointer_on(d).map(|p| p.generation)))
            .collect();
        let Some(newest) = generations.iter().filter_map(|g| g.1).max() else {
            return Vec::new();
        };
        generations
            .into_iter()
            .filter_map(|(d, g)| {
                let g = g.unwrap_or(0);
                (g < newest).then_some((d, g, newest))
            })
            .collect()
    }

    /// Logs a warning naming each disk [`Store::disks_behind`] finds, with what to do about it.
    pub fn warn_disks_behind(&self) {
        for (d, g, newest) in self.disks_behind() {
            tracing::warn!(
                "disk {}: its metadata pointer is at generation {g}, another disk's at {newest}: it was away or \
                 restored from an older copy while the volume was written (then it lacks the shards written \
                 meanwhile, and reads rebuild them from the other disks as they go), or the machine crashed while \
                 updating the pointers. `valencefs status` counts what it lacks; `valencefs scrub --repair` \
                 rebuilds it",
                self.slots[d].disk.describe()
            );
        }
    }

    /// Chunk ids that hold metadata snapshots (gc must keep them).
    pub fn snapshot_chunks(&self) -> Vec<ChunkId> {
        let mut ids: Vec<ChunkId> = self
            .snapshot_pointers()
            .iter()
            .flat_map(|p| std::iter::once(p.current).chain(p.previous))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The newest snapshot that reads back verified, trying each pointer's current snapshot and then its previous
    /// one, newest pointer first; every snapshot passed over is logged. [`LoadedSnapshot`] says which it took.
    pub fn load_snapshot(&self) -> Result<LoadedSnapshot> {
        let pointers = self.snapshot_pointers();
        let Some(newest) = pointers.first().map(|p| p.generation) else {
            return Err(Error::Volume(
                "no metadata snapshot on these disks (was the volume ever unmounted or synced?)"
                    .into(),
            ));
        };
        let mut last_err = None;
        for p in &pointers {
            let candidates =
                std::iter::once((p.current, false)).chain(p.previous.map(|q| (q, true)));
            for (id, is_previous) in candidates {
                match self.get(&id) {
                    Ok(db) => {
                        return Ok(LoadedSnapshot {
                            db,
                            pointer: *p,
                            is_previous,
                            newest,
                        })
                    }
                    Err(e) => {
                        tracing::warn!(
                            "metadata snapshot {} ({} snapshot of the pointer at generation {}) unreadable: {e}",
                            id.to_hex(),
                            if is_previous { "previous" } else { "current" },
                            p.generation
                        );
                        last_err = Some(e);
                    }
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Volume("no readable metadata snapshot".into())))
    }
}
