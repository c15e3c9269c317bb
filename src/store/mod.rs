//! The chunk store: chunk → seal → Reed-Solomon shards → disks, and back, verified.
//!
//! `Store` is the only entry point the filesystem core uses. Submodules: `format` (on-disk structures), `crypto`
//! (keys and sealing), `chunker` (FastCDC), `erasure` (Reed-Solomon), `disk` (the `Disk` trait and its three
//! implementations), `volume` (create/open/keyslots/health) and `chunks` (put/get/delete/sync/list).
//! The on-disk format is specified in `docs/FORMAT.md`.

pub mod chunker;
mod chunks;
pub mod crypto;
pub mod disk;
pub mod erasure;
pub mod format;
pub mod scan;
mod snapshot;
pub mod stripe;
mod stripe_repair;

pub use stripe_repair::{PieceCensus, StripeRebuild};
mod volume;

pub use snapshot::{LoadedSnapshot, SnapshotPointer};

use std::str::FromStr;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

pub use crypto::KdfParams;
pub use disk::{
    open_dir_disk, DirDisk, Disk, DiskStat, FaultDisk, Faults, MemDisk, MAX_OBJECT_LEN,
};
pub use disk::{S3Disk, S3Settings};
pub use format::ChunkerParams;

use crate::error::{Error, Result};

/// A chunk's identity: keyed BLAKE3 of its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn to_hex(&self) -> String {
        crypto::hex(&self.0)
    }
}

/// Erasure layout: every chunk becomes `k` data shards plus `m` parity shards on `k+m` different disks; any `m`
/// may be lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redundancy {
    pub k: u8,
    pub m: u8,
}

impl Default for Redundancy {
    /// `personal`: 3+2.
    fn default() -> Self {
        Redundancy { k: 3, m: 2 }
    }
}

impl std::fmt::Display for Redundancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}+{}", self.k, self.m)
    }
}

impl FromStr for Redundancy {
    type Err = Error;

    /// `minimal` 2+1, `personal` 3+2, `federation` 5+4, `paranoid` 7+8, or `K+M` (k ≥ 1, m ≥ 1, k+m ≤ 255).
    fn from_str(s: &str) -> Result<Self> {
        let r = match s.trim() {
            "minimal" => Redundancy { k: 2, m: 1 },
            "personal" => Redundancy { k: 3, m: 2 },
            "federation" => Redundancy { k: 5, m: 4 },
            "paranoid" => Redundancy { k: 7, m: 8 },
            other => {
                let bad = || {
                    Error::Invalid(format!("redundancy {other:?}: expected minimal, personal, federation, paranoid or K+M"))
                };
                let (k, m) = other.split_once('+').ok_or_else(bad)?;
                let k: u16 = k.trim().parse().map_err(|_| bad())?;
                let m: u16 = m.trim().parse().map_err(|_| bad())?;
                if k == 0 || m == 0 || k + m > 255 {
                    return Err(Error::Invalid(format!(
                        "redundancy {k}+{m}: need k ≥ 1, m ≥ 1 and k+m ≤ 255 (one shard per disk, GF(2^8) codes)"
                    )));
                }
                Redundancy {
                    k: k as u8,
                    m: m as u8,
                }
            }
        };
        Ok(r)
    }
}

/// Options for [`Store::create`].
#[derive(Clone, Debug)]
pub struct CreateOptions {
    pub redundancy: Redundancy,
    /// zstd-compress chunks when that saves at least ~3 %.
    pub compression: bool,
    /// Argon2id cost of the first keyslot.
    pub kdf: KdfParams,
    /// FastCDC sizes, fixed for the volume's lifetime (tests use small ones).
    pub chunker: ChunkerParams,
    /// On-disk format version: [`format::FORMAT_VERSION`] (the newest) unless a test needs an older one.
    pub format: u16,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            redundancy: Redundancy::default(),
            compression: true,
            kdf: KdfParams::default(),
            chunker: ChunkerParams::default(),
            format: format::FORMAT_VERSION,
        }
    }
}

