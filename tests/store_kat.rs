//! Known-answer vectors: subkeys, chunk id, nonce, chunker cut points, sealed envelope, headers. Each is pinned
//! as hex computed once from this implementation AND recomputed independently with the blake3/aes-gcm crates,
//! so a silent format change fails here.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use valencefs::store::chunker::chunk_lengths;
use valencefs::store::crypto::{self, hex, Keys};
use valencefs::store::format::{ChunkerParams, ShardHeader};

const MASTER: [u8; 32] = [0x42; 32];
const VOLUME: [u8; 16] = [0x17; 16];
const PLAIN: &[u8] = b"valencefs known answer plaintext";

fn h(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

#[test]
fn subkeys_and_chunk_id() {
    let keys = Keys::from_master(MASTER);
    let id_key = blake3::derive_key(crypto::CTX_CHUNK_ID, &MASTER);
    let independent = *blake3::keyed_hash(&id_key, PLAIN).as_bytes();
    assert_eq!(keys.chunk_id(PLAIN), independent);
    assert_eq!(hex(&id_key), KAT_ID_KEY);
    assert_eq!(hex(&independent), KAT_CHUNK_ID);
    let seed_key = blake3::derive_key(crypto::CTX_CHUNKER, &MASTER);
    assert_eq!(
        keys.chunker_seed(),
        u64::from_le_bytes(seed_key[..8].try_into().unwrap())
    );
    assert_eq!(keys.chunker_seed(), KAT_CHUNKER_SEED);
    let nonce_key = blake3::derive_key(crypto::CTX_NONCE, &MASTER);
    let nonce_hash = blake3::keyed_hash(&nonce_key, &independent);
    let nonce = &nonce_hash.as_bytes()[..12];
    assert_eq!(keys.chunk_nonce(&independent), nonce);
    assert_eq!(hex(nonce), KAT_NONCE);
    // Purpose separation: every subkey differs.
    let ctxs = [
        crypto::CTX_CHUNK_ID,
        crypto::CTX_CHUNKER,
        crypto::CTX_DATA,
        crypto::CTX_NONCE,
        crypto::CTX_META,
    ];
    let subs: std::collections::HashSet<[u8; 32]> = ctxs
        .iter()
        .map(|c| blake3::derive_key(c, &MASTER))
        .collect();
    assert_eq!(subs.len(), ctxs.len());
}

#[test]
fn sealed_envelope() {
    let keys = Keys::from_master(MASTER);
    let id = keys.chunk_id(PLAIN);
    let env = keys.seal_chunk(&VOLUME, &id, 0, PLAIN);
    assert_eq!(env.len(), 512);
    // Independent: AES-256-GCM under the data subkey, inner = flags|0|0|0|len LE|body|zeros, AAD as documented.
    let data_key = blake3::derive_key(crypto::CTX_DATA, &MASTER);
    let nonce = keys.chunk_nonce(&id);
    let mut inner = vec![0u8, 0, 0, 0];
    inner.extend_from_slice(&(PLAIN.len() as u32).to_le_bytes());
    inner.extend_from_slice(PLAIN);
    inner.resize(512 - 28, 0);
    let aad = [
        &b"valencefs envelope"[..],
        &1u16.to_le_bytes(),
        &VOLUME,
        &id,
    ]
    .concat();
    let ct = Aes256Gcm::new_from_slice(&data_key)
        .unwrap()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &inner,
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(env, [&nonce[..], &ct].concat());
    assert_eq!(h(&env), KAT_ENVELOPE_BLAKE3);
    assert_eq!(
        keys.open_chunk(&VOLUME, &id, env.clone()).unwrap(),
        (0, PLAIN.to_vec())
    );
}

#[test]
fn chunker_cut_points() {
    let keys = Keys::from_master(MASTER);
    let mut data = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let p = ChunkerParams {
        min: 16 * 1024,
        avg: 64 * 1024,
        max: 256 * 1024,
    };
    let lens = chunk_lengths(&p, keys.chunker_seed(), &data);
    assert_eq!(lens.iter().sum::<usize>(), data.len());
    assert_eq!(format!("{lens:?}"), KAT_CUTS);
}

#[test]
fn shard_header_bytes() {
    let sh = ShardHeader {
        k: 3,
        m: 2,
        index: 1,
        volume_id: VOLUME,
        chunk_id: [0xcc; 32],
        envelope_len: 4096,
        shard_len: 1366,
        payload_hash: [0xdd; 32],
    };
    let b = sh.encode();
    assert_eq!(&b[0..8], b"VLNCSHRD");
    assert_eq!(&b[8..10], &1u16.to_le_bytes());
    assert_eq!(&b[64..72], &4096u64.to_le_bytes());
    assert_eq!(&b[112..128], &blake3::hash(&b[..112]).as_bytes()[..16]);
    assert_eq!(h(&b), KAT_SHARD_HEADER_BLAKE3);
}

const KAT_ID_KEY: &str = "b9d50130c55297e62ee538973d043d22159fd906dbcd5152bbe14e544fdcc42e";
const KAT_CHUNK_ID: &str = "3d48fbbbf4fe545f7c49aa8c0673114d253d3cabcec42e6d719299d6d2ae97c2";
const KAT_CHUNKER_SEED: u64 = 5551852419081970905;
const KAT_NONCE: &str = "b7a0b845d01557675614be2a";
const KAT_ENVELOPE_BLAKE3: &str =
    "3ea7095701e88a2ca719057212899dea418dcd0fbdea4800bc344fb18a59e789";
const KAT_CUTS: &str = "[119376, 17402, 43062, 39031, 133715, 69530, 58361, 69140, 41971, 156468, 46777, 78955, 68555, 94290, 11943]";
const KAT_SHARD_HEADER_BLAKE3: &str =
    "60e2ce3ce0c14b701a5939fa536288929f91bac73bdd97db8804f1e05108cf22";

#[test]
fn keyslot_unwraps_independently_with_argon2_and_aes_gcm() {
    use valencefs::store::format::{Keyslot, KEYSLOT_LEN};
    let keys = Keys::from_master(MASTER);
    let params = valencefs::store::KdfParams::insecure_fast();
    let slot = keys.wrap(&VOLUME, b"passphrase", &params).unwrap();
    let bytes = slot.encode();
    assert_eq!(bytes.len(), KEYSLOT_LEN);
    assert_eq!(Keyslot::decode(&bytes), slot);
    // KEK = Argon2id v0x13 (passphrase, salt at 16..32, m/t/p at 4/8/12), 32 bytes.
    let m = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    let t = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let p = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    assert_eq!((bytes[0], m, t, p), (1, 64, 1, 1));
    let mut kek = [0u8; 32];
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(m, t, p, Some(32)).unwrap(),
    )
    .hash_password_into(b"passphrase", &bytes[16..32], &mut kek)
    .unwrap();
    let aad = [
        &b"valencefs keyslot"[..],
        &1u16.to_le_bytes(),
        &VOLUME,
        &bytes[0..32],
    ]
    .concat();
    let master = Aes256Gcm::new_from_slice(&kek)
        .unwrap()
        .decrypt(
            Nonce::from_slice(&bytes[32..44]),
            Payload {
                msg: &bytes[44..92],
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(master, MASTER);
    assert_eq!(&bytes[92..96], &[0; 4]);
}

#[test]
fn disk_header_bytes() {
    use valencefs::store::format::{DiskHeader, Keyslot, DISK_HEADER_LEN, KEYSLOTS};
    let mut keyslots = vec![Keyslot::default(); KEYSLOTS];
    keyslots[0] = Keyslot {
        kdf: 1,
        m_cost_kib: 65536,
        t_cost: 3,
        p_cost: 1,
        salt: [0x5a; 16],
        nonce: [0x6b; 12],
        wrapped: [0x7c; 48],
    };
    let hdr = DiskHeader {
        flags: 1,
        volume_id: VOLUME,
        disk_index: 2,
        disk_count: 5,
        k: 3,
        m: 2,
        epoch: 7,
        chunker: ChunkerParams::default(),
        keyslots,
    };
    let b = hdr.encode();
    assert_eq!(b.len(), DISK_HEADER_LEN);
    assert_eq!(&b[0..8], b"VALENCFS");
    assert_eq!(&b[32..34], &2u16.to_le_bytes());
    assert_eq!(&b[40..48], &7u64.to_le_bytes());
    assert_eq!(&b[52..56], &(1u32 << 20).to_le_bytes());
    assert_eq!(b[64], 1);
    assert_eq!(&b[832..], blake3::hash(&b[..832]).as_bytes());
    assert_eq!(DiskHeader::decode(&b).unwrap(), hdr);
    assert_eq!(h(&b), KAT_DISK_HEADER_BLAKE3);
}

const KAT_DISK_HEADER_BLAKE3: &str =
    "96d062525044471024efc1fe5a4b75e2f5c365032a64d0d8bdb2ee1a37df2e28";
