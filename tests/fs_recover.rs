//! Losing the machine loses nothing: the state directory comes back from the disks and the passphrase alone,
//! also with m disks missing.

mod common;
use common::pseudo;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use valencefs::fs::{
    recover_state, Chunks, Ctx, DisksRolledBack, FileKind, Fs, FsOptions, Ino, Recovered, ROOT_INO,
};
use valencefs::store::{open_dir_disk, CreateOptions, Disk, FaultDisk, KdfParams, Store};

const C: Ctx = Ctx::ROOT;

fn disk_paths(root: &Path) -> Vec<PathBuf> {
    (0..5).map(|i| root.join(format!("disk{i}"))).collect()
}

fn open_store(root: &Path, create: bool) -> Arc<Store> {
    let d = disk_paths(root).iter().map(|p| open_dir_disk(p)).collect();
    Arc::new(if create {
        let opts = CreateOptions {
            kdf: KdfParams::insecure_fast(),
            ..Default::default()
        };
        Store::create(d, &opts, b"pw").unwrap()
    } else {
        Store::open(d, b"pw").unwrap()
    })
}

fn opts() -> FsOptions {
    FsOptions {
        snapshot_interval_secs: 0,
        ..Default::default()
    }
}

/// Path → (kind, perm, size, nlink, content hash or link target, xattrs), for the whole tree.
type Manifest = BTreeMap<String, (String, u16, u64, u32, String, Vec<(String, Vec<u8>)>)>;

fn manifest(fs: &Fs) -> Manifest {
    let mut out = Manifest::new();
    fn walk(fs: &Fs, dir: Ino, prefix: &str, out: &mut Manifest) {
        for e in fs.readdir(dir, 0, 0, 10_000).unwrap().into_iter().skip(2) {
            let name = format!("{prefix}/{}", e.name.to_string_lossy());
            let a = fs.lookup(&C, dir, &e.name).unwrap();
            let body = match a.kind {
                FileKind::File => {
                    let fh = fs.open(&C, a.ino, libc::O_RDONLY).unwrap();
                    let data = fs.read(a.ino, fh, 0, a.size as u32 + 1).unwrap();
                    fs.release(a.ino, fh).unwrap();
                    blake3::hash(&data).to_hex().to_string()
                }
                FileKind::Symlink => String::from_utf8(fs.readlink(a.ino).unwrap()).unwrap(),
                _ => String::new(),
            };
            let xattrs = fs
                .listxattr(&C, a.ino)
                .unwrap()
                .split(|&b| b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| {
                    let n = String::from_utf8(n.to_vec()).unwrap();
                    let v = fs.getxattr(&C, a.ino, OsStr::new(&n)).unwrap();
                    (n, v)
                })
                .collect();
            out.insert(
                name.clone(),
                (
                    format!("{:?}", a.kind),
                    a.perm,
                    a.size,
                    a.nlink,
                    body,
                    xattrs,
                ),
            );
            if a.kind == FileKind::Dir {
                walk(fs, a.ino, &name, out);
            }
        }
    }
    walk(fs, ROOT_INO, "", &mut out);
    out
}

fn build_tree(fs: &Fs) {
    let n = OsStr::new;
    let d = fs.mkdir(&C, ROOT_INO, n("docs"), 0o750, 0).unwrap();
    let sub = fs.mkdir(&C, d.ino, n("deep"), 0o700, 0).unwrap();
    for (i, size) in [0usize, 1, 4096, 300_000, 2_500_000].iter().enumerate() {
        let (a, fh) = fs
            .create(&C, sub.ino, n(&format!("f{i}")), 0o640, 0, libc::O_RDWR)
            .unwrap();
        let data: Vec<u8> = (0..*size).map(|j| (j * 7 + i) as u8).collect();
        fs.write(a.ino, fh, 0, &data).unwrap();
        fs.release(a.ino, fh).unwrap();
        if i == 3 {
            fs.link(&C, a.ino, ROOT_INO, n("hardlink")).unwrap();
            fs.setxattr(&C, a.ino, n("user.tag"), b"v1", 0).unwrap();
        }
    }
    fs.symlink(&C, ROOT_INO, n("link"), Path::new("docs/deep/f3"))
        .unwrap();
}

