//! On-disk structures of format versions 1 and 2 (disk header, keyslot, shard header) and their little-endian
//! codecs.
//!
//! Every offset used by the codecs is a named constant here, and `docs/FORMAT.md` tables are written from them.
//! Decoders verify magic, version and checksum before trusting any field, so a torn or foreign file is an error,
//! never a half-parsed structure.

use crate::error::{Error, Result};

/// The on-disk format version this code writes for new volumes. It reads every version from [`FORMAT_V1`] on.
pub const FORMAT_VERSION: u16 = 2;
/// Format v1: unauthenticated disk header, envelopes padded to 512 bytes, chunker seeded by XOR. Still read and
/// written (a v1 volume stays v1: older builds must keep opening it).
pub const FORMAT_V1: u16 = 1;
/// Format v2: the disk header carries a keyed MAC, envelopes use Padmé size classes and a v2 AAD, and the
/// chunker's gear table comes from a keyed XOF (FORMAT.md "Format v2").
pub const FORMAT_V2: u16 = 2;
/// Format v3 (experimental, not created unless asked for): v2 plus packed stripes (`store/stripe.rs`, FORMAT.md
/// §14): chunks are appended to shared stripes, one file per disk per stripe.
pub const FORMAT_V3: u16 = 3;
/// The newest format version this build reads and can create.
pub const FORMAT_NEWEST: u16 = FORMAT_V3;
/// Version field of shard headers. Their layout is the same in v1 and v2 volumes, so it stays 1.
pub const SHARD_VERSION: u16 = 1;

/// Name of the header file at the root of every disk.
pub const DISK_HEADER_NAME: &str = "valencefs.hdr";
/// Directory holding the fan-out tree of shard files.
pub const SHARD_DIR: &str = "shards";
/// Directory holding packed stripe files (format v3).
pub const STRIPE_DIR: &str = "stripes";

pub const DISK_MAGIC: [u8; 8] = *b"VALENCFS";
pub const SHARD_MAGIC: [u8; 8] = *b"VLNCSHRD";

/// Number of keyslots in every disk header (empty slots are all zero).
pub const KEYSLOTS: usize = 8;
/// Size of one encoded keyslot.
pub const KEYSLOT_LEN: usize = 96;
/// Offset of the first keyslot inside the disk header.
pub const DH_KEYSLOTS_OFF: usize = 64;
/// End of the keyslots: v1's checksum and v2's MAC start here.
pub const DH_KEYSLOTS_END: usize = DH_KEYSLOTS_OFF + KEYSLOTS * KEYSLOT_LEN;
/// Offset of the BLAKE3 checksum (over every preceding byte) in a v1 disk header.
pub const DH_CHECKSUM_OFF: usize = DH_KEYSLOTS_END;
/// Total v1 disk header size: 864 bytes.
pub const DISK_HEADER_LEN: usize = DH_CHECKSUM_OFF + 32;
/// Offset of the keyed MAC (over bytes 0..832) in a v2 disk header.
pub const DH_V2_MAC_OFF: usize = DH_KEYSLOTS_END;
/// Offset of the BLAKE3 checksum (over bytes 0..864) in a v2 disk header.
pub const DH_V2_CHECKSUM_OFF: usize = DH_V2_MAC_OFF + 32;
/// Total v2 disk header size: 896 bytes.
pub const DISK_HEADER_V2_LEN: usize = DH_V2_CHECKSUM_OFF + 32;

/// Disk header flag: zstd compression enabled for new chunks.
pub const FLAG_COMPRESSION: u32 = 1;

/// Keyslot KDF identifier: empty slot.
pub const KDF_NONE: u8 = 0;
/// Keyslot KDF identifier: Argon2id version 0x13.
pub const KDF_ARGON2ID: u8 = 1;

/// Size of the shard header that precedes every shard's payload.
pub const SHARD_HEADER_LEN: usize = 128;
/// Offset of the unkeyed BLAKE3 of the shard payload.
pub const SH_PAYLOAD_HASH_OFF: usize = 80;
/// Offset of the header checksum (first 16 bytes of BLAKE3 over bytes 0..112).
pub const SH_CHECKSUM_OFF: usize = 112;

fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// One keyslot: Argon2id parameters, salt, and the AES-256-GCM-wrapped master key.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyslot {
    /// [`KDF_NONE`] for an empty slot, [`KDF_ARGON2ID`] otherwise.
    pub kdf: u8,
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    pub salt: [u8; 16],
    pub nonce: [u8; 12],
    /// 32 bytes of wrapped master key followed by the 16-byte GCM tag.
    pub wrapped: [u8; 48],
}

