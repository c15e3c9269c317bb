//! Byte-mutation fuzzing of every parser that reads bytes from a disk (threat model: someone holding every disk,
//! not the passphrase). Each property starts from a valid encoding made by the real code, applies random
//! mutations (bit flips, byte writes, truncations, extensions, a length field overwritten with a random u32/u64)
//! and, where a disk holder could, recomputes the unkeyed checksums; it then asserts that the parser neither
//! panics nor accepts what it should not, and that no byte comes back that differs from what was written.
//!
//! The in-suite run is short and deterministic (fixed seed). Long runs: `bench/fuzz.sh` (or `PROPTEST_CASES=N
//! FUZZ_SEED=S cargo test --release --test fuzz_parsers`). A failure names the seed, the case count and the
//! exact mutated input (hex), which is what replays it.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{RngAlgorithm, TestCaseError, TestRng, TestRunner};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use valencefs::store::crypto::Keys;
use valencefs::store::format::{
    DiskHeader, Keyslot, ShardHeader, DISK_HEADER_NAME, FORMAT_V1, FORMAT_V2, KEYSLOT_LEN,
    SHARD_HEADER_LEN, SH_CHECKSUM_OFF, SH_PAYLOAD_HASH_OFF,
};
use valencefs::store::{
    ChunkId, ChunkerParams, CreateOptions, Disk, KdfParams, MemDisk, Redundancy, Store,
};

/// Cases per property in the test suite; `PROPTEST_CASES` overrides (bench/fuzz.sh sets it high).
const DEFAULT_CASES: u32 = 512;
/// The suite's fixed seed; `FUZZ_SEED` (a u64) overrides.
const DEFAULT_SEED: u64 = 0x5eed_2026;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs `test` on `cases()` values of `strategy` from the fixed seed; a failure panics with what replays it.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = env_u64("PROPTEST_CASES").map_or(DEFAULT_CASES, |c| c as u32);
    let seed = env_u64("FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    if let Err(e) = runner.run(&strategy, test) {
        panic!(
            "{name}: {e}\nreplay: FUZZ_SEED={seed} PROPTEST_CASES={cases} cargo test --test fuzz_parsers {name}"
        );
    }
}

/// Runs a parser, turning a panic into a test failure that shows the input.
fn no_panic<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|_| TestCaseError::fail(format!("{what} panicked on input {}", hex(input))))
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    /// Keep this many bytes (scaled to the current length).
    Truncate(Index),
    Extend(Vec<u8>),
    /// Overwrite one of the parser's length/count fields (offset, width) with the low bytes of a value.
    Field(Index, u64),
    /// The same, anywhere.
    Word(Index, u64),
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        any::<u32>().prop_map(u64::from),
        0u64..2048,
        Just(u64::from(u32::MAX)),
        Just(u64::MAX),
        Just(1u64 << 31),
        Just(1u64 << 63),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
        3 => (any::<Index>(), interesting_u64()).prop_map(|(i, v)| Mutation::Field(i, v)),
        1 => (any::<Index>(), interesting_u64()).prop_map(|(i, v)| Mutation::Word(i, v)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4)
}

/// Mutations that keep the length (for fixed-size records).
fn in_place_mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..4).prop_map(|v| {
        v.into_iter()
            .filter(|m| !matches!(m, Mutation::Truncate(_) | Mutation::Extend(_)))
            .collect()
    })
}

fn write_le(b: &mut [u8], off: usize, width: usize, v: u64) {
    let end = (off + width).min(b.len());
    if off < end {
        b[off..end].copy_from_slice(&v.to_le_bytes()[..end - off]);
    }
}

/// Applies `muts`; `fields` are the format's (offset, width) length and count fields.
fn apply(mut b: Vec<u8>, muts: &[Mutation], fields: &[(usize, usize)]) -> Vec<u8> {
    for m in muts {
        match m {
            Mutation::FlipBit(i, bit) if !b.is_empty() => {
                let p = i.index(b.len());
                b[p] ^= 1 << bit;
            }
            Mutation::SetByte(i, v) if !b.is_empty() => {
                let p = i.index(b.len());
                b[p] = *v;
            }
            Mutation::Truncate(i) => b.truncate(i.index(b.len() + 1)),
            Mutation::Extend(more) => b.extend_from_slice(more),
            Mutation::Field(i, v) if !fields.is_empty() => {
                let (off, width) = fields[i.index(fields.len())];
                write_le(&mut b, off, width, *v);
            }
            Mutation::Word(i, v) if !b.is_empty() => {
                let width = if v >> 32 == 0 { 4 } else { 8 };
                let off = i.index(b.len());
                write_le(&mut b, off, width, *v);
            }
            _ => {}
        }
    }
    b
}

