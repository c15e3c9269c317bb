//! POSIX behaviour of the core, in process, over an in-memory chunk store.

mod common;
use common::pseudo;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use valencefs::fs::{Ctx, FileKind, Fs, FsOptions, MemChunks, SetAttr, SetTime, ROOT_INO};
use valencefs::Error;

const C: Ctx = Ctx::ROOT;
const USER: Ctx = Ctx {
    uid: 1000,
    gid: 1000,
    pid: 1,
};

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn open_fs(dir: &Path, chunks: Arc<MemChunks>) -> Arc<Fs> {
    Fs::start(chunks, dir, FsOptions::default()).unwrap()
}

fn write_file(fs: &Fs, parent: u64, name: &str, data: &[u8]) -> u64 {
    let (attr, fh) = fs
        .create(&C, parent, n(name), 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.write(attr.ino, fh, 0, data).unwrap();
    fs.release(attr.ino, fh).unwrap();
    attr.ino
}

fn read_all(fs: &Fs, ino: u64) -> Vec<u8> {
    let fh = fs.open(&C, ino, libc::O_RDONLY).unwrap();
    let size = fs.getattr(ino).unwrap().size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let b = fs.read(ino, fh, out.len() as u64, 1 << 20).unwrap();
        assert!(!b.is_empty());
        out.extend_from_slice(&b);
    }
    fs.release(ino, fh).unwrap();
    out
}

/// Compares byte buffers, reporting the first difference instead of printing megabytes.
fn assert_same(got: &[u8], want: &[u8]) {
    let first = got.iter().zip(want).position(|(a, b)| a != b);
    assert!(
        got.len() == want.len() && first.is_none(),
        "bytes differ: len {} vs {}, first difference at {first:?}",
        got.len(),
        want.len()
    );
}

#[test]
fn files_survive_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = Arc::new(MemChunks::new());
    let data = pseudo(300_000, 1);
    {
        let fs = open_fs(dir.path(), chunks.clone());
        let d = fs.mkdir(&C, ROOT_INO, n("d"), 0o755, 0).unwrap();
        let ino = write_file(&fs, d.ino, "f", &data);
        assert_same(&read_all(&fs, ino), &data);
        fs.sync_all().unwrap();
        assert_same(&read_all(&fs, ino), &data);
        fs.shutdown().unwrap();
    }
    let fs = open_fs(dir.path(), chunks.clone());
    let d = fs.lookup(&C, ROOT_INO, n("d")).unwrap();
    let f = fs.lookup(&C, d.ino, n("f")).unwrap();
    assert_eq!(f.size, 300_000);
    assert_same(&read_all(&fs, f.ino), &data);
    fs.shutdown().unwrap();
}

#[test]
fn overwrite_in_middle_and_holes() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = Arc::new(MemChunks::new());
    let fs = open_fs(dir.path(), chunks.clone());
    let mut model = pseudo(200_000, 2);
    let ino = write_file(&fs, ROOT_INO, "f", &model);
    fs.sync_all().unwrap();
    let fh = fs.open(&C, ino, libc::O_RDWR).unwrap();
    fs.write(ino, fh, 100_000, b"hello").unwrap();
    model[100_000..100_005].copy_from_slice(b"hello");
    // A write far past the end leaves a hole that reads as zeros and stores nothing.
    fs.write(ino, fh, 10_000_000, b"tail").unwrap();
    model.resize(10_000_000, 0);
    model.extend_from_slice(b"tail");
    fs.fsync(ino, fh, false).unwrap();
    fs.release(ino, fh).unwrap();
    assert_same(&read_all(&fs, ino), &model);
    let attr = fs.getattr(ino).unwrap();
    assert!(
        attr.blocks * 512 < 1_000_000,
        "hole must not be stored: {} blocks",
        attr.blocks
    );
    assert_eq!(
        fs.lseek(ino, 0, 300_000, libc::SEEK_DATA).unwrap(),
        10_000_000
    );
    assert_eq!(fs.lseek(ino, 0, 0, libc::SEEK_HOLE).unwrap(), 200_000);
    fs.shutdown().unwrap();
}

