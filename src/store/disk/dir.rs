//! Directory disk: objects are files under a root directory, written to a temp file and renamed into place.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use parking_lot::Mutex;
use rand::Rng;

use super::{beneath, check_name, read_limit, too_large, Disk, DiskStat};
use crate::error::{Error, Result};
use crate::store::format::{DISK_HEADER_NAME, SHARD_DIR, STRIPE_DIR};

/// A [`Disk`] backed by a directory.
///
/// Durability argument. Named objects that are replaced in place (the disk header, the snapshot pointer) and
/// any object that already exists are fsynced *before* the rename, so their name only ever points at complete
/// bytes, even after a crash. A *new* shard is renamed into place with its writeback merely started
/// (`sync_file_range`), and fsynced by the next `sync`, many at once: one fsync per shard at put time was the
/// write path's largest wait. A power cut before that `sync` can leave such a shard torn, which is safe because
/// nothing durable names it yet (the metadata that references a chunk commits only after `Store::sync`) and
/// every shard verifies itself (payload hash in its header), so a torn one reads as missing. `sync` then fsyncs
/// every directory touched since the previous `sync` (per-file fsync plus batched directory fsync; unlike
/// `syncfs` it does not flush unrelated files on a shared filesystem, and it reports errors for exactly our
/// files).
pub struct DirDisk {
    root: PathBuf,
    /// Directories (relative to the root, `""` = the root) whose entries changed (rename, unlink, mkdir) since
    /// the last `sync`.
    dirty_dirs: Mutex<HashSet<String>>,
    /// New shard files (object names) whose contents `sync` must still fsync.
    unsynced_files: Mutex<Vec<String>>,
    /// The filesystem (st_dev) the root was on when first seen.
    device: OnceLock<u64>,
}

/// Open flags of a directory looked up beneath the root.
const DIR_FLAGS: libc::c_int = libc::O_RDONLY | libc::O_DIRECTORY;

/// (directory part, file name) of an object name (`""` for an object at the root).
fn split_name(name: &str) -> (&str, &str) {
    name.rsplit_once('/').unwrap_or(("", name))
}

impl DirDisk {
    pub fn new(root: &Path) -> DirDisk {
        DirDisk {
            root: root.to_path_buf(),
            dirty_dirs: Mutex::new(HashSet::new()),
            unsynced_files: Mutex::new(Vec::new()),
            device: fs::metadata(root)
                .ok()
                .map(|m| m.dev())
                .map_or_else(OnceLock::new, OnceLock::from),
        }
    }

    /// Refuses to write into a disk directory that vanished, or that now lies on another filesystem, under a
    /// running volume (a drive unmounted beneath its mount point, a directory removed). Recreating or filling it
    /// would scatter shards over whatever filesystem now lies there; refusing makes the disk fail like a dead one,
    /// which the volume's redundancy absorbs. Returns the opened root.
    fn checked_root(&self) -> Result<File> {
        let gone = |reason: &str| Error::BadDisk {
            disk: self.describe(),
            reason: reason.into(),
        };
        let vanished = "the disk directory is gone (removed, or its drive unmounted?)";
        let root = match self.open_root() {
            Ok(r) => r,
            Err(e)
                if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
            {
                return Err(gone(vanished))
            }
            Err(e) => return Err(self.map_err(&self.root, e)),
        };
        let meta = root.metadata().map_err(|e| self.map_err(&self.root, e))?;
        let dev = *self.device.get_or_init(|| meta.dev());
        if dev != meta.dev() {
            return Err(gone(
                "the disk directory now lies on another filesystem (its drive unmounted?)",
            ));
        }
        Ok(root)
    }

