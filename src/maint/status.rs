//! Status: per-disk state, space, shard count and errors; redundancy now vs target; logical, unique and stored
//! bytes with the dedup ratio and parity overhead. Serializable as stable JSON.

use std::sync::Arc;

use serde::Serialize;

use crate::error::Result;
use crate::meta::Meta;
use crate::store::crypto::hex;
use crate::store::scan::{list_shards, list_stripes, shard_disk, stripe_disk};
use crate::store::{Disk, DiskState, Store};

use super::scrub::keyless_volume;

#[derive(Clone, Debug, Serialize)]
pub struct DiskStatus {
    pub index: usize,
    pub path: String,
    /// ok, missing, read-only, stale, foreign, unreadable.
    pub state: String,
    pub detail: Option<String>,
    pub total_bytes: Option<u64>,
    pub free_bytes: Option<u64>,
    /// Shard files on the disk (`None` when the disk is not usable).
    pub shards: Option<u64>,
    /// Shards of readable chunks that belong on this disk and are not there (`None` when the disk is not usable):
    /// it was away, or restored from an older copy, while they were written. `scrub --repair` rebuilds them.
    pub lacking: Option<u64>,
    /// I/O and verification errors seen since the store was opened.
    pub errors: u64,
    /// Lifetime totals recorded by mounts in the metadata database (`None` when it could not be read, e.g. while
    /// the volume is mounted): errors seen on this disk (I/O errors, corrupt or missing shards)...
    pub errors_seen: Option<u64>,
    /// ...shards on it rebuilt from the other disks and written back (heal on read)...
    pub repaired: Option<u64>,
    /// ...and chunk reads served without its shard.
    pub degraded_reads: Option<u64>,
}

/// (errors_seen, repaired, degraded_reads) per disk slot, from the metadata database.
fn lifetime_counters(meta: Option<&Meta>, disks: usize) -> Result<Vec<[Option<u64>; 3]>> {
    let Some(meta) = meta else {
        return Ok(vec![[None; 3]; disks]);
    };
    let mut out = vec![[Some(0); 3]; disks];
    let mut tx = meta.write()?;
    for (disk, name, v) in tx.disk_counters()? {
        let col = crate::fs::PERSISTED_DISK_COUNTERS
            .iter()
            .position(|n| *n == name);
        if let (Some(row), Some(col)) = (out.get_mut(disk as usize), col) {
            row[col] = Some(v);
        }
    }
    Ok(out)
}

/// Space figures from the metadata (absent when the metadata is locked by a mount).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Usage {
    pub files: u64,
    pub inodes: u64,
    /// Sum of regular file sizes.
    pub logical_bytes: u64,
    /// Sum of the plaintext sizes of the distinct referenced chunks.
    pub unique_chunk_bytes: u64,
    /// Bytes the referenced chunks occupy on the disks, all shards and headers.
    pub stored_bytes: u64,
    /// logical / unique (≥ 1 when deduplication or holes save space).
    pub dedup_ratio: f64,
    /// stored / unique: the cost of the erasure code and headers, after compression.
    pub parity_overhead: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub volume_id: String,
    /// On-disk format version (FORMAT.md "Versions").
    pub format_version: u16,
    pub layout: String,
    pub k: u8,
    pub m: u8,
    pub read_only: bool,
    pub disks: Vec<DiskStatus>,
    /// Further disk losses survivable now: m minus disks not ok, and no more than the fewest spare shards of any
    /// readable chunk (negative means data is unreadable).
    pub redundancy_now: i64,
    /// Disk losses survivable with every disk ok (= m).
    pub redundancy_target: i64,
    pub usage: Option<Usage>,
    /// Chunks whose shards are not all in place.
    pub census: ShardCensus,
}

/// Chunks whose shards are not all where they belong, counted from the usable disks' listings (no key needed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShardCensus {
    /// Chunks with at least k shards but not all k+m: readable, with less redundancy until `scrub --repair`.
    /// A packed stripe (format v3) counts as one chunk here and below, with its files as shards.
    pub chunks_short: u64,
    /// Chunks with fewer than k shards: unreadable, or leftovers of an interrupted delete (`gc` frees those).
    /// When the metadata database could be read, only those it references (or holds) are counted here...
    pub chunks_below_k: u64,
    /// ...and the others here: leftovers, typically shards of chunks deleted while a disk was away, which came
    /// back with it. `gc` frees them. Always 0 without the database (a mounted volume's is locked).
    pub chunks_leftover: u64,
    /// Whether the metadata database told leftovers apart from chunks in use.
    pub metadata_checked: bool,
    /// Fewest spare shards (present minus k) of any readable chunk; `None` when there is none.
    pub worst_spare: Option<u64>,
}

/// Chunk → bit i set when its shard i is on the disk it belongs on.
type Masks = std::collections::HashMap<crate::store::ChunkId, Shards>;

/// A set of shard indexes (k+m is at most 255).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Shards([u64; 4]);