#[test]
fn truncate_punch_and_append() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_fs(dir.path(), Arc::new(MemChunks::new()));
    let mut model = pseudo(150_000, 3);
    let ino = write_file(&fs, ROOT_INO, "f", &model);
    fs.sync_all().unwrap();
    let set = SetAttr {
        size: Some(70_001),
        ..Default::default()
    };
    fs.setattr(&C, ino, &set).unwrap();
    model.truncate(70_001);
    assert_same(&read_all(&fs, ino), &model);
    let fh = fs.open(&C, ino, libc::O_WRONLY | libc::O_APPEND).unwrap();
    fs.write(ino, fh, 0, b"appended").unwrap();
    model.extend_from_slice(b"appended");
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fs.fallocate(ino, fh, 1000, 50_000, punch).unwrap();
    model[1000..51_000].fill(0);
    fs.release(ino, fh).unwrap();
    assert_same(&read_all(&fs, ino), &model);
    fs.sync_all().unwrap();
    assert_same(&read_all(&fs, ino), &model);
    fs.fallocate(ino, 0, 0, 100_000, 0).unwrap();
    model.resize(100_000, 0);
    assert_same(&read_all(&fs, ino), &model);
    // O_TRUNC empties the file.
    let fh = fs.open(&C, ino, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    fs.release(ino, fh).unwrap();
    assert_eq!(fs.getattr(ino).unwrap().size, 0);
    fs.shutdown().unwrap();
}

#[test]
fn names_links_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_fs(dir.path(), Arc::new(MemChunks::new()));
    let d = fs.mkdir(&C, ROOT_INO, n("d"), 0o755, 0).unwrap();
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 3);
    let f = write_file(&fs, d.ino, "f", b"x");
    assert!(matches!(
        fs.mkdir(&C, ROOT_INO, n("d"), 0o755, 0),
        Err(Error::Exists)
    ));
    assert!(matches!(
        fs.rmdir(&C, ROOT_INO, n("d")),
        Err(Error::NotEmpty)
    ));
    assert!(matches!(fs.unlink(&C, ROOT_INO, n("d")), Err(Error::IsDir)));
    assert!(matches!(fs.rmdir(&C, d.ino, n("f")), Err(Error::NotDir)));
    assert!(matches!(
        fs.lookup(&C, ROOT_INO, n(&"a".repeat(256))),
        Err(Error::NameTooLong)
    ));
    let l = fs.link(&C, f, ROOT_INO, n("hard")).unwrap();
    assert_eq!(l.nlink, 2);
    assert!(matches!(
        fs.link(&C, d.ino, ROOT_INO, n("dl")),
        Err(Error::Perm)
    ));
    fs.unlink(&C, d.ino, n("f")).unwrap();
    assert_eq!(fs.getattr(f).unwrap().nlink, 1);
    assert_eq!(read_all(&fs, f), b"x");
    let s = fs
        .symlink(&C, ROOT_INO, n("sl"), Path::new("/some/target"))
        .unwrap();
    assert_eq!(s.kind, FileKind::Symlink);
    assert_eq!(fs.readlink(s.ino).unwrap(), b"/some/target");
    let fifo = fs
        .mknod(&C, ROOT_INO, n("fifo"), libc::S_IFIFO | 0o600, 0, 0)
        .unwrap();
    assert_eq!(fifo.kind, FileKind::Fifo);
    let dev = fs
        .mknod(&C, ROOT_INO, n("dev"), libc::S_IFCHR | 0o600, 0, 0x0103)
        .unwrap();
    assert_eq!((dev.kind, dev.rdev), (FileKind::CharDev, 0x0103));
    fs.rmdir(&C, ROOT_INO, n("d")).unwrap();
    assert_eq!(fs.getattr(ROOT_INO).unwrap().nlink, 2);
    let names: Vec<_> = fs
        .readdir(ROOT_INO, 0, 0, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec![".", "..", "hard", "sl", "fifo", "dev"]);
    fs.shutdown().unwrap();
}