impl std::fmt::Debug for Keyslot {
    // The wrapped key is not secret without the passphrase, but keeping it out of logs costs nothing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyslot")
            .field("kdf", &self.kdf)
            .field("m_cost_kib", &self.m_cost_kib)
            .field("t_cost", &self.t_cost)
            .field("p_cost", &self.p_cost)
            .finish_non_exhaustive()
    }
}

impl Default for Keyslot {
    fn default() -> Self {
        Keyslot {
            kdf: KDF_NONE,
            m_cost_kib: 0,
            t_cost: 0,
            p_cost: 0,
            salt: [0; 16],
            nonce: [0; 12],
            wrapped: [0; 48],
        }
    }
}

impl Keyslot {
    pub fn is_empty(&self) -> bool {
        self.kdf == KDF_NONE
    }

    /// The first 32 bytes (KDF id, parameters, salt): bound into the wrap's AAD so parameters can't be swapped.
    pub fn params_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0] = self.kdf;
        b[4..8].copy_from_slice(&self.m_cost_kib.to_le_bytes());
        b[8..12].copy_from_slice(&self.t_cost.to_le_bytes());
        b[12..16].copy_from_slice(&self.p_cost.to_le_bytes());
        b[16..32].copy_from_slice(&self.salt);
        b
    }

    pub fn encode(&self) -> [u8; KEYSLOT_LEN] {
        let mut b = [0u8; KEYSLOT_LEN];
        if self.is_empty() {
            return b;
        }
        b[0..32].copy_from_slice(&self.params_bytes());
        b[32..44].copy_from_slice(&self.nonce);
        b[44..92].copy_from_slice(&self.wrapped);
        b
    }

    /// Decodes one keyslot from the first [`KEYSLOT_LEN`] bytes of `b`; shorter input is a format error.
    pub fn decode(b: &[u8]) -> Result<Keyslot> {
        if b.len() < KEYSLOT_LEN {
            return Err(Error::Format(format!(
                "keyslot is {} bytes, expected {KEYSLOT_LEN}",
                b.len()
            )));
        }
        Ok(Keyslot {
            kdf: b[0],
            m_cost_kib: le32(b, 4),
            t_cost: le32(b, 8),
            p_cost: le32(b, 12),
            salt: b[16..32].try_into().expect("16"),
            nonce: b[32..44].try_into().expect("12"),
            wrapped: b[44..92].try_into().expect("48"),
        })
    }
}

/// Chunker parameters (FastCDC v2020 min/avg/max), fixed per volume so dedup stays stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 256 KiB / 1 MiB / 4 MiB: between restic's and JuiceFS's choices; see FORMAT.md for the measurement.
    fn default() -> Self {
        ChunkerParams {
            min: 256 * 1024,
            avg: 1024 * 1024,
            max: 4 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// The sizes for an average of `avg` bytes: min = avg/4, max = 4×avg (the default's proportions). `avg` must be
    /// a power of two from 4 KiB to 4 MiB (FastCDC's masks assume powers of two).
    pub fn with_avg(avg: u64) -> Result<ChunkerParams> {
        if !avg.is_power_of_two() || !(4096..=4 << 20).contains(&avg) {
            return Err(Error::Format(format!(
                "chunk size {avg} must be a power of two from 4K to 4M (e.g. 64K, 1M)"
            )));
        }
        let avg = avg as u32;
        let p = ChunkerParams {
            min: avg / 4,
            avg,
            max: avg * 4,
        };
        p.validate()?;
        Ok(p)
    }

    /// Checks the limits the fastcdc crate asserts on, so a bad header is an error and not a panic.
    pub fn validate(&self) -> Result<()> {
        let ok = (64..=1_048_576).contains(&self.min)
            && (256..=4_194_304).contains(&self.avg)
            && (1024..=16_777_216).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(Error::Format(format!(
                "chunker parameters out of range: {self:?}"
            )))
        }
    }
}

/// The per-disk header; identical on every disk of a volume except `disk_index` (and, in v2, the MAC over it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskHeader {
    /// [`FORMAT_V1`] or [`FORMAT_V2`]: the volume's format, fixed at creation.
    pub version: u16,
    pub flags: u32,
    pub volume_id: [u8; 16],
    pub disk_index: u16,
    pub disk_count: u16,
    pub k: u8,
    pub m: u8,
    /// Bumped on every header rewrite; a disk with a lower epoch missed a rewrite and is stale.
    pub epoch: u64,
    pub chunker: ChunkerParams,
    pub keyslots: Vec<Keyslot>,
    /// v2: BLAKE3 keyed with the header subkey over bytes 0..832 ([`DiskHeader::mac_input`]); checked after
    /// unlock. All zero in v1 headers, which have no MAC.
    pub mac: [u8; 32],
}

