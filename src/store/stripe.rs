//! Packed stripes (format v3, experimental; FORMAT.md §14): many chunks share one stripe, written as one file per
//! disk instead of k+m files per chunk.
//!
//! Row layout: every chunk is coded exactly as in v1 (envelope → k+m pieces, each a v1 shard header + payload,
//! FORMAT.md §6), and piece i of every chunk of a stripe is appended to the stripe's file i at the same offset in
//! every file. So each piece still verifies itself without the key, every read and reconstruction path of v1 works
//! on the bytes a range read returns, and the index at the front of every file (identical in all k+m of them)
//! says where each chunk lies. The store keeps the chunk → location map in memory, built from the indexes at open:
//! the disks are the only record of it (promise 5), and nothing in the metadata database changes.
//!
//! Stripe file (`stripes/<h0h1>/<32 hex stripe id>.<i>`):
//!
//! | offset | size | field |
//! | ---: | ---: | --- |
//! | 0 | 8 | magic `VLNCSTRP` |
//! | 8 | 2 | stripe layout version = 1 |
//! | 10 | 1 | k |
//! | 11 | 1 | m |
//! | 12 | 1 | shard index i of this file |
//! | 13 | 3 | reserved, 0 |
//! | 16 | 16 | volume id |
//! | 32 | 16 | stripe id (random) |
//! | 48 | 4 | chunk count n |
//! | 52 | 12 | reserved, 0 |
//! | 64 | 16 | BLAKE3 of bytes 0..64 and the index, first 16 bytes |
//! | 80 | 44 n | index: chunk id (32) ‖ piece offset from the file start (u64) ‖ piece length (u32) |
//! | 80 + 44 n | … | pieces: for each chunk, its v1 shard file i (128-byte header + payload) |

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::RngCore;

use super::format::{SHARD_HEADER_LEN, STRIPE_DIR};
use super::ChunkId;
use crate::error::{Error, Result};

pub const STRIPE_MAGIC: [u8; 8] = *b"VLNCSTRP";
pub const STRIPE_LAYOUT_VERSION: u16 = 1;
pub const STRIPE_HEADER_LEN: usize = 80;
pub const STRIPE_ENTRY_LEN: usize = 44;
/// A stripe is sealed and written once its chunks' envelopes add up to this many bytes (or at `sync`).
pub const STRIPE_TARGET: usize = 16 << 20;
/// Most chunks one stripe may index (bounds what an index read at open may ask for: 44 × 65,536 = 2.75 MiB).
pub const STRIPE_MAX_CHUNKS: usize = 65_536;
/// Sealed stripes kept in memory because their write failed; past this, `put` fails instead of buffering more.
const MAX_UNWRITTEN: usize = 4;

pub type StripeId = [u8; 16];

/// Name of file `index` of a stripe.
pub fn stripe_name(id: &StripeId, index: usize) -> String {
    let hex = super::crypto::hex(id);
    format!("{STRIPE_DIR}/{}/{hex}.{index}", &hex[0..2])
}

/// Parses a [`stripe_name`] back; `None` for anything else (temporary or stray files).
pub fn parse_stripe_name(name: &str) -> Option<(StripeId, usize)> {
    super::format::parse_object_name(name.strip_prefix(STRIPE_DIR)?.rsplit('/').next()?)
}

/// Where a chunk's piece lies in each of its stripe's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub chunk: [u8; 32],
    /// From the start of the file (the same in every file of the stripe).
    pub offset: u64,
    /// 128-byte v1 shard header + payload.
    pub len: u32,
}

/// The fields of a stripe file's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeHeader {
    pub k: u8,
    pub m: u8,
    pub index: u8,
    pub volume_id: [u8; 16],
    pub stripe_id: StripeId,
}

fn checksum(head: &[u8], index: &[u8]) -> [u8; 16] {
    let mut h = blake3::Hasher::new();
    h.update(head);
    h.update(index);
    h.finalize().as_bytes()[..16].try_into().expect("16")
}

