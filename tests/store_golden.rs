//! The golden volumes of every format version (`tests/fixtures/v1/` … `v3/`), each written once and
//! read by every build forever after. Regenerate only on purpose, one version at a time:
//! `VALENCEFS_REGEN_GOLDEN=2 cargo test --test store_golden` (a new format version gets a new directory; the old
//! ones stay as they are).

mod common;
use common::xorshift;
use std::path::{Path, PathBuf};

use valencefs::store::{
    open_dir_disk, ChunkId, ChunkerParams, CreateOptions, DiskState, KdfParams, Redundancy, Store,
};

fn passphrase(version: u16) -> Vec<u8> {
    format!("valencefs golden v{version}").into_bytes()
}

fn fixture(version: u16) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}"))
}

/// What every golden volume stores: random bytes, repetitive text (compressed), an empty and a one-byte chunk.
fn inputs() -> [Vec<u8>; 4] {
    let mut text = Vec::new();
    while text.len() < 9000 {
        text.extend_from_slice(b"The golden volume is kept forever. ");
    }
    [xorshift(14_000, 0x5eed), text, Vec::new(), b"x".to_vec()]
}

fn disks(root: &Path) -> Vec<std::sync::Arc<dyn valencefs::store::Disk>> {
    (0..3)
        .map(|i| open_dir_disk(&root.join(format!("disk{i}"))))
        .collect()
}

fn regenerate(root: &Path, version: u16) {
    let _ = std::fs::remove_dir_all(root);
    let opts = CreateOptions {
        redundancy: Redundancy { k: 2, m: 1 },
        compression: true,
        kdf: KdfParams::insecure_fast(),
        chunker: ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        },
        format: version,
    };
    let store = Store::create(disks(root), &opts, &passphrase(version)).unwrap();
    let mut manifest = format!(
        "# chunk id, plaintext length, BLAKE3 of plaintext; passphrase \"valencefs golden v{version}\"\n"
    );
    for data in &inputs() {
        let mut off = 0;
        let mut lens = store.chunk_lengths(data);
        if data.is_empty() {
            lens.push(0);
        }
        for len in lens {
            let piece = &data[off..off + len];
            off += len;
            let id = store.chunk_id(piece);
            store.put(&id, piece).unwrap();
            manifest.push_str(&format!(
                "{} {} {}\n",
                id.to_hex(),
                len,
                blake3::hash(piece).to_hex()
            ));
        }
    }
    store.sync().unwrap();
    std::fs::write(root.join("chunks.txt"), manifest).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn parse_id(hex: &str) -> ChunkId {
    let mut id = [0u8; 32];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    ChunkId(id)
}

/// Opens the golden volume of `version` (on a copy) and checks every chunk, the cut points, a degraded read and
/// that a new write keeps the volume's format.
fn golden_volume_opens_and_reads(version: u16) {
    if std::env::var("VALENCEFS_REGEN_GOLDEN").ok() == Some(version.to_string()) {
        regenerate(&fixture(version), version);
    }
    // Work on a copy: opening probes writability and a read may heal, neither may touch the fixture.
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&fixture(version), tmp.path());
    // A keyless scrub finds every shard (or stripe piece) of the fixture clean.
    let scrub = valencefs::maint::scrub::scrub(
        &disks(tmp.path()),
        None,
        &valencefs::maint::scrub::ScrubOptions::default(),
    )
    .unwrap();
    assert_eq!(scrub.exit_code(), 0, "v{version}: {}", scrub.summary());
    assert!(scrub.chunks_checked >= 5, "v{version}: {}", scrub.summary());
    let store = Store::open(disks(tmp.path()), &passphrase(version)).unwrap();
    assert_eq!(store.format_version(), version);
    assert_eq!(store.redundancy(), Redundancy { k: 2, m: 1 });
    assert_eq!(store.max_chunk_size(), 16384);
    assert!(store.health().iter().all(|h| h.state == DiskState::Ok));
    let manifest = std::fs::read_to_string(tmp.path().join("chunks.txt")).unwrap();
    let mut expected = Vec::new();
    let mut lens = Vec::new();
    for line in manifest.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = line.split(' ').collect();
        let id = parse_id(f[0]);
        let (bytes, report) = store.get_report(&id).unwrap();
        assert!(report.fast_path, "golden chunk {} needed repair", f[0]);
        assert_eq!(bytes.len(), f[1].parse::<usize>().unwrap());
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), f[2]);
        assert_eq!(store.chunk_id(&bytes), id);
        expected.push(id);
        lens.push(bytes.len());
    }
    assert!(expected.len() >= 5);
    // The same inputs still cut at the same points: new writes keep deduplicating against old chunks.
    let mut cuts = Vec::new();
    for data in &inputs() {
        let mut l = store.chunk_lengths(data);
        if data.is_empty() {
            l.push(0);
        }
        cuts.extend(l);
    }
    assert_eq!(cuts, lens, "cut points of format v{version} changed");
    expected.sort();
    expected.dedup();
    assert_eq!(store.list_chunks().unwrap(), expected);
    // A new chunk written by this build reads back from a volume that stays at its format.
    let fresh = xorshift(5000, 77);
    let id = store.chunk_id(&fresh);
    store.put(&id, &fresh).unwrap();
    store.sync().unwrap();
    drop(store);
    let store = Store::open(disks(tmp.path()), &passphrase(version)).unwrap();
    assert_eq!(store.format_version(), version);
    assert_eq!(store.get(&id).unwrap(), fresh);
    // Degraded: the golden volume still reads with its first disk gone.
    std::fs::remove_dir_all(tmp.path().join("disk0")).unwrap();
    let store = Store::open(disks(tmp.path()), &passphrase(version)).unwrap();
    for id in &expected {
        store.get(id).unwrap();
    }
}

#[test]
fn golden_v1_volume_opens_and_reads() {
    golden_volume_opens_and_reads(1);
}

#[test]
fn golden_v2_volume_opens_and_reads() {
    golden_volume_opens_and_reads(2);
}

/// Format v3 (packed stripes, experimental): pinned like the others, so a change of stripe layout is a new version.
#[test]
fn golden_v3_volume_opens_and_reads() {
    golden_volume_opens_and_reads(3);
}
