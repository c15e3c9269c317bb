//! Keyless inspection of disks: disk headers, shard listing and per-shard verification against the shard header's
//! BLAKE3 checksums. Everything here works without the passphrase (for scrub, fsck and rebuild planning).

use std::sync::Arc;

use super::disk::Disk;
use super::format::{
    parse_shard_name, shard_name, DiskHeader, ShardHeader, DISK_HEADER_NAME, SHARD_DIR, STRIPE_DIR,
};
use super::stripe::{decode_head, parse_stripe_name, stripe_name, Entry, StripeId};
use super::{ChunkId, Store};
use crate::error::{Error, Result};

/// The disk header of `disk`: `Ok(None)` when absent (a blank or missing disk), `Err` when unreadable or invalid.
pub fn read_disk_header(disk: &dyn Disk) -> Result<Option<DiskHeader>> {
    if !disk.stat().present {
        return Ok(None);
    }
    match disk.get(DISK_HEADER_NAME) {
        Err(Error::NotFound) => Ok(None),
        Err(e) => Err(e),
        Ok(bytes) => DiskHeader::decode(&bytes).map(Some),
    }
}

/// Disk (position in the configuration) holding shard `index` of chunk `id` on a volume of `disks` disks
/// (FORMAT.md §1: `(u64_le(id[0..8]) mod N + index) mod N`).
pub fn shard_disk(id: &ChunkId, index: usize, disks: usize) -> usize {
    let start = (u64::from_le_bytes(id.0[..8].try_into().expect("8")) % disks as u64) as usize;
    (start + index) % disks
}

/// Every shard name on a disk, parsed: (chunk id, shard index). Temporary and stray files are skipped.
pub fn list_shards(disk: &dyn Disk) -> Result<Vec<(ChunkId, usize)>> {
    if !disk.stat().present {
        return Ok(Vec::new());
    }
    Ok(disk
        .list(&format!("{SHARD_DIR}/"))?
        .iter()
        .filter_map(|n| parse_shard_name(n).map(|(id, i)| (ChunkId(id), i)))
        .collect())
}

/// What the volume's headers say a shard must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardExpect {
    pub volume_id: [u8; 16],
    pub k: u8,
    pub m: u8,
}

/// Outcome of checking one shard file without the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardCheck {
    /// Header checksum, identity (volume, chunk, index, k/m) and payload checksum all good.
    Good { header: ShardHeader, bytes: u64 },
    /// No such file.
    Missing,
    /// The disk returned an error.
    Unreadable(String),
    /// The file exists but fails a check; `bytes` is its size.
    Corrupt { reason: String, bytes: u64 },
}

/// Reads shard `index` of `id` from `disk` and verifies it against `expect` (header checksum, identity fields,
/// payload BLAKE3). Needs no key.
pub fn check_shard(
    disk: &dyn Disk,
    id: &ChunkId,
    index: usize,
    expect: &ShardExpect,
) -> ShardCheck {
    let file = match disk.get(&shard_name(&id.0, index)) {
        Ok(f) => f,
        Err(Error::NotFound) => return ShardCheck::Missing,
        Err(e) => return ShardCheck::Unreadable(e.to_string()),
    };
    verify_shard_file(&file, id, index, expect)
}

/// Verifies the bytes of a shard file (see [`check_shard`]).
pub fn verify_shard_file(
    file: &[u8],
    id: &ChunkId,
    index: usize,
    expect: &ShardExpect,
) -> ShardCheck {
    let bytes = file.len() as u64;
    let corrupt = |reason: &str| ShardCheck::Corrupt {
        reason: reason.into(),
        bytes,
    };
    let h = match ShardHeader::decode(file) {
        Ok(h) => h,
        Err(e) => return corrupt(&e.to_string()),
    };
    if h.volume_id != expect.volume_id {
        return corrupt("belongs to another volume");
    }
    if h.chunk_id != id.0 || h.index as usize != index {
        return corrupt("header names another chunk or shard index than the file name");
    }
    if (h.k, h.m) != (expect.k, expect.m) {
        return corrupt("k/m differ from the volume's");
    }
    if !h.payload_ok(file) {
        return corrupt("payload checksum mismatch");
    }
    ShardCheck::Good { header: h, bytes }
}