/// Header + index bytes of file `h.index` of a stripe holding `entries`.
pub fn encode_head(h: &StripeHeader, entries: &[Entry]) -> Vec<u8> {
    let mut b = vec![0u8; STRIPE_HEADER_LEN + entries.len() * STRIPE_ENTRY_LEN];
    b[0..8].copy_from_slice(&STRIPE_MAGIC);
    b[8..10].copy_from_slice(&STRIPE_LAYOUT_VERSION.to_le_bytes());
    b[10] = h.k;
    b[11] = h.m;
    b[12] = h.index;
    b[16..32].copy_from_slice(&h.volume_id);
    b[32..48].copy_from_slice(&h.stripe_id);
    b[48..52].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    for (j, e) in entries.iter().enumerate() {
        let o = STRIPE_HEADER_LEN + j * STRIPE_ENTRY_LEN;
        b[o..o + 32].copy_from_slice(&e.chunk);
        b[o + 32..o + 40].copy_from_slice(&e.offset.to_le_bytes());
        b[o + 40..o + 44].copy_from_slice(&e.len.to_le_bytes());
    }
    let sum = checksum(&b[..64], &b[STRIPE_HEADER_LEN..]);
    b[64..80].copy_from_slice(&sum);
    b
}

/// How many bytes from the start of a stripe file hold its header and index, from its first
/// [`STRIPE_HEADER_LEN`] bytes; refuses a count over [`STRIPE_MAX_CHUNKS`] (a length from a disk sizes no buffer
/// beyond that).
pub fn head_len(first: &[u8]) -> Result<usize> {
    if first.len() < STRIPE_HEADER_LEN || first[0..8] != STRIPE_MAGIC {
        return Err(Error::Format(
            "not a stripe file (short or bad magic)".into(),
        ));
    }
    let n = u32::from_le_bytes(first[48..52].try_into().expect("4")) as usize;
    if n == 0 || n > STRIPE_MAX_CHUNKS {
        return Err(Error::Format(format!("stripe file indexes {n} chunks")));
    }
    Ok(STRIPE_HEADER_LEN + n * STRIPE_ENTRY_LEN)
}

/// Decodes and checks a stripe file's header and index (`b` = at least [`head_len`] bytes): checksum, version,
/// and entries that lie after the index, in order, without overlap, each longer than a shard header.
pub fn decode_head(b: &[u8]) -> Result<(StripeHeader, Vec<Entry>)> {
    let len = head_len(b)?;
    if b.len() < len {
        return Err(Error::Format("stripe index cut short".into()));
    }
    if checksum(&b[..64], &b[STRIPE_HEADER_LEN..len]) != b[64..80] {
        return Err(Error::Format("stripe header checksum mismatch".into()));
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version != STRIPE_LAYOUT_VERSION || b[13..16] != [0; 3] || b[52..64] != [0; 12] {
        return Err(Error::Format(format!(
            "stripe layout version {version} or reserved bytes not understood"
        )));
    }
    let h = StripeHeader {
        k: b[10],
        m: b[11],
        index: b[12],
        volume_id: b[16..32].try_into().expect("16"),
        stripe_id: b[32..48].try_into().expect("16"),
    };
    let mut entries = Vec::with_capacity((len - STRIPE_HEADER_LEN) / STRIPE_ENTRY_LEN);
    let mut next = len as u64;
    for o in (STRIPE_HEADER_LEN..len).step_by(STRIPE_ENTRY_LEN) {
        let e = Entry {
            chunk: b[o..o + 32].try_into().expect("32"),
            offset: u64::from_le_bytes(b[o + 32..o + 40].try_into().expect("8")),
            len: u32::from_le_bytes(b[o + 40..o + 44].try_into().expect("4")),
        };
        if e.offset != next || (e.len as usize) <= SHARD_HEADER_LEN {
            return Err(Error::Format("stripe index entries out of place".into()));
        }
        next = e.offset + e.len as u64;
        entries.push(e);
    }
    Ok((h, entries))
}

/// Where a written chunk lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loc {
    pub stripe: StripeId,
    pub offset: u64,
    pub len: u32,
}

/// A stripe sealed from the open one, in memory until its files are written.
pub(super) struct Sealed {
    pub id: StripeId,
    pub entries: Vec<Entry>,
    /// File i's head (header and index).
    pub heads: Vec<Vec<u8>>,
    /// File i's pieces, one buffer per chunk in index order: the buffers `put` made, never copied (a file is
    /// written with one vectored `put_parts`).
    pub pieces: Vec<Vec<Vec<u8>>>,
    /// Held while a thread writes the files; `true` once they are on the disks (with the write quorum).
    pub written: Mutex<bool>,
}

