//! gc frees what no committed metadata references (orphan shards of a crash, rows with refcount 0), never what an
//! extent still references, returns the disks to near an empty volume's usage, and refuses a mounted volume.

mod maint_common;

use std::ffi::OsStr;

use maint_common::*;
use valencefs::fs::ROOT_INO;
use valencefs::maint::gc::gc;
use valencefs::maint::open_meta;
use valencefs::store::scan::shard_name_of;
use valencefs::store::ChunkId;

#[test]
fn gc_frees_unreferenced_chunks_and_keeps_referenced_ones() {
    let vol = Vol::new();
    let empty = du(&vol.disks);
    let st = vol.store();
    let fs = vol.fs(st.clone());
    let files = write_files(&fs, 12 << 20, 0x6c);
    let (keep, fh) = fs
        .create(&C, ROOT_INO, OsStr::new("keep"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.write(keep.ino, fh, 0, b"still referenced").unwrap();
    fs.release(keep.ino, fh).unwrap();
    fs.sync_all().unwrap();

    // While mounted (the core holds the database), gc is refused with a clear reason.
    let err = open_meta(&vol.state()).err().expect("metadata is locked");
    assert!(err.to_string().contains("unmount"), "{err}");

    // Delete everything but `keep`.
    for path in files.keys() {
        let (parent, name) = match path.split_once('/') {
            Some((d, n)) => (fs.lookup(&C, ROOT_INO, OsStr::new(d)).unwrap().ino, n),
            None => (ROOT_INO, path.as_str()),
        };
        fs.unlink(&C, parent, OsStr::new(name)).unwrap();
    }
    fs.shutdown().unwrap();
    drop(fs);

    // Crash leftovers: chunks stored whose metadata never committed, some with a row of refcount 0.
    let mut seed = 77u64;
    let mut orphans = Vec::new();
    for i in 0..40 {
        let data: Vec<u8> = (0..100_000 + i * 1000)
            .map(|_| xorshift(&mut seed) as u8)
            .collect();
        let id = st.chunk_id(&data);
        st.put(&id, &data).unwrap();
        orphans.push((id, data.len() as u64));
    }
    st.sync().unwrap();
    let meta = open_meta(&vol.state()).unwrap();
    let keep_chunk: ChunkId;
    {
        let mut tx = meta.write().unwrap();
        for (id, len) in orphans.iter().take(10) {
            tx.ensure_chunk(id, *len, 0, [0; 32]).unwrap();
        }
        // A row whose refcount is wrong (0) while an extent references it must survive gc.
        let (_, e) = tx.all_extents().unwrap()[0];
        keep_chunk = e.chunk;
        let mut row = tx.chunk(&keep_chunk).unwrap().unwrap();
        row.refs = 0;
        tx.put_chunk_row(&keep_chunk, &row).unwrap();
    }
    meta.commit_durable().unwrap();
    let before = du(&vol.disks);
    assert!(
        before > empty + (6 << 20),
        "orphans take space: {before} vs {empty}"
    );

    let snapshots = st.snapshot_chunks();
    let r = gc(&st, &meta).unwrap();
    eprintln!("{}", r.summary());
    // Metadata snapshots (for `valencefs recover`) are referenced from the disks, not the rows: they stay.
    assert_eq!(r.snapshot_chunks_kept, snapshots.len() as u64);
    let left = st.list_chunks().unwrap();
    assert!(
        snapshots.iter().all(|id| left.contains(id)),
        "gc freed a metadata snapshot"
    );
    st.load_snapshot().unwrap();
    assert_eq!(r.rows_freed, 10);
    assert_eq!(r.orphan_chunks_freed, 30);
    assert_eq!(r.kept_referenced, 1);
    assert_eq!(r.delete_errors, 0);
    // What remains beyond an empty volume: `keep`'s chunk and the metadata snapshots (plus their pointers).
    let disks = st.disks();
    let snapshot_bytes: u64 = snapshots
        .iter()
        .flat_map(|id| (0..5).map(move |i| (*id, i)))
        .filter_map(|(id, i)| {
            disks[st.shard_disk(&id, i)]
                .get(&shard_name_of(&id, i))
                .ok()
        })
        .map(|f| f.len() as u64)
        .sum();
    let after_raw = du(&vol.disks);
    let after = after_raw - snapshot_bytes;
    assert!(
        after <= empty + empty / 20 + 64 * 1024,
        "after gc {after} bytes on disks besides {snapshot_bytes} of metadata snapshots, empty volume {empty}"
    );
    assert!(
        r.bytes_freed >= before - after_raw - 64 * 1024,
        "{} freed, du fell by {}",
        r.bytes_freed,
        before - after_raw
    );
    assert!(st.list_chunks().unwrap().contains(&keep_chunk));
    {
        let mut tx = meta.write().unwrap();
        let rows = tx.all_chunks().unwrap();
        assert_eq!(rows.len(), 1, "only keep's chunk row is left");
    }
    meta.commit_durable().unwrap();
    // A second gc frees nothing.
    let r2 = gc(&st, &meta).unwrap();
    assert_eq!(r2.rows_freed + r2.orphan_chunks_freed, 0);
    drop(meta);

    let fs = vol.fs(st);
    let a = fs.lookup(&C, ROOT_INO, OsStr::new("keep")).unwrap();
    let fh = fs.open(&C, a.ino, libc::O_RDONLY).unwrap();
    assert_eq!(fs.read(a.ino, fh, 0, 100).unwrap(), b"still referenced");
    fs.release(a.ino, fh).unwrap();
    fs.shutdown().unwrap();
}

/// gc never frees what a metadata snapshot named by the disks' pointer references (`recover` could bring it
/// back): not a held chunk, not an orphan such a snapshot names; it frees them once no named snapshot does; and it
/// frees nothing unreferenced when the newest snapshot cannot be read.
#[test]
fn gc_keeps_chunks_a_usable_snapshot_references() {
    let vol = Vol::new();
    let st = vol.store();
    let fs = vol.fs(st.clone());
    let mut seed = 5u64;
    let data: Vec<u8> = (0..600_000).map(|_| xorshift(&mut seed) as u8).collect();
    let (x, fh) = fs
        .create(&C, ROOT_INO, OsStr::new("x"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.write(x.ino, fh, 0, &data).unwrap();
    fs.release(x.ino, fh).unwrap();
    fs.snapshot_now().unwrap(); // names x's chunks
    fs.unlink(&C, ROOT_INO, OsStr::new("x")).unwrap();
    fs.forget(x.ino, 1);
    fs.sync_all().unwrap();
    fs.shutdown().unwrap(); // its snapshot is exact, but the first stays the fallback

    drop(fs);

    let meta = open_meta(&vol.state()).unwrap();
    let held: Vec<ChunkId> = {
        let mut tx = meta.write().unwrap();
        tx.all_held().unwrap().into_iter().map(|h| h.0).collect()
    };
    assert!(held.len() >= 3, "x's chunks are held: {}", held.len());
    let orphan = |seed: u64| {
        let data = vec![seed as u8; 50_000 + seed as usize];
        let id = st.chunk_id(&data);
        st.put(&id, &data).unwrap();
        st.sync().unwrap();
        id
    };
    let listed = |id: &ChunkId| st.list_chunks().unwrap().contains(id);

    // fsck counts them, as held for recovery, not as problems.
    let f = valencefs::maint::fsck::fsck(&meta, Some(&st), false).unwrap();
    assert_eq!(
        (f.errors(), f.held_chunks),
        (0, held.len() as u64),
        "{}",
        f.summary()
    );

    let o1 = orphan(1);
    let r = gc(&st, &meta).unwrap();
    eprintln!("{}", r.summary());
    assert_eq!(r.held_kept, held.len() as u64);
    assert_eq!((r.held_freed, r.orphan_chunks_freed), (0, 1));
    assert!(held.iter().all(listed), "gc freed a held chunk");
    assert!(!listed(&o1));

    // As after `recover`, which drops the holds: x's chunks are orphans now, but the fallback snapshot names them.
    {
        let mut tx = meta.write().unwrap();
        assert_eq!(tx.clear_held().unwrap(), held.len() as u64);
        tx.commit(true).unwrap();
    }
    let r = gc(&st, &meta).unwrap();
    assert_eq!(r.snapshot_referenced_kept, held.len() as u64);
    assert_eq!(r.orphan_chunks_freed, 0);
    assert!(
        held.iter().all(listed),
        "gc freed a chunk the fallback snapshot references"
    );
    drop(meta);

    // A mount (its unmount snapshot makes the exact second one the fallback): no named snapshot references x's
    // chunks any more, and they can go.
    let fs = vol.fs(st.clone());
    fs.shutdown().unwrap();
    drop(fs);
    let meta = open_meta(&vol.state()).unwrap();
    let r = gc(&st, &meta).unwrap();

    assert!(
        r.orphan_chunks_freed >= held.len() as u64,
        "{}",
        r.summary()
    );
    assert!(!held.iter().any(listed));

    // The newest snapshot unreadable: nothing a snapshot might reference is freed.
    let o2 = orphan(2);
    for id in st.snapshot_chunks() {
        st.delete(&id).unwrap();
    }
    let r = gc(&st, &meta).unwrap();
    assert!(r.snapshots_unreadable >= 1);
    assert_eq!(r.orphan_chunks_freed, 0);
    assert!(listed(&o2));
}