impl Shards {
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// One figure per configured disk, `None` for a disk that is not usable.
type PerDisk = Vec<Option<u64>>;

/// A packed stripe (format v3) counted as one unit of the census: its id, then a marker no keyed chunk id has in
/// practice (2^-128). Its first 8 bytes are the stripe id's, so [`shard_disk`] places it as [`stripe_disk`] does.
fn stripe_key(id: &crate::store::stripe::StripeId) -> crate::store::ChunkId {
    let mut k = [0u8; 32];
    k[..16].copy_from_slice(id);
    k[16..].copy_from_slice(STRIPE_MARK);
    crate::store::ChunkId(k)
}

const STRIPE_MARK: &[u8; 16] = b"valencefs stripe";

fn is_stripe_key(id: &crate::store::ChunkId) -> bool {
    &id.0[16..] == STRIPE_MARK
}

/// Which of its k+m shards each chunk has on the listed disks (bit i = shard i, on the disk it belongs on); a
/// packed stripe is one unit, bit i = its file i.
fn shard_masks(disks: &[Arc<dyn Disk>], listed: &[bool], n: usize) -> Result<(Masks, PerDisk)> {
    let mut masks = std::collections::HashMap::new();
    let mut counts = Vec::with_capacity(disks.len());
    for (d, disk) in disks.iter().enumerate() {
        if !listed[d] {
            counts.push(None);
            continue;
        }
        let shards = list_shards(disk.as_ref())?;
        let stripes = list_stripes(disk.as_ref())?;
        counts.push(Some((shards.len() + stripes.len()) as u64));
        for (id, i) in shards {
            if i < n && shard_disk(&id, i, disks.len()) == d {
                masks.entry(id).or_insert_with(Shards::default).insert(i);
            }
        }
        for (id, i) in stripes {
            if i < n && stripe_disk(&id, i, disks.len()) == d {
                masks
                    .entry(stripe_key(&id))
                    .or_insert_with(Shards::default)
                    .insert(i);
            }
        }
    }
    Ok((masks, counts))
}

/// Lists the usable disks and counts chunks missing shards: (shard files per disk, shards lacking per disk,
/// census). A chunk counts only if it is short in two listings in a row, so a put or delete in flight beside a
/// mount (its shards appearing or vanishing between one disk's listing and the next) is not reported.
fn census(
    disks: &[Arc<dyn Disk>],
    listed: &[bool],
    k: usize,
    m: usize,
    meta: Option<&Meta>,
) -> Result<(PerDisk, PerDisk, ShardCensus)> {
    let n = k + m;
    let (first, counts) = shard_masks(disks, listed, n)?;
    let mut lacking: Vec<Option<u64>> = listed.iter().map(|&l| l.then_some(0)).collect();
    let mut out = ShardCensus {
        metadata_checked: meta.is_some(),
        ..Default::default()
    };
    // Nothing short: no second listing.
    let again = if first.values().any(|s| s.len() < n) {
        shard_masks(disks, listed, n)?.0
    } else {
        Masks::new()
    };
    let mut tx = None;
    for (id, was) in &first {
        if was.len() == n {
            continue;
        }
        let now = again.get(id).copied().unwrap_or_default();
        let present = now.len();
        if present == n || present == 0 {
            continue;
        }
        if present < k {
            if tx.is_none() {
                tx = meta.map(|m| m.write()).transpose()?;
            }
            // A stripe below k is damage: telling its chunks in use from leftovers would need its index read.
            let known = match &mut tx {
                _ if is_stripe_key(id) => true,
                Some(tx) => tx.chunk(id)?.is_some() || tx.held_chunk(id)?.is_some(),
                None => true,
            };
            if known {
                out.chunks_below_k += 1;
            } else {
                out.chunks_leftover += 1;
            }
            continue;
        }
        out.chunks_short += 1;
        let spare = (present - k) as u64;
        out.worst_spare = Some(out.worst_spare.map_or(spare, |w| w.min(spare)));
        for i in (0..n).filter(|&i| !now.has(i)) {
            if let Some(l) = &mut lacking[shard_disk(id, i, disks.len())] {
                *l += 1;
            }
        }
    }
    if out.worst_spare.is_none() && !first.is_empty() {
        out.worst_spare = Some(m as u64);
    }
    Ok((counts, lacking, out))
}

impl StatusReport {
    pub fn summary(&self) -> String {
        let ok = self.disks.iter().filter(|d| d.state == "ok").count();
        let mut s = format!(
            "{} volume {} (format v{}): {ok}/{} disks ok, survives {} more disk losses (target {})",
            self.layout,
            &self.volume_id[..8],
            self.format_version,
            self.disks.len(),
            self.redundancy_now.max(0),
            self.redundancy_target
        );
        if let Some(u) = &self.usage {
            s += &format!(
                "; {} files, {:.1} MB logical, {:.1} MB unique, {:.1} MB stored (dedup {:.2}x, overhead {:.2}x)",
                u.files,
                u.logical_bytes as f64 / 1e6,
                u.unique_chunk_bytes as f64 / 1e6,
                u.stored_bytes as f64 / 1e6,
                u.dedup_ratio,
                u.parity_overhead
            );
        }
        s
    }
}

/// Gathers the status. `meta` is optional: a mounted volume's database is locked by the daemon.
pub fn status(store: &Store, meta: Option<&Meta>) -> Result<StatusReport> {
    let r = store.redundancy();
    let disks = store.disks();
    let health = store.health();
    let not_ok = health.iter().filter(|h| h.state != DiskState::Ok).count() as i64;
    let listed: Vec<bool> = health
        .iter()
        .map(|h| matches!(h.state, DiskState::Ok | DiskState::ReadOnly))
        .collect();
    let (counts, lacking, census) = census(&disks, &listed, r.k as usize, r.m as usize, meta)?;
    let lifetime = lifetime_counters(meta, health.len())?;
    let disks = health
        .into_iter()
        .map(|h| {
            let space = disks[h.index].space();
            DiskStatus {
                index: h.index,
                path: h.description,
                state: h.state.name().to_string(),
                detail: h.detail,
                total_bytes: space.map(|s| s.0),
                free_bytes: space.map(|s| s.1),
                shards: counts[h.index],
                lacking: lacking[h.index],
                errors: h.errors,
                errors_seen: lifetime[h.index][0],
                repaired: lifetime[h.index][1],
                degraded_reads: lifetime[h.index][2],
            }
        })
        .collect();
    let usage = meta.map(usage).transpose()?;
    Ok(StatusReport {
        volume_id: hex(&store.volume_id()),
        format_version: store.format_version(),
        layout: r.to_string(),
        k: r.k,
        m: r.m,
        read_only: store.is_read_only(),
        disks,
        redundancy_now: redundancy_now(r.m, not_ok, &census),
        redundancy_target: r.m as i64,
        usage,
        census,
    })
}

/// Disk losses survivable now: fewer by each disk not ok, and no more than the weakest readable chunk allows.
fn redundancy_now(m: u8, not_ok: i64, census: &ShardCensus) -> i64 {
    let by_disks = m as i64 - not_ok;
    census
        .worst_spare
        .map_or(by_disks, |w| by_disks.min(w as i64))
}

/// Usage figures from the metadata database (no key needed: redb is local and unencrypted).
pub fn usage(meta: &Meta) -> Result<Usage> {
    let mut tx = meta.write()?;
    let totals = tx.totals()?;
    let inodes = tx.all_inodes()?;
    let files = inodes.iter().filter(|i| i.is_file()).count() as u64;
    let logical: u64 = inodes.iter().filter(|i| i.is_file()).map(|i| i.size).sum();
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Ok(Usage {
        files,
        inodes: inodes.len() as u64,
        logical_bytes: logical,
        unique_chunk_bytes: totals.chunk_bytes,
        stored_bytes: totals.stored_bytes,
        dedup_ratio: ratio(logical, totals.chunk_bytes),
        parity_overhead: ratio(totals.stored_bytes, totals.chunk_bytes),
    })
}

/// The status without the key: disk states from the headers (as the keyless scrub reads them), shard counts from
/// the listings, space from the disks, usage from the metadata when given. Error counts are 0 (no store is open).
pub fn status_keyless(disks: &[Arc<dyn Disk>], meta: Option<&Meta>) -> Result<StatusReport> {
    let vol = keyless_volume(disks)?;
    let (k, m) = (vol.expect.k, vol.expect.m);
    let mut not_ok = 0;
    let lifetime = lifetime_counters(meta, disks.len())?;
    let listed: Vec<bool> = vol.disks.iter().map(|(usable, _)| *usable).collect();
    let (counts, lacking, census) = census(disks, &listed, k as usize, m as usize, meta)?;
    let mut out = Vec::with_capacity(disks.len());
    for (i, d) in disks.iter().enumerate() {
        let (_, state) = &vol.disks[i];
        if state != "ok" {
            not_ok += 1;
        }
        let space = d.space();
        out.push(DiskStatus {
            index: i,
            path: d.describe(),
            state: state.clone(),
            detail: None,
            total_bytes: space.map(|s| s.0),
            free_bytes: space.map(|s| s.1),
            shards: counts[i],
            lacking: lacking[i],
            errors: 0,
            errors_seen: lifetime[i][0],
            repaired: lifetime[i][1],
            degraded_reads: lifetime[i][2],
        });
    }
    Ok(StatusReport {
        volume_id: hex(&vol.expect.volume_id),
        format_version: vol.format_version,
        layout: format!("{k}+{m}"),
        k,
        m,
        read_only: false,
        disks: out,
        redundancy_now: redundancy_now(m, not_ok, &census),
        redundancy_target: m as i64,
        usage: meta.map(usage).transpose()?,
        census,
    })
}

#[cfg(test)]
mod tests {
    use super::Shards;

    #[test]
    fn shard_sets_hold_every_index_a_layout_allows() {
        let mut s = Shards::default();
        for i in [0, 31, 32, 63, 64, 127, 200, 254] {
            s.insert(i);
        }
        s.insert(64);
        assert_eq!(s.len(), 8);
        assert!(s.has(254) && s.has(0) && s.has(32) && !s.has(1) && !s.has(253));
    }
}