#[test]
fn state_directory_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let chmod = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let db = state.join("meta.redb");
    // A state directory made before the rule (0755) is tightened; the database is created 0600.
    std::fs::create_dir(&state).unwrap();
    chmod(&state, 0o755);
    let fs = Fs::start(
        open_store(root.path(), true) as Arc<dyn Chunks>,
        &state,
        opts(),
    )
    .unwrap();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&db), 0o600);
    fs.sync_all().unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    // An old 0644 database is tightened when opened.
    chmod(&db, 0o644);
    let fs = Fs::start(
        open_store(root.path(), false) as Arc<dyn Chunks>,
        &state,
        opts(),
    )
    .unwrap();
    assert_eq!(mode(&db), 0o600);
    fs.shutdown().unwrap();
    drop(fs);
    // recover writes a private directory and database.
    std::fs::remove_dir_all(&state).unwrap();
    recover_state(&open_store(root.path(), false), &state).unwrap();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn state_directory_comes_back_from_the_disks() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let before = {
        let fs = Fs::start(
            open_store(root.path(), true) as Arc<dyn Chunks>,
            &state,
            opts(),
        )
        .unwrap();
        build_tree(&fs);
        fs.sync_all().unwrap();
        let m = manifest(&fs);
        fs.shutdown().unwrap();
        m
    };
    assert!(before.len() >= 9, "tree too small: {before:?}");
    std::fs::remove_dir_all(&state).unwrap();

    let st = open_store(root.path(), false);
    let rec = recover_state(&st, &state).unwrap();
    assert!(rec.generation >= 1 && !rec.fell_back, "{rec:?}");
    assert_eq!(rec.newest_pointer, rec.generation);
    let said = rec.summary();
    assert!(
        said.contains(&format!("generation {}", rec.generation)) && said.contains("cannot prove"),
        "{said}"
    );
    let fs = Fs::start(st as Arc<dyn Chunks>, &state, opts()).unwrap();
    assert_eq!(manifest(&fs), before);
    fs.shutdown().unwrap();
    drop(fs);

    // Again with m = 2 disks gone as well.
    std::fs::remove_dir_all(&state).unwrap();
    for p in &disk_paths(root.path())[1..3] {
        std::fs::remove_dir_all(p).unwrap();
    }
    let st = open_store(root.path(), false);
    recover_state(&st, &state).unwrap();
    let fs = Fs::start(
        st as Arc<dyn Chunks>,
        &state,
        FsOptions {
            read_only: true,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(manifest(&fs), before);
    fs.shutdown().unwrap();
}

#[test]
fn recover_refuses_to_overwrite_and_needs_a_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let st = open_store(root.path(), true);
    let state = root.path().join("state");
    assert!(
        recover_state(&st, &state).is_err(),
        "a fresh volume has no snapshot yet"
    );
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("meta.redb"), b"x").unwrap();
    let err = recover_state(&st, &state).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
}

/// No timer may take a snapshot or commit in the middle of the script: the tests force them.
fn manual() -> FsOptions {
    FsOptions {
        commit_interval_secs: 3600,
        snapshot_interval_secs: 3600,
        ..Default::default()
    }
}

fn write_file(fs: &Fs, name: &str, data: &[u8]) {
    let (a, fh) = match fs.lookup(&C, ROOT_INO, OsStr::new(name)) {
        Ok(a) => {
            let fh = fs.open(&C, a.ino, libc::O_RDWR).unwrap();
            (a, fh)
        }
        Err(_) => fs
            .create(&C, ROOT_INO, OsStr::new(name), 0o644, 0, libc::O_RDWR)
            .unwrap(),
    };
    fs.write(a.ino, fh, 0, data).unwrap();
    fs.release(a.ino, fh).unwrap();
}

/// Loses the state directory (the machine is gone, no unmount), recovers it from the disks, proves the snapshot
/// it came from (`scrub --integrity`) and checks that every file of the recovered tree reads back whole and that
/// the tree is `want`.
fn lose_and_recover(root: &Path, state: &Path, want: &Manifest) {
    std::fs::remove_dir_all(state).unwrap();
    let st = open_store(root, false);
    recover_state(&st, state).unwrap();
    let proof = valencefs::maint::integrity::verify(&st, None, None).unwrap();
    assert!(
        proof.lost.is_empty() && proof.degraded == 0 && proof.ok(),
        "{}",
        proof.summary()
    );
    assert!(proof.proven > 0, "{}", proof.summary());
    let fs = Fs::start(st as Arc<dyn Chunks>, state, manual()).unwrap();
    assert_eq!(&manifest(&fs), want);
    fs.shutdown().unwrap();
}