impl Sealed {
    /// Piece `i` of `chunk`, if this stripe holds it.
    fn piece(&self, chunk: &ChunkId, i: usize) -> Option<Vec<u8>> {
        let j = self.entries.iter().position(|e| e.chunk == chunk.0)?;
        self.pieces.get(i)?.get(j).cloned()
    }

    /// Number of files (k+m).
    pub fn width(&self) -> usize {
        self.heads.len()
    }

    /// Bytes of file `i`.
    pub fn file_len(&self, i: usize) -> usize {
        self.heads[i].len() + self.pieces[i].iter().map(Vec::len).sum::<usize>()
    }

    /// File `i` as the parts of one vectored write.
    pub fn file_parts(&self, i: usize) -> Vec<&[u8]> {
        let mut parts = Vec::with_capacity(1 + self.pieces[i].len());
        parts.push(self.heads[i].as_slice());
        parts.extend(self.pieces[i].iter().map(Vec::as_slice));
        parts
    }
}

/// The stripe being filled.
#[derive(Default)]
struct Open {
    chunks: Vec<([u8; 32], u32)>,
    /// Pieces of file i, one buffer per chunk.
    pieces: Vec<Vec<Vec<u8>>>,
    envelope_bytes: usize,
}

/// Per written stripe: how many of its chunks, and of its piece bytes (per file), are still live.
#[derive(Clone, Copy, Debug, Default)]
struct Info {
    live: usize,
    live_bytes: u64,
    total_bytes: u64,
}

/// A written stripe as the repacker sees it.
#[derive(Clone, Debug)]
pub struct StripeUse {
    pub id: StripeId,
    /// Chunks whose map entry points into this stripe.
    pub live: Vec<ChunkId>,
    pub live_bytes: u64,
    pub total_bytes: u64,
}

/// Where `Store::locate` found a chunk.
pub(super) enum Found {
    /// Written to a stripe on the disks.
    Disk(Loc),
    /// Still in memory (the open stripe, or a sealed one not yet written): the piece asked for, if any.
    Memory(Option<Vec<u8>>),
    /// Not in any stripe: a v1-style chunk (or none).
    Nowhere,
}

/// The packed-stripe state of a v3 store.
#[derive(Default)]
pub(super) struct Stripes {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    open: Open,
    sealed: Vec<Arc<Sealed>>,
    index: HashMap<ChunkId, Loc>,
    stripes: HashMap<StripeId, Info>,
    /// Chunks deleted while still in memory: left out of the index when their stripe is written.
    deleted_unwritten: HashSet<ChunkId>,
}

impl Stripes {
    /// The state of a volume whose stripe files' heads were read at open: `(stripe id, entries)`.
    pub fn from_heads(heads: Vec<(StripeId, Vec<Entry>)>) -> Stripes {
        let mut inner = Inner::default();
        for (id, entries) in heads {
            for e in &entries {
                inner.index.insert(
                    ChunkId(e.chunk),
                    Loc {
                        stripe: id,
                        offset: e.offset,
                        len: e.len,
                    },
                );
            }
            let total_bytes = entries.iter().map(|e| e.len as u64).sum();
            inner.stripes.insert(
                id,
                Info {
                    total_bytes,
                    ..Info::default()
                },
            );
        }
        // A chunk in two stripes (a repack cut short) counts once, where the index points; a stripe left with no
        // live chunk is for the repacker to delete.
        let locs: Vec<Loc> = inner.index.values().copied().collect();
        for loc in locs {
            if let Some(info) = inner.stripes.get_mut(&loc.stripe) {
                info.live += 1;
                info.live_bytes += loc.len as u64;
            }
        }
        Stripes {
            inner: Mutex::new(inner),
        }
    }

    /// Every written stripe with its live chunks and bytes (for the repacker).
    pub fn usage(&self) -> Vec<StripeUse> {
        let inner = self.inner.lock();
        let mut live: HashMap<StripeId, Vec<ChunkId>> = HashMap::new();
        for (id, loc) in &inner.index {
            live.entry(loc.stripe).or_default().push(*id);
        }
        let mut out: Vec<StripeUse> = inner
            .stripes
            .iter()
            .map(|(id, info)| StripeUse {
                id: *id,
                live: live.remove(id).unwrap_or_default(),
                live_bytes: info.live_bytes,
                total_bytes: info.total_bytes,
            })
            .collect();
        out.sort_by_key(|u| u.id);
        out
    }

