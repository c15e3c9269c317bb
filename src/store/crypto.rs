//! Keys and sealing: master key, purpose subkeys, Argon2id keyslots, the deterministic chunk envelope and blobs.
//!
//! The only module that does AES-GCM and Argon2. AES-256-GCM comes from `aws-lc-rs` (already linked for the S3 disks'
//! TLS): `cargo bench --bench store` measures it at several times the RustCrypto `aes-gcm` crate on the same CPU,
//! and sealing was the slowest stage of the write path. `tests/store_kat.rs` checks every sealed format against the
//! independent `aes-gcm` implementation. Key material lives in `Zeroizing` buffers (AWS-LC cleanses its own key
//! schedules) and no type here implements a `Debug` that prints key bytes.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use rand::RngCore;
use zeroize::Zeroizing;

use super::chunker::Gear;
use super::format::{Keyslot, FORMAT_V1, FORMAT_VERSION, KDF_ARGON2ID};
use crate::error::{Error, Result};

/// Context strings for `blake3::derive_key`; changing any of them is a format change.
pub const CTX_CHUNK_ID: &str = "valencefs v1 2026-11 chunk id";
pub const CTX_CHUNKER: &str = "valencefs v1 2026-11 chunker seed";
pub const CTX_DATA: &str = "valencefs v1 2026-11 data seal";
pub const CTX_NONCE: &str = "valencefs v1 2026-11 data nonce";
pub const CTX_META: &str = "valencefs v1 2026-11 metadata seal";
/// Format v2 subkeys (also used by v1 volumes for the envelope nonce, which v1 readers take from the envelope).
pub const CTX_SIV: &str = "valencefs v2 2026-12 envelope nonce";
pub const CTX_HEADER_MAC: &str = "valencefs v2 2026-12 header mac";
pub const CTX_GEAR: &str = "valencefs v2 2026-12 chunker gear";

/// Largest Argon2 costs a keyslot may ask for. Costs come from the disks, so a disk holder could otherwise make
/// every unlock exhaust memory or run for ever; a slot over a cap "does not open" and the next one is tried.
pub const MAX_KDF_M_COST_KIB: u32 = 4 * 1024 * 1024;
pub const MAX_KDF_T_COST: u32 = 16;
pub const MAX_KDF_P_COST: u32 = 16;

/// Sealed envelopes are padded to a multiple of this (v2: at least this; larger ones to a Padmé size class), so
/// stored sizes reveal only coarse size classes.
pub const ENVELOPE_PAD: usize = 512;
/// Nonce (12) + tag (16) around the encrypted inner body.
pub const ENVELOPE_OVERHEAD: usize = 12 + 16;
/// Inner header: flags (1), reserved (3), body length (u32 LE).
pub const INNER_HEADER_LEN: usize = 8;
/// Inner flag: body is zstd-compressed.
pub const INNER_FLAG_ZSTD: u8 = 1;

const AAD_ENVELOPE: &[u8] = b"valencefs envelope";
const AAD_KEYSLOT: &[u8] = b"valencefs keyslot";
const AAD_BLOB: &[u8] = b"valencefs blob";

/// Argon2id cost parameters of a keyslot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 256 MiB, 2 passes, 1 lane: measured ~0.5 s on the 2-core test machine (see FORMAT.md).
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 256 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Whether these costs are within the caps every reader enforces ([`MAX_KDF_M_COST_KIB`] and the others) and
    /// legal for Argon2.
    pub fn within_caps(&self) -> bool {
        self.m_cost_kib <= MAX_KDF_M_COST_KIB
            && (1..=MAX_KDF_T_COST).contains(&self.t_cost)
            && (1..=MAX_KDF_P_COST).contains(&self.p_cost)
            && argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32)).is_ok()
    }

    /// Cheapest legal parameters: for tests and fixtures only; offers no protection against guessing.
    pub fn insecure_fast() -> Self {
        KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }
}