#[test]
fn rename_cases() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_fs(dir.path(), Arc::new(MemChunks::new()));
    let a = fs.mkdir(&C, ROOT_INO, n("a"), 0o755, 0).unwrap();
    let b = fs.mkdir(&C, ROOT_INO, n("b"), 0o755, 0).unwrap();
    let f1 = write_file(&fs, a.ino, "f1", b"one");
    let f2 = write_file(&fs, b.ino, "f2", b"two");
    // Replace across directories.
    fs.rename(&C, a.ino, n("f1"), b.ino, n("f2"), 0).unwrap();
    assert_eq!(fs.lookup(&C, b.ino, n("f2")).unwrap().ino, f1);
    assert!(matches!(
        fs.lookup(&C, a.ino, n("f1")),
        Err(Error::NotFound)
    ));
    assert!(matches!(fs.getattr(f2).unwrap().nlink, 0));
    // NOREPLACE and EXCHANGE.
    let f3 = write_file(&fs, a.ino, "f3", b"three");
    assert!(matches!(
        fs.rename(&C, a.ino, n("f3"), b.ino, n("f2"), libc::RENAME_NOREPLACE),
        Err(Error::Exists)
    ));
    fs.rename(&C, a.ino, n("f3"), b.ino, n("f2"), libc::RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(fs.lookup(&C, b.ino, n("f2")).unwrap().ino, f3);
    assert_eq!(fs.lookup(&C, a.ino, n("f3")).unwrap().ino, f1);
    // Directory over empty directory, into another parent: nlink of parents follow.
    let sub = fs.mkdir(&C, a.ino, n("sub"), 0o755, 0).unwrap();
    fs.mkdir(&C, b.ino, n("empty"), 0o755, 0).unwrap();
    fs.rename(&C, a.ino, n("sub"), b.ino, n("empty"), 0)
        .unwrap();
    assert_eq!(fs.getattr(a.ino).unwrap().nlink, 2);
    assert_eq!(fs.getattr(b.ino).unwrap().nlink, 3);
    let dots: Vec<_> = fs.readdir(sub.ino, 0, 0, 2).unwrap();
    assert_eq!(dots[1].ino, b.ino);
    // Directory into itself, dir over file, file over dir, over non-empty dir.
    assert!(matches!(
        fs.rename(&C, ROOT_INO, n("b"), sub.ino, n("x"), 0),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        fs.rename(&C, ROOT_INO, n("b"), a.ino, n("f3"), 0),
        Err(Error::NotDir)
    ));
    assert!(matches!(
        fs.rename(&C, a.ino, n("f3"), ROOT_INO, n("b"), 0),
        Err(Error::IsDir)
    ));
    fs.mkdir(&C, ROOT_INO, n("c"), 0o755, 0).unwrap();
    assert!(matches!(
        fs.rename(&C, ROOT_INO, n("c"), ROOT_INO, n("b"), 0),
        Err(Error::NotEmpty)
    ));
    fs.shutdown().unwrap();
}

#[test]
fn unlinked_open_file_stays_readable_until_release() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = Arc::new(MemChunks::new());
    let fs = open_fs(dir.path(), chunks.clone());
    let data = pseudo(100_000, 4);
    let (attr, fh) = fs
        .create(&C, ROOT_INO, n("f"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.write(attr.ino, fh, 0, &data).unwrap();
    fs.fsync(attr.ino, fh, false).unwrap();
    fs.unlink(&C, ROOT_INO, n("f")).unwrap();
    assert_same(&fs.read(attr.ino, fh, 0, 200_000).unwrap(), &data);
    fs.write(attr.ino, fh, 0, b"still writable").unwrap();
    assert_eq!(&fs.read(attr.ino, fh, 0, 14).unwrap(), b"still writable");
    assert!(!chunks.is_empty());
    fs.release(attr.ino, fh).unwrap();
    fs.forget(attr.ino, 1);
    assert!(matches!(fs.getattr(attr.ino), Err(Error::NotFound)));
    fs.sync_all().unwrap();
    assert_eq!(
        chunks.len(),
        0,
        "chunks of a deleted file are freed after the durable commit"
    );
    fs.shutdown().unwrap();
}

#[test]
fn dedup_stores_identical_files_once() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = Arc::new(MemChunks::new());
    let fs = open_fs(dir.path(), chunks.clone());
    let data = pseudo(500_000, 5);
    write_file(&fs, ROOT_INO, "a", &data);
    fs.sync_all().unwrap();
    let once = chunks.len();
    write_file(&fs, ROOT_INO, "b", &data);
    fs.sync_all().unwrap();
    assert_eq!(chunks.len(), once);
    let u = fs.usage().unwrap();
    assert_eq!(u.chunk_bytes, 500_000);
    fs.shutdown().unwrap();
}