    /// Forgets a stripe whose files are being deleted (it must hold no live chunk).
    pub fn forget(&self, id: &StripeId) {
        let mut inner = self.inner.lock();
        if inner.stripes.get(id).is_some_and(|i| i.live == 0) {
            inner.stripes.remove(id);
        }
    }

    /// Where a chunk is; for one still in memory, a copy of its piece `piece` (none for `None`).
    pub fn locate(&self, id: &ChunkId, piece: Option<usize>) -> Found {
        let inner = self.inner.lock();
        if let Some(loc) = inner.index.get(id) {
            return Found::Disk(*loc);
        }
        if let Some(j) = inner.open.chunks.iter().position(|(c, _)| *c == id.0) {
            return Found::Memory(piece.and_then(|i| inner.open.pieces.get(i)?.get(j).cloned()));
        }
        for s in &inner.sealed {
            if s.entries.iter().any(|e| e.chunk == id.0) {
                return Found::Memory(piece.and_then(|i| s.piece(id, i)));
            }
        }
        Found::Nowhere
    }

    /// Whether the chunk is already stored (written or in memory), so a put of it has nothing to do.
    pub fn holds(&self, id: &ChunkId) -> bool {
        !matches!(self.locate(id, None), Found::Nowhere)
    }

    /// Appends a chunk's k+m pieces (v1 shard files, moved in: no copy) to the open stripe; returns the stripe
    /// sealed if it reached its target, for the caller to write.
    pub fn append(
        &self,
        id: &ChunkId,
        files: Vec<Vec<u8>>,
        envelope_len: usize,
        head: impl Fn(usize) -> StripeHeader,
    ) -> Option<Arc<Sealed>> {
        let mut inner = self.inner.lock();
        inner.deleted_unwritten.remove(id);
        let open = &mut inner.open;
        if open.pieces.is_empty() {
            open.pieces = vec![Vec::new(); files.len()];
        }
        let len = files[0].len() as u32;
        for (p, f) in open.pieces.iter_mut().zip(files) {
            p.push(f);
        }
        open.chunks.push((id.0, len));
        open.envelope_bytes += envelope_len;
        if open.envelope_bytes >= STRIPE_TARGET || open.chunks.len() >= STRIPE_MAX_CHUNKS {
            return Some(inner.seal(head));
        }
        None
    }

    /// Every sealed stripe not yet written; with `seal_open`, the open stripe is sealed first (if it holds
    /// anything).
    pub fn sealed(
        &self,
        seal_open: bool,
        head: impl Fn(usize) -> StripeHeader,
    ) -> Vec<Arc<Sealed>> {
        let mut inner = self.inner.lock();
        if seal_open && !inner.open.chunks.is_empty() {
            inner.seal(head);
        }
        inner.sealed.clone()
    }

    /// Sealed stripes whose write failed and that are still held in memory.
    pub fn unwritten(&self) -> usize {
        self.inner.lock().sealed.len()
    }

    pub fn too_many_unwritten(&self) -> bool {
        self.unwritten() > MAX_UNWRITTEN
    }

    /// Records that a sealed stripe's files are on the disks: its chunks are read from there from now on.
    /// A chunk written again (a repack) moves here: the stripe it left counts one live chunk fewer.
    pub fn written(&self, s: &Sealed) {
        let mut inner = self.inner.lock();
        inner.sealed.retain(|x| x.id != s.id);
        let mut info = Info {
            total_bytes: s.entries.iter().map(|e| e.len as u64).sum(),
            ..Info::default()
        };
        for e in &s.entries {
            let id = ChunkId(e.chunk);
            if inner.deleted_unwritten.remove(&id) {
                continue;
            }
            info.live += 1;
            info.live_bytes += e.len as u64;
            let loc = Loc {
                stripe: s.id,
                offset: e.offset,
                len: e.len,
            };
            if let Some(old) = inner.index.insert(id, loc) {
                if let Some(o) = inner.stripes.get_mut(&old.stripe) {
                    o.live = o.live.saturating_sub(1);
                    o.live_bytes = o.live_bytes.saturating_sub(old.len as u64);
                }
            }
        }
        inner.stripes.insert(s.id, info);
    }

