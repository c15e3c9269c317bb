//! Integrity proof (issue 6 item 7): the metadata records, for every chunk it references, the stripe hash of the
//! shards as they were written, and each metadata snapshot carries a Merkle root over those (FORMAT.md §13). With
//! the passphrase, `scrub --integrity` opens the newest snapshot from the disks and proves that
//! - the snapshot's chunk rows hash to the root recorded with it;
//! - the disks were not rolled back behind what this machine last recorded (the local database keeps the newest
//!   generation and root it wrote);
//! - every referenced chunk (or a random sample of them: a challenge the disks cannot precompute) is present with
//!   exactly the shards that were written: not forged with self-consistent headers, not swapped, not an older
//!   version, not silently gone. A keyless scrub cannot see a chunk whose every shard vanished; this can.

use serde::Serialize;

use crate::error::Result;
use crate::meta::{Integrity, Meta, SimFile};
use crate::store::Store;

use super::scrub::{check_chunk, keyless_volume, sampled, stripe_of};
use crate::store::scan::ShardCheck;

#[derive(Clone, Debug, Serialize)]
pub struct IntegrityReport {
    /// Generation of the newest metadata snapshot on the disks.
    pub snapshot_generation: u64,
    /// The integrity record inside it (absent in snapshots written before integrity roots existed).
    pub recorded: Option<Integrity>,
    /// The snapshot's chunk rows hash to its recorded root.
    pub root_matches: bool,
    /// The generation this machine's database last recorded, if it has one.
    pub local_generation: Option<u64>,
    /// The disks hold an older generation than this machine recorded: they were rolled back (or the newest
    /// snapshot is unreadable).
    pub rolled_back: bool,
    /// Same generation, different root: the disks' snapshot is not the one this machine wrote.
    pub local_root_differs: bool,
    pub referenced: u64,
    pub checked: u64,
    pub sampled_out: u64,
    /// Chunks whose shards are exactly those written.
    pub proven: u64,
    /// Chunks whose shards all verify against their own headers but are not the shards written (forged/swapped).
    pub mismatched: Vec<String>,
    /// Referenced chunks with no shard on any disk.
    pub lost: Vec<String>,
    /// Chunks with some shards missing or corrupt: not provable until `scrub --repair` rebuilds them.
    pub degraded: u64,
    /// Referenced chunks with no recorded stripe hash (written by an older build).
    pub unverifiable: u64,
}

impl IntegrityReport {
    pub fn ok(&self) -> bool {
        self.root_matches
            && !self.rolled_back
            && !self.local_root_differs
            && self.mismatched.is_empty()
            && self.lost.is_empty()
    }

    pub fn summary(&self) -> String {
        format!(
            "integrity: snapshot generation {}, root {}; {} of {} referenced chunks checked: {} proven, {} mismatched, \
             {} lost, {} degraded, {} unverifiable{}{}",
            self.snapshot_generation,
            if self.root_matches { "matches" } else { "DOES NOT MATCH" },
            self.checked,
            self.referenced,
            self.proven,
            self.mismatched.len(),
            self.lost.len(),
            self.degraded,
            self.unverifiable,
            if self.rolled_back {
                format!(
                    "; ROLLED BACK: this machine recorded generation {}",
                    self.local_generation.unwrap_or(0)
                )
            } else {
                String::new()
            },
            if self.local_root_differs {
                "; the root differs from the one this machine recorded"
            } else {
                ""
            },
        )
    }
}

/// Runs the proof. `local` is this machine's metadata database (when available); `sample` is (percent, seed).
pub fn verify(
    store: &Store,
    local: Option<&Meta>,
    sample: Option<(f64, u64)>,
) -> Result<IntegrityReport> {
    let loaded = store.load_snapshot()?;
    // Read-only use: nothing this opening writes becomes durable anywhere.
    let snap = Meta::open_sim(SimFile::new(loaded.db, || false))?;
    let mut tx = snap.write()?;
    // The generation sealed inside the snapshot: right for a fallback too, which a pointer does not date.
    let generation = tx.setting("snapshot_generation")?;
    let recorded = tx.integrity()?;
    let rows = tx.all_chunks()?;
    let root_matches = match &recorded {
        Some(r) => tx.compute_integrity(r.generation)? == *r,
        None => false,
    };
    drop(tx);
    let local_rec = match local {
        Some(m) => m.write()?.integrity()?,
        None => None,
    };
    let rolled_back = local_rec.is_some_and(|l| l.generation > generation);
    let local_root_differs = match (local_rec, recorded) {
        (Some(l), Some(r)) => l.generation == r.generation && l.root != r.root,
        _ => false,
    };
    let disks = store.disks();
    let vol = keyless_volume(&disks)?;
    let mut report = IntegrityReport {
        snapshot_generation: generation,
        recorded,
        root_matches,
        local_generation: local_rec.map(|l| l.generation),
        rolled_back,
        local_root_differs,
        referenced: 0,
        checked: 0,
        sampled_out: 0,
        proven: 0,
        mismatched: Vec::new(),
        lost: Vec::new(),
        degraded: 0,
        unverifiable: 0,
    };
    for (id, row) in rows.iter().filter(|(_, r)| r.refs > 0) {
        report.referenced += 1;
        if row.stripe == [0; 32] {
            report.unverifiable += 1;
            continue;
        }
        if let Some((pct, seed)) = sample {
            if !sampled(seed, id, pct) {
                report.sampled_out += 1;
                continue;
            }
        }
        report.checked += 1;
        // A chunk in a packed stripe (format v3): its pieces through the store's map; the stripe hash is the same
        // function of the chunk's k+m payload hashes as for per-chunk shards.
        if let Some(c) = store.stripe_chunk_check(id) {
            match c.stripe {
                Some(s) if s == row.stripe => report.proven += 1,
                Some(_) => report.mismatched.push(id.to_hex()),
                None if c.all_missing => report.lost.push(id.to_hex()),
                None => report.degraded += 1,
            }
            continue;
        }
        let r = check_chunk(&disks, &vol, *id);
        match stripe_of(&r) {
            Some(s) if s == row.stripe => report.proven += 1,
            Some(_) => report.mismatched.push(id.to_hex()),
            None if r
                .shards
                .iter()
                .all(|(_, c)| matches!(c, ShardCheck::Missing)) =>
            {
                report.lost.push(id.to_hex())
            }
            None => report.degraded += 1,
        }
    }
    Ok(report)
}
