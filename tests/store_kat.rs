//! Known-answer vectors: subkeys, chunk id, nonce, chunker cut points, sealed envelope, headers. Each is pinned
//! as hex computed once from this implementation AND recomputed independently with the blake3/aes-gcm crates,
//! so a silent format change fails here.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use valencefs::store::chunker::{chunk_lengths, Gear};
use valencefs::store::crypto::{self, hex, Keys};
use valencefs::store::format::{ChunkerParams, ShardHeader, FORMAT_V1, FORMAT_V2};

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
    assert_eq!(keys.v1_chunk_nonce(&independent), nonce);
    assert_eq!(hex(nonce), KAT_NONCE);
    // Purpose separation: every subkey differs.
    let ctxs = [
        crypto::CTX_CHUNK_ID,
        crypto::CTX_CHUNKER,
        crypto::CTX_DATA,
        crypto::CTX_NONCE,
        crypto::CTX_META,
        crypto::CTX_SIV,
        crypto::CTX_HEADER_MAC,
        crypto::CTX_GEAR,
    ];
    let subs: std::collections::HashSet<[u8; 32]> = ctxs
        .iter()
        .map(|c| blake3::derive_key(c, &MASTER))
        .collect();
    assert_eq!(subs.len(), ctxs.len());
}

/// Envelope of format `version` around PLAIN, recomputed with the independent crates: inner = flags|0|0|0|len
/// LE|body|zeros; nonce = BLAKE3-keyed(SIV subkey, u16 version ‖ id ‖ inner)[..12]; AAD = label ‖ u16 version ‖
/// volume ‖ id.
fn independent_envelope(version: u16, id: &[u8; 32], total: usize) -> Vec<u8> {
    let data_key = blake3::derive_key(crypto::CTX_DATA, &MASTER);
    let siv_key = blake3::derive_key(crypto::CTX_SIV, &MASTER);
    let mut inner = vec![0u8, 0, 0, 0];
    inner.extend_from_slice(&(PLAIN.len() as u32).to_le_bytes());
    inner.extend_from_slice(PLAIN);
    inner.resize(total - 28, 0);
    let mut h = blake3::Hasher::new_keyed(&siv_key);
    h.update(&version.to_le_bytes());
    h.update(id);
    h.update(&inner);
    let nonce = h.finalize().as_bytes()[..12].to_vec();
    let aad = [
        &b"valencefs envelope"[..],
        &version.to_le_bytes(),
        &VOLUME,
        id,
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
    [&nonce[..], &ct].concat()
}

#[test]
fn sealed_envelope() {
    for (version, kat) in [
        (FORMAT_V1, KAT_ENVELOPE_V1_BLAKE3),
        (FORMAT_V2, KAT_ENVELOPE_V2_BLAKE3),
    ] {
        let keys = Keys::from_master(MASTER).for_format(version);
        let id = keys.chunk_id(PLAIN);
        let env = keys.seal_chunk(&VOLUME, &id, 0, PLAIN);
        assert_eq!(env.len(), 512);
        assert_eq!(env, independent_envelope(version, &id, 512), "v{version}");
        assert_eq!(h(&env), kat, "v{version}");
        assert_eq!(
            keys.open_chunk(&VOLUME, &id, env.clone()).unwrap(),
            (0, PLAIN.to_vec())
        );
    }
    // v2 size classes: a 200,000-byte body seals to a Padmé class (a multiple of 4 KiB here), v1 to 512 bytes.
    assert_eq!(crypto::envelope_len(FORMAT_V1, 8 + 200_000), 200_192);
    assert_eq!(crypto::envelope_len(FORMAT_V2, 8 + 200_000), 200_704);
    assert_eq!(crypto::envelope_len(FORMAT_V2, 8 + 1_048_576), 1_081_344);
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
    let lens = chunk_lengths(&p, &Gear::from_seed(keys.chunker_seed()), &data);
    assert_eq!(lens.iter().sum::<usize>(), data.len());
    assert_eq!(format!("{lens:?}"), KAT_CUTS);
    assert_eq!(
        chunk_lengths(
            &p,
            &Keys::from_master(MASTER).for_format(FORMAT_V1).gear(),
            &data
        ),
        lens,
        "v1 keys cut with the seeded table"
    );
    // v2: gear[i] = u64 LE of bytes 8i..8i+8 of the BLAKE3 XOF keyed with the gear subkey; gear_ls = gear << 1.
    let gear_key = blake3::derive_key(crypto::CTX_GEAR, &MASTER);
    let mut table = [0u8; 2048];
    blake3::Hasher::new_keyed(&gear_key)
        .finalize_xof()
        .fill(&mut table);
    let v2 = chunk_lengths(&p, &Gear::from_table_bytes(&table), &data);
    assert_eq!(
        chunk_lengths(
            &p,
            &Keys::from_master(MASTER).for_format(FORMAT_V2).gear(),
            &data
        ),
        v2
    );
    assert_eq!(v2.iter().sum::<usize>(), data.len());
    assert_eq!(format!("{v2:?}"), KAT_CUTS_V2);
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
const KAT_ENVELOPE_V1_BLAKE3: &str =
    "1670b9d96584c32d64ed3fb3cafb9378311c63afca483132fc8daf443234e8a8";
const KAT_ENVELOPE_V2_BLAKE3: &str =
    "45fa5727bf00844e1b5cc8517ce5f4091249d6abe64b93bf35761861169bdeb4";
const KAT_CUTS_V2: &str =
    "[21643, 70410, 67890, 90639, 75086, 130647, 120806, 64279, 73860, 169227, 105336, 58753]";
const KAT_CUTS: &str = "[119376, 17402, 43062, 39031, 133715, 69530, 58361, 69140, 41971, 156468, 46777, 78955, 68555, 94290, 11943]";
const KAT_SHARD_HEADER_BLAKE3: &str =
    "60e2ce3ce0c14b701a5939fa536288929f91bac73bdd97db8804f1e05108cf22";

#[test]
fn keyslot_unwraps_independently_with_argon2_and_aes_gcm() {
    use valencefs::store::format::{Keyslot, KEYSLOT_LEN};
    let keys = Keys::from_master(MASTER).for_format(FORMAT_V1);
    let params = valencefs::store::KdfParams::insecure_fast();
    let slot = keys.wrap(&VOLUME, b"passphrase", &params).unwrap();
    let bytes = slot.encode();
    assert_eq!(bytes.len(), KEYSLOT_LEN);
    assert_eq!(Keyslot::decode(&bytes).unwrap(), slot);
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
        version: FORMAT_V1,
        mac: [0; 32],
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
    // v2: 896 bytes, version 2, MAC = BLAKE3-keyed(header subkey, bytes 0..832) at 832, checksum of 0..864 at 864.
    let keys = Keys::from_master(MASTER);
    let mut v2 = DiskHeader {
        version: FORMAT_V2,
        ..hdr
    };
    v2.mac = keys.header_mac(&v2.mac_input());
    let b = v2.encode();
    assert_eq!(b.len(), 896);
    assert_eq!(&b[8..10], &2u16.to_le_bytes());
    assert_eq!(&b[10..12], &896u16.to_le_bytes());
    let mac_key = blake3::derive_key(crypto::CTX_HEADER_MAC, &MASTER);
    assert_eq!(
        &b[832..864],
        blake3::keyed_hash(&mac_key, &b[..832]).as_bytes()
    );
    assert_eq!(&b[864..], blake3::hash(&b[..864]).as_bytes());
    assert_eq!(DiskHeader::decode(&b).unwrap(), v2);
    assert_eq!(h(&b), KAT_DISK_HEADER_V2_BLAKE3);
}

const KAT_DISK_HEADER_V2_BLAKE3: &str =
    "fa330698963f2ab90db251120ca38c7f8512fe1eb45f152ff62242247a534380";

const KAT_DISK_HEADER_BLAKE3: &str =
    "96d062525044471024efc1fe5a4b75e2f5c365032a64d0d8bdb2ee1a37df2e28";