    /// Drops a chunk; returns a stripe none of whose chunks is live any more (its files can go).
    pub fn delete(&self, id: &ChunkId) -> Option<StripeId> {
        let mut inner = self.inner.lock();
        let Some(loc) = inner.index.remove(id) else {
            let in_memory = inner.open.chunks.iter().any(|(c, _)| *c == id.0)
                || inner
                    .sealed
                    .iter()
                    .any(|s| s.entries.iter().any(|e| e.chunk == id.0));
            if in_memory {
                inner.deleted_unwritten.insert(*id);
            }
            return None;
        };
        let info = inner.stripes.get_mut(&loc.stripe)?;
        info.live = info.live.saturating_sub(1);
        info.live_bytes = info.live_bytes.saturating_sub(loc.len as u64);
        if info.live == 0 {
            inner.stripes.remove(&loc.stripe);
            return Some(loc.stripe);
        }
        None
    }

    /// Every chunk held in a stripe, written or in memory.
    pub fn chunks(&self) -> Vec<ChunkId> {
        let inner = self.inner.lock();
        let mut out: Vec<ChunkId> = inner.index.keys().copied().collect();
        out.extend(inner.open.chunks.iter().map(|(c, _)| ChunkId(*c)));
        for s in &inner.sealed {
            out.extend(s.entries.iter().map(|e| ChunkId(e.chunk)));
        }
        out.retain(|c| !inner.deleted_unwritten.contains(c));
        out
    }

    /// Written stripes and their live chunk counts (for reports and tests).
    pub fn stripe_count(&self) -> usize {
        self.inner.lock().stripes.len()
    }
}

impl Inner {
    fn seal(&mut self, head: impl Fn(usize) -> StripeHeader) -> Arc<Sealed> {
        let open = std::mem::take(&mut self.open);
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let index_len = STRIPE_HEADER_LEN + open.chunks.len() * STRIPE_ENTRY_LEN;
        let mut entries = Vec::with_capacity(open.chunks.len());
        let mut at = index_len as u64;
        for (c, len) in &open.chunks {
            entries.push(Entry {
                chunk: *c,
                offset: at,
                len: *len,
            });
            at += *len as u64;
        }
        let heads = (0..open.pieces.len())
            .map(|i| {
                let mut h = head(i);
                h.stripe_id = id;
                encode_head(&h, &entries)
            })
            .collect();
        let s = Arc::new(Sealed {
            id,
            entries,
            heads,
            pieces: open.pieces,
            written: Mutex::new(false),
        });
        self.sealed.push(s.clone());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        let id = [0xab; 16];
        let n = stripe_name(&id, 4);
        assert_eq!(n, format!("stripes/ab/{}.4", "ab".repeat(16)));
        assert_eq!(parse_stripe_name(&n), Some((id, 4)));
        assert_eq!(parse_stripe_name("stripes/ab/x.tmp-1"), None);
        assert_eq!(parse_stripe_name("shards/ab/ab/abab.1"), None);
    }

    #[test]
    fn head_round_trip_and_every_bad_field_refused() {
        let h = StripeHeader {
            k: 3,
            m: 2,
            index: 4,
            volume_id: [7; 16],
            stripe_id: [9; 16],
        };
        let first = STRIPE_HEADER_LEN as u64 + 2 * STRIPE_ENTRY_LEN as u64;
        let entries = vec![
            Entry {
                chunk: [1; 32],
                offset: first,
                len: 300,
            },
            Entry {
                chunk: [2; 32],
                offset: first + 300,
                len: 129,
            },
        ];
        let b = encode_head(&h, &entries);
        assert_eq!(head_len(&b).unwrap(), b.len());
        assert_eq!(decode_head(&b).unwrap(), (h.clone(), entries.clone()));
        // Any flipped byte of header or index is refused, never a panic.
        for pos in 0..b.len() {
            let mut bad = b.clone();
            bad[pos] ^= 0x10;
            assert!(decode_head(&bad).is_err(), "byte {pos}");
        }
        for cut in 0..b.len() {
            assert!(decode_head(&b[..cut]).is_err(), "cut {cut}");
        }
        // Entries out of place are refused even with a valid checksum.
        let mut gap = entries.clone();
        gap[1].offset += 1;
        assert!(decode_head(&encode_head(&h, &gap)).is_err());
        let mut tiny = entries;
        tiny[1].len = SHARD_HEADER_LEN as u32;
        assert!(decode_head(&encode_head(&h, &tiny)).is_err());
    }
}