    /// The root directory, opened. The root path itself is the administrator's and may be a symlink; every path
    /// beneath it is resolved without following any (`beneath`).
    fn open_root(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&self.root)
    }

    fn map_err(&self, path: &Path, e: std::io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace {
                disk: self.describe(),
            },
            Some(libc::EROFS) => Error::ReadOnly,
            // What `beneath` answers for a symlink on the path (ENOTDIR: one where a directory is opened).
            Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::ENOTDIR) => Error::BadDisk {
                disk: self.describe(),
                reason: format!(
                    "{}: a symbolic link (or a file where a directory belongs) on the path; directory disks \
                     never follow links",
                    path.display()
                ),
            },
            _ if e.kind() == ErrorKind::NotFound => Error::NotFound,
            _ => Error::io(path.display(), e),
        }
    }

    /// Opens directory `rel` beneath `root`, creating it and missing ancestors, each new entry's parent marked
    /// dirty.
    fn ensure_dir(&self, root: &File, rel: &str) -> Result<File> {
        let path = || self.root.join(rel);
        match beneath::open(root, rel, DIR_FLAGS, 0) {
            Ok(d) => return Ok(d),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(self.map_err(&path(), e)),
        }
        let mut cur = root.try_clone().map_err(|e| self.map_err(&self.root, e))?;
        let mut cur_rel = String::new();
        for comp in rel.split('/') {
            match beneath::mkdir(&cur, comp, 0o777) {
                Ok(()) => {
                    self.dirty_dirs.lock().insert(cur_rel.clone());
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.map_err(&path(), e)),
            }
            cur = beneath::open(&cur, comp, DIR_FLAGS, 0).map_err(|e| self.map_err(&path(), e))?;
            if !cur_rel.is_empty() {
                cur_rel.push('/');
            }
            cur_rel.push_str(comp);
        }
        Ok(cur)
    }

    fn walk(&self, dir: &File, rel: &str, out: &mut Vec<String>) -> Result<()> {
        let path = || self.root.join(rel);
        let entries = beneath::entries(dir).map_err(|e| self.map_err(&path(), e))?;
        for (name, is_dir) in entries {
            let name = name.to_string_lossy().into_owned();
            let relname = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if is_dir {
                match beneath::open(dir, &name, DIR_FLAGS, 0) {
                    Ok(sub) => self.walk(&sub, &relname, out)?,
                    // Removed meanwhile.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(self.map_err(&self.root.join(&relname), e)),
                }
            } else if !name.contains(".tmp-") {
                out.push(relname);
            }
        }
        Ok(())
    }
}

/// The contents of the regular file `f` if it holds at most `limit` bytes, else `Err(size)`. The size comes from
/// fstat before any allocation, and the read stops at `limit + 1` bytes in case the file grows meanwhile.
/// Something other than a regular file is an `InvalidData` error.
fn read_limited(f: &File, limit: u64) -> std::io::Result<std::result::Result<Vec<u8>, u64>> {
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(ErrorKind::InvalidData.into());
    }
    if meta.len() > limit {
        return Ok(Err(meta.len()));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    f.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Ok(Err(limit + 1));
    }
    Ok(Ok(data))
}

/// Starts writing `f`'s dirty pages back without waiting for them, so a later fsync has little left to do.
fn start_writeback(f: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor; the call only schedules I/O. An error here is harmless: the fsync in
    // `sync` writes and reports.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Fsyncs the contents of the objects `files` beneath `root` on a few threads (the journal commits concurrent
/// fsyncs together). A file deleted meanwhile needs nothing. Returns the files that could not be synced, with
/// the first error.
fn fsync_files(root: &File, files: Vec<String>) -> Option<(Vec<String>, std::io::Error)> {
    const THREADS: usize = 8;
    let sync_one = |name: &String| match beneath::open(root, name, libc::O_RDONLY, 0)
        .and_then(|f| f.sync_all())
    {
        Err(e) if e.kind() != ErrorKind::NotFound => Some(e),
        _ => None,
    };
    let per = files.len().div_ceil(THREADS).max(16);
    let failures: Vec<(String, std::io::Error)> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|p| sync_one(p).map(|e| (p.clone(), e)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("fsync thread panicked"))
            .collect()
    });
    let mut failures = failures.into_iter();
    let (first, err) = failures.next()?;
    Some((
        std::iter::once(first)
            .chain(failures.map(|(p, _)| p))
            .collect(),
        err,
    ))
}