fn kek(passphrase: &[u8], params: &KdfParams, salt: &[u8; 16]) -> Result<Zeroizing<[u8; 32]>> {
    let p = argon2::Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|e| Error::Format(format!("argon2 parameters {params:?}: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase, salt, out.as_mut())
        .map_err(|e| Error::Format(format!("argon2: {e}")))?;
    Ok(out)
}

/// AAD of a keyslot's wrapped key: label, the header's format version, volume id, KDF parameters and salt. The
/// version binding makes a downgrade of a v2 header to v1 (which has no MAC) fail to unlock.
fn keyslot_aad(version: u16, volume_id: &[u8; 16], slot: &Keyslot) -> Vec<u8> {
    [
        AAD_KEYSLOT,
        &version.to_le_bytes(),
        volume_id,
        &slot.params_bytes(),
    ]
    .concat()
}

/// The volume's key material: the master key and the subkeys derived from it, one per purpose.
pub struct Keys {
    master: Zeroizing<[u8; 32]>,
    chunk_id: Zeroizing<[u8; 32]>,
    chunker: Zeroizing<[u8; 32]>,
    nonce: Zeroizing<[u8; 32]>,
    siv: Zeroizing<[u8; 32]>,
    header_mac: Zeroizing<[u8; 32]>,
    gear: Zeroizing<[u8; 32]>,
    data: LessSafeKey,
    meta: LessSafeKey,
    /// The volume's format version: selects the envelope AAD and padding, and the chunker's gear table.
    format: u16,
}

/// An AES-256-GCM key.
fn gcm_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key"))
}

/// `ciphertext || tag` of `msg` (12-byte `nonce`, `aad` authenticated).
fn gcm_seal(key: &LessSafeKey, nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 16);
    out.extend_from_slice(msg);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(*nonce),
        Aad::from(aad),
        &mut out,
    )
    .expect("AES-GCM encryption of a bounded buffer cannot fail");
    out
}

/// Opens `ciphertext || tag` in place and returns the plaintext's length (at the start of `buf`); `None` when
/// authentication fails.
fn gcm_open(key: &LessSafeKey, nonce: &[u8], aad: &[u8], buf: &mut [u8]) -> Option<usize> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    key.open_in_place(nonce, Aad::from(aad), buf)
        .ok()
        .map(|p| p.len())
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

impl Keys {
    /// Derives every subkey from a master key. Distinct `derive_key` contexts make the subkeys independent.
    pub fn from_master(master: [u8; 32]) -> Keys {
        let master = Zeroizing::new(master);
        let d = |ctx: &str| Zeroizing::new(blake3::derive_key(ctx, master.as_ref()));
        let data = d(CTX_DATA);
        let meta = d(CTX_META);
        Keys {
            chunk_id: d(CTX_CHUNK_ID),
            chunker: d(CTX_CHUNKER),
            nonce: d(CTX_NONCE),
            siv: d(CTX_SIV),
            header_mac: d(CTX_HEADER_MAC),
            gear: d(CTX_GEAR),
            data: gcm_key(&data),
            meta: gcm_key(&meta),
            master,
            format: FORMAT_VERSION,
        }
    }

    /// These keys for a volume of format `version` (1 or 2); [`Keys::from_master`] gives the newest.
    pub fn for_format(mut self, version: u16) -> Keys {
        self.format = version;
        self
    }

    pub fn format(&self) -> u16 {
        self.format
    }

