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

use super::format::{Keyslot, FORMAT_VERSION, KDF_ARGON2ID};
use crate::error::{Error, Result};

/// Context strings for `blake3::derive_key`; changing any of them is a format change.
pub const CTX_CHUNK_ID: &str = "valencefs v1 2026-11 chunk id";
pub const CTX_CHUNKER: &str = "valencefs v1 2026-11 chunker seed";
pub const CTX_DATA: &str = "valencefs v1 2026-11 data seal";
pub const CTX_NONCE: &str = "valencefs v1 2026-11 data nonce";
pub const CTX_META: &str = "valencefs v1 2026-11 metadata seal";

/// Sealed envelopes are padded to a multiple of this, so stored sizes reveal only ~512-byte granularity.
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

fn keyslot_aad(volume_id: &[u8; 16], slot: &Keyslot) -> Vec<u8> {
    [
        AAD_KEYSLOT,
        &FORMAT_VERSION.to_le_bytes(),
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
    data: LessSafeKey,
    meta: LessSafeKey,
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
            data: gcm_key(&data),
            meta: gcm_key(&meta),
            master,
        }
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

    /// Deterministic nonce: first 96 bits of BLAKE3 keyed with the nonce subkey over the chunk id. The same nonce
    /// is used again only for the same chunk id, i.e. the same plaintext, which then seals to identical bytes.
    pub fn chunk_nonce(&self, chunk_id: &[u8; 32]) -> [u8; 12] {
        blake3::keyed_hash(&self.nonce, chunk_id).as_bytes()[..12]
            .try_into()
            .expect("12")
    }

    /// Wraps the master key into a new keyslot under `passphrase`.
    pub fn wrap(
        &self,
        volume_id: &[u8; 16],
        passphrase: &[u8],
        params: &KdfParams,
    ) -> Result<Keyslot> {
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
        let aad = keyslot_aad(volume_id, &slot);
        let ct = gcm_seal(&gcm_key(&kek), &slot.nonce, &aad, self.master.as_ref());
        slot.wrapped.copy_from_slice(&ct);
        Ok(slot)
    }

    /// Unwraps one keyslot; `None` if the passphrase (or anything the AAD binds) does not match.
    pub fn unwrap(volume_id: &[u8; 16], slot: &Keyslot, passphrase: &[u8]) -> Result<Option<Keys>> {
        if slot.kdf != KDF_ARGON2ID {
            return Ok(None);
        }
        let params = KdfParams {
            m_cost_kib: slot.m_cost_kib,
            t_cost: slot.t_cost,
            p_cost: slot.p_cost,
        };
        let kek = kek(passphrase, &params, &slot.salt)?;
        let aad = keyslot_aad(volume_id, slot);
        let mut buf = Zeroizing::new(slot.wrapped);
        match gcm_open(&gcm_key(&kek), &slot.nonce, &aad, buf.as_mut()) {
            Some(32) => {
                let mut m = [0u8; 32];
                m.copy_from_slice(&buf[..32]);
                let keys = Keys::from_master(m);
                zeroize::Zeroize::zeroize(&mut m);
                Ok(Some(keys))
            }
            _ => Ok(None),
        }
    }

    /// Seals a chunk body into an envelope `nonce || AES-256-GCM(inner) || tag`, where inner is
    /// `flags, 0, 0, 0, body_len u32 LE, body, zero padding` and the whole envelope is a multiple of
    /// [`ENVELOPE_PAD`]. The padding is inside the ciphertext, so it is authenticated and invisible.
    pub fn seal_chunk(
        &self,
        volume_id: &[u8; 16],
        chunk_id: &[u8; 32],
        flags: u8,
        body: &[u8],
    ) -> Vec<u8> {
        let total = (INNER_HEADER_LEN + body.len() + ENVELOPE_OVERHEAD).div_ceil(ENVELOPE_PAD)
            * ENVELOPE_PAD;
        let nonce = self.chunk_nonce(chunk_id);
        // Built in place: one copy of the body, one encryption pass.
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&[flags, 0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        out.resize(total - 16, 0);
        let aad = envelope_aad(volume_id, chunk_id);
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
        let aad = envelope_aad(volume_id, chunk_id);
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
        let aad = [AAD_BLOB, &FORMAT_VERSION.to_le_bytes(), volume_id, label].concat();
        [&nonce[..], &gcm_seal(&self.meta, &nonce, &aad, data)].concat()
    }

    /// Opens a blob sealed by [`Keys::seal_blob`] with the same label.
    pub fn open_blob(&self, volume_id: &[u8; 16], label: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < ENVELOPE_OVERHEAD {
            return Err(Error::Corrupt("sealed blob too short".into()));
        }
        let aad = [AAD_BLOB, &FORMAT_VERSION.to_le_bytes(), volume_id, label].concat();
        let mut buf = sealed[12..].to_vec();
        let len = gcm_open(&self.meta, &sealed[..12], &aad, &mut buf)
            .ok_or_else(|| Error::Corrupt("sealed blob failed authentication".into()))?;
        buf.truncate(len);
        Ok(buf)
    }
}

/// AAD of a chunk envelope: label, format version, volume id, chunk id. Moving an envelope to another chunk id or
/// volume, or reading it with another format version, fails authentication.
pub fn envelope_aad(volume_id: &[u8; 16], chunk_id: &[u8; 32]) -> Vec<u8> {
    [
        AAD_ENVELOPE,
        &FORMAT_VERSION.to_le_bytes(),
        volume_id,
        chunk_id,
    ]
    .concat()
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
        let back = Keys::unwrap(&[1; 16], &slot, b"pw").unwrap().unwrap();
        assert_eq!(back.chunk_id(b"x"), k.chunk_id(b"x"));
        assert!(Keys::unwrap(&[1; 16], &slot, b"wrong").unwrap().is_none());
        assert!(Keys::unwrap(&[2; 16], &slot, b"pw").unwrap().is_none());
    }
}
