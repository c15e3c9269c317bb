//! Format v2's answers to a disk holder (issue #27): an authenticated disk header, lengths checked before they size
//! anything, and keyslot costs from a disk capped. Each test edits the disks as an attacker would, fixing up every
//! unkeyed checksum so that only the keyed checks can notice.

mod store_common;
use store_common::*;

use valencefs::store::format::{
    DiskHeader, DH_KEYSLOTS_OFF, DISK_HEADER_NAME, FORMAT_V1, FORMAT_VERSION, SHARD_HEADER_LEN,
};
use valencefs::store::{Disk, DiskState, MemDisk, ShardFault, Store};
use valencefs::Error;

/// Rewrites a disk header's bytes with `f`, then recomputes its (unkeyed) trailing checksum.
fn edit_header(disk: &MemDisk, f: impl FnOnce(&mut Vec<u8>)) {
    assert!(disk.tamper(DISK_HEADER_NAME, |b| {
        f(b);
        let n = b.len();
        let sum = *blake3::hash(&b[..n - 32]).as_bytes();
        b[n - 32..].copy_from_slice(&sum);
    }));
}

fn volume() -> (
    Vec<std::sync::Arc<MemDisk>>,
    Vec<valencefs::store::ChunkId>,
    Vec<u8>,
) {
    let disks = mem_disks(5);
    let store = Store::create(as_dyn(&disks), &opts("3+2"), PASS).unwrap();
    assert_eq!(store.format_version(), FORMAT_VERSION);
    let data = mixed(300_000, 3);
    let ids = write_all(&store, &data);
    store.sync().unwrap();
    (disks, ids, data)
}

/// (offset, what) of every header field a disk holder could want to change, keyslot parameters included.
const FIELDS: [(usize, &str); 10] = [
    (12, "flags"),
    (34, "disk count"),
    (36, "k"),
    (37, "m"),
    (40, "epoch"),
    (48, "chunker min"),
    (52, "chunker avg"),
    (56, "chunker max"),
    (DH_KEYSLOTS_OFF + 4, "slot 0 m_cost"),
    (DH_KEYSLOTS_OFF + 96 + 16, "slot 1 salt (empty slot)"),
];

#[test]
fn an_edited_header_on_one_disk_is_set_aside_by_name() {
    for (off, what) in FIELDS {
        let (disks, ids, data) = volume();
        // Values that still decode (a decoder refusal would not reach the MAC check).
        edit_header(&disks[2], |b| match off {
            12 => b[12] ^= 1,
            34 => b[34] = 6,
            36 => b[36] = 2,
            37 => b[37] = 1,
            40 => b[40] = b[40].wrapping_add(7),
            48 => b[48..52].copy_from_slice(&64u32.to_le_bytes()),
            52 => b[52..56].copy_from_slice(&32768u32.to_le_bytes()),
            56 => b[56..60].copy_from_slice(&(1u32 << 24).to_le_bytes()),
            o => b[o] ^= 0x40,
        });
        let store = match Store::open(as_dyn(&disks), PASS) {
            Ok(s) => s,
            Err(e) => panic!("{what}: open failed: {e}"),
        };
        let h = &store.health()[2];
        assert_eq!(h.state, DiskState::Unreadable, "{what}");
        let detail = h.detail.clone().unwrap_or_default();
        assert!(
            ["authentication", "disagrees", "not canonical"]
                .iter()
                .any(|w| detail.contains(w)),
            "{what}: {detail}"
        );
        assert!(store
            .health()
            .iter()
            .enumerate()
            .all(|(i, h)| i == 2 || h.state == DiskState::Ok));
        assert_eq!(read_all(&store, &ids).unwrap(), data, "{what}");
    }
}