// ---- disk header and keyslot ----

const PW: &[u8] = b"fuzz passphrase";
const VOLUME: [u8; 16] = [0x42; 16];

fn keys(version: u16) -> Keys {
    Keys::from_master([0x17; 32]).for_format(version)
}

/// A valid header of `version` with one real keyslot, encoded by `DiskHeader::encode` (v2: with its real MAC).
fn header(version: u16) -> DiskHeader {
    let keys = keys(version);
    let mut slots = vec![Keyslot::default(); 8];
    slots[0] = keys.wrap(&VOLUME, PW, &KdfParams::insecure_fast()).unwrap();
    let mut h = DiskHeader {
        version,
        flags: 1,
        volume_id: VOLUME,
        disk_index: 2,
        disk_count: 5,
        k: 3,
        m: 2,
        epoch: 7,
        chunker: ChunkerParams::default(),
        keyslots: slots,
        mac: [0; 32],
    };
    if version == FORMAT_V2 {
        h.mac = keys.header_mac(&h.mac_input());
    }
    h
}

/// Disk header fields worth overwriting: version, length, flags, index, count, k/m, epoch, chunker sizes, and
/// the first keyslot's costs.
const HEADER_FIELDS: &[(usize, usize)] = &[
    (8, 2),
    (10, 2),
    (12, 4),
    (32, 2),
    (34, 2),
    (36, 1),
    (37, 1),
    (40, 8),
    (48, 4),
    (52, 4),
    (56, 4),
    (64, 1),
    (68, 4),
    (72, 4),
    (76, 4),
];

fn fix_header_checksum(b: &mut [u8]) {
    if b.len() >= 32 {
        let off = b.len() - 32;
        let sum = blake3::hash(&b[..off]);
        b[off..].copy_from_slice(sum.as_bytes());
    }
}

fn disk_header_property(version: u16) {
    let h = header(version);
    let original = h.encode();
    assert_eq!(DiskHeader::decode(&original).unwrap(), h);
    let k2 = keys(FORMAT_V2);
    let name = format!("disk_header_v{version}");
    fuzz(&name, (mutations(), any::<bool>()), |(muts, fix)| {
        let mut b = apply(original.clone(), &muts, HEADER_FIELDS);
        if fix {
            // The checksum is unkeyed: a disk holder recomputes it.
            fix_header_checksum(&mut b);
        }
        let decoded = no_panic("DiskHeader::decode", &b, || DiskHeader::decode(&b))?;
        let Ok(d) = decoded else { return Ok(()) };
        // Accepted: canonical, so every byte is one of the fields (nothing can hide from the MAC) ...
        prop_assert_eq!(
            d.encode(),
            b.clone(),
            "non-canonical header accepted: {}",
            hex(&b)
        );
        prop_assert!(d.k > 0 && d.m > 0 && d.disk_count as usize >= d.k as usize + d.m as usize);
        // ... and in v2 a changed header never authenticates (the MAC is what a reader believes).
        if d.version == FORMAT_V2 && b != original {
            prop_assert_ne!(
                k2.header_mac(&d.mac_input()),
                d.mac,
                "edited v2 header authenticates: {}",
                hex(&b)
            );
        }
        Ok(())
    });
}

#[test]
fn disk_header_v1() {
    disk_header_property(FORMAT_V1);
}

#[test]
fn disk_header_v2() {
    disk_header_property(FORMAT_V2);
}