#[test]
fn xattrs_with_flags() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_fs(dir.path(), Arc::new(MemChunks::new()));
    let f = write_file(&fs, ROOT_INO, "f", b"");
    fs.setxattr(&C, f, n("user.a"), b"1", 0).unwrap();
    assert!(matches!(
        fs.setxattr(&C, f, n("user.a"), b"2", libc::XATTR_CREATE),
        Err(Error::Exists)
    ));
    assert!(matches!(
        fs.setxattr(&C, f, n("user.b"), b"2", libc::XATTR_REPLACE),
        Err(Error::NoXattr)
    ));
    fs.setxattr(&C, f, n("user.a"), b"3", libc::XATTR_REPLACE)
        .unwrap();
    fs.setxattr(&C, f, n("trusted.t"), b"t", 0).unwrap();
    assert_eq!(fs.getxattr(&C, f, n("user.a")).unwrap(), b"3");
    assert_eq!(fs.listxattr(&C, f).unwrap(), b"trusted.t\0user.a\0");
    assert!(matches!(
        fs.getxattr(&USER, f, n("trusted.t")),
        Err(Error::NoXattr)
    ));
    fs.removexattr(&C, f, n("user.a")).unwrap();
    assert!(matches!(
        fs.removexattr(&C, f, n("user.a")),
        Err(Error::NoXattr)
    ));
    assert!(matches!(
        fs.setxattr(&C, f, n("bogus.x"), b"", 0),
        Err(Error::NotSupported)
    ));
    fs.shutdown().unwrap();
}

