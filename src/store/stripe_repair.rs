//! Repair of packed stripes (format v3): rebuilding whole stripe files from the other files of their stripe, for
//! `scrub --repair` and `disk replace`. A file is replaced, never patched in place.

use std::sync::atomic::Ordering;

use super::format::{ShardHeader, SHARD_HEADER_LEN};
use super::scan::{self, verify_shard_file, ShardCheck};
use super::stripe::{self, Entry, StripeHeader, StripeId};
use super::{ChunkId, Store};
use crate::error::{Error, Result};

/// The pieces of one chunk in a stripe, as [`Store::stripe_chunk_check`] found them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PieceCensus {
    /// Pieces whose header and payload check.
    pub good: usize,
    /// No piece found at all.
    pub all_missing: bool,
    /// The chunk's stripe hash (FORMAT.md §13) when all k+m pieces are good.
    pub stripe: Option<[u8; 32]>,
    /// Bytes of the good pieces.
    pub bytes: u64,
}

/// What [`Store::rebuild_stripes_on`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StripeRebuild {
    /// Stripes with a file on the slot.
    pub stripes: u64,
    /// Files already there and verified.
    pub present: u64,
    pub rebuilt: u64,
    pub bytes: u64,
    /// (stripe id, why) for files that could not be rebuilt.
    pub failed: Vec<(String, String)>,
}