/// A keyslot is a fixed 96-byte record inside a length-checked header; mutated in place, it decodes to fields
/// that re-encode to the same bytes (reserved ones zeroed), and unwraps to the real master key or to nothing.
#[test]
fn keyslot() {
    let keys = keys(FORMAT_V2);
    let slot = keys.wrap(&VOLUME, PW, &KdfParams::insecure_fast()).unwrap();
    let original = slot.encode().to_vec();
    assert!(Keyslot::decode(&original).unwrap() == slot);
    let want_mac = keys.header_mac(b"which master key");
    fuzz(
        "keyslot",
        (in_place_mutations(), any::<u16>()),
        |(muts, version)| {
            let b = apply(original.clone(), &muts, &[(0, 1), (4, 4), (8, 4), (12, 4)]);
            prop_assert_eq!(b.len(), KEYSLOT_LEN);
            let s = no_panic("Keyslot::decode", &b, || Keyslot::decode(&b))?
                .expect("96 bytes always decode");
            let mut canonical = b.clone();
            canonical[1..4].fill(0);
            canonical[92..].fill(0);
            if s.is_empty() {
                canonical.fill(0);
            }
            prop_assert_eq!(s.encode().to_vec(), canonical);
            // Unwrapping runs Argon2 with the slot's costs: only cheap ones here (the caps are a unit test's).
            if s.m_cost_kib <= 1024 && s.t_cost <= 4 && s.p_cost <= 4 {
                let version = [FORMAT_V1, FORMAT_V2, version][usize::from(version % 3)];
                let opened = no_panic("Keys::unwrap", &b, || {
                    Keys::unwrap(version, &VOLUME, &s, PW)
                })?;
                if let Ok(Some(k)) = opened {
                    prop_assert_eq!(
                        k.header_mac(b"which master key"),
                        want_mac,
                        "a mutated keyslot unwrapped another master key: {}",
                        hex(&b)
                    );
                    prop_assert!(s == slot && version == FORMAT_V2, "{}", hex(&b));
                }
            }
            Ok(())
        },
    );
}

/// `Keyslot::decode` once indexed bytes 0..92 without a length check (found by this harness): a short slice is
/// now a format error.
#[test]
fn keyslot_decode_short_input_does_not_panic() {
    for len in [0, 1, 91, 95] {
        let short = vec![1u8; len];
        assert!(
            matches!(catch_unwind(|| Keyslot::decode(&short)), Ok(Err(_))),
            "{len}"
        );
    }
}

// ---- shard file ----

const SHARD_FIELDS: &[(usize, usize)] = &[(8, 2), (10, 1), (11, 1), (12, 1), (64, 8), (72, 4)];

/// What a disk holder can do without the key: make the unkeyed payload hash and header checksum agree again.
fn fix_shard(b: &mut [u8]) {
    if b.len() >= SHARD_HEADER_LEN {
        let payload = blake3::hash(&b[SHARD_HEADER_LEN..]);
        b[SH_PAYLOAD_HASH_OFF..SH_PAYLOAD_HASH_OFF + 32].copy_from_slice(payload.as_bytes());
        let sum = blake3::hash(&b[..SH_CHECKSUM_OFF]);
        b[SH_CHECKSUM_OFF..SHARD_HEADER_LEN].copy_from_slice(&sum.as_bytes()[..16]);
    }
}

#[test]
fn shard_header() {
    let payload: Vec<u8> = (0..700u32).map(|i| (i * 31 % 251) as u8).collect();
    let h = ShardHeader {
        k: 3,
        m: 2,
        index: 1,
        volume_id: VOLUME,
        chunk_id: [9; 32],
        envelope_len: 2048,
        shard_len: payload.len() as u32,
        payload_hash: *blake3::hash(&payload).as_bytes(),
    };
    let original = [&h.encode()[..], &payload].concat();
    assert_eq!(ShardHeader::decode(&original).unwrap(), h);
    fuzz(
        "shard_header",
        (mutations(), any::<bool>()),
        |(muts, fix)| {
            let mut b = apply(original.clone(), &muts, SHARD_FIELDS);
            if fix {
                fix_shard(&mut b);
            }
            let decoded = no_panic("ShardHeader::decode", &b, || ShardHeader::decode(&b))?;
            let Ok(d) = decoded else { return Ok(()) };
            // Accepted: the lengths it announces are the bytes that are there, and fit together.
            prop_assert!(d.k > 0, "{}", hex(&b));
            prop_assert_eq!(b.len(), SHARD_HEADER_LEN + d.shard_len as usize);
            prop_assert!(d.envelope_len <= u64::from(d.k) * u64::from(d.shard_len));
            let ok = no_panic("ShardHeader::payload_ok", &b, || d.payload_ok(&b))?;
            prop_assert_eq!(
                ok,
                blake3::hash(&b[SHARD_HEADER_LEN..]).as_bytes() == &d.payload_hash
            );
            // The fields are the bytes at their offsets (re-encoding differs at most in reserved bytes).
            let mut re = d.encode().to_vec();
            re.extend_from_slice(&b[SHARD_HEADER_LEN..]);
            prop_assert_eq!(ShardHeader::decode(&re).ok(), Some(d));
            Ok(())
        },
    );
}