#[test]
fn permissions_when_the_core_checks() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_fs(dir.path(), Arc::new(MemChunks::new()));
    let d = fs.mkdir(&C, ROOT_INO, n("d"), 0o755, 0).unwrap();
    assert!(matches!(
        fs.create(&USER, d.ino, n("x"), 0o644, 0, libc::O_RDWR),
        Err(Error::Access)
    ));
    let f = write_file(&fs, d.ino, "secret", b"s");
    fs.setattr(
        &C,
        f,
        &SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        fs.open(&USER, f, libc::O_RDONLY),
        Err(Error::Access)
    ));
    assert!(matches!(
        fs.access(&USER, f, libc::R_OK),
        Err(Error::Access)
    ));
    assert!(matches!(
        fs.setattr(
            &USER,
            f,
            &SetAttr {
                mode: Some(0o777),
                ..Default::default()
            }
        ),
        Err(Error::Perm)
    ));
    // Sticky directory: a user may not remove another user's file.
    let t = fs.mkdir(&C, ROOT_INO, n("tmp"), 0o1777, 0).unwrap();
    write_file(&fs, t.ino, "rootfile", b"r");
    assert!(matches!(
        fs.unlink(&USER, t.ino, n("rootfile")),
        Err(Error::Perm)
    ));
    // utimens: UTIME_NOW for the owner, explicit time needs ownership.
    let (mine, fh) = fs
        .create(&USER, t.ino, n("mine"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.release(mine.ino, fh).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_000_000, 5);
    let a = fs
        .setattr(
            &USER,
            mine.ino,
            &SetAttr {
                mtime: Some(SetTime::At(when)),
                atime: Some(SetTime::Now),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(a.mtime, when);
    assert_eq!(a.uid, 1000);
    fs.shutdown().unwrap();
}

/// Under the kernel's writeback cache, the kernel resolves `O_APPEND` itself and flushes dirty pages with their
/// final offsets, in any order: the core must write where it is told, not at the current end of file.
#[test]
fn kernel_writeback_writes_append_handles_at_the_given_offset() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FsOptions {
        kernel_writeback: true,
        ..FsOptions::default()
    };
    let fs = Fs::start(Arc::new(MemChunks::new()), dir.path(), opts).unwrap();
    let ino = write_file(&fs, ROOT_INO, "log", &[b'a'; 10_000]);
    let fh = fs.open(&C, ino, libc::O_WRONLY | libc::O_APPEND).unwrap();
    // Two appended pages flushed out of order: the second page first.
    fs.write(ino, fh, 14_096, &[b'c'; 100]).unwrap();
    fs.write(ino, fh, 10_000, &[b'b'; 4096]).unwrap();
    // The kernel may read through a write-only handle to fill a partial page.
    assert_eq!(fs.read(ino, fh, 9_998, 4).unwrap(), b"aabb");
    fs.release(ino, fh).unwrap();
    let mut want = vec![b'a'; 10_000];
    want.extend_from_slice(&[b'b'; 4096]);
    want.extend_from_slice(&[b'c'; 100]);
    assert_same(&read_all(&fs, ino), &want);
    fs.shutdown().unwrap();
}

/// `security.capability` is looked up before every write, so it has a fast path; it must still see attributes
/// set during this mount and those stored by an earlier one.
#[test]
fn capability_xattr_fast_path_sees_every_capability() {
    let dir = tempfile::tempdir().unwrap();
    let chunks = Arc::new(MemChunks::new());
    let cap = n("security.capability");
    let (f, g) = {
        let fs = open_fs(dir.path(), Arc::clone(&chunks));
        let f = write_file(&fs, ROOT_INO, "f", b"x");
        let g = write_file(&fs, ROOT_INO, "g", b"y");
        assert!(matches!(fs.getxattr(&C, f, cap), Err(Error::NoXattr)));
        fs.setxattr(&C, f, cap, b"\x01\x00\x00\x02", 0).unwrap();
        assert_eq!(fs.getxattr(&C, f, cap).unwrap(), b"\x01\x00\x00\x02");
        assert!(matches!(fs.getxattr(&C, g, cap), Err(Error::NoXattr)));
        fs.shutdown().unwrap();
        (f, g)
    };
    let fs = open_fs(dir.path(), chunks);
    assert_eq!(
        fs.getxattr(&C, f, cap).unwrap(),
        b"\x01\x00\x00\x02",
        "after a restart"
    );
    assert!(matches!(fs.getxattr(&C, g, cap), Err(Error::NoXattr)));
    fs.removexattr(&C, f, cap).unwrap();
    assert!(matches!(fs.getxattr(&C, f, cap), Err(Error::NoXattr)));
    fs.shutdown().unwrap();
}

/// An in-memory store that keeps metadata snapshots, slowly (as disks do), so the snapshotter holds its lock a while.
struct SlowSnapshots(MemChunks);

impl valencefs::fs::Chunks for SlowSnapshots {
    fn chunk_id(&self, data: &[u8]) -> valencefs::store::ChunkId {
        self.0.chunk_id(data)
    }
    fn chunk_lengths(&self, data: &[u8]) -> Vec<usize> {
        self.0.chunk_lengths(data)
    }
    fn max_chunk_size(&self) -> usize {
        self.0.max_chunk_size()
    }
    fn put(&self, id: &valencefs::store::ChunkId, data: &[u8]) -> valencefs::Result<u64> {
        self.0.put(id, data)
    }
    fn get(&self, id: &valencefs::store::ChunkId) -> valencefs::Result<Vec<u8>> {
        self.0.get(id)
    }
    fn delete(&self, id: &valencefs::store::ChunkId) -> valencefs::Result<()> {
        self.0.delete(id)
    }
    fn sync(&self) -> valencefs::Result<()> {
        Ok(())
    }
    fn save_snapshot(
        &self,
        generation: u64,
        _db: &[u8],
        _previous: Option<valencefs::store::ChunkId>,
    ) -> valencefs::Result<Option<valencefs::store::ChunkId>> {
        std::thread::sleep(std::time::Duration::from_millis(30));
        Ok(Some(valencefs::store::ChunkId([generation as u8; 32])))
    }
}

/// fsync (durable commit, then marking the metadata snapshot stale) racing the committer's snapshot used to take
/// the snapshot lock and the put gate in opposite orders: the first msync under fsx hung the mount for good.
#[test]
fn fsync_does_not_deadlock_with_background_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FsOptions {
        commit_interval_secs: 1,
        snapshot_interval_secs: 0,
        ..Default::default()
    };
    let fs = Fs::start(Arc::new(SlowSnapshots(MemChunks::new())), dir.path(), opts).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = {
        let fs = fs.clone();
        std::thread::spawn(move || {
            let (a, fh) = fs
                .create(&C, ROOT_INO, n("f"), 0o644, 0, libc::O_RDWR)
                .unwrap();
            let start = std::time::Instant::now();
            let mut i = 0u64;
            while start.elapsed() < std::time::Duration::from_secs(4) {
                fs.write(a.ino, fh, (i % 64) * 512, &[i as u8; 512])
                    .unwrap();
                fs.fsync(a.ino, fh, false).unwrap();
                i += 1;
            }
            fs.release(a.ino, fh).unwrap();
            tx.send(i).unwrap();
        })
    };
    let done = rx.recv_timeout(std::time::Duration::from_secs(30));
    assert!(
        done.is_ok(),
        "write+fsync loop hung: lock-order deadlock with the snapshotter"
    );
    worker.join().unwrap();
    fs.shutdown().unwrap();
}