/// The machine is lost mid-session, after chunks were freed since the last periodic snapshot: `recover` brings
/// back that snapshot, whose files still name the freed chunks, so their shards must still be on the disks; the
/// same when the newest snapshot is unreadable and recovery falls back to the one before. Two snapshots later the
/// freed chunks are really gone.
#[test]
fn recover_from_a_mid_session_snapshot_after_chunks_were_freed() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let st = open_store(root.path(), true);
    let fs = Fs::start(st.clone() as Arc<dyn Chunks>, &state, manual()).unwrap();
    build_tree(&fs);
    write_file(&fs, "victim", &pseudo(3_000_000, 1));
    write_file(&fs, "gone", &pseudo(1_500_000, 2));
    write_file(&fs, "shared", &pseudo(1_000_000, 3));
    fs.snapshot_now().unwrap();
    let at_first = manifest(&fs);
    let chunks_first: Vec<_> = st.list_chunks().unwrap();

    // Overwrite, delete and truncate: their old chunks lose their last reference and the commit frees them.
    write_file(&fs, "victim", &pseudo(3_000_000, 4));
    let n = OsStr::new;
    let gone = fs.lookup(&C, ROOT_INO, n("gone")).unwrap();
    fs.unlink(&C, ROOT_INO, n("gone")).unwrap();
    fs.forget(gone.ino, 2);
    let shared = fs.lookup(&C, ROOT_INO, n("shared")).unwrap();
    let set = valencefs::fs::SetAttr {
        size: Some(1000),
        ..Default::default()
    };
    fs.setattr(&C, shared.ino, &set).unwrap();
    fs.sync_all().unwrap();
    // The snapshot the disks point at still names them: lose the machine now (a copy of the disks as they are).
    {
        let root2 = tempfile::tempdir().unwrap();
        copy_dir(root.path(), root2.path());
        lose_and_recover(root2.path(), &root2.path().join("state"), &at_first);
    }

    // A second snapshot: it is exact, but the pointer keeps the first as its fallback. Make the newest unreadable
    // (every shard gone) and recovery takes the first, which must still read whole.
    fs.snapshot_now().unwrap();
    let at_second = manifest(&fs);
    let newest = st.snapshot_pointers()[0];
    assert!(newest.previous.is_some());
    {
        let root2 = tempfile::tempdir().unwrap();
        copy_dir(root.path(), root2.path());
        let st2 = open_store(root2.path(), false);
        st2.delete(&newest.current).unwrap();
        drop(st2);
        lose_and_recover(root2.path(), &root2.path().join("state"), &at_first);
    }
    {
        let root2 = tempfile::tempdir().unwrap();
        copy_dir(root.path(), root2.path());
        lose_and_recover(root2.path(), &root2.path().join("state"), &at_second);
    }

    // A third: now no snapshot the pointer names references the freed chunks, and their shards are deleted.
    write_file(&fs, "later", b"a change, so there is something to snapshot");
    fs.snapshot_now().unwrap();
    let at_third = manifest(&fs);
    fs.shutdown().unwrap();
    drop(fs);
    let live: std::collections::BTreeSet<_> = st.list_chunks().unwrap().into_iter().collect();
    let freed = chunks_first.iter().filter(|id| !live.contains(id)).count();
    assert!(
        freed >= 3,
        "only {freed} of the first snapshot's {} chunks were deleted",
        chunks_first.len()
    );
    {
        // Nothing leaked: every chunk left is referenced or is a snapshot the pointer names, and nothing is held.
        let meta = valencefs::maint::open_meta(&state).unwrap();
        let mut tx = meta.write().unwrap();
        assert_eq!(tx.all_held().unwrap().len(), 0);
        let rows: std::collections::BTreeSet<_> = tx
            .all_chunks()
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let snapshots = st.snapshot_chunks();
        for id in &live {
            assert!(
                rows.contains(id) || snapshots.contains(id),
                "chunk {} left on the disks unreferenced",
                id.to_hex()
            );
        }
        for id in &snapshots {
            assert!(live.contains(id), "a named snapshot was deleted");
        }
    }
    {
        let root2 = tempfile::tempdir().unwrap();
        copy_dir(root.path(), root2.path());
        lose_and_recover(root2.path(), &root2.path().join("state"), &at_third);
    }
    // And the clean-unmount state of the volume is intact. A remount carries on the pointer's snapshots: its
    // first keeps the last one as the fallback, and deletes the one before.
    let before = st.snapshot_pointers()[0];
    let fs = Fs::start(
        open_store(root.path(), false) as Arc<dyn Chunks>,
        &state,
        manual(),
    )
    .unwrap();
    assert_eq!(manifest(&fs), at_third);
    write_file(&fs, "after remount", b"x");
    fs.shutdown().unwrap();
    let after = st.snapshot_pointers()[0];
    assert_eq!(after.previous, Some(before.current));
    let live = st.list_chunks().unwrap();
    assert!(live.contains(&before.current));
    assert!(
        !live.contains(&before.previous.unwrap()),
        "an unnamed snapshot was left behind"
    );
}

