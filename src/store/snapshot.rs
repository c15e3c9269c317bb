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

    /// Every readable pointer, newest generation first (disks can disagree after a crash or a stale disk).
    pub fn snapshot_pointers(&self) -> Vec<SnapshotPointer> {
        let mut out: Vec<SnapshotPointer> = Vec::new();
        for slot in &self.slots {
            let Ok(sealed) = slot.disk.get(POINTER) else {
                continue;
            };
            let Ok(body) = self.open_blob(LABEL, &sealed) else {
                tracing::warn!(
                    "{}: metadata pointer fails authentication; ignored",
                    slot.disk.describe()
                );
                continue;
            };
            if body.len() != 72 {
                continue;
            }
            let prev: [u8; 32] = body[40..72].try_into().expect("length checked");
            let p = SnapshotPointer {
                generation: u64::from_le_bytes(body[..8].try_into().expect("length checked")),
                current: ChunkId(body[8..40].try_into().expect("length checked")),
                previous: (prev != [0; 32]).then_some(ChunkId(prev)),
            };
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.generation));
        out
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

    /// The newest snapshot that reads back verified: (generation, redb bytes). Falls back to older generations
    /// (a newer pointer whose chunk is unreadable) and says which it used.
    pub fn load_snapshot(&self) -> Result<(u64, Vec<u8>)> {
        let pointers = self.snapshot_pointers();
        if pointers.is_empty() {
            return Err(Error::Volume(
                "no metadata snapshot on these disks (was the volume ever unmounted or synced?)"
                    .into(),
            ));
        }
        let mut last_err = None;
        for p in &pointers {
            match self.get(&p.current) {
                Ok(db) => return Ok((p.generation, db)),
                Err(e) => {
                    tracing::warn!(
                        "metadata snapshot generation {} unreadable: {e}",
                        p.generation
                    );
                    last_err = Some(e);
                }
            }
            if let Some(prev) = p.previous {
                if let Ok(db) = self.get(&prev) {
                    return Ok((p.generation.saturating_sub(1), db));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| Error::Volume("no readable metadata snapshot".into())))
    }
}