impl DiskHeader {
    /// Encoded length of a header of format `version`.
    pub fn len_of(version: u16) -> usize {
        if version == FORMAT_V1 {
            DISK_HEADER_LEN
        } else {
            DISK_HEADER_V2_LEN
        }
    }

    /// The bytes a v2 header's MAC covers: everything before it, disk index included.
    pub fn mac_input(&self) -> Vec<u8> {
        self.encode()[..DH_KEYSLOTS_END].to_vec()
    }

    pub fn encode(&self) -> Vec<u8> {
        let len = DiskHeader::len_of(self.version);
        let mut b = vec![0u8; len];
        b[0..8].copy_from_slice(&DISK_MAGIC);
        b[8..10].copy_from_slice(&self.version.to_le_bytes());
        b[10..12].copy_from_slice(&(len as u16).to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..32].copy_from_slice(&self.volume_id);
        b[32..34].copy_from_slice(&self.disk_index.to_le_bytes());
        b[34..36].copy_from_slice(&self.disk_count.to_le_bytes());
        b[36] = self.k;
        b[37] = self.m;
        b[40..48].copy_from_slice(&self.epoch.to_le_bytes());
        b[48..52].copy_from_slice(&self.chunker.min.to_le_bytes());
        b[52..56].copy_from_slice(&self.chunker.avg.to_le_bytes());
        b[56..60].copy_from_slice(&self.chunker.max.to_le_bytes());
        for (i, slot) in self.keyslots.iter().take(KEYSLOTS).enumerate() {
            let off = DH_KEYSLOTS_OFF + i * KEYSLOT_LEN;
            b[off..off + KEYSLOT_LEN].copy_from_slice(&slot.encode());
        }
        let sum_off = if self.version == FORMAT_V1 {
            DH_CHECKSUM_OFF
        } else {
            b[DH_V2_MAC_OFF..DH_V2_CHECKSUM_OFF].copy_from_slice(&self.mac);
            DH_V2_CHECKSUM_OFF
        };
        let sum = blake3::hash(&b[..sum_off]);
        b[sum_off..].copy_from_slice(sum.as_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<DiskHeader> {
        if b.len() < 12 || b[0..8] != DISK_MAGIC {
            return Err(Error::Format(
                "not a valencefs disk header (bad magic)".into(),
            ));
        }
        let version = le16(b, 8);
        if !(FORMAT_V1..=FORMAT_NEWEST).contains(&version) {
            return Err(Error::Format(format!(
                "disk header format version {version}; this build reads versions {FORMAT_V1} to \
                 {FORMAT_NEWEST} (a newer valencefs wrote it?)"
            )));
        }
        let len = DiskHeader::len_of(version);
        if b.len() != len || le16(b, 10) as usize != len {
            return Err(Error::Format(format!(
                "disk header is {} bytes, expected {len} for format v{version}",
                b.len()
            )));
        }
        let sum_off = len - 32;
        if blake3::hash(&b[..sum_off]).as_bytes() != &b[sum_off..] {
            return Err(Error::Format("disk header checksum mismatch".into()));
        }
        let mut mac = [0u8; 32];
        if version != FORMAT_V1 {
            mac.copy_from_slice(&b[DH_V2_MAC_OFF..DH_V2_CHECKSUM_OFF]);
        }
        let keyslots = (0..KEYSLOTS)
            .map(|i| Keyslot::decode(&b[DH_KEYSLOTS_OFF + i * KEYSLOT_LEN..]))
            .collect::<Result<Vec<_>>>()?;
        let h = DiskHeader {
            version,
            flags: le32(b, 12),
            volume_id: b[16..32].try_into().expect("16"),
            disk_index: le16(b, 32),
            disk_count: le16(b, 34),
            k: b[36],
            m: b[37],
            epoch: le64(b, 40),
            chunker: ChunkerParams {
                min: le32(b, 48),
                avg: le32(b, 52),
                max: le32(b, 56),
            },
            keyslots,
            mac,
        };
        // One encoding per header: reserved bytes and empty slots must be zero. The v2 MAC is computed over the
        // re-encoded fields, so bytes that decoding would drop must not exist.
        if h.encode() != b {
            return Err(Error::Format(
                "disk header is not canonical (reserved bytes or an empty keyslot are not zero)"
                    .into(),
            ));
        }
        h.chunker.validate()?;
        if h.k == 0 || h.m == 0 || (h.disk_count as usize) < h.k as usize + h.m as usize {
            return Err(Error::Format(format!(
                "disk header layout {}+{} over {} disks is invalid",
                h.k, h.m, h.disk_count
            )));
        }
        Ok(h)
    }
}

/// The header in front of every shard's payload. Verifying a shard needs only this and the payload, no key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardHeader {
    pub k: u8,
    pub m: u8,
    pub index: u8,
    pub volume_id: [u8; 16],
    pub chunk_id: [u8; 32],
    /// Length of the sealed envelope; the concatenated data shards are truncated to it.
    pub envelope_len: u64,
    /// Length of the payload following the header (equal for every shard of a chunk).
    pub shard_len: u32,
    /// Unkeyed BLAKE3 of the payload.
    pub payload_hash: [u8; 32],
}

impl ShardHeader {
    pub fn encode(&self) -> [u8; SHARD_HEADER_LEN] {
        let mut b = [0u8; SHARD_HEADER_LEN];
        b[0..8].copy_from_slice(&SHARD_MAGIC);
        b[8..10].copy_from_slice(&SHARD_VERSION.to_le_bytes());
        b[10] = self.k;
        b[11] = self.m;
        b[12] = self.index;
        b[16..32].copy_from_slice(&self.volume_id);
        b[32..64].copy_from_slice(&self.chunk_id);
        b[64..72].copy_from_slice(&self.envelope_len.to_le_bytes());
        b[72..76].copy_from_slice(&self.shard_len.to_le_bytes());
        b[SH_PAYLOAD_HASH_OFF..SH_PAYLOAD_HASH_OFF + 32].copy_from_slice(&self.payload_hash);
        let sum = blake3::hash(&b[..SH_CHECKSUM_OFF]);
        b[SH_CHECKSUM_OFF..].copy_from_slice(&sum.as_bytes()[..16]);
        b
    }