    /// Format v2 header MAC: BLAKE3 keyed with the header subkey over the header's bytes before the MAC (disk
    /// index included, so a header cannot be moved to another slot either).
    pub fn header_mac(&self, bytes: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.header_mac, bytes).as_bytes()
    }

    /// The chunker's gear table: v1, the crate's table XORed with [`Keys::chunker_seed`]; v2, 2,048 bytes of the
    /// BLAKE3 XOF keyed with the gear subkey.
    pub fn gear(&self) -> Gear {
        if self.format == FORMAT_V1 {
            return Gear::from_seed(self.chunker_seed());
        }
        let mut t = Zeroizing::new([0u8; 2048]);
        blake3::Hasher::new_keyed(&self.gear)
            .finalize_xof()
            .fill(t.as_mut());
        Gear::from_table_bytes(&t)
    }

    /// A fresh random master key.
    pub fn generate() -> Keys {
        let mut m = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(m.as_mut());
        Keys::from_master(*m)
    }

    /// Chunk id: BLAKE3 keyed with the chunk-id subkey, so ids don't reveal content to someone without the key.
    pub fn chunk_id(&self, plaintext: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.chunk_id, plaintext).as_bytes()
    }

    /// The 64-bit FastCDC gear seed.
    pub fn chunker_seed(&self) -> u64 {
        u64::from_le_bytes(self.chunker[..8].try_into().expect("8"))
    }

    /// The nonce format v1 *writers* derived from the chunk id alone (kept for the known-answer tests of envelopes
    /// already on disks). Unsafe to seal with: one chunk id can be sealed with different inner bytes (another
    /// compression decision or zstd version), which would pair one nonce with two plaintexts.
    pub fn v1_chunk_nonce(&self, chunk_id: &[u8; 32]) -> [u8; 12] {
        blake3::keyed_hash(&self.nonce, chunk_id).as_bytes()[..12]
            .try_into()
            .expect("12")
    }

    /// Synthetic nonce of an envelope: the first 96 bits of BLAKE3 keyed with the SIV subkey over format version
    /// (u16) ‖ chunk id ‖ the whole inner plaintext (header, body, padding). One nonce therefore seals one inner
    /// plaintext only: equal nonces mean equal messages (barring a keyed-hash collision), so sealing stays
    /// deterministic (idempotent puts) without GCM's nonce-reuse failure.
    pub fn envelope_nonce(&self, chunk_id: &[u8; 32], inner: &[u8]) -> [u8; 12] {
        let mut h = blake3::Hasher::new_keyed(&self.siv);
        h.update(&self.format.to_le_bytes());
        h.update(chunk_id);
        h.update(inner);
        h.finalize().as_bytes()[..12].try_into().expect("12")
    }

    /// Wraps the master key into a new keyslot under `passphrase`, for a header of this volume's format.
    pub fn wrap(
        &self,
        volume_id: &[u8; 16],
        passphrase: &[u8],
        params: &KdfParams,
    ) -> Result<Keyslot> {
        if !params.within_caps() {
            return Err(Error::Invalid(format!(
                "Argon2 costs {params:?} are outside what readers accept (m ≤ {MAX_KDF_M_COST_KIB} KiB, \
                 1 ≤ t ≤ {MAX_KDF_T_COST}, 1 ≤ p ≤ {MAX_KDF_P_COST})"
            )));
        }
        let mut slot = Keyslot {
            kdf: KDF_ARGON2ID,
            m_cost_kib: params.m_cost_kib,
            t_cost: params.t_cost,
            p_cost: params.p_cost,
            ..Keyslot::default()
        };
        rand::rngs::OsRng.fill_bytes(&mut slot.salt);
        rand::rngs::OsRng.fill_bytes(&mut slot.nonce);
        let kek = kek(passphrase, params, &slot.salt)?;
        let aad = keyslot_aad(self.format, volume_id, &slot);
        let ct = gcm_seal(&gcm_key(&kek), &slot.nonce, &aad, self.master.as_ref());
        slot.wrapped.copy_from_slice(&ct);
        Ok(slot)
    }

    /// Unwraps one keyslot; `None` if the passphrase (or anything the AAD binds) does not match.
    ///
    /// A slot whose costs are over the caps ([`KdfParams::within_caps`]) or invalid does not open (`Ok(None)`): its
    /// costs come from a disk, and a caller goes on to the next slot.
    /// `version` is the format version of the header the slot was read from; the keys returned are for it.
    pub fn unwrap(
        version: u16,
        volume_id: &[u8; 16],
        slot: &Keyslot,
        passphrase: &[u8],
    ) -> Result<Option<Keys>> {
        if slot.kdf != KDF_ARGON2ID {
            return Ok(None);
        }
        let params = KdfParams {
            m_cost_kib: slot.m_cost_kib,
            t_cost: slot.t_cost,
            p_cost: slot.p_cost,
        };
        if !params.within_caps() {
            tracing::warn!(
                "ignoring a keyslot with Argon2 costs {params:?} over the caps (m ≤ {MAX_KDF_M_COST_KIB} KiB, t ≤ \
                 {MAX_KDF_T_COST}, p ≤ {MAX_KDF_P_COST}): edited on the disk?"
            );
            return Ok(None);
        }
        let Ok(kek) = kek(passphrase, &params, &slot.salt) else {
            return Ok(None);
        };
        let aad = keyslot_aad(version, volume_id, slot);
        let mut buf = Zeroizing::new(slot.wrapped);
        match gcm_open(&gcm_key(&kek), &slot.nonce, &aad, buf.as_mut()) {
            Some(32) => {
                let mut m = [0u8; 32];
                m.copy_from_slice(&buf[..32]);
                let keys = Keys::from_master(m).for_format(version);
                zeroize::Zeroize::zeroize(&mut m);
                Ok(Some(keys))
            }
            _ => Ok(None),
        }
    }

    /// Seals a chunk body into an envelope `nonce || AES-256-GCM(inner) || tag`, where inner is
    /// `flags, 0, 0, 0, body_len u32 LE, body, zero padding` and the whole envelope is [`envelope_len`] bytes. The
    /// padding is inside the ciphertext, so it is authenticated and invisible. The nonce is computed here from
    /// everything sealed ([`Keys::envelope_nonce`]); no caller chooses it.
    pub fn seal_chunk(
        &self,
        volume_id: &[u8; 16],
        chunk_id: &[u8; 32],
        flags: u8,
        body: &[u8],
    ) -> Vec<u8> {
        let total = envelope_len(self.format, INNER_HEADER_LEN + body.len());
        // Built in place: one copy of the body, one hashing pass for the nonce, one encryption pass.
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&[0u8; 12]);
        out.extend_from_slice(&[flags, 0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        out.resize(total - 16, 0);
        let nonce = self.envelope_nonce(chunk_id, &out[12..]);
        out[..12].copy_from_slice(&nonce);
        let aad = envelope_aad(self.format, volume_id, chunk_id);
        let tag = self
            .data
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut out[12..],
            )
            .expect("AES-GCM encryption of a bounded buffer cannot fail");
        out.extend_from_slice(tag.as_ref());
        debug_assert_eq!(out.len(), total);
        out
    }

    /// Opens an envelope made by [`Keys::seal_chunk`] in place; returns (flags, body). Any tampering is `Corrupt`.
    pub fn open_chunk(
        &self,
        volume_id: &[u8; 16],
        chunk_id: &[u8; 32],
        mut envelope: Vec<u8>,
    ) -> Result<(u8, Vec<u8>)> {
        let bad = || Error::Corrupt(format!("chunk {} failed authentication", hex(chunk_id)));
        let n = envelope.len();
        if n < ENVELOPE_OVERHEAD + INNER_HEADER_LEN {
            return Err(bad());
        }
        let aad = envelope_aad(self.format, volume_id, chunk_id);
        let (head, rest) = envelope.split_at_mut(12);
        gcm_open(&self.data, head, &aad, rest).ok_or_else(bad)?;
        let inner = &rest[..n - ENVELOPE_OVERHEAD];
        let flags = inner[0];
        let len = u32::from_le_bytes(inner[4..8].try_into().expect("4")) as usize;
        if INNER_HEADER_LEN + len > inner.len() {
            return Err(bad());
        }
        envelope.truncate(12 + INNER_HEADER_LEN + len);
        envelope.drain(..12 + INNER_HEADER_LEN);
        Ok((flags, envelope))
    }

    /// Seals an arbitrary blob (e.g. a metadata snapshot) under the metadata subkey with a random nonce.
    /// Layout: `nonce(12) || ciphertext || tag(16)`; `label` is bound as AAD and must match on open.
    pub fn seal_blob(&self, volume_id: &[u8; 16], label: &[u8], data: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = [AAD_BLOB, &FORMAT_V1.to_le_bytes(), volume_id, label].concat();
        [&nonce[..], &gcm_seal(&self.meta, &nonce, &aad, data)].concat()
    }

    /// Opens a blob sealed by [`Keys::seal_blob`] with the same label.
    pub fn open_blob(&self, volume_id: &[u8; 16], label: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < ENVELOPE_OVERHEAD {
            return Err(Error::Corrupt("sealed blob too short".into()));
        }
        let aad = [AAD_BLOB, &FORMAT_V1.to_le_bytes(), volume_id, label].concat();
        let mut buf = sealed[12..].to_vec();
        let len = gcm_open(&self.meta, &sealed[..12], &aad, &mut buf)
            .ok_or_else(|| Error::Corrupt("sealed blob failed authentication".into()))?;
        buf.truncate(len);
        Ok(buf)
    }
}