// ---- sealed envelope ----

#[test]
fn envelope() {
    for version in [FORMAT_V1, FORMAT_V2] {
        let keys = keys(version);
        let body: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 253) as u8).collect();
        let id = [0x33; 32];
        let sealed = keys.seal_chunk(&VOLUME, &id, 0, &body);
        assert_eq!(
            keys.open_chunk(&VOLUME, &id, sealed.clone()).unwrap(),
            (0, body.clone())
        );
        let name = format!("envelope_v{version}");
        fuzz(&name, mutations(), |muts| {
            let b = apply(sealed.clone(), &muts, &[(0, 8), (12, 4), (16, 8)]);
            let opened = no_panic("Keys::open_chunk", &b, || {
                keys.open_chunk(&VOLUME, &id, b.clone())
            })?;
            if let Ok(got) = opened {
                prop_assert_eq!(
                    &got,
                    &(0, body.clone()),
                    "envelope opened to other bytes: {}",
                    hex(&b)
                );
                prop_assert_eq!(&b, &sealed, "a changed envelope opened: {}", hex(&b));
            }
            Ok(())
        });
    }
}

// ---- stores over in-memory disks: metadata pointer and chunk reads ----

fn mem_store(version: u16) -> (Store, Vec<Arc<MemDisk>>) {
    let mems: Vec<Arc<MemDisk>> = (0..5).map(|_| Arc::new(MemDisk::new())).collect();
    let opts = CreateOptions {
        redundancy: Redundancy { k: 3, m: 2 },
        kdf: KdfParams::insecure_fast(),
        format: version,
        ..Default::default()
    };
    let disks = mems.iter().map(|d| d.clone() as Arc<dyn Disk>).collect();
    (Store::create(disks, &opts, PW).unwrap(), mems)
}

const POINTER: &str = "meta/pointer";
/// The pointer's seal label (src/store/snapshot.rs).
const POINTER_LABEL: &[u8] = b"valencefs meta pointer";

#[test]
fn snapshot_pointer() {
    let (st, mems) = mem_store(FORMAT_V2);
    let (db1, db2) = (b"snapshot one".to_vec(), b"snapshot two".to_vec());
    let id1 = st.save_snapshot(1, &db1, None).unwrap();
    let id2 = st.save_snapshot(2, &db2, Some(id1)).unwrap();
    let want = st.snapshot_pointers();
    assert_eq!(want.len(), 1);
    let sealed = mems[0].get(POINTER).unwrap();
    let body = st.open_blob(POINTER_LABEL, &sealed).unwrap();
    assert_eq!(body.len(), 72);
    let put_all = |b: &[u8]| {
        for m in &mems {
            m.put(POINTER, b).unwrap();
        }
    };
    // `resealed`: the mutation is applied to the body and sealed again, which only the key holder can do: it
    // drives the body parser behind the authentication (defence in depth).
    fuzz(
        "snapshot_pointer",
        (mutations(), any::<bool>()),
        |(muts, resealed)| {
            let (b, written) = if resealed {
                let mutated = apply(body.clone(), &muts, &[(0, 8)]);
                (mutated.clone(), st.seal_blob(POINTER_LABEL, &mutated))
            } else {
                let mutated = apply(sealed.clone(), &muts, &[(0, 8), (12, 8)]);
                (mutated.clone(), mutated)
            };
            put_all(&written);
            let pointers = no_panic("Store::snapshot_pointers", &b, || st.snapshot_pointers())?;
            if resealed {
                if b.len() != 72 {
                    prop_assert!(
                        pointers.is_empty(),
                        "{}-byte pointer body accepted",
                        b.len()
                    );
                } else {
                    prop_assert_eq!(pointers.len(), 1);
                    let p = pointers[0];
                    prop_assert_eq!(p.generation, u64::from_le_bytes(b[..8].try_into().unwrap()));
                    prop_assert_eq!(&p.current.0[..], &b[8..40]);
                    let prev = &b[40..72];
                    prop_assert_eq!(
                        p.previous.map(|q| q.0.to_vec()),
                        (prev != [0u8; 32]).then(|| prev.to_vec())
                    );
                }
            } else {
                for p in &pointers {
                    prop_assert_eq!(p, &want[0], "a mutated pointer authenticated: {}", hex(&b));
                }
            }
            let loaded = no_panic("Store::load_snapshot", &b, || st.load_snapshot())?;
            if let Ok(l) = loaded {
                let named = if l.is_previous {
                    l.pointer.previous.unwrap()
                } else {
                    l.pointer.current
                };
                prop_assert_eq!(st.chunk_id(&l.db), named);
                prop_assert!(
                    (named == id1 && l.db == db1) || (named == id2 && l.db == db2),
                    "snapshot bytes that were never written came back"
                );
            }
            put_all(&sealed);
            Ok(())
        },
    );
}