/// Every shard on one disk with its header (if it decodes) and whether it verifies (no key needed). Reads every
/// shard in full: one pass per file, in listing order.
pub fn scan_disk(
    disk: &dyn Disk,
    expect: ShardExpect,
) -> Result<impl Iterator<Item = (ChunkId, usize, ShardCheck)> + '_> {
    let names = list_shards(disk)?;
    Ok(names
        .into_iter()
        .map(move |(id, i)| (id, i, check_shard(disk, &id, i, &expect))))
}

impl Store {
    /// The configured disks, in configuration order (for maintenance tools that inspect shards directly).
    pub fn disks(&self) -> Vec<Arc<dyn Disk>> {
        self.slots.iter().map(|s| s.disk.clone()).collect()
    }

    /// Disk holding shard `index` of `id`.
    pub fn shard_disk(&self, id: &ChunkId, index: usize) -> usize {
        shard_disk(id, index, self.slots.len())
    }

    /// What every shard of this volume must match.
    pub fn shard_expect(&self) -> ShardExpect {
        let h = self.header.read();
        ShardExpect {
            volume_id: h.volume_id,
            k: h.k,
            m: h.m,
        }
    }
}

/// File name of shard `index` of `id` on its disk.
pub fn shard_name_of(id: &ChunkId, index: usize) -> String {
    shard_name(&id.0, index)
}

/// Every stripe file name on a disk, parsed: (stripe id, file index). Temporary and stray files are skipped.
pub fn list_stripes(disk: &dyn Disk) -> Result<Vec<(StripeId, usize)>> {
    if !disk.stat().present {
        return Ok(Vec::new());
    }
    Ok(disk
        .list(&format!("{STRIPE_DIR}/"))?
        .iter()
        .filter_map(|n| parse_stripe_name(n))
        .collect())
}

/// Disk (position in the configuration) holding file `index` of stripe `id` on a volume of `disks` disks.
pub fn stripe_disk(id: &StripeId, index: usize, disks: usize) -> usize {
    let start = (u64::from_le_bytes(id[..8].try_into().expect("8")) % disks as u64) as usize;
    (start + index) % disks
}

/// One file of a stripe as a keyless check found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StripeFile {
    /// Present, and its head (header and index) checks and agrees with the stripe's.
    Good,
    Missing,
    Unreadable(String),
    Corrupt(String),
}

/// A stripe's files read whole and checked without the key, and every chunk its index names checked piece by
/// piece (each piece is a v1 shard file: [`verify_shard_file`]).
#[derive(Clone, Debug)]
pub struct StripeCheck {
    pub id: StripeId,
    /// Per file index: its disk and state.
    pub files: Vec<(usize, StripeFile)>,
    /// Per chunk of the index, per shard index: (disk, check of its piece). Empty when no file's head is readable.
    pub chunks: Vec<(ChunkId, Vec<(usize, ShardCheck)>)>,
    /// Bytes of stripe files read.
    pub bytes: u64,
}

impl StripeCheck {
    /// File indexes that are not good or hold a piece that is not: what a repair must rewrite.
    pub fn bad_files(&self) -> Vec<usize> {
        (0..self.files.len())
            .filter(|&i| {
                self.files[i].1 != StripeFile::Good
                    || self
                        .chunks
                        .iter()
                        .any(|(_, s)| !matches!(s[i].1, ShardCheck::Good { .. }))
            })
            .collect()
    }
}

/// Whether file `index` of stripe `id` on `disk` is whole (keyless): its head checks and names this stripe,
/// volume, index and layout, and every piece its index lists verifies. One read of that file only.
pub fn stripe_file_ok(disk: &dyn Disk, expect: &ShardExpect, id: &StripeId, index: usize) -> bool {
    let Ok(b) = disk.get(&stripe_name(id, index)) else {
        return false;
    };
    let Ok((h, entries)) = decode_head(&b) else {
        return false;
    };
    if h.stripe_id != *id
        || h.volume_id != expect.volume_id
        || h.index as usize != index
        || (h.k, h.m) != (expect.k, expect.m)
    {
        return false;
    }
    entries.iter().all(|e| {
        b.get(e.offset as usize..(e.offset + e.len as u64) as usize)
            .is_some_and(|piece| {
                matches!(
                    verify_shard_file(piece, &ChunkId(e.chunk), index, expect),
                    ShardCheck::Good { .. }
                )
            })
    })
}