    /// Decodes and checks the header checksum and that the payload has the announced length. Does not hash the
    /// payload: callers on the fast path rely on the AEAD tag instead (see [`ShardHeader::payload_ok`]).
    pub fn decode(file: &[u8]) -> Result<ShardHeader> {
        if file.len() < SHARD_HEADER_LEN || file[0..8] != SHARD_MAGIC {
            return Err(Error::Format("not a shard (short or bad magic)".into()));
        }
        let b = &file[..SHARD_HEADER_LEN];
        if blake3::hash(&b[..SH_CHECKSUM_OFF]).as_bytes()[..16] != b[SH_CHECKSUM_OFF..] {
            return Err(Error::Format("shard header checksum mismatch".into()));
        }
        let version = le16(b, 8);
        if version != SHARD_VERSION {
            return Err(Error::Format(format!("shard format version {version}")));
        }
        let h = ShardHeader {
            k: b[10],
            m: b[11],
            index: b[12],
            volume_id: b[16..32].try_into().expect("16"),
            chunk_id: b[32..64].try_into().expect("32"),
            envelope_len: le64(b, 64),
            shard_len: le32(b, 72),
            payload_hash: b[SH_PAYLOAD_HASH_OFF..SH_PAYLOAD_HASH_OFF + 32]
                .try_into()
                .expect("32"),
        };
        // The envelope must fit the k data shards: a length from nowhere would size a buffer (issue #27 M2).
        if h.k == 0 || h.envelope_len > h.k as u64 * h.shard_len as u64 {
            return Err(Error::Format(format!(
                "shard header announces a {}-byte envelope in {} shards of {} bytes",
                h.envelope_len, h.k, h.shard_len
            )));
        }
        if file.len() != SHARD_HEADER_LEN + h.shard_len as usize {
            return Err(Error::Format(format!(
                "shard is {} bytes, header announces {}",
                file.len(),
                SHARD_HEADER_LEN + h.shard_len as usize
            )));
        }
        Ok(h)
    }

