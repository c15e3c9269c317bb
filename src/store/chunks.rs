//! Chunk I/O: put (compress → seal → encode → write shards), get (fast path, then verify/reconstruct/heal),
//! delete, sync and listing.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use super::crypto::hex;
use super::crypto::INNER_FLAG_ZSTD;
use super::format::STRIPE_DIR;
use super::format::{
    parse_shard_name, shard_name, ShardHeader, FLAG_COMPRESSION, SHARD_DIR, SHARD_HEADER_LEN,
};
use super::stripe::{
    self, parse_stripe_name, stripe_name, Found, Sealed, StripeHeader, StripeId, Stripes,
};
use super::{BadShard, ChunkId, DiskState, ReadReport, RepackReport, ShardFault, Store};
use crate::error::{Error, Result};

/// zstd settings for chunk bodies: level 1 (the fastest positive level; on typical data within a few % of level 3)
/// with a 4,096-entry hash table instead of its default 8,192. The smaller table stays in L1/L2 cache: on a pg_dump
/// of mixed tables (hex text and pgbench rows) it compressed 8 % faster and 0.7 % smaller (FORMAT.md
/// "Measurements"). Decompression does not depend on these settings.
const ZSTD_LEVEL: i32 = 1;
const ZSTD_HASH_LOG: u32 = 12;
/// For data that zstd shrinks mostly by entropy-coding its bytes, not by finding repeats (hex or base64 text,
/// hashes, UUIDs: a sample compressing to ≥ [`LITERAL_MODE_FROM`] of its size), level −4 with literal compression
/// forced back on: its match finder samples every 4th position. On hex text it ran 1.66× as fast for 1.5 % more
/// bytes; on prose, code or pgbench rows, which level 1 shrinks further by their repeats, it would cost 5–70 %
/// more bytes, so they keep level 1 (FORMAT.md "Measurements").
const ZSTD_LITERAL_LEVEL: i32 = -4;
/// Sample ratio (compressed / plain, per mille) from which the literal mode is used.
const LITERAL_MODE_FROM: usize = 450;

/// How `put` stores a chunk body, decided from a sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Packing {
    /// The sample did not shrink by 3 %: store the plaintext.
    Plain,
    /// zstd level 1.
    Zstd,
    /// zstd in literal mode (`ZSTD_LITERAL_LEVEL`).
    ZstdLiterals,
}

/// Compresses with the settings above (`literals`: the literal mode), on compression contexts kept per thread.
fn zstd_compress(data: &[u8], literals: bool) -> Option<Vec<u8>> {
    use std::cell::RefCell;
    use zstd::zstd_safe::{CParameter, ParamSwitch};
    type Ctx = RefCell<Option<zstd::bulk::Compressor<'static>>>;
    thread_local! {
        static CCTX: Ctx = const { RefCell::new(None) };
        static CCTX_LITERALS: Ctx = const { RefCell::new(None) };
    }
    let run = |c: &Ctx| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            let mut z = zstd::bulk::Compressor::new(if literals {
                ZSTD_LITERAL_LEVEL
            } else {
                ZSTD_LEVEL
            })
            .ok()?;
            z.set_parameter(CParameter::HashLog(ZSTD_HASH_LOG)).ok()?;
            if literals {
                z.set_parameter(CParameter::LiteralCompressionMode(ParamSwitch::Enable))
                    .ok()?;
            }
            *c = Some(z);
        }
        c.as_mut()?.compress(data).ok()
    };
    if literals {
        CCTX_LITERALS.with(run)
    } else {
        CCTX.with(run)
    }
}

/// How to store `data`, from zstd level 1 on a 64 KiB sample from its middle: plain if the sample does not shrink
/// by 3 %, the literal mode if it shrinks only by entropy coding, level 1 otherwise. Small data is tried whole at
/// level 1.
fn packing(data: &[u8]) -> Packing {
    const SAMPLE: usize = 64 * 1024;
    if data.len() <= 2 * SAMPLE {
        return Packing::Zstd;
    }
    let mid = data.len() / 2 - SAMPLE / 2;
    match zstd_compress(&data[mid..mid + SAMPLE], false) {
        Some(c) if c.len() * 100 > SAMPLE * 97 => Packing::Plain,
        Some(c) if c.len() * 1000 >= SAMPLE * LITERAL_MODE_FROM => Packing::ZstdLiterals,
        Some(_) => Packing::Zstd,
        None => Packing::Plain,
    }
}

/// Outcome of reading one shard file.
pub(super) enum Fetched {
    Good(ShardHeader, Vec<u8>),
    Bad(ShardFault),
}

impl Store {
    /// Disk holding shard `i` of a chunk: consecutive disks from a start derived from the (keyed, uniform) id.
    fn disk_of(&self, id: &ChunkId, i: usize) -> usize {
        let n = self.slots.len();
        let start = (u64::from_le_bytes(id.0[..8].try_into().expect("8")) % n as u64) as usize;
        (start + i) % n
    }

    /// Disk holding file `i` of a stripe: the same rule as for a chunk, from the (random) stripe id.
    pub(super) fn stripe_disk(&self, stripe: &StripeId, i: usize) -> usize {
        let n = self.slots.len();
        let start = (u64::from_le_bytes(stripe[..8].try_into().expect("8")) % n as u64) as usize;
        (start + i) % n
    }

