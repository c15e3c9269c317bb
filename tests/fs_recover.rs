//! Losing the machine loses nothing: the state directory comes back from the disks and the passphrase alone,
//! also with m disks missing.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use valencefs::fs::{recover_state, Chunks, Ctx, FileKind, Fs, FsOptions, Ino, ROOT_INO};
use valencefs::store::{open_dir_disk, CreateOptions, KdfParams, Store};

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
    let gen = recover_state(&st, &state).unwrap();
    assert!(gen >= 1);
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