impl Disk for DirDisk {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        self.put_parts(name, &[data])
    }

    fn put_parts(&self, name: &str, parts: &[&[u8]]) -> Result<()> {
        check_name(name)?;
        let path = self.root.join(name);
        let root = if name == DISK_HEADER_NAME {
            // Only the disk header brings a disk directory into being (volume creation, disk replacement).
            if !self.root.is_dir() {
                fs::create_dir_all(&self.root).map_err(|e| self.map_err(&self.root, e))?;
            }
            self.open_root().map_err(|e| self.map_err(&self.root, e))?
        } else {
            self.checked_root()?
        };
        let (dir_rel, file) = split_name(name);
        let dir = self.ensure_dir(&root, dir_rel)?;
        let tmp = format!("{file}.tmp-{:016x}", rand::thread_rng().gen::<u64>());
        // See the durability argument on the type: only new shards wait for `sync`.
        let deferred = (name.starts_with(SHARD_DIR) || name.starts_with(STRIPE_DIR))
            && !beneath::exists(&dir, file).map_err(|e| self.map_err(&path, e))?;
        let write = || -> std::io::Result<()> {
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
            let mut f = beneath::open(&dir, &tmp, flags, 0o666)?;
            for part in parts {
                f.write_all(part)?;
            }
            if deferred {
                start_writeback(&f);
            } else {
                f.sync_all()?;
            }
            beneath::rename(&dir, &tmp, file)
        };
        if let Err(e) = write() {
            // Never leave the temp file behind (it would hold space on a full disk).
            let _ = beneath::unlink(&dir, &tmp);
            return Err(self.map_err(&path, e));
        }
        if deferred {
            self.unsynced_files.lock().push(name.to_string());
        }
        self.dirty_dirs.lock().insert(dir_rel.to_string());
        Ok(())
    }

    fn get_limited(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        check_name(name)?;
        let path = self.root.join(name);
        let limit = read_limit(max);
        let root = self.open_root().map_err(|e| self.map_err(&self.root, e))?;
        // O_NONBLOCK: a FIFO planted under an object's name must not hang the open (it is then refused below).
        let f = beneath::open(&root, name, libc::O_RDONLY | libc::O_NONBLOCK, 0)
            .map_err(|e| self.map_err(&path, e))?;
        match read_limited(&f, limit) {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(len)) => Err(too_large(&self.describe(), name, len, limit)),
            Err(e) if e.kind() == ErrorKind::InvalidData => Err(Error::Corrupt(format!(
                "{}: object {name} is not a regular file",
                self.describe()
            ))),
            Err(e) => Err(self.map_err(&path, e)),
        }
    }

    fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        check_name(name)?;
        let path = self.root.join(name);
        let root = self.open_root().map_err(|e| self.map_err(&self.root, e))?;
        let f = beneath::open(&root, name, libc::O_RDONLY | libc::O_NONBLOCK, 0)
            .map_err(|e| self.map_err(&path, e))?;
        let meta = f.metadata().map_err(|e| self.map_err(&path, e))?;
        if !meta.is_file() {
            return Err(Error::Corrupt(format!(
                "{}: object {name} is not a regular file",
                self.describe()
            )));
        }
        // Sized from the file as it is now, so a sparse giant costs only what is asked for.
        let want = len
            .min(super::MAX_OBJECT_LEN)
            .min(meta.len().saturating_sub(offset)) as usize;
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.map_err(&path, e)),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let path = self.root.join(name);
        let (dir_rel, file) = split_name(name);
        let unlinked = self
            .open_root()
            .and_then(|root| beneath::open(&root, dir_rel, DIR_FLAGS, 0))
            .and_then(|dir| beneath::unlink(&dir, file));
        match unlinked {
            Ok(()) => {
                self.dirty_dirs.lock().insert(dir_rel.to_string());
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.map_err(&path, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let base = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        if !base.is_empty() {
            check_name(base)?;
        }
        let dir = self
            .open_root()
            .and_then(|root| beneath::open(&root, base, DIR_FLAGS, 0));
        let dir = match dir {
            Ok(d) => d,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.map_err(&self.root.join(base), e)),
        };
        let mut out = Vec::new();
        self.walk(&dir, base, &mut out)?;
        out.retain(|n| n.starts_with(prefix));
        Ok(out)
    }

    fn sync(&self) -> Result<()> {
        let root = match self.open_root() {
            Ok(r) => r,
            // Nothing of ours is left to make durable.
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.map_err(&self.root, e)),
        };
        // File contents first, then the directory entries that name them.
        let files = std::mem::take(&mut *self.unsynced_files.lock());
        if let Some((left, e)) = fsync_files(&root, files) {
            // Keep them for a retry; the directories stay dirty too.
            let p = self.root.join(&left[0]);
            self.unsynced_files.lock().extend(left);
            return Err(self.map_err(&p, e));
        }
        let dirs: Vec<String> = self.dirty_dirs.lock().drain().collect();
        let mut first_err = None;
        for (i, d) in dirs.iter().enumerate() {
            if let Err(e) = beneath::open(&root, d, DIR_FLAGS, 0).and_then(|f| f.sync_all()) {
                if e.kind() == ErrorKind::NotFound {
                    continue;
                }
                // Keep the rest dirty so a retry syncs them again.
                self.dirty_dirs.lock().extend(dirs[i..].iter().cloned());
                first_err = Some(self.map_err(&self.root.join(d), e));
                break;
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn space(&self) -> Option<(u64, u64)> {
        let path = std::ffi::CString::new(self.root.as_os_str().as_encoded_bytes()).ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid NUL-terminated string and `st` a valid out-pointer.
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return None;
        }
        let frsize = st.f_frsize as u64;
        Some((st.f_blocks as u64 * frsize, st.f_bavail as u64 * frsize))
    }

    fn stat(&self) -> DiskStat {
        if !self.root.is_dir() {
            return DiskStat {
                present: false,
                writable: false,
            };
        }
        let probe = self.root.join(format!(
            ".probe.tmp-{:016x}",
            rand::thread_rng().gen::<u64>()
        ));
        let writable = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .is_ok();
        let _ = fs::remove_file(&probe);
        DiskStat {
            present: true,
            writable,
        }
    }
}