/// A held chunk (freed, kept for recovery) written again is revived: the deferred delete must not remove it.
#[test]
fn a_held_chunk_written_again_survives_its_deferred_delete() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let st = open_store(root.path(), true);
    let fs = Fs::start(st.clone() as Arc<dyn Chunks>, &state, manual()).unwrap();
    let data = pseudo(2_000_000, 9);
    write_file(&fs, "a", &data);
    fs.snapshot_now().unwrap();
    let a = fs.lookup(&C, ROOT_INO, OsStr::new("a")).unwrap();
    fs.unlink(&C, ROOT_INO, OsStr::new("a")).unwrap();
    // The kernel forgets it (create's and this lookup's references): the inode and its chunk references go.
    fs.forget(a.ino, 2);
    fs.sync_all().unwrap();
    {
        let meta_held = fs.usage().unwrap();
        assert_eq!(meta_held.chunk_bytes, 0, "a's chunks are unreferenced");
    }
    // Held now; the same bytes come back under another name before the hold ends.
    write_file(&fs, "b", &data);
    fs.sync_all().unwrap();
    for i in 0..3 {
        write_file(&fs, "tick", format!("snapshot {i}").as_bytes());
        fs.snapshot_now().unwrap();
    }
    fs.shutdown().unwrap();
    drop(fs);
    let fs = Fs::start(
        open_store(root.path(), false) as Arc<dyn Chunks>,
        &state,
        manual(),
    )
    .unwrap();
    let a = fs.lookup(&C, ROOT_INO, OsStr::new("b")).unwrap();
    let fh = fs.open(&C, a.ino, libc::O_RDONLY).unwrap();
    let back = fs.read(a.ino, fh, 0, data.len() as u32 + 1).unwrap();
    assert!(back == data, "b reads back differently");
    fs.release(a.ino, fh).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    let root2 = tempfile::tempdir().unwrap();
    copy_dir(root.path(), root2.path());
    let st2 = open_store(root2.path(), false);
    let proof = valencefs::maint::integrity::verify(&st2, None, None).unwrap();
    assert!(proof.ok() && proof.degraded == 0, "{}", proof.summary());
}