impl Store {
    /// Every stripe with a file on a usable disk (sorted).
    pub fn stripe_ids(&self) -> Result<Vec<StripeId>> {
        let mut ids = std::collections::BTreeSet::new();
        for (d, s) in self.slots.iter().enumerate() {
            if self.usable(d) {
                ids.extend(
                    scan::list_stripes(s.disk.as_ref())?
                        .into_iter()
                        .map(|(id, _)| id),
                );
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// Rewrites files `bad` of stripe `sid` from the others: every chunk's pieces are checked (keyless checksums),
    /// any k good ones rebuild the rest (Reed-Solomon), and the envelope is opened (AEAD, chunk id) before anything
    /// derived from it is written, so a forged or mixed set of pieces is never propagated. Returns the file indexes
    /// written. Dead chunks (still in the stripe's index) are rebuilt too: offsets must stay as the index says.
    pub fn repair_stripe(&self, sid: &StripeId, bad: &[usize]) -> Result<Vec<usize>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let expect = self.shard_expect();
        let (k, n) = (expect.k as usize, (expect.k + expect.m) as usize);
        let files: Vec<Option<Vec<u8>>> = (0..n)
            .map(|i| {
                let d = self.stripe_disk(sid, i);
                if bad.contains(&i) || !self.usable(d) {
                    return None;
                }
                self.slots[d].disk.get(&stripe::stripe_name(sid, i)).ok()
            })
            .collect();
        let entries: Vec<Entry> = files
            .iter()
            .enumerate()
            .find_map(|(i, f)| {
                let (h, e) = stripe::decode_head(f.as_ref()?).ok()?;
                (h.stripe_id == *sid && h.volume_id == expect.volume_id && h.index as usize == i)
                    .then_some(e)
            })
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "stripe {}: no readable index on any other file",
                    super::crypto::hex(sid)
                ))
            })?;
        let head = |i: usize| {
            let mut h: StripeHeader = self.stripe_head(i);
            h.stripe_id = *sid;
            stripe::encode_head(&h, &entries)
        };
        let mut out: Vec<Vec<u8>> = bad.iter().map(|&i| head(i)).collect();
        let volume_id = expect.volume_id;
        for e in &entries {
            let id = ChunkId(e.chunk);
            let range = e.offset as usize..(e.offset + e.len as u64) as usize;
            let mut env_len = None;
            let mut shards: Vec<Option<Vec<u8>>> = (0..n)
                .map(|i| {
                    let piece = files[i].as_ref()?.get(range.clone())?;
                    match verify_shard_file(piece, &id, i, &expect) {
                        ShardCheck::Good { header, .. } => {
                            env_len.get_or_insert(header.envelope_len);
                            Some(piece[SHARD_HEADER_LEN..].to_vec())
                        }
                        _ => None,
                    }
                })
                .collect();
            let good = shards.iter().filter(|s| s.is_some()).count();
            let Some(env_len) = env_len.filter(|_| good >= k) else {
                return Err(Error::Unrecoverable {
                    chunk: id.to_hex(),
                    good,
                    need: k,
                });
            };
            self.codec.reconstruct(&mut shards)?;
            let mut envelope = Vec::new();
            for s in &shards[..k] {
                envelope.extend_from_slice(s.as_deref().unwrap_or_default());
            }
            if env_len as usize > envelope.len() {
                return Err(Error::Corrupt(format!(
                    "chunk {}: envelope length exceeds its pieces",
                    id.to_hex()
                )));
            }
            envelope.truncate(env_len as usize);
            self.open_envelope(&id, &volume_id, envelope)?;
            for (j, &i) in bad.iter().enumerate() {
                let payload = shards[i].as_deref().unwrap_or_default();
                let h = ShardHeader {
                    k: expect.k,
                    m: expect.m,
                    index: i as u8,
                    volume_id,
                    chunk_id: id.0,
                    envelope_len: env_len,
                    shard_len: payload.len() as u32,
                    payload_hash: *blake3::hash(payload).as_bytes(),
                };
                out[j].extend_from_slice(&h.encode());
                out[j].extend_from_slice(payload);
            }
        }
        let mut done = Vec::new();
        let mut first_err = None;
        for (j, &i) in bad.iter().enumerate() {
            let d = self.stripe_disk(sid, i);
            if !self.usable(d) {
                continue;
            }
            match self.slots[d]
                .disk
                .put(&stripe::stripe_name(sid, i), &out[j])
            {
                Ok(()) => {
                    let c = &self.slots[d].counters;
                    c.repairs.fetch_add(1, Ordering::Relaxed);
                    c.shard_writes.fetch_add(1, Ordering::Relaxed);
                    c.shard_write_bytes
                        .fetch_add(out[j].len() as u64, Ordering::Relaxed);
                    done.push(i);
                }
                Err(e) => {
                    self.note_error(d);
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if done.is_empty() => Err(e),
            _ => Ok(done),
        }
    }

    /// Rebuilds the stripe files that belong on disk `slot` (a replacement disk): a file there whose head and
    /// pieces all verify is kept, any other is rebuilt from the stripe's other files. Syncs every 16 stripes and
    /// at the end, so a rerun after a crash continues.
    pub fn rebuild_stripes_on(&self, slot: usize) -> Result<StripeRebuild> {
        let mut r = StripeRebuild::default();
        let expect = self.shard_expect();
        let n = (expect.k + expect.m) as usize;
        let disks = self.disks();
        for (done, sid) in self.stripe_ids()?.into_iter().enumerate() {
            let Some(i) = (0..n).find(|&i| self.stripe_disk(&sid, i) == slot) else {
                continue;
            };
            r.stripes += 1;
            // Only the slot's own file is read to decide (the others are read by the repair, if one is needed).
            if scan::stripe_file_ok(disks[slot].as_ref(), &expect, &sid, i) {
                r.present += 1;
                continue;
            }
            match self.repair_stripe(&sid, &[i]) {
                Ok(w) if w.contains(&i) => {
                    r.rebuilt += 1;
                    r.bytes += disks[slot]
                        .get_range(&stripe::stripe_name(&sid, i), 0, u64::MAX)
                        .map_or(0, |b| b.len() as u64);
                }
                Ok(_) => r
                    .failed
                    .push((super::crypto::hex(&sid), "not written".into())),
                Err(e) => r.failed.push((super::crypto::hex(&sid), e.to_string())),
            }
            if done % 16 == 15 {
                self.sync()?;
            }
        }
        self.sync()?;
        Ok(r)
    }

    /// For a chunk in a written stripe, what its k+m pieces look like (each read and checked against its own
    /// checksums, no key needed for that); `None` for a chunk that is not in a stripe.
    pub fn stripe_chunk_check(&self, id: &ChunkId) -> Option<PieceCensus> {
        let st = self.stripes.as_ref()?;
        if !matches!(st.locate(id, None), stripe::Found::Disk(_)) {
            return None;
        }
        let vol = self.volume_id();
        let n = self.redundancy_width();
        let mut c = PieceCensus {
            all_missing: true,
            ..PieceCensus::default()
        };
        let mut hashes = Vec::with_capacity(n);
        for i in 0..n {
            match self.fetch(id, i, &vol, true) {
                super::chunks::Fetched::Good(h, file) => {
                    c.good += 1;
                    c.bytes += file.len() as u64;
                    c.all_missing = false;
                    hashes.push(h.payload_hash);
                }
                super::chunks::Fetched::Bad(f) => {
                    if f != super::ShardFault::Missing {
                        c.all_missing = false;
                    }
                }
            }
        }
        if hashes.len() == n {
            c.stripe = Some(super::format::stripe_hash(&hashes));
        }
        Some(c)
    }

    /// Rewrites the bad files of the stripe holding `id` ([`Store::repair_stripe`]); `Ok(false)` when the chunk is
    /// in no written stripe.
    pub fn repair_chunk_stripe(&self, id: &ChunkId) -> Result<bool> {
        let Some(stripe::Found::Disk(loc)) = self.stripes.as_ref().map(|st| st.locate(id, None))
        else {
            return Ok(false);
        };
        let expect = self.shard_expect();
        let usable: Vec<bool> = (0..self.slots.len()).map(|d| self.usable(d)).collect();
        let check = scan::check_stripe(&self.disks(), &usable, &expect, &loc.stripe);
        let bad = check.bad_files();
        if !bad.is_empty() {
            self.repair_stripe(&loc.stripe, &bad)?;
        }
        Ok(true)
    }

    /// Whether a chunk lies in a packed stripe (format v3), written or still in memory.
    pub fn in_stripe(&self, id: &ChunkId) -> bool {
        self.stripes.as_ref().is_some_and(|st| st.holds(id))
    }
}
