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