/// A pointer names its fallback snapshot but not that snapshot's generation, and saves that fail after bumping the
/// generation leave gaps: when the newest snapshot is gone, `recover` must say it fell back and name both real
/// generations (here 3 and 1, where "G-1" would say 2), and the integrity proof must label it the same way.
#[test]
fn recover_reports_a_fallback_with_both_real_generations() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let faults: Vec<Arc<FaultDisk>> = disk_paths(root.path())
        .iter()
        .map(|p| Arc::new(FaultDisk::new(open_dir_disk(p))))
        .collect();
    let st = {
        let opts = CreateOptions {
            kdf: KdfParams::insecure_fast(),
            ..Default::default()
        };
        let disks = faults.iter().map(|f| f.clone() as Arc<dyn Disk>).collect();
        Arc::new(Store::create(disks, &opts, b"pw").unwrap())
    };
    let fs = Fs::start(st.clone() as Arc<dyn Chunks>, &state, manual()).unwrap();
    write_file(&fs, "a", &pseudo(300_000, 1));
    fs.snapshot_now().unwrap();
    let at_first = manifest(&fs);
    assert_eq!(st.snapshot_pointers()[0].generation, 1);
    write_file(&fs, "b", &pseudo(300_000, 2));
    fs.sync_all().unwrap();
    // Generation 2 is committed locally, then every disk is full: it never reaches them.
    for f in &faults {
        f.update(|x| x.enospc = true);
    }
    assert!(
        fs.snapshot_now().is_err(),
        "a save onto full disks succeeded"
    );
    for f in &faults {
        f.update(|x| x.enospc = false);
    }
    fs.snapshot_now().unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    let newest = st.snapshot_pointers()[0];
    assert_eq!(newest.generation, 3);
    assert!(newest.previous.is_some());
    // Someone holding the disks deletes the newest snapshot's shards.
    st.delete(&newest.current).unwrap();
    drop(st);
    std::fs::remove_dir_all(&state).unwrap();

    let st = open_store(root.path(), false);
    let rec = recover_state(&st, &state).unwrap();
    assert_eq!(
        rec,
        Recovered {
            generation: 1,
            newest_pointer: 3,
            fell_back: true
        }
    );
    let said = rec.summary();
    assert!(
        said.contains("FELL BACK")
            && said.contains("generation 3")
            && said.contains("generation 1"),
        "{said}"
    );
    let proof = valencefs::maint::integrity::verify(&st, None, None).unwrap();
    assert_eq!(proof.snapshot_generation, 1, "{}", proof.summary());
    let fs = Fs::start(st as Arc<dyn Chunks>, &state, manual()).unwrap();
    assert_eq!(manifest(&fs), at_first);
    assert_eq!(
        fs.disks_rolled_back(),
        None,
        "a recovered database is not newer than its disks"
    );
    fs.shutdown().unwrap();
}

/// Disks older than the local database (old images put back, or every pointer deleted) mount with a warning that
/// names both generations, and the next snapshot puts the pointers right again.
#[test]
fn mount_warns_when_the_disks_are_older_than_the_database() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("state");
    let old = tempfile::tempdir().unwrap();
    {
        let st = open_store(root.path(), true);
        let fs = Fs::start(st.clone() as Arc<dyn Chunks>, &state, manual()).unwrap();
        assert_eq!(fs.disks_rolled_back(), None);
        write_file(&fs, "a", b"first");
        fs.snapshot_now().unwrap();
        assert_eq!(st.snapshot_pointers()[0].generation, 1);
        copy_dir(root.path(), old.path());
        write_file(&fs, "b", b"second");
        fs.snapshot_now().unwrap();
        fs.shutdown().unwrap();
    }
    let database = open_store(root.path(), false).snapshot_pointers()[0].generation;
    assert!(database >= 2);
    // The disk holder puts back the images taken at generation 1.
    for (i, p) in disk_paths(root.path()).iter().enumerate() {
        std::fs::remove_dir_all(p).unwrap();
        copy_dir(&old.path().join(format!("disk{i}")), p);
    }
    let fs = Fs::start(
        open_store(root.path(), false) as Arc<dyn Chunks>,
        &state,
        manual(),
    )
    .unwrap();
    let found = fs.disks_rolled_back();
    assert_eq!(
        found,
        Some(DisksRolledBack {
            database,
            disks: Some(1)
        })
    );
    let said = found.unwrap().message(false);
    assert!(
        said.contains("generation 1")
            && said.contains(&format!("generation {database}"))
            && said.contains("overwrites the pointers"),
        "{said}"
    );
    fs.snapshot_now().unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    let st = open_store(root.path(), false);
    let now = st.snapshot_pointers()[0].generation;
    assert!(
        now > database,
        "the next snapshot did not rewrite the pointers"
    );
    let fs = Fs::start(st as Arc<dyn Chunks>, &state, manual()).unwrap();
    assert_eq!(fs.disks_rolled_back(), None);
    fs.shutdown().unwrap();
    drop(fs);

    // Every pointer deleted: no generation on the disks at all.
    let database = open_store(root.path(), false).snapshot_pointers()[0].generation;
    for p in disk_paths(root.path()) {
        std::fs::remove_file(p.join("meta").join("pointer")).unwrap();
    }
    let fs = Fs::start(
        open_store(root.path(), false) as Arc<dyn Chunks>,
        &state,
        manual(),
    )
    .unwrap();
    let found = fs.disks_rolled_back();
    assert_eq!(
        found,
        Some(DisksRolledBack {
            database,
            disks: None
        })
    );
    assert!(found
        .unwrap()
        .message(true)
        .contains("no disk holds a readable metadata pointer"));
    fs.shutdown().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}