/// Size of a sealed envelope around `inner_len` bytes of inner plaintext (header + body). v1: the next multiple
/// of [`ENVELOPE_PAD`]. v2: the larger of that and Padmé (Nikitin et al., 2019): an envelope of 2^E..2^(E+1) bytes
/// keeps only its top ⌊log2 E⌋ + 1 bits, so a size leaks O(log log L) bits and padding costs < 12 % (≤ 3.2 % from
/// 64 KiB on, where the Padmé class is coarser than 512 bytes).
pub fn envelope_len(format: u16, inner_len: usize) -> usize {
    let raw = inner_len + ENVELOPE_OVERHEAD;
    let v1 = raw.div_ceil(ENVELOPE_PAD) * ENVELOPE_PAD;
    if format == FORMAT_V1 || raw < 2 {
        return v1;
    }
    let e = usize::BITS - 1 - raw.leading_zeros();
    let s = u32::BITS - e.leading_zeros();
    let mask = (1usize << (e - s)) - 1;
    v1.max((raw + mask) & !mask)
}

/// AAD of a chunk envelope: label, format version, volume id, chunk id. Moving an envelope to another chunk id or
/// volume, or reading it with another format version, fails authentication.
pub fn envelope_aad(format: u16, volume_id: &[u8; 16], chunk_id: &[u8; 32]) -> Vec<u8> {
    [AAD_ENVELOPE, &format.to_le_bytes(), volume_id, chunk_id].concat()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip_padding_and_tamper() {
        let k = Keys::from_master([1; 32]);
        let id = k.chunk_id(b"hello");
        for len in [0usize, 1, 483, 484, 485, 5000] {
            let body = vec![7u8; len];
            let env = k.seal_chunk(&[2; 16], &id, 0, &body);
            assert_eq!(env.len() % ENVELOPE_PAD, 0);
            assert_eq!(env, k.seal_chunk(&[2; 16], &id, 0, &body), "deterministic");
            assert_eq!(k.open_chunk(&[2; 16], &id, env.clone()).unwrap(), (0, body));
            assert!(
                k.open_chunk(&[3; 16], &id, env.clone()).is_err(),
                "volume bound"
            );
            let mut bad = env.clone();
            bad[20] ^= 1;
            assert!(k.open_chunk(&[2; 16], &id, bad).is_err());
        }
    }

    #[test]
    fn keyslot_wraps_and_rejects_wrong_passphrase() {
        let k = Keys::from_master([5; 32]);
        let slot = k
            .wrap(&[1; 16], b"pw", &KdfParams::insecure_fast())
            .unwrap();
        let v = FORMAT_VERSION;
        let back = Keys::unwrap(v, &[1; 16], &slot, b"pw").unwrap().unwrap();
        assert_eq!(back.chunk_id(b"x"), k.chunk_id(b"x"));
        assert!(Keys::unwrap(v, &[1; 16], &slot, b"wrong")
            .unwrap()
            .is_none());
        assert!(Keys::unwrap(v, &[2; 16], &slot, b"pw").unwrap().is_none());
        // A v2 slot read from a header downgraded to v1 does not open.
        assert!(Keys::unwrap(FORMAT_V1, &[1; 16], &slot, b"pw")
            .unwrap()
            .is_none());
    }

    #[test]
    fn keyslot_costs_from_a_disk_are_capped() {
        let k = Keys::from_master(5u8.to_le_bytes().repeat(32).try_into().unwrap());
        let good = k
            .wrap(&[1; 16], b"pw", &KdfParams::insecure_fast())
            .unwrap();
        let v = FORMAT_VERSION;
        for (m, t, p) in [
            (u32::MAX, 1, 1),
            (MAX_KDF_M_COST_KIB + 1, 1, 1),
            (64, u32::MAX, 1),
            (64, 17, 1),
            (64, 1, 1000),
            (64, 0, 1),
            (1, 1, 1),
        ] {
            let mut bad = good.clone();
            (bad.m_cost_kib, bad.t_cost, bad.p_cost) = (m, t, p);
            // Returns at once, does not open, and is no error (the next slot is tried).
            assert!(
                Keys::unwrap(v, &[1; 16], &bad, b"pw").unwrap().is_none(),
                "{m} {t} {p}"
            );
            let params = KdfParams {
                m_cost_kib: m,
                t_cost: t,
                p_cost: p,
            };
            assert!(k.wrap(&[1; 16], b"pw", &params).is_err(), "{m} {t} {p}");
        }
        assert!(Keys::unwrap(v, &[1; 16], &good, b"pw").unwrap().is_some());
    }

    #[test]
    fn nonce_depends_on_everything_sealed() {
        // Issue #27 H1: one chunk id sealed with two different bodies (another compression decision, another zstd
        // build) must not reuse a nonce.
        let k = Keys::from_master([1; 32]);
        let id = k.chunk_id(b"hello");
        let a = k.seal_chunk(&[2; 16], &id, 0, b"hello");
        let b = k.seal_chunk(&[2; 16], &id, INNER_FLAG_ZSTD, b"compressed form");
        let c = k.seal_chunk(&[2; 16], &id, 0, b"hello");
        assert_ne!(
            a[..12],
            b[..12],
            "same id, different inner: different nonces"
        );
        assert_eq!(a, c, "same inner: same bytes (idempotent puts)");
        // v1 volumes get the same protection; v1 readers take the nonce from the envelope.
        let k1 = Keys::from_master([1; 32]).for_format(FORMAT_V1);
        let a1 = k1.seal_chunk(&[2; 16], &id, 0, b"hello");
        let b1 = k1.seal_chunk(&[2; 16], &id, INNER_FLAG_ZSTD, b"other");
        assert_ne!(a1[..12], b1[..12]);
        assert_ne!(
            a1[..12],
            k1.v1_chunk_nonce(&id),
            "no longer the id-only nonce"
        );
        assert_eq!(k1.open_chunk(&[2; 16], &id, a1).unwrap().1, b"hello");
        // Envelopes are bound to their format version.
        assert!(k1.open_chunk(&[2; 16], &id, a.clone()).is_err());
        assert!(k.open_chunk(&[2; 16], &id, a).is_ok());
    }

    #[test]
    fn padme_size_classes() {
        for v in [FORMAT_V1, FORMAT_VERSION] {
            assert_eq!(envelope_len(v, 8), 512);
            assert_eq!(envelope_len(v, 484), 512);
            assert_eq!(envelope_len(v, 485), 1024);
        }
        // v1: 512-byte steps at every size; v2: coarser classes for large envelopes, < 3.2 % overhead from 64 KiB.
        assert_eq!(envelope_len(FORMAT_V1, 1 << 20), (1 << 20) + 512);
        let mut classes = std::collections::BTreeSet::new();
        for inner in (60_000..4_300_000).step_by(997) {
            let l = envelope_len(FORMAT_VERSION, inner);
            assert!(l >= inner + ENVELOPE_OVERHEAD && l % ENVELOPE_PAD == 0);
            if inner >= 65536 {
                assert!(
                    l * 1000 <= (inner + ENVELOPE_OVERHEAD) * 1032,
                    "{inner} -> {l}"
                );
            }
            classes.insert(l);
        }
        let v1: std::collections::BTreeSet<usize> = (60_000..4_300_000)
            .step_by(997)
            .map(|i| envelope_len(FORMAT_V1, i))
            .collect();
        assert!(
            classes.len() * 10 < v1.len(),
            "{} vs {}",
            classes.len(),
            v1.len()
        );
    }
}
