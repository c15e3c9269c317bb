//! Keyless inspection of disks: disk headers, shard listing and per-shard verification against the shard header's
//! BLAKE3 checksums. Everything here works without the passphrase (for scrub, fsck and rebuild planning).

use std::sync::Arc;

use super::disk::Disk;
use super::format::{
    parse_shard_name, shard_name, DiskHeader, ShardHeader, DISK_HEADER_NAME, SHARD_DIR,
};
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