/// The kernel's xattr encoding of a POSIX ACL: (tag, perm, id) entries.
fn acl_xattr(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}
const ACL_USER_OBJ: u16 = 1;
const ACL_USER: u16 = 2;
const ACL_GROUP_OBJ: u16 = 4;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const NO_ID: u32 = u32::MAX;

/// Until something enforces ACLs (the FUSE adapter, when the kernel accepts FUSE_POSIX_ACL), setting one must
/// fail with EOPNOTSUPP rather than be stored and silently ignored.
#[test]
fn acls_refused_unless_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_fs(dir.path(), Arc::new(MemChunks::new()));
    let f = write_file(&fs, ROOT_INO, "f", b"");
    let a = acl_xattr(&[
        (ACL_USER_OBJ, 6, NO_ID),
        (ACL_USER, 6, 65534),
        (ACL_GROUP_OBJ, 4, NO_ID),
        (ACL_MASK, 6, NO_ID),
        (ACL_OTHER, 0, NO_ID),
    ]);
    let e = fs.setxattr(&C, f, n("system.posix_acl_access"), &a, 0);
    assert!(matches!(e, Err(Error::NotSupported)), "{e:?}");
    let e = fs.setxattr(&C, ROOT_INO, n("system.posix_acl_default"), &a, 0);
    assert!(matches!(e, Err(Error::NotSupported)), "{e:?}");
    assert_eq!(fs.listxattr(&C, f).unwrap(), b"");
    fs.shutdown().unwrap();
}

