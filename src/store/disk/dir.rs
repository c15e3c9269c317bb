//! Directory disk: objects are files under a root directory, written to a temp file and renamed into place.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use parking_lot::Mutex;
use rand::Rng;

use super::{check_name, read_limit, too_large, Disk, DiskStat};
use crate::error::{Error, Result};
use crate::store::format::{DISK_HEADER_NAME, SHARD_DIR};

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
    /// Directories whose entries changed (rename, unlink, mkdir) since the last `sync`.
    dirty_dirs: Mutex<HashSet<PathBuf>>,
    /// New shard files whose contents `sync` must still fsync.
    unsynced_files: Mutex<Vec<PathBuf>>,
    /// The filesystem (st_dev) the root was on when first seen.
    device: OnceLock<u64>,
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
    /// which the volume's redundancy absorbs.
    fn check_root(&self) -> Result<()> {
        let gone = |reason: &str| Error::BadDisk {
            disk: self.describe(),
            reason: reason.into(),
        };
        let meta = match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => m,
            _ => {
                return Err(gone(
                    "the disk directory is gone (removed, or its drive unmounted?)",
                ))
            }
        };
        let dev = *self.device.get_or_init(|| meta.dev());
        if dev != meta.dev() {
            return Err(gone(
                "the disk directory now lies on another filesystem (its drive unmounted?)",
            ));
        }
        Ok(())
    }

    fn map_err(&self, path: &Path, e: std::io::Error) -> Error {
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace {
                disk: self.describe(),
            },
            Some(libc::EROFS) => Error::ReadOnly,
            _ if e.kind() == ErrorKind::NotFound => Error::NotFound,
            _ => Error::io(path.display(), e),
        }
    }

    /// Creates `dir` and missing ancestors below the root, marking each new entry's parent dirty.
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            if parent != self.root && parent.starts_with(&self.root) {
                self.ensure_dir(parent)?;
            }
            match fs::create_dir(dir) {
                Ok(()) => {
                    self.dirty_dirs.lock().insert(parent.to_path_buf());
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.map_err(dir, e)),
            }
        }
        Ok(())
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.map_err(dir, e)),
        };
        for entry in rd {
            let entry = entry.map_err(|e| self.map_err(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relname = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ft = entry.file_type().map_err(|e| self.map_err(dir, e))?;
            if ft.is_dir() {
                self.walk(&entry.path(), &relname, out)?;
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

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
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

/// Fsyncs the contents of `files` on a few threads (the journal commits concurrent fsyncs together). A file
/// deleted meanwhile needs nothing. Returns the files that could not be synced, with the first error.
fn fsync_files(files: Vec<PathBuf>) -> Option<(Vec<PathBuf>, std::io::Error)> {
    const THREADS: usize = 8;
    let sync_one = |p: &PathBuf| match File::open(p).and_then(|f| f.sync_all()) {
        Err(e) if e.kind() != ErrorKind::NotFound => Some(e),
        _ => None,
    };
    let per = files.len().div_ceil(THREADS).max(16);
    let failures: Vec<(PathBuf, std::io::Error)> = std::thread::scope(|s| {
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
        check_name(name)?;
        let path = self.root.join(name);
        let dir = path
            .parent()
            .expect("object path has a parent")
            .to_path_buf();
        if name == DISK_HEADER_NAME {
            // Only the disk header brings a disk directory into being (volume creation, disk replacement).
            if !self.root.is_dir() {
                fs::create_dir_all(&self.root).map_err(|e| self.map_err(&self.root, e))?;
            }
        } else {
            self.check_root()?;
        }
        self.ensure_dir(&dir)?;
        let tmp = dir.join(format!(
            "{}.tmp-{:016x}",
            path.file_name().expect("file name").to_string_lossy(),
            rand::thread_rng().gen::<u64>()
        ));
        // See the durability argument on the type: only new shards wait for `sync`.
        let deferred = name.starts_with(SHARD_DIR) && !path.exists();
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            if deferred {
                start_writeback(&f);
            } else {
                f.sync_all()?;
            }
            fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            // Never leave the temp file behind (it would hold space on a full disk).
            let _ = fs::remove_file(&tmp);
            return Err(self.map_err(&path, e));
        }
        if deferred {
            self.unsynced_files.lock().push(path);
        }
        self.dirty_dirs.lock().insert(dir);
        Ok(())
    }

    fn get_limited(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        check_name(name)?;
        let path = self.root.join(name);
        let limit = read_limit(max);
        // O_NONBLOCK: a FIFO planted under an object's name must not hang the open (it is then refused below).
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
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

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let path = self.root.join(name);
        match fs::remove_file(&path) {
            Ok(()) => {
                self.dirty_dirs
                    .lock()
                    .insert(path.parent().expect("parent").to_path_buf());
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
        let mut out = Vec::new();
        self.walk(&self.root.join(base), base, &mut out)?;
        out.retain(|n| n.starts_with(prefix));
        Ok(out)
    }

    fn sync(&self) -> Result<()> {
        // File contents first, then the directory entries that name them.
        let files = std::mem::take(&mut *self.unsynced_files.lock());
        if let Some((left, e)) = fsync_files(files) {
            // Keep them for a retry; the directories stay dirty too.
            let p = left[0].clone();
            self.unsynced_files.lock().extend(left);
            return Err(self.map_err(&p, e));
        }
        let dirs: Vec<PathBuf> = self.dirty_dirs.lock().drain().collect();
        let mut first_err = None;
        for (i, d) in dirs.iter().enumerate() {
            if let Err(e) = fsync_dir(d) {
                if e.kind() == ErrorKind::NotFound {
                    continue;
                }
                // Keep the rest dirty so a retry syncs them again.
                self.dirty_dirs.lock().extend(dirs[i..].iter().cloned());
                first_err = Some(self.map_err(d, e));
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
        let writable = File::create(&probe).is_ok();
        let _ = fs::remove_file(&probe);
        DiskStat {
            present: true,
            writable,
        }
    }
}