    /// Disk holding shard `i` of a chunk, wherever the chunk lies (its own files, or a stripe's).
    fn piece_disk(&self, id: &ChunkId, i: usize) -> usize {
        match self.stripes.as_ref().map(|st| st.locate(id, None)) {
            Some(Found::Disk(loc)) => self.stripe_disk(&loc.stripe, i),
            _ => self.disk_of(id, i),
        }
    }

    /// Header of file `i` of the stripe being sealed (its id is filled in by the sealer).
    pub(super) fn stripe_head(&self, i: usize) -> StripeHeader {
        let h = self.header.read();
        StripeHeader {
            k: h.k,
            m: h.m,
            index: i as u8,
            volume_id: h.volume_id,
            stripe_id: [0; 16],
        }
    }

    /// Writes every sealed stripe not yet on the disks: each file to its disk, and the stripe counts as written
    /// when k+1 files landed (the put quorum of §8). Stripes that miss it stay in memory, readable, for the next
    /// call; the first such failure is returned.
    /// `seal_open`: also seal the open stripe first, however little it holds (`sync`).
    fn write_sealed(&self, seal_open: bool) -> Result<()> {
        let Some(st) = &self.stripes else {
            return Ok(());
        };
        let mut first_err = None;
        for s in st.sealed(seal_open, |i| self.stripe_head(i)) {
            // One writer per stripe; a second caller waits for it and then finds it written.
            let mut done = s.written.lock();
            if *done {
                continue;
            }
            match self.write_stripe_files(&s) {
                Ok(on) => {
                    *done = true;
                    st.written(&s);
                    self.unsynced.lock().insert(on);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Puts a sealed stripe's k+m files; returns the disks that took one (sorted), if at least k+1 did.
    fn write_stripe_files(&self, s: &Sealed) -> Result<Vec<u8>> {
        let k = self.header.read().k as usize;
        let targets: Vec<usize> = (0..s.width())
            .filter(|&i| self.usable(self.stripe_disk(&s.id, i)))
            .collect();
        let results = self.par_map(&targets, |i| {
            let d = self.stripe_disk(&s.id, i);
            self.slots[d]
                .disk
                .put_parts(&stripe_name(&s.id, i), &s.file_parts(i))
        });
        let mut on: Vec<u8> = Vec::new();
        let (ok, first_err) = self.tally_writes(
            targets
                .iter()
                .zip(results)
                .map(|(&i, r)| (i, self.stripe_disk(&s.id, i), s.file_len(i), r)),
            "a stripe file",
        );
        on.extend(ok.iter().map(|&i| self.stripe_disk(&s.id, i) as u8));
        if on.len() < k + 1 {
            // Nothing names these files yet: remove what landed, keep the stripe in memory.
            for &i in &targets {
                let _ = self.slots[self.stripe_disk(&s.id, i)]
                    .disk
                    .delete(&stripe_name(&s.id, i));
            }
            return Err(first_err.unwrap_or_else(|| {
                Error::Volume(format!(
                    "only {} of {} files of a stripe could be placed (disks unavailable); need {}",
                    on.len(),
                    s.width(),
                    k + 1
                ))
            }));
        }
        on.sort_unstable();
        Ok(on)
    }

    /// Repacks a format v3 volume's stripes (FORMAT.md §14): deletes the files of stripes no live chunk is left
    /// in, and rewrites the live chunks of every stripe whose live bytes fall below `below` (a fraction) of its
    /// bytes, or that is short (under a quarter of a full stripe) while others are too, into new full stripes.
    /// Ordering (MUST): the new stripes are durable (`sync`, with the write quorum) before any old stripe file is
    /// deleted, so a crash leaves a chunk in two stripes, never in none. Live chunks are read verified (degraded if
    /// need be) and sealed again to the same bytes. Deletions are durable after the caller's next `sync`.
    /// Chunks are live while the store's map names them: run it after the caller has deleted what is unreferenced.
    pub fn repack(&self, below: f64) -> Result<RepackReport> {
        let mut report = RepackReport::default();
        let Some(st) = &self.stripes else {
            return Ok(report);
        };
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let usage = st.usage();
        // Piece bytes per file of a full stripe: the target's envelopes over k, plus shard headers.
        let full = stripe::STRIPE_TARGET / self.redundancy().k as usize;
        let short = |u: &stripe::StripeUse| (u.total_bytes as usize) < full / 4;
        let shorts = usage
            .iter()
            .filter(|u| !u.live.is_empty() && short(u))
            .count();
        let mut old = Vec::new();
        for u in &usage {
            if u.live.is_empty() {
                old.push(u.id);
                continue;
            }
            let sparse = (u.live_bytes as f64) < below * u.total_bytes as f64;
            if !(sparse || short(u) && shorts > 1) {
                continue;
            }
            for id in &u.live {
                let plain = self.get(id)?;
                report.bytes_read += plain.len() as u64;
                let (bytes, _) = self.put_inner(id, &plain, true)?;
                report.bytes_written += bytes;
                report.chunks_moved += 1;
            }
            report.stripes_repacked += 1;
            old.push(u.id);
        }
        if old.is_empty() {
            return Ok(report);
        }
        // The new stripes durable first.
        self.sync()?;
        let width = self.redundancy_width();
        for id in &old {
            if st.usage().iter().any(|u| u.id == *id && !u.live.is_empty()) {
                continue; // a chunk could not move (it will on a later run)
            }
            for i in 0..width {
                let d = self.stripe_disk(id, i);
                if self.usable(d) {
                    self.slots[d].disk.delete(&stripe_name(id, i))?;
                }
            }
            st.forget(id);
            report.stripes_deleted += 1;
            report.bytes_deleted += usage
                .iter()
                .find(|u| u.id == *id)
                .map_or(0, |u| u.total_bytes * width as u64);
        }
        Ok(report)
    }

    pub(super) fn redundancy_width(&self) -> usize {
        let r = self.redundancy();
        r.k as usize + r.m as usize
    }

    /// Counts and logs the outcome of writing shard `i` (`len` bytes) to disk `d`, for every `(i, d, len, result)`;
    /// returns the indexes written and the error to report (a full disk in preference: the most actionable).
    fn tally_writes(
        &self,
        results: impl Iterator<Item = (usize, usize, usize, Result<()>)>,
        what: &str,
    ) -> (Vec<usize>, Option<Error>) {
        let mut ok = Vec::new();
        let mut first_err: Option<Error> = None;
        for (i, d, len, r) in results {
            match r {
                Ok(()) => {
                    let c = &self.slots[d].counters;
                    c.shard_writes.fetch_add(1, Ordering::Relaxed);
                    c.shard_write_bytes.fetch_add(len as u64, Ordering::Relaxed);
                    ok.push(i);
                }
                Err(e) => {
                    self.note_error(d);
                    self.disk_event(
                        d,
                        "write",
                        tracing::Level::WARN,
                        format_args!("writing {what} failed: {e}"),
                    );
                    if first_err.is_none() || matches!(e, Error::NoSpace { .. }) {
                        first_err = Some(e);
                    }
                }
            }
        }
        (ok, first_err)
    }

    /// Reads the head (header and index) of every stripe on the disks, for [`Store::open`] of a v3 volume. Each
    /// stripe's head is read from the first of its files that checks out (all k+m carry the same index).
    pub(super) fn read_stripe_heads(&self) -> Result<Stripes> {
        let volume_id = self.volume_id();
        let mut ids = BTreeSet::new();
        for (d, s) in self.slots.iter().enumerate() {
            if !self.usable(d) {
                continue;
            }
            for name in s.disk.list(&format!("{STRIPE_DIR}/"))? {
                if let Some((id, _)) = parse_stripe_name(&name) {
                    ids.insert(id);
                }
            }
        }
        let n = self.slots.len();
        let mut heads = Vec::with_capacity(ids.len());
        'stripes: for id in ids {
            for i in 0..n.min(255) {
                let d = self.stripe_disk(&id, i);
                if !self.usable(d) {
                    continue;
                }
                let name = stripe_name(&id, i);
                let disk = &self.slots[d].disk;
                let Ok(first) = disk.get_range(&name, 0, 64 << 10) else {
                    continue;
                };
                let Ok(len) = stripe::head_len(&first) else {
                    continue;
                };
                let head = if len <= first.len() {
                    first
                } else {
                    match disk.get_range(&name, 0, len as u64) {
                        Ok(b) => b,
                        Err(_) => continue,
                    }
                };
                match stripe::decode_head(&head) {
                    Ok((h, entries))
                        if h.stripe_id == id
                            && h.volume_id == volume_id
                            && h.index as usize == i =>
                    {
                        heads.push((id, entries));
                        continue 'stripes;
                    }
                    _ => continue,
                }
            }
            tracing::warn!(
                "stripe {}: no file with a readable index on any usable disk; its chunks are unreadable",
                hex(&id)
            );
        }
        Ok(Stripes::from_heads(heads))
    }

    pub(super) fn usable(&self, disk: usize) -> bool {
        matches!(
            self.slots[disk].state.lock().0,
            DiskState::Ok | DiskState::ReadOnly
        )
    }

    pub(super) fn note_error(&self, disk: usize) {
        self.slots[disk]
            .counters
            .errors
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Logs one line about a disk, at most a few per minute for the same disk and `kind` (a dead disk must not
    /// flood the log); the line says how many were suppressed before it.
    fn disk_event(
        &self,
        disk: usize,
        kind: &str,
        level: tracing::Level,
        what: std::fmt::Arguments,
    ) {
        let path = self.slots[disk].disk.describe();
        let Some(n) = crate::logging::allow(&format!("{path}\0{kind}")) else {
            return;
        };
        let note = crate::logging::suppressed_note(n);
        match level {
            tracing::Level::ERROR => tracing::error!("disk {path}: {what}{note}"),
            tracing::Level::WARN => tracing::warn!("disk {path}: {what}{note}"),
            _ => tracing::info!("disk {path}: {what}{note}"),
        }
    }

    /// Counts and logs what a reconstructing read found wrong with each shard.
    fn account_bad_shards(&self, id: &ChunkId, bad: &[BadShard]) {
        if bad.is_empty() {
            return;
        }
        self.counters.degraded_reads.fetch_add(1, Ordering::Relaxed);
        let short = &id.to_hex()[..16];
        for b in bad {
            self.slots[b.disk]
                .counters
                .degraded_reads
                .fetch_add(1, Ordering::Relaxed);
            let (kind, what) = match b.fault {
                // Counted and logged with its error text where it happened (`fetch`).
                ShardFault::Unreadable => continue,
                ShardFault::Corrupt => ("corrupt", "is corrupt (checksum or header mismatch)"),
                ShardFault::Missing if self.usable(b.disk) => ("missing", "is missing"),
                ShardFault::Missing => ("unavailable", "is on an unavailable disk"),
            };
            if kind != "unavailable" {
                self.note_error(b.disk);
            }
            self.disk_event(
                b.disk,
                kind,
                tracing::Level::WARN,
                format_args!(
                    "shard {} of chunk {short} {what}; degraded read served from the other disks",
                    b.shard
                ),
            );
        }
    }

    /// Runs `f(i)` for every `i` in `items`, on scoped threads when the disks involved benefit from it.
    fn par_map<T: Send>(&self, items: &[usize], f: impl Fn(usize) -> T + Sync) -> Vec<T> {
        let parallel = items.len() > 1 && self.slots.iter().any(|s| s.disk.parallel_io());
        if !parallel {
            return items.iter().map(|&i| f(i)).collect();
        }
        // The calling thread does the first item itself: one spawn fewer per operation.
        std::thread::scope(|s| {
            let f = &f;
            let handles: Vec<_> = items[1..].iter().map(|&i| s.spawn(move || f(i))).collect();
            let mut out = Vec::with_capacity(items.len());
            out.push(f(items[0]));
            out.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().expect("shard I/O thread panicked")),
            );
            out
        })
    }

    /// Stores a chunk; returns the bytes written to disks (all shards including headers). Idempotent: the same
    /// plaintext always seals and encodes to the same shard bytes, so concurrent or repeated puts of one chunk
    /// write identical files. Not durable until [`Store::sync`]. Succeeds when at least k+1 shards were written
    /// (one more than the minimum to read it back); otherwise best-effort removes what it wrote and fails.
    pub fn put(&self, id: &ChunkId, plaintext: &[u8]) -> Result<u64> {
        self.put_stripe(id, plaintext).map(|(bytes, _)| bytes)
    }

    /// [`Store::put`], also returning the chunk's stripe hash ([`crate::store::format::stripe_hash`]).
    pub fn put_stripe(&self, id: &ChunkId, plaintext: &[u8]) -> Result<(u64, [u8; 32])> {
        self.put_inner(id, plaintext, false)
    }

    /// [`Store::put_stripe`]; `again`: append to the open stripe even if a stripe holds the chunk (a repack).
    fn put_inner(&self, id: &ChunkId, plaintext: &[u8], again: bool) -> Result<(u64, [u8; 32])> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        // A mismatched id would store a chunk that every later read rejects as Corrupt. Checking costs a BLAKE3
        // pass (~10 % of put), so only debug builds (the test suites of every layer) pay it.
        debug_assert_eq!(
            self.chunk_id(plaintext),
            *id,
            "put: id is not this plaintext's chunk id"
        );
        let (volume_id, compression, k, m) = {
            let h = self.header.read();
            (
                h.volume_id,
                h.flags & FLAG_COMPRESSION != 0,
                h.k as usize,
                h.m as usize,
            )
        };
        if plaintext.len() > u32::MAX as usize - 4096 {
            return Err(Error::Invalid("chunk too large".into()));
        }
        if let Some(st) = &self.stripes {
            // Stripes whose write failed are held in memory; past a few, refuse more rather than grow.
            if st.too_many_unwritten() {
                self.write_sealed(false)?;
            }
        }
        // Keep the compressed form only if it saves ≥ 3 % and the reader's decompression bound covers it. A
        // 64 KiB sample from the middle decides first, so incompressible chunks (most media) cost ~6 % of a
        // full zstd pass instead of a whole one.
        let packing = if compression {
            packing(plaintext)
        } else {
            Packing::Plain
        };
        let compressed = match packing {
            Packing::Plain => None,
            p => zstd_compress(plaintext, p == Packing::ZstdLiterals).filter(|c| {
                c.len() as u64 * 100 <= plaintext.len() as u64 * 97
                    && plaintext.len() <= self.decompress_bound(c.len())
            }),
        };
        let envelope = match &compressed {
            Some(c) => self.keys.seal_chunk(&volume_id, &id.0, INNER_FLAG_ZSTD, c),
            None => self.keys.seal_chunk(&volume_id, &id.0, 0, plaintext),
        };
        drop(compressed);
        let mut files = self.codec.encode_with_prefix(&envelope, SHARD_HEADER_LEN);
        let shard_len = files[0].len() - SHARD_HEADER_LEN;
        let mut payload_hashes = Vec::with_capacity(files.len());
        for (i, f) in files.iter_mut().enumerate() {
            let payload_hash = *blake3::hash(&f[SHARD_HEADER_LEN..]).as_bytes();
            payload_hashes.push(payload_hash);
            let h = ShardHeader {
                k: k as u8,
                m: m as u8,
                index: i as u8,
                volume_id,
                chunk_id: id.0,
                envelope_len: envelope.len() as u64,
                shard_len: shard_len as u32,
                payload_hash,
            };
            f[..SHARD_HEADER_LEN].copy_from_slice(&h.encode());
        }
        let envelope_len = envelope.len();
        drop(envelope);
        let stripe = crate::store::format::stripe_hash(&payload_hashes);
        if let Some(st) = &self.stripes {
            // Stored already (written, or in a stripe still in memory): the same bytes, nothing to add. The stripe
            // hash is a function of the chunk alone, so it is the one recorded before.
            if !again && st.holds(id) {
                return Ok((0, stripe));
            }
            let bytes = files.iter().map(|f| f.len() as u64).sum();
            if st
                .append(id, files, envelope_len, |i| self.stripe_head(i))
                .is_some()
            {
                // A failed write keeps the stripe in memory (readable) for `sync` to retry; only `sync` promises.
                if let Err(e) = self.write_sealed(false) {
                    tracing::debug!("writing a full stripe failed, kept for sync: {e}");
                }
            }
            return Ok((bytes, stripe));
        }
        let targets: Vec<usize> = (0..k + m)
            .filter(|&i| self.usable(self.disk_of(id, i)))
            .collect();
        let results = self.par_map(&targets, |i| {
            let d = self.disk_of(id, i);
            self.slots[d].disk.put(&shard_name(&id.0, i), &files[i])
        });
        let (written, first_err) = self.tally_writes(
            targets
                .iter()
                .zip(results)
                .map(|(&i, r)| (i, self.disk_of(id, i), files[i].len(), r)),
            "a shard",
        );
        if written.len() < k + 1 {
            for &i in &written {
                let _ = self.slots[self.disk_of(id, i)]
                    .disk
                    .delete(&shard_name(&id.0, i));
            }
            return Err(first_err.unwrap_or_else(|| {
                Error::Volume(format!(
                    "only {} of {} shards of chunk {} could be placed (disks unavailable); need {}",
                    written.len(),
                    k + m,
                    id.to_hex(),
                    k + 1
                ))
            }));
        }
        let mut on: Vec<u8> = written.iter().map(|&i| self.disk_of(id, i) as u8).collect();
        on.sort_unstable();
        self.unsynced.lock().insert(on);
        Ok((written.iter().map(|&i| files[i].len() as u64).sum(), stripe))
    }

    /// Reads and verifies a chunk. Never returns bytes that failed verification.
    pub fn get(&self, id: &ChunkId) -> Result<Vec<u8>> {
        self.get_report(id).map(|(data, _)| data)
    }

    pub(super) fn fetch(
        &self,
        id: &ChunkId,
        i: usize,
        volume_id: &[u8; 16],
        verify_payload: bool,
    ) -> Fetched {
        let found = match &self.stripes {
            Some(st) => st.locate(id, Some(i)),
            None => Found::Nowhere,
        };
        let (d, read) = match found {
            Found::Memory(piece) => match piece {
                Some(p) => return self.check_piece(id, i, volume_id, verify_payload, p),
                None => return Fetched::Bad(ShardFault::Missing),
            },
            Found::Disk(loc) => {
                let d = self.stripe_disk(&loc.stripe, i);
                let name = stripe_name(&loc.stripe, i);
                (d, (name, Some((loc.offset, loc.len as u64))))
            }
            Found::Nowhere => (self.disk_of(id, i), (shard_name(&id.0, i), None)),
        };
        if !self.usable(d) {
            return Fetched::Bad(ShardFault::Missing);
        }
        let got = match read.1 {
            Some((off, len)) => self.slots[d].disk.get_range(&read.0, off, len),
            None => self.slots[d].disk.get(&read.0),
        };
        let file = match got {
            Ok(f) => {
                let c = &self.slots[d].counters;
                c.shard_reads.fetch_add(1, Ordering::Relaxed);
                c.shard_read_bytes
                    .fetch_add(f.len() as u64, Ordering::Relaxed);
                f
            }
            Err(Error::NotFound) => return Fetched::Bad(ShardFault::Missing),
            // Refused by the disk's read bound (an object larger than any shard, e.g. a sparse multi-GB file a disk
            // holder planted): the shard is corrupt and is rebuilt, the disk is not at fault for answering.
            Err(Error::Corrupt(_)) => return Fetched::Bad(ShardFault::Corrupt),
            Err(e) => {
                self.note_error(d);
                self.disk_event(
                    d,
                    "read",
                    tracing::Level::WARN,
                    format_args!(
                        "reading shard {i} of chunk {} failed: {e}; degraded read served from the other disks",
                        &id.to_hex()[..16]
                    ),
                );
                return Fetched::Bad(ShardFault::Unreadable);
            }
        };
        self.check_piece(id, i, volume_id, verify_payload, file)
    }

    /// Checks one shard's bytes (a v1 shard file, or a piece of a stripe) against the chunk it should be.
    fn check_piece(
        &self,
        id: &ChunkId,
        i: usize,
        volume_id: &[u8; 16],
        verify_payload: bool,
        file: Vec<u8>,
    ) -> Fetched {
        let (k, m) = {
            let h = self.header.read();
            (h.k, h.m)
        };
        match ShardHeader::decode(&file) {
            Ok(h)
                if h.chunk_id == id.0
                    && &h.volume_id == volume_id
                    && h.index as usize == i
                    && (h.k, h.m) == (k, m)
                    && (!verify_payload || h.payload_ok(&file)) =>
            {
                Fetched::Good(h, file)
            }
            // Counted and logged by the reconstructing read (`account_bad_shards`).
            _ => Fetched::Bad(ShardFault::Corrupt),
        }
    }

    /// Largest plaintext a compressed body of `len` bytes may expand to. `put` stores the compressed form only
    /// within this bound (else uncompressed), so every stored chunk decompresses into a bounded buffer, even one
    /// put directly with more than `max_chunk_size` bytes.
    fn decompress_bound(&self, len: usize) -> usize {
        self.max_chunk_size().max(len.saturating_mul(64))
    }

    /// Opens an envelope, decompresses, and checks that the plaintext hashes back to `id`.
    pub(super) fn open_envelope(
        &self,
        id: &ChunkId,
        volume_id: &[u8; 16],
        envelope: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let (flags, body) = self.keys.open_chunk(volume_id, &id.0, envelope)?;
        let plain = if flags & INNER_FLAG_ZSTD != 0 {
            zstd::bulk::decompress(&body, self.decompress_bound(body.len()))
                .map_err(|e| Error::Corrupt(format!("chunk {}: zstd: {e}", id.to_hex())))?
        } else {
            body
        };
        if self.keys.chunk_id(&plain) != id.0 {
            return Err(Error::Corrupt(format!(
                "chunk {}: content does not match its id",
                id.to_hex()
            )));
        }
        Ok(plain)
    }

    /// Like [`Store::get`], and says which shards were bad and which were rebuilt and written back.
    ///
    /// Fast path: the k data shards, concatenated, open the AEAD envelope; the tag proves every byte, so their
    /// payload checksums are not computed. Otherwise every shard is read and checked against its checksum, any k
    /// good ones rebuild the rest, and (when writable) rebuilt shards are written back atomically.
    pub fn get_report(&self, id: &ChunkId) -> Result<(Vec<u8>, ReadReport)> {
        self.read_chunk(id, false)
    }

    /// Scrub one chunk: read every shard (parity too), check every checksum, and rewrite any bad or missing
    /// shard (when writable), even if the data shards alone would have opened the envelope. For fsck/scrub.
    pub fn scrub(&self, id: &ChunkId) -> Result<ReadReport> {
        self.read_chunk(id, true).map(|(_, r)| r)
    }

    fn read_chunk(&self, id: &ChunkId, full: bool) -> Result<(Vec<u8>, ReadReport)> {
        let volume_id = self.volume_id();
        let (k, m) = {
            let h = self.header.read();
            (h.k as usize, h.m as usize)
        };
        let data_idx: Vec<usize> = (0..k).collect();
        let first = self.par_map(&data_idx, |i| self.fetch(id, i, &volume_id, false));
        if !full && first.iter().all(|f| matches!(f, Fetched::Good(..))) {
            // Sizes come from the shards actually read, never from a header field: a header is checked only by
            // an unkeyed checksum, so its envelope length could be anything (issue #27 M2).
            let total: usize = first
                .iter()
                .map(|f| match f {
                    Fetched::Good(_, file) => file.len() - SHARD_HEADER_LEN,
                    Fetched::Bad(_) => 0,
                })
                .sum();
            let env_len = match &first[0] {
                Fetched::Good(h, _) => h.envelope_len,
                Fetched::Bad(_) => unreachable!(),
            };
            if env_len <= total as u64 {
                let mut envelope = Vec::with_capacity(total);
                for f in &first {
                    if let Fetched::Good(_, file) = f {
                        envelope.extend_from_slice(&file[SHARD_HEADER_LEN..]);
                    }
                }
                let env_len = env_len as usize;
                envelope.truncate(env_len);
                if let Ok(plain) = self.open_envelope(id, &volume_id, envelope) {
                    let report = ReadReport {
                        fast_path: true,
                        ..ReadReport::default()
                    };
                    return Ok((plain, report));
                }
            }
        }
        self.slow_read(id, &volume_id, k, m, first)
    }

    fn slow_read(
        &self,
        id: &ChunkId,
        volume_id: &[u8; 16],
        k: usize,
        m: usize,
        first: Vec<Fetched>,
    ) -> Result<(Vec<u8>, ReadReport)> {
        // Re-check the data shards we already hold (now with payload hashes) and fetch the parity shards.
        let mut fetched: Vec<Fetched> = first
            .into_iter()
            .map(|f| match f {
                Fetched::Good(h, file) if h.payload_ok(&file) => Fetched::Good(h, file),
                Fetched::Good(..) => Fetched::Bad(ShardFault::Corrupt),
                bad => bad,
            })
            .collect();
        let parity_idx: Vec<usize> = (k..k + m).collect();
        fetched.extend(self.par_map(&parity_idx, |i| self.fetch(id, i, volume_id, true)));
        let mut report = ReadReport::default();
        // All good shards must agree on the geometry; the most common envelope length wins.
        let mut lens: Vec<(u64, u32)> = fetched
            .iter()
            .filter_map(|f| match f {
                Fetched::Good(h, _) => Some((h.envelope_len, h.shard_len)),
                Fetched::Bad(_) => None,
            })
            .collect();
        lens.sort_unstable();
        let geometry = lens
            .chunk_by(|a, b| a == b)
            .max_by_key(|g| g.len())
            .map(|g| g[0]);
        let mut shards: Vec<Option<Vec<u8>>> = Vec::with_capacity(k + m);
        for (i, f) in fetched.into_iter().enumerate() {
            match f {
                Fetched::Good(h, mut file) if Some((h.envelope_len, h.shard_len)) == geometry => {
                    file.drain(..SHARD_HEADER_LEN);
                    shards.push(Some(file));
                }
                Fetched::Good(..) => {
                    report.bad_shards.push(BadShard {
                        shard: i,
                        disk: self.piece_disk(id, i),
                        fault: ShardFault::Corrupt,
                    });
                    shards.push(None);
                }
                Fetched::Bad(fault) => {
                    report.bad_shards.push(BadShard {
                        shard: i,
                        disk: self.piece_disk(id, i),
                        fault,
                    });
                    shards.push(None);
                }
            }
        }
        let good = shards.iter().filter(|s| s.is_some()).count();
        // No shard anywhere: the chunk does not exist (the core re-reads after a chunk was freed under a reader,
        // and prefetch may race a free). Not a disk's fault, so neither counted nor logged as one.
        if good == 0
            && report
                .bad_shards
                .iter()
                .all(|b| b.fault == ShardFault::Missing)
        {
            tracing::debug!("chunk {}: no shard on any disk", id.to_hex());
            return Err(Error::Unrecoverable {
                chunk: id.to_hex(),
                good,
                need: k,
            });
        }
        self.account_bad_shards(id, &report.bad_shards);
        let Some((env_len, shard_len)) = geometry.filter(|_| good >= k) else {
            self.counters
                .unrecoverable_reads
                .fetch_add(1, Ordering::Relaxed);
            if let Some(n) = crate::logging::allow("unrecoverable") {
                tracing::error!(
                    "chunk {}: only {good} good shards of the {k} needed; the read fails with EIO{}",
                    id.to_hex(),
                    crate::logging::suppressed_note(n)
                );
            }
            return Err(Error::Unrecoverable {
                chunk: id.to_hex(),
                good,
                need: k,
            });
        };
        // Rebuilding parity costs as much as rebuilding data; do it only if a parity shard can be healed.
        // Pieces inside a stripe file are not rewritten in place (a stripe file is replaced whole, by stripe-aware
        // repair: not built yet); v1 shards are healed as before.
        let may_heal = !self.read_only
            && self
                .stripes
                .as_ref()
                .map_or(true, |st| matches!(st.locate(id, None), Found::Nowhere));
        let heal_parity = may_heal
            && report
                .bad_shards
                .iter()
                .any(|b| b.shard >= k && self.healable(b));
        if heal_parity {
            self.codec.reconstruct(&mut shards)?;
        } else {
            self.codec.reconstruct_data(&mut shards)?;
        }
        let mut envelope = Vec::with_capacity(k * shard_len as usize);
        for s in &shards[..k] {
            envelope.extend_from_slice(s.as_ref().expect("reconstructed"));
        }
        if (env_len as usize) > envelope.len() {
            return Err(Error::Corrupt(format!(
                "chunk {}: envelope length exceeds its shards",
                id.to_hex()
            )));
        }
        envelope.truncate(env_len as usize);
        let plain = self.open_envelope(id, volume_id, envelope)?;
        if may_heal {
            report.healed = self.heal(id, env_len, &shards, &report.bad_shards);
        }
        Ok((plain, report))
    }

    /// A bad shard can be rewritten if its disk is in use and answered (an erroring disk is left alone).
    fn healable(&self, b: &BadShard) -> bool {
        self.usable(b.disk) && b.fault != ShardFault::Unreadable
    }

    /// Writes rebuilt shards back over missing/corrupt ones on usable disks. Best effort: a failure here leaves
    /// the chunk as readable as before.
    fn heal(
        &self,
        id: &ChunkId,
        env_len: u64,
        shards: &[Option<Vec<u8>>],
        bad: &[BadShard],
    ) -> Vec<usize> {
        let volume_id = self.volume_id();
        let (k, m) = {
            let h = self.header.read();
            (h.k, h.m)
        };
        let mut healed = Vec::new();
        for b in bad {
            let Some(payload) = shards[b.shard].as_ref().filter(|_| self.healable(b)) else {
                continue;
            };
            let h = ShardHeader {
                k,
                m,
                index: b.shard as u8,
                volume_id,
                chunk_id: id.0,
                envelope_len: env_len,
                shard_len: payload.len() as u32,
                payload_hash: *blake3::hash(payload).as_bytes(),
            };
            let file = [&h.encode()[..], payload].concat();
            let short = &id.to_hex()[..16];
            match self.slots[b.disk]
                .disk
                .put(&shard_name(&id.0, b.shard), &file)
            {
                Ok(()) => {
                    let c = &self.slots[b.disk].counters;
                    c.repairs.fetch_add(1, Ordering::Relaxed);
                    c.shard_writes.fetch_add(1, Ordering::Relaxed);
                    c.shard_write_bytes
                        .fetch_add(file.len() as u64, Ordering::Relaxed);
                    self.disk_event(
                        b.disk,
                        "repair",
                        tracing::Level::INFO,
                        format_args!(
                            "repaired shard {} of chunk {short} (rebuilt from the other disks)",
                            b.shard
                        ),
                    );
                    healed.push(b.shard);
                }
                Err(e) => {
                    self.note_error(b.disk);
                    self.disk_event(
                        b.disk,
                        "repair-failed",
                        tracing::Level::WARN,
                        format_args!("could not repair shard {} of chunk {short}: {e}", b.shard),
                    );
                }
            }
        }
        healed
    }

    /// Removes every shard of a chunk from the usable disks; absent shards are fine. Must be called only after
    /// the metadata transaction dropping the chunk's last reference is durable (see FORMAT.md).
    pub fn delete(&self, id: &ChunkId) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let (k, m) = {
            let h = self.header.read();
            (h.k as usize, h.m as usize)
        };
        let mut first_err = None;
        if let Some(dead) = self.stripes.as_ref().and_then(|st| st.delete(id)) {
            // The last live chunk of a stripe: its files go. (Partly dead stripes wait for a repack.)
            for i in 0..k + m {
                let d = self.stripe_disk(&dead, i);
                if !self.usable(d) {
                    continue;
                }
                if let Err(e) = self.slots[d].disk.delete(&stripe_name(&dead, i)) {
                    self.note_error(d);
                    first_err.get_or_insert(e);
                }
            }
        }
        for i in 0..k + m {
            let d = self.disk_of(id, i);
            if !self.usable(d) {
                continue;
            }
            if let Err(e) = self.slots[d].disk.delete(&shard_name(&id.0, i)) {
                self.note_error(d);
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Makes every put/delete/heal that returned before this call durable on every usable disk.
    pub fn sync(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        // The open stripe (short, if it is not full) goes to the disks first: an fsync never waits for a stripe
        // to fill, nor writes padding. A stripe that misses its quorum fails the sync (it stays in memory).
        self.write_sealed(true)?;
        // Puts that return from here on are the next sync's business.
        let puts = std::mem::take(&mut *self.unsynced.lock());
        let idx: Vec<usize> = (0..self.slots.len()).filter(|&d| self.usable(d)).collect();
        let results = self.par_map(&idx, |d| self.slots[d].disk.sync());
        let mut failed = vec![false; self.slots.len()];
        let mut first_err = None;
        for (&d, r) in idx.iter().zip(results) {
            if let Err(e) = r {
                self.note_error(d);
                failed[d] = true;
                first_err.get_or_insert(e);
            }
        }
        let Some(err) = first_err else {
            return Ok(());
        };
        // A disk that failed its sync may have lost what it was given. That is fine as long as every chunk put
        // since the last sync still has the write quorum (k+1 shards) on disks that synced: the same margin a
        // put demands. Below it, the caller must not be told its data is durable.
        let need = self.header.read().k as usize + 1;
        let short = puts
            .iter()
            .filter(|on| on.iter().filter(|&&d| !failed[d as usize]).count() < need)
            .count();
        if short > 0 {
            return Err(err);
        }
        // Every durable commit syncs: a dead disk would repeat this every few seconds.
        if let Some(n) = crate::logging::allow("sync-failed") {
            tracing::warn!(
                "sync failed on {} (every chunk written since the last sync still has {need} durable shards): {err}{}",
                failed
                    .iter()
                    .enumerate()
                    .filter(|(_, &f)| f)
                    .map(|(d, _)| self.slots[d].disk.describe())
                    .collect::<Vec<_>>()
                    .join(", "),
                crate::logging::suppressed_note(n)
            );
        }
        Ok(())
    }

    /// Every chunk id with at least one shard on a usable disk (sorted). For gc and fsck.
    pub fn list_chunks(&self) -> Result<Vec<ChunkId>> {
        let mut ids: BTreeSet<ChunkId> = self
            .stripes
            .as_ref()
            .map(|st| st.chunks().into_iter().collect())
            .unwrap_or_default();
        for (d, s) in self.slots.iter().enumerate() {
            if !self.usable(d) {
                continue;
            }
            for name in s.disk.list(&format!("{SHARD_DIR}/"))? {
                if let Some((id, _)) = parse_shard_name(&name) {
                    ids.insert(ChunkId(id));
                }
            }
        }
        Ok(ids.into_iter().collect())
    }

    /// Number of shard files on each disk (`None` for unusable disks). Walks the shard tree: not cheap.
    pub fn shard_counts(&self) -> Vec<Option<usize>> {
        (0..self.slots.len())
            .map(|d| {
                if !self.usable(d) {
                    return None;
                }
                let disk = &self.slots[d].disk;
                let shards = disk.list(&format!("{SHARD_DIR}/")).ok()?.len();
                let stripes = disk.list(&format!("{STRIPE_DIR}/")).ok()?.len();
                Some(shards + stripes)
            })
            .collect()
    }

    /// Format v3: how many stripes hold live chunks on the disks (`None` for other formats).
    pub fn stripe_count(&self) -> Option<usize> {
        self.stripes.as_ref().map(|st| st.stripe_count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn packing_follows_what_the_sample_gains() {
        let random = xorshift(1, 1 << 20);
        let hex: Vec<u8> = random
            .iter()
            .flat_map(|b| format!("{b:02x}").into_bytes())
            .take(1 << 20)
            .collect();
        let rows: Vec<u8> = (0..40_000)
            .flat_map(|i| format!("{i}\t1\t0\t{:>60}\n", "").into_bytes())
            .take(1 << 20)
            .collect();
        assert_eq!(packing(&random), Packing::Plain);
        assert_eq!(packing(&hex), Packing::ZstdLiterals);
        assert_eq!(packing(&rows), Packing::Zstd);
        assert_eq!(
            packing(&random[..1000]),
            Packing::Zstd,
            "small data is tried whole"
        );
        // The literal mode keeps what entropy coding gains on hex text (about half), within 5 % of level 1, and
        // round-trips.
        let fast = zstd_compress(&hex, true).unwrap();
        let normal = zstd_compress(&hex, false).unwrap();
        assert!(
            fast.len() * 100 <= hex.len() * 55,
            "{} of {}",
            fast.len(),
            hex.len()
        );
        assert!(
            fast.len() * 100 <= normal.len() * 105,
            "{} vs {}",
            fast.len(),
            normal.len()
        );
        assert_eq!(zstd::bulk::decompress(&fast, hex.len()).unwrap(), hex);
        assert_eq!(zstd::bulk::decompress(&normal, hex.len()).unwrap(), hex);
    }
}