/// State of one configured disk as seen at open time and updated by I/O errors since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskState {
    Ok,
    /// Directory absent or no header.
    Missing,
    /// Readable, but writes are refused: the whole store is then read-only.
    ReadOnly,
    /// Header epoch older than the newest disk's: it missed a header rewrite; not used.
    Stale,
    /// Header of another volume. (Open refuses such a configuration; the state appears in error reports.)
    Foreign,
    /// Present but the header could not be read or decoded.
    Unreadable,
}

impl DiskState {
    /// The name reports use: ok, missing, read-only, stale, foreign, unreadable.
    pub fn name(self) -> &'static str {
        match self {
            DiskState::Ok => "ok",
            DiskState::Missing => "missing",
            DiskState::ReadOnly => "read-only",
            DiskState::Stale => "stale",
            DiskState::Foreign => "foreign",
            DiskState::Unreadable => "unreadable",
        }
    }
}

/// Health of one disk, for reports and `fsck`.
#[derive(Clone, Debug)]
pub struct DiskHealth {
    /// Position in the configuration (= disk index in the header).
    pub index: usize,
    pub description: String,
    pub state: DiskState,
    /// Why the state is not `Ok`, if it isn't.
    pub detail: Option<String>,
    /// I/O or verification errors seen on this disk since open.
    pub errors: u64,
}

/// Why a shard could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardFault {
    /// No such shard file, or its disk is unavailable.
    Missing,
    /// The disk returned an error reading it.
    Unreadable,
    /// Header or payload checksum wrong, or it belongs to another chunk/volume.
    Corrupt,
}

/// One unusable shard found by a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadShard {
    pub shard: usize,
    pub disk: usize,
    pub fault: ShardFault,
}

/// What a read had to do to return verified bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// The k data shards opened the envelope directly; nothing else was read.
    pub fast_path: bool,
    pub bad_shards: Vec<BadShard>,
    /// Shard indexes rebuilt and written back.
    pub healed: Vec<usize>,
}

/// What [`Store::repack`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepackReport {
    /// Stripes whose live chunks were rewritten into new stripes.
    pub stripes_repacked: u64,
    /// Stripes whose files were deleted (repacked ones, and ones no live chunk was left in).
    pub stripes_deleted: u64,
    pub chunks_moved: u64,
    /// Plaintext bytes of the chunks moved.
    pub bytes_read: u64,
    /// Bytes of the pieces written again (all k+m files).
    pub bytes_written: u64,
    /// Piece bytes of the deleted stripes (all k+m files).
    pub bytes_deleted: u64,
}

impl RepackReport {
    /// Bytes the disks hold fewer after the repack: deleted minus written again.
    pub fn bytes_freed(&self) -> u64 {
        self.bytes_deleted.saturating_sub(self.bytes_written)
    }

    /// Bytes written per byte freed: what the repack cost for what it gave back (0 when it freed nothing).
    pub fn write_amplification(&self) -> f64 {
        match self.bytes_freed() {
            0 => 0.0,
            f => self.bytes_written as f64 / f as f64,
        }
    }
}

/// Per-disk runtime record.
struct Slot {
    disk: Arc<dyn Disk>,
    state: Mutex<(DiskState, Option<String>)>,
    /// Shard reads/writes, errors, repairs; `errors` is what [`DiskHealth::errors`] reports.
    counters: crate::metrics::DiskCounters,
}

/// An open volume. `Send + Sync`; share it as `Arc<Store>`.
pub struct Store {
    slots: Vec<Slot>,
    /// The header as last written (disk index field is per disk); keyslot changes replace it.
    header: RwLock<format::DiskHeader>,
    keys: crypto::Keys,
    /// The chunker's gear table, derived from the key once at open (`Keys::gear`).
    gear: chunker::Gear,
    codec: erasure::Codec,
    read_only: bool,
    /// Serialises header rewrites (keyslot changes) against each other.
    header_write: Mutex<()>,
    /// Degraded and failed chunk reads.
    counters: crate::metrics::StoreCounters,
    /// The disk sets that chunks put since the last `sync` were written to (each set once): `sync` checks that
    /// every one keeps k+1 shards on disks whose sync succeeded.
    unsynced: Mutex<std::collections::HashSet<Vec<u8>>>,
    /// Format v3: the packed stripes (open stripe, chunk → stripe index). `None` for v1/v2 volumes.
    stripes: Option<stripe::Stripes>,
}