#[test]
fn an_edit_on_every_disk_is_refused() {
    for (off, what) in FIELDS {
        let (disks, _, _) = volume();
        for d in &disks {
            edit_header(d, |b| match off {
                36 => b[36] = 2,
                37 => b[37] = 1,
                34 => b[34] = 6,
                o => b[o] ^= 0x40,
            });
        }
        match Store::open(as_dyn(&disks), PASS) {
            Ok(s) => panic!(
                "{what}: every header edited, yet the volume opened ({:?})",
                s.health().iter().map(|h| h.state).collect::<Vec<_>>()
            ),
            Err(Error::Volume(_) | Error::WrongPassphrase | Error::BadDisk { .. }) => {}
            Err(e) => panic!("{what}: unexpected error {e}"),
        }
    }
}

#[test]
fn a_header_downgraded_to_v1_does_not_unlock() {
    let (disks, _, _) = volume();
    for d in &disks {
        let h = DiskHeader::decode(&d.get(DISK_HEADER_NAME).unwrap()).unwrap();
        let v1 = DiskHeader {
            version: FORMAT_V1,
            mac: [0; 32],
            ..h
        };
        d.tamper(DISK_HEADER_NAME, |b| *b = v1.encode());
    }
    assert!(matches!(
        Store::open(as_dyn(&disks), PASS),
        Err(Error::WrongPassphrase)
    ));
}

#[test]
fn a_shard_header_announcing_a_huge_envelope_reads_as_corrupt_and_heals() {
    let (disks, ids, data) = volume();
    let store = Store::open(as_dyn(&disks), PASS).unwrap();
    // Shard 0 of the first chunk: announce a 2^50-byte envelope, with a valid header checksum.
    let id = ids[0];
    let name = valencefs::store::format::shard_name(&id.0, 0);
    let holder = disks
        .iter()
        .position(|d| d.tamper(&name, |_| {}))
        .expect("shard 0 somewhere");
    disks[holder].tamper(&name, |b| {
        b[64..72].copy_from_slice(&(1u64 << 50).to_le_bytes());
        let sum = blake3::hash(&b[..112]);
        b[112..128].copy_from_slice(&sum.as_bytes()[..16]);
    });
    let (bytes, report) = store.get_report(&id).unwrap();
    assert_eq!(bytes, data[..bytes.len()]);
    assert!(!report.fast_path);
    assert!(report
        .bad_shards
        .iter()
        .any(|b| b.shard == 0 && b.fault == ShardFault::Corrupt));
    assert_eq!(report.healed, vec![0]);
    assert!(disks[holder].tamper(&name, |b| assert!(b.len() > SHARD_HEADER_LEN)));
    assert_eq!(read_all(&store, &ids).unwrap(), data);
}

#[test]
fn a_sparse_20_gib_shard_file_is_corrupt_and_healed_not_read() {
    let tmp = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..5).map(|i| tmp.path().join(format!("d{i}"))).collect();
    let disks = || -> Vec<std::sync::Arc<dyn Disk>> {
        paths
            .iter()
            .map(|p| valencefs::store::open_dir_disk(p))
            .collect()
    };
    let store = Store::create(disks(), &opts("3+2"), PASS).unwrap();
    let data = random(200_000, 9);
    let ids = write_all(&store, &data);
    store.sync().unwrap();
    let name = valencefs::store::format::shard_name(&ids[0].0, 1);
    let file = paths
        .iter()
        .map(|p| p.join(&name))
        .find(|p| p.exists())
        .expect("shard 1 on some disk");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(20 << 30)
        .unwrap();
    let (bytes, report) = store.get_report(&ids[0]).unwrap();
    assert_eq!(bytes, data[..bytes.len()]);
    assert!(
        report
            .bad_shards
            .iter()
            .any(|b| b.shard == 1 && b.fault == ShardFault::Corrupt),
        "{report:?}"
    );
    assert!(report.healed.contains(&1), "{report:?}");
    assert!(
        std::fs::metadata(&file).unwrap().len() < 1 << 20,
        "healed in place"
    );
    assert_eq!(read_all(&store, &ids).unwrap(), data);
}