/// Reads and checks every file of stripe `id` (keyless). `usable[d]`: disk d may be read.
pub fn check_stripe(
    disks: &[Arc<dyn Disk>],
    usable: &[bool],
    expect: &ShardExpect,
    id: &StripeId,
) -> StripeCheck {
    let n = (expect.k + expect.m) as usize;
    let mut bytes = 0;
    let mut files = Vec::with_capacity(n);
    let mut heads: Vec<Option<Vec<Entry>>> = Vec::with_capacity(n);
    let mut data: Vec<Option<Vec<u8>>> = Vec::with_capacity(n);
    for i in 0..n {
        let d = stripe_disk(id, i, disks.len());
        let got = if usable[d] {
            disks[d].get(&stripe_name(id, i))
        } else {
            Err(Error::NotFound)
        };
        let (state, head, body) = match got {
            Err(Error::NotFound) => (StripeFile::Missing, None, None),
            Err(e) => (StripeFile::Unreadable(e.to_string()), None, None),
            Ok(b) => {
                bytes += b.len() as u64;
                match decode_head(&b) {
                    Ok((h, e))
                        if h.stripe_id == *id
                            && h.volume_id == expect.volume_id
                            && h.index as usize == i
                            && (h.k, h.m) == (expect.k, expect.m) =>
                    {
                        (StripeFile::Good, Some(e), Some(b))
                    }
                    Ok(_) => (
                        StripeFile::Corrupt(
                            "head names another stripe, volume, index or layout".into(),
                        ),
                        None,
                        None,
                    ),
                    Err(e) => (StripeFile::Corrupt(e.to_string()), None, None),
                }
            }
        };
        files.push((d, state));
        heads.push(head);
        data.push(body);
    }
    // The index most good files agree on (normally all of them).
    let mut entries: Option<&Vec<Entry>> = None;
    let mut best = 0;
    for h in heads.iter().flatten() {
        let votes = heads.iter().flatten().filter(|o| *o == h).count();
        if votes > best {
            best = votes;
            entries = Some(h);
        }
    }
    let Some(entries) = entries.cloned() else {
        return StripeCheck {
            id: *id,
            files,
            chunks: Vec::new(),
            bytes,
        };
    };
    for i in 0..n {
        if files[i].1 == StripeFile::Good && heads[i].as_ref() != Some(&entries) {
            files[i].1 = StripeFile::Corrupt("its index differs from the other files'".into());
            data[i] = None;
        }
    }
    let chunks = entries
        .iter()
        .map(|e| {
            let chunk = ChunkId(e.chunk);
            let shards = (0..n)
                .map(|i| {
                    let check = match (&files[i].1, &data[i]) {
                        (StripeFile::Good, Some(b)) => {
                            match b.get(e.offset as usize..(e.offset + e.len as u64) as usize) {
                                Some(piece) => verify_shard_file(piece, &chunk, i, expect),
                                None => ShardCheck::Corrupt {
                                    reason: "stripe file cut short".into(),
                                    bytes: 0,
                                },
                            }
                        }
                        (StripeFile::Missing, _) => ShardCheck::Missing,
                        (StripeFile::Unreadable(why), _) => ShardCheck::Unreadable(why.clone()),
                        (StripeFile::Corrupt(why), _) => ShardCheck::Corrupt {
                            reason: format!("stripe file: {why}"),
                            bytes: 0,
                        },
                        (StripeFile::Good, None) => ShardCheck::Corrupt {
                            reason: "stripe file not read".into(),
                            bytes: 0,
                        },
                    };
                    (files[i].0, check)
                })
                .collect();
            (chunk, shards)
        })
        .collect();
    StripeCheck {
        id: *id,
        files,
        chunks,
        bytes,
    }
}