/// With ACLs on: an access ACL sets the mode's bits (and is not kept when the mode says it all), chmod rewrites the
/// mask, a default ACL is inherited by new nodes with the umask ignored, and without one the umask applies.
#[test]
fn acls_follow_mode_chmod_and_inheritance() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open_fs(dir.path(), Arc::new(MemChunks::new()));
    fs.enable_posix_acl();
    let access = n("system.posix_acl_access");
    let default = n("system.posix_acl_default");
    let f = write_file(&fs, ROOT_INO, "f", b"");
    let named = acl_xattr(&[
        (ACL_USER_OBJ, 6, NO_ID),
        (ACL_USER, 6, 65534),
        (ACL_GROUP_OBJ, 4, NO_ID),
        (ACL_MASK, 6, NO_ID),
        (ACL_OTHER, 0, NO_ID),
    ]);
    fs.setxattr(&C, f, access, &named, 0).unwrap();
    assert_eq!(fs.getattr(f).unwrap().perm, 0o660, "mask is the group bits");
    assert_eq!(fs.getxattr(&C, f, access).unwrap(), named);
    // chmod rewrites owner, mask and other entries; the named entry stays.
    let chmod = |mode| SetAttr {
        mode: Some(mode),
        ..Default::default()
    };
    fs.setattr(&C, f, &chmod(0o604)).unwrap();
    let after = fs.getxattr(&C, f, access).unwrap();
    assert_eq!(
        after,
        acl_xattr(&[
            (ACL_USER_OBJ, 6, NO_ID),
            (ACL_USER, 6, 65534),
            (ACL_GROUP_OBJ, 4, NO_ID),
            (ACL_MASK, 0, NO_ID),
            (ACL_OTHER, 4, NO_ID),
        ])
    );
    // An ACL equivalent to a mode only sets the mode.
    let minimal = acl_xattr(&[
        (ACL_USER_OBJ, 7, NO_ID),
        (ACL_GROUP_OBJ, 5, NO_ID),
        (ACL_OTHER, 1, NO_ID),
    ]);
    fs.setxattr(&C, f, access, &minimal, 0).unwrap();
    assert_eq!(fs.getattr(f).unwrap().perm, 0o751);
    assert!(matches!(fs.getxattr(&C, f, access), Err(Error::NoXattr)));
    // Malformed (named entry without a mask) and default ACLs on files are refused.
    let no_mask = acl_xattr(&[
        (ACL_USER_OBJ, 7, NO_ID),
        (ACL_USER, 6, 65534),
        (ACL_GROUP_OBJ, 5, NO_ID),
        (ACL_OTHER, 1, NO_ID),
    ]);
    assert!(fs.setxattr(&C, f, access, &no_mask, 0).is_err());
    assert!(matches!(
        fs.setxattr(&C, f, default, &named, 0),
        Err(Error::Access)
    ));
    // Inheritance: umask 077 ignored under a default ACL; a subdirectory inherits the default ACL too.
    let d = fs.mkdir(&C, ROOT_INO, n("d"), 0o755, 0o022).unwrap();
    let dflt = acl_xattr(&[
        (ACL_USER_OBJ, 7, NO_ID),
        (ACL_USER, 7, 65534),
        (ACL_GROUP_OBJ, 5, NO_ID),
        (ACL_MASK, 7, NO_ID),
        (ACL_OTHER, 0, NO_ID),
    ]);
    fs.setxattr(&C, d.ino, default, &dflt, 0).unwrap();
    let (nf, fh) = fs
        .create(&C, d.ino, n("nf"), 0o666, 0o077, libc::O_RDWR)
        .unwrap();
    fs.release(nf.ino, fh).unwrap();
    assert_eq!(nf.perm, 0o660);
    assert_eq!(
        fs.getxattr(&C, nf.ino, access).unwrap(),
        acl_xattr(&[
            (ACL_USER_OBJ, 6, NO_ID),
            (ACL_USER, 7, 65534),
            (ACL_GROUP_OBJ, 5, NO_ID),
            (ACL_MASK, 6, NO_ID),
            (ACL_OTHER, 0, NO_ID),
        ])
    );
    assert!(matches!(
        fs.getxattr(&C, nf.ino, default),
        Err(Error::NoXattr)
    ));
    let sub = fs.mkdir(&C, d.ino, n("sub"), 0o777, 0o077).unwrap();
    assert_eq!(sub.perm, 0o770);
    assert_eq!(fs.getxattr(&C, sub.ino, default).unwrap(), dflt);
    // No default ACL: the core applies the umask (the kernel leaves it to us with ACLs on).
    let plain = fs.mkdir(&C, ROOT_INO, n("plain"), 0o777, 0o027).unwrap();
    assert_eq!(plain.perm, 0o750);
    let node = fs
        .mknod(&C, ROOT_INO, n("fifo"), libc::S_IFIFO | 0o666, 0o022, 0)
        .unwrap();
    assert_eq!(node.perm, 0o644);
    // Only the owner may set an ACL.
    let e = fs.setxattr(&USER, f, access, &named, 0);
    assert!(matches!(e, Err(Error::Perm)), "{e:?}");
    fs.shutdown().unwrap();
}