    /// Whether the payload of `file` (already decoded by [`ShardHeader::decode`]) matches its checksum.
    pub fn payload_ok(&self, file: &[u8]) -> bool {
        blake3::hash(&file[SHARD_HEADER_LEN..]).as_bytes() == &self.payload_hash
    }
}

/// The stripe hash of a chunk: BLAKE3 (derive-key mode, context "valencefs 2026 stripe hash v1") over the payload
/// hashes of its k+m shards in index order. Recorded in the chunk's metadata row when the chunk is written, it lets a
/// scrub prove, without the key, that the shards on the disks are exactly the ones written (not forged, swapped or
/// rolled back), and it is the leaf of the integrity root (FORMAT.md §13).
pub fn stripe_hash(payload_hashes: &[[u8; 32]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("valencefs 2026 stripe hash v1");
    for p in payload_hashes {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// The integrity root: a binary Merkle tree whose leaves, in chunk-id order, are BLAKE3 (derive-key "valencefs
/// 2026 integrity leaf v1") of chunk id ‖ stripe hash for every referenced chunk; an inner node is BLAKE3 (derive-key
/// "valencefs 2026 integrity node v1") of left ‖ right; an odd node at the end of a level moves up unchanged. The
/// root of no leaves is BLAKE3 (derive-key "valencefs 2026 integrity empty v1") of nothing.
pub fn integrity_root(leaves: impl IntoIterator<Item = ([u8; 32], [u8; 32])>) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = leaves
        .into_iter()
        .map(|(id, stripe)| {
            let mut h = blake3::Hasher::new_derive_key("valencefs 2026 integrity leaf v1");
            h.update(&id);
            h.update(&stripe);
            *h.finalize().as_bytes()
        })
        .collect();
    if level.is_empty() {
        return *blake3::Hasher::new_derive_key("valencefs 2026 integrity empty v1")
            .finalize()
            .as_bytes();
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => {
                    let mut h = blake3::Hasher::new_derive_key("valencefs 2026 integrity node v1");
                    h.update(l);
                    h.update(r);
                    *h.finalize().as_bytes()
                }
                [one] => *one,
                _ => unreachable!("chunks(2)"),
            })
            .collect();
    }
    level[0]
}

/// The shard file name of shard `index` of a chunk: a two-level fan-out on the (opaque, keyed) chunk id.
pub fn shard_name(chunk_id: &[u8; 32], index: usize) -> String {
    let hex: String = chunk_id.iter().map(|b| format!("{b:02x}")).collect();
    format!("{SHARD_DIR}/{}/{}/{hex}.{index}", &hex[0..2], &hex[2..4])
}

/// Parses a name produced by [`shard_name`] back into (chunk id, shard index); `None` for anything else
/// (temp files, stray files), which listing therefore ignores.
pub fn parse_shard_name(name: &str) -> Option<([u8; 32], usize)> {
    parse_object_name(name.rsplit('/').next()?)
}

/// Parses `<2N hex digits>.<index>` (the last component of a shard or stripe file name).
pub(crate) fn parse_object_name<const N: usize>(file: &str) -> Option<([u8; N], usize)> {
    let (hex, idx) = file.split_once('.')?;
    if hex.len() != 2 * N {
        return None;
    }
    let index: usize = idx.parse().ok()?;
    let mut id = [0u8; N];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((id, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_option_keeps_proportions_and_refuses_odd_sizes() {
        let p = ChunkerParams::with_avg(64 << 10).unwrap();
        assert_eq!((p.min, p.avg, p.max), (16 << 10, 64 << 10, 256 << 10));
        let p = ChunkerParams::with_avg(4 << 20).unwrap();
        assert_eq!((p.min, p.max), (1 << 20, 16 << 20));
        assert_eq!(
            ChunkerParams::with_avg(1 << 20).unwrap(),
            ChunkerParams::default()
        );
        for bad in [0, 3072, 2048, 96 << 10, 8 << 20, u64::MAX] {
            assert!(ChunkerParams::with_avg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_sizes_match_the_format_doc() {
        assert_eq!(DISK_HEADER_LEN, 864);
        assert_eq!(SHARD_HEADER_LEN, 128);
    }

    #[test]
    fn shard_header_round_trip_and_tamper() {
        let h = ShardHeader {
            k: 3,
            m: 2,
            index: 4,
            volume_id: [7; 16],
            chunk_id: [9; 32],
            envelope_len: 9,
            shard_len: 3,
            payload_hash: *blake3::hash(b"abc").as_bytes(),
        };
        let mut file = h.encode().to_vec();
        file.extend_from_slice(b"abc");
        let d = ShardHeader::decode(&file).unwrap();
        assert_eq!(d, h);
        // An envelope longer than k shards could hold is refused before anyone sizes a buffer by it.
        let huge = ShardHeader {
            envelope_len: 1 << 50,
            ..h.clone()
        };
        let mut bad = huge.encode().to_vec();
        bad.extend_from_slice(b"abc");
        assert!(ShardHeader::decode(&bad).is_err());
        assert!(d.payload_ok(&file));
        file[20] ^= 1;
        assert!(ShardHeader::decode(&file).is_err());
    }

    #[test]
    fn shard_names_parse_back() {
        let id = [0xab; 32];
        let n = shard_name(&id, 7);
        assert!(n.starts_with("shards/ab/ab/abab"));
        assert_eq!(parse_shard_name(&n), Some((id, 7)));
        assert_eq!(parse_shard_name("shards/ab/ab/x.tmp"), None);
    }
}