/// Tampered shards (up to three of a chunk's five, checksums recomputed or not): `Store::get` returns the
/// plaintext written or an error, never other bytes.
#[test]
fn store_get_with_tampered_shards() {
    for version in [FORMAT_V1, FORMAT_V2] {
        let (st, mems) = mem_store(version);
        // Incompressible, and a second chunk that compresses (zstd path in the envelope).
        let data: Vec<u8> = (0..40_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let text = b"a compressible chunk ".repeat(500);
        let mut chunks = Vec::new();
        for plain in [data, text] {
            let id = st.chunk_id(&plain);
            st.put(&id, &plain).unwrap();
            chunks.push((id, plain));
        }
        st.sync().unwrap();
        // Every shard file of every chunk: (disk, name, bytes).
        let originals: Vec<Vec<(usize, String, Vec<u8>)>> = chunks
            .iter()
            .map(|(id, _)| shard_files(&mems, id))
            .collect();
        assert!(originals.iter().all(|s| s.len() == 5));
        let strategy = (
            any::<Index>(),
            prop::collection::vec((any::<Index>(), mutations()), 1..4),
            any::<bool>(),
        );
        let name = format!("store_get_v{version}");
        fuzz(&name, strategy, |(which, tampers, fix)| {
            let c = which.index(chunks.len());
            let (id, plain) = &chunks[c];
            let files = &originals[c];
            for (d, n, b) in files {
                mems[*d].put(n, b).unwrap();
            }
            let mut shown = Vec::new();
            for (shard, muts) in &tampers {
                let (d, n, b) = &files[shard.index(files.len())];
                let mut t = apply(b.clone(), muts, SHARD_FIELDS);
                if fix {
                    fix_shard(&mut t);
                }
                shown.push(format!("{n}={}", hex(&t)));
                mems[*d].put(n, &t).unwrap();
            }
            let got = catch_unwind(AssertUnwindSafe(|| st.get(id))).map_err(|_| {
                TestCaseError::fail(format!("Store::get panicked with {}", shown.join(" ")))
            })?;
            if let Ok(back) = got {
                prop_assert!(
                    &back == plain,
                    "Store::get returned bytes never written, with {}",
                    shown.join(" ")
                );
            }
            for (d, n, b) in files {
                mems[*d].put(n, b).unwrap();
            }
            Ok(())
        });
        // Untouched at the end: the originals still read.
        for (id, plain) in &chunks {
            assert!(&st.get(id).unwrap() == plain);
        }
    }
}

fn shard_files(mems: &[Arc<MemDisk>], id: &ChunkId) -> Vec<(usize, String, Vec<u8>)> {
    let hexid = id.to_hex();
    let mut out = Vec::new();
    for (d, m) in mems.iter().enumerate() {
        for n in m.list("shards/").unwrap() {
            if n.contains(&hexid) {
                let b = m.get(&n).unwrap();
                out.push((d, n, b));
            }
        }
    }
    out
}

/// The disk header as stored by a real volume is what `DiskHeader::encode` makes (so the properties above start
/// from what disks hold).
#[test]
fn stored_headers_are_the_encoder_s() {
    for version in [FORMAT_V1, FORMAT_V2] {
        let (_st, mems) = mem_store(version);
        let b = mems[1].get(DISK_HEADER_NAME).unwrap();
        assert_eq!(DiskHeader::decode(&b).unwrap().encode(), b);
    }
}