/// A sequential writer under cache pressure stores each chunk once: a budget flush keeps its batch's trailing
/// partial chunk dirty instead of storing it and re-chunking it with the next batch, so the chunks stored are
/// exactly those of chunking the whole file in one pass, and the bytes read back.
#[test]
fn budget_flushes_store_each_chunk_of_a_stream_once() {
    use std::sync::atomic::Ordering;
    use valencefs::fs::Chunks;
    let dir = tempfile::tempdir().unwrap();
    let chunks = Arc::new(MemChunks::new());
    let opts = FsOptions {
        cache_size: 256 << 10,
        ..FsOptions::default()
    };
    let fs = Fs::start(chunks.clone(), dir.path(), opts).unwrap();
    let data = pseudo(16 << 20, 7);
    let (a, fh) = fs
        .create(&C, ROOT_INO, n("stream"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    for (i, piece) in data.chunks(64 << 10).enumerate() {
        fs.write(a.ino, fh, (i * (64 << 10)) as u64, piece).unwrap();
    }
    fs.fsync(a.ino, fh, false).unwrap();
    fs.release(a.ino, fh).unwrap();
    let one_pass = chunks.chunk_lengths(&data).len() as u64;
    let stored = fs.metrics().chunks_stored.load(Ordering::Relaxed);
    assert_eq!(
        stored, one_pass,
        "chunks stored vs chunks of the whole file"
    );
    assert_same(&read_all(&fs, a.ino), &data);
    fs.shutdown().unwrap();
}

/// The session thread's non-waiting write: it writes when the cache has room, declines (doing nothing) when the
/// write would have to wait for the flusher or the mount is `sync`, and reports errors like `write`.
#[test]
fn try_write_now_writes_or_declines_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FsOptions {
        cache_size: 1 << 20,
        ..FsOptions::default()
    };
    let fs = Fs::start(Arc::new(MemChunks::new()), dir.path(), opts).unwrap();
    let (a, fh) = fs
        .create(&C, ROOT_INO, n("f"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    let data = pseudo(600 << 10, 3);
    assert_eq!(
        fs.try_write_now(a.ino, fh, 0, &data, false)
            .unwrap()
            .unwrap(),
        data.len() as u32
    );
    // 600 KiB dirty + 600 KiB > the 1 MiB budget: declined, unless the flusher already made room.
    match fs.try_write_now(a.ino, fh, data.len() as u64, &data, false) {
        None => assert_eq!(fs.getattr(a.ino).unwrap().size, data.len() as u64),
        Some(r) => assert_eq!(r.unwrap(), data.len() as u32),
    }
    fs.write(a.ino, fh, data.len() as u64, &data).unwrap();
    assert!(matches!(
        fs.try_write_now(a.ino, fh + 100, 0, b"x", false),
        Some(Err(Error::BadHandle)) | None
    ));
    fs.release(a.ino, fh).unwrap();
    let want: Vec<u8> = [data.clone(), data].concat();
    assert_same(&read_all(&fs, a.ino), &want);
    fs.shutdown().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let opts = FsOptions {
        sync: true,
        ..FsOptions::default()
    };
    let fs = Fs::start(Arc::new(MemChunks::new()), dir.path(), opts).unwrap();
    let (a, fh) = fs
        .create(&C, ROOT_INO, n("s"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    assert!(
        fs.try_write_now(a.ino, fh, 0, b"x", false).is_none(),
        "sync mounts wait for durability"
    );
    fs.release(a.ino, fh).unwrap();
    fs.shutdown().unwrap();
}