impl Store {
    /// The volume's on-disk format version ([`format::FORMAT_V1`] or [`format::FORMAT_V2`]).
    pub fn format_version(&self) -> u16 {
        self.header.read().version
    }

    pub fn volume_id(&self) -> [u8; 16] {
        self.header.read().volume_id
    }

    pub fn redundancy(&self) -> Redundancy {
        let h = self.header.read();
        Redundancy { k: h.k, m: h.m }
    }

    /// (total, free) bytes a user can store, after redundancy: each disk holds about one shard in `n` of every
    /// stripe's bytes, so the fullest (smallest) disk bounds what fits.
    pub fn space(&self) -> Option<(u64, u64)> {
        let spaces: Vec<(u64, u64)> = self.slots.iter().filter_map(|s| s.disk.space()).collect();
        if spaces.is_empty() {
            return None;
        }
        let r = self.redundancy();
        let n = self.slots.len() as u64;
        let scale =
            |v: u64| (v as u128 * n as u128 * r.k as u128 / (r.k as u128 + r.m as u128)) as u64;
        let total = spaces.iter().map(|s| s.0).min().unwrap_or(0);
        let free = spaces.iter().map(|s| s.1).min().unwrap_or(0);
        Some((scale(total), scale(free)))
    }

    /// Whether writes are refused (a disk was read-only at open).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        ChunkId(self.keys.chunk_id(plaintext))
    }

    /// FastCDC v2020 cut points with the volume's keyed seed; lengths sum to `data.len()`.
    pub fn chunk_lengths(&self, data: &[u8]) -> Vec<usize> {
        let params = self.header.read().chunker;
        chunker::chunk_lengths(&params, &self.gear, data)
    }

    /// The first of [`Store::chunk_lengths`], scanning no further.
    pub fn first_chunk_len(&self, data: &[u8]) -> usize {
        let params = self.header.read().chunker;
        chunker::first_chunk_len(&params, &self.gear, data)
    }

    pub fn max_chunk_size(&self) -> usize {
        self.header.read().chunker.max as usize
    }

    /// Seals a blob (e.g. a metadata snapshot) under the metadata subkey; `label` must match on open.
    pub fn seal_blob(&self, label: &[u8], data: &[u8]) -> Vec<u8> {
        self.keys.seal_blob(&self.volume_id(), label, data)
    }

    /// Opens a blob sealed by [`Store::seal_blob`].
    pub fn open_blob(&self, label: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        self.keys.open_blob(&self.volume_id(), label, sealed)
    }

    pub fn health(&self) -> Vec<DiskHealth> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let (state, detail) = s.state.lock().clone();
                DiskHealth {
                    index: i,
                    description: s.disk.describe(),
                    state,
                    detail,
                    errors: s.counters.errors.load(std::sync::atomic::Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Live counters: redundancy now vs target and per-disk shard I/O, errors, repairs (for metrics).
    pub fn sample(&self) -> crate::metrics::StoreSample {
        use std::sync::atomic::Ordering::Relaxed;
        let r = self.redundancy();
        let disks: Vec<crate::metrics::DiskSample> = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let state = s.state.lock().0;
                crate::metrics::DiskSample {
                    index: i,
                    path: s.disk.describe(),
                    state: state.name().to_string(),
                    usable: matches!(state, DiskState::Ok | DiskState::ReadOnly),
                    counts: s.counters.sample(),
                    lifetime: None,
                }
            })
            .collect();
        crate::metrics::StoreSample {
            k: r.k,
            m: r.m,
            disks_usable: disks.iter().filter(|d| d.usable).count() as u64,
            disks_target: r.k as u64 + r.m as u64,
            degraded_reads: self.counters.degraded_reads.load(Relaxed),
            unrecoverable_reads: self.counters.unrecoverable_reads.load(Relaxed),
            disks,
        }
    }
}
