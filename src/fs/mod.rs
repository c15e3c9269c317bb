//! The protocol-neutral filesystem core: POSIX semantics over the metadata database and the chunk store.
//!
//! Every operation returns [`Result`]; the FUSE adapter only translates. Operations that hand an inode to the
//! kernel (`lookup`, `create`, `mkdir`, `mknod`, `symlink`, `link`) add one to that inode's lookup count, and
//! [`Fs::forget`] takes them away, following the kernel's contract: an unlinked inode lives until both its lookup
//! count and its open handles reach zero.
//!
//! Concurrency: one mutex guards the in-memory state and every metadata transaction; hashing, sealing, coding and
//! disk I/O happen outside it (flushes on a background thread, chunk reads in the caller's thread). The `put_gate`
//! orders chunk writes against durable commits: a flush holds it shared from "does this chunk exist?" to the commit
//! that references the chunk, and a durable commit holds it exclusively around `Chunks::sync` + redb commit, so a
//! durable transaction never references a shard that is not durable, and freeing a chunk never races a re-use.

mod acl;
mod cache;
mod file;
mod mem;
mod names;
mod perm;
mod recover;
mod state_dir;
mod types;
mod xattr;

pub use mem::MemChunks;
pub use recover::{forget_holds, recover_state, DisksRolledBack, Recovered};
pub use state_dir::ensure_private;
pub use types::*;

use crate::error::{Error, Result};
use crate::meta::{Inode, Meta, Time, Tx};
use crate::store::ChunkId;
pub use cache::BufPool;
use cache::{ChunkCache, DirtyMap};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the core needs from a chunk store. `crate::store::Store` implements it; tests may use [`MemChunks`].
pub trait Chunks: Send + Sync {
    /// Keyed content id of a chunk's plaintext.
    fn chunk_id(&self, data: &[u8]) -> ChunkId;
    /// Content-defined cut points: lengths of consecutive chunks covering `data`.
    fn chunk_lengths(&self, data: &[u8]) -> Vec<usize>;
    /// The first of `chunk_lengths(data)`; stores override it to stop scanning at the first cut.
    fn first_chunk_len(&self, data: &[u8]) -> usize {
        self.chunk_lengths(data).first().copied().unwrap_or(0)
    }
    /// The largest chunk `chunk_lengths` produces.
    fn max_chunk_size(&self) -> usize;
    /// Stores a chunk (idempotent); returns the bytes it occupies on disks. Durable only after [`Chunks::sync`].
    fn put(&self, id: &ChunkId, data: &[u8]) -> Result<u64>;
    /// [`Chunks::put`], also returning the chunk's stripe hash (all zero when this store keeps none).
    fn put_stripe(&self, id: &ChunkId, data: &[u8]) -> Result<(u64, [u8; 32])> {
        self.put(id, data).map(|b| (b, [0; 32]))
    }
    /// Reads a chunk back, verified.
    fn get(&self, id: &ChunkId) -> Result<Vec<u8>>;
    /// Removes a chunk's shards.
    fn delete(&self, id: &ChunkId) -> Result<()>;
    /// Makes every `put` that returned before this call durable.
    fn sync(&self) -> Result<()>;
    /// (total, free) bytes a user could store, after redundancy; `None` if unknown.
    fn space(&self) -> Option<(u64, u64)> {
        None
    }
    /// Whether [`Chunks::save_snapshot`] keeps snapshots: then freed chunks are held until no snapshot that
    /// `recover` could use names them (FORMAT.md §10); otherwise they are deleted at once.
    fn keeps_snapshots(&self) -> bool {
        false
    }
    /// The newest snapshot pointer on the disks: (generation, current snapshot chunk, previous snapshot chunk).
    fn snapshot_pointer(&self) -> Option<(u64, ChunkId, Option<ChunkId>)> {
        None
    }
    /// The newest snapshot generation any disk's pointer names, agreed on or not: the volume has been mounted
    /// and its metadata saved at least that far.
    fn newest_snapshot_generation(&self) -> Option<u64> {
        None
    }
    /// Stores a metadata snapshot (the redb file's bytes) durably on the disks; returns its chunk id, or `None`
    /// when this store keeps no snapshots.
    fn save_snapshot(
        &self,
        _generation: u64,
        _db: &[u8],
        _previous: Option<ChunkId>,
    ) -> Result<Option<ChunkId>> {
        Ok(None)
    }
    /// Live per-disk counters and redundancy, for metrics; `None` when this store has no disks.
    fn sample(&self) -> Option<crate::metrics::StoreSample> {
        None
    }
}

impl Chunks for crate::store::Store {
    fn chunk_id(&self, data: &[u8]) -> ChunkId {
        crate::store::Store::chunk_id(self, data)
    }
    fn chunk_lengths(&self, data: &[u8]) -> Vec<usize> {
        crate::store::Store::chunk_lengths(self, data)
    }
    fn first_chunk_len(&self, data: &[u8]) -> usize {
        crate::store::Store::first_chunk_len(self, data)
    }
    fn max_chunk_size(&self) -> usize {
        crate::store::Store::max_chunk_size(self)
    }
    fn put(&self, id: &ChunkId, data: &[u8]) -> Result<u64> {
        crate::store::Store::put(self, id, data)
    }
    fn put_stripe(&self, id: &ChunkId, data: &[u8]) -> Result<(u64, [u8; 32])> {
        crate::store::Store::put_stripe(self, id, data)
    }
    fn get(&self, id: &ChunkId) -> Result<Vec<u8>> {
        crate::store::Store::get(self, id)
    }
    fn delete(&self, id: &ChunkId) -> Result<()> {
        crate::store::Store::delete(self, id)
    }
    fn sync(&self) -> Result<()> {
        crate::store::Store::sync(self)
    }
    fn space(&self) -> Option<(u64, u64)> {
        crate::store::Store::space(self)
    }
    fn keeps_snapshots(&self) -> bool {
        true
    }
    fn snapshot_pointer(&self) -> Option<(u64, ChunkId, Option<ChunkId>)> {
        let pointers = self.snapshot_pointers();
        let p = *pointers.first()?;
        // Disks disagreeing on the newest generation (a crash or a failure mid-rewrite): no pointer to trust.
        if pointers
            .get(1)
            .is_some_and(|q| q.generation == p.generation)
        {
            return None;
        }
        Some((p.generation, p.current, p.previous))
    }
    fn newest_snapshot_generation(&self) -> Option<u64> {
        self.snapshot_pointers().first().map(|p| p.generation)
    }
    fn save_snapshot(
        &self,
        generation: u64,
        db: &[u8],
        previous: Option<ChunkId>,
    ) -> Result<Option<ChunkId>> {
        crate::store::Store::save_snapshot(self, generation, db, previous).map(Some)
    }
    fn sample(&self) -> Option<crate::metrics::StoreSample> {
        Some(crate::store::Store::sample(self))
    }
}

/// An open file or directory handle.
struct Handle {
    ino: Ino,
    flags: i32,
}

/// In-memory state of a regular file that is open or has unflushed data. Its `inode` is authoritative while it
/// exists: writes change size and times here first, and flushes and releases store it.
struct FileState {
    inode: Inode,
    dirty: DirtyMap,
    /// Data taken by the flush in progress: still visible to reads until the flush commits.
    flushing: Vec<(u64, Arc<Vec<u8>>)>,
    is_flushing: bool,
    opens: u32,
    /// Inode fields changed in memory and not yet stored.
    attr_dirty: bool,
    /// When the oldest unflushed write happened.
    dirty_since: Option<Instant>,
    /// File offset where the last budget flush stopped at a content-defined cut (its trailing partial chunk stayed
    /// dirty). The stored chunk ending there need not be re-chunked with the data after it.
    cdc_cut: Option<u64>,
}

impl FileState {
    fn new(inode: Inode) -> Self {
        FileState {
            inode,
            dirty: DirtyMap::default(),
            flushing: Vec::new(),
            is_flushing: false,
            opens: 0,
            attr_dirty: false,
            dirty_since: None,
            cdc_cut: None,
        }
    }

    fn idle(&self) -> bool {
        self.opens == 0 && self.dirty.is_empty() && !self.is_flushing
    }
}

struct Inner {
    meta: Meta,
    lookups: HashMap<Ino, u64>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    files: HashMap<Ino, FileState>,
    dirty_total: u64,
    /// Chunks whose last reference was dropped; freed after the next durable commit if still unreferenced.
    pending_free: Vec<ChunkId>,
    /// Non-durable commits exist.
    unsynced: bool,
    stopping: bool,
    /// Set when a background flush failed; writers then fail instead of waiting for space that will not come.
    flush_error: Option<file::FlushError>,
    /// `dirty_total`, readable without this lock (metrics).
    dirty_gauge: Arc<std::sync::atomic::AtomicU64>,
}

/// The filesystem. Shared as `Arc<Fs>`; every method takes `&self` and is safe to call from many threads.
pub struct Fs {
    inner: Mutex<Inner>,
    /// A flush's region buffer, kept between flushes (see `Fs::region_buffer`).
    region_scratch: Mutex<Vec<u8>>,
    /// Whole-extent buffers for streaming writers, reused between flushes.
    extent_pool: cache::BufPool,
    /// Buffers for write requests handed to a worker (the session reuses its own buffer for the next request).
    request_pool: cache::BufPool,
    /// Signalled when a flush ends or dirty bytes shrink.
    cond: Condvar,
    /// Wakes the background flusher.
    flusher_wake: Condvar,
    /// Wakes the background committer (at shutdown).
    committer_wake: Condvar,
    put_gate: RwLock<()>,
    chunks: Arc<dyn Chunks>,
    cache: Mutex<ChunkCache>,
    opts: FsOptions,
    threads: Mutex<Vec<JoinHandle<()>>>,
    snapshots: Mutex<SnapshotState>,
    /// Changes were committed durably since the last snapshot's image was taken. Set by `sync_durable` and
    /// cleared by `snapshot`, both under the exclusive put gate (an atomic, so `sync_durable` never waits for the
    /// snapshot lock, which `snapshot` holds while it waits for the gate).
    snapshot_stale: AtomicBool,
    /// Held chunks (FORMAT.md §10) of a generation below this are no longer named by any snapshot the disks'
    /// pointer names: the fallback of the newest snapshot, or the newest itself when it has none.
    release_below: AtomicU64,
    /// A snapshot was saved since held chunks were last looked at.
    held_due: AtomicBool,
    prefetch: Prefetch,
    metrics: crate::metrics::FsMetrics,
    /// Reads usage figures for metrics without the core's lock.
    meta_reader: crate::meta::MetaReader,
    usage_cache: Mutex<Option<(Instant, crate::metrics::UsageSample)>>,
    disk_totals: Mutex<DiskTotals>,
    /// Some inode has (or had, during this mount) a `security.capability` attribute. While none does, the
    /// kernel's lookup of it before every write is answered without the core's lock or the database.
    capability_xattrs: std::sync::atomic::AtomicBool,
    /// POSIX ACLs are kept and inherited (the kernel enforces them); off until [`Fs::enable_posix_acl`].
    posix_acl: std::sync::atomic::AtomicBool,
    /// Set at [`Fs::start`] when the disks' metadata pointers are older than this database's last snapshot.
    disks_rolled_back: std::sync::OnceLock<DisksRolledBack>,
}

/// Per-disk lifetime counters kept in the metadata database: what earlier mounts recorded, and the live values
/// last written on top of them.
struct DiskTotals {
    base: HashMap<(u64, String), u64>,
    written: Vec<[u64; 3]>,
}

/// Names of the per-disk counters persisted in the metadata database, in `DiskTotals::written` order.
pub const PERSISTED_DISK_COUNTERS: [&str; 3] = ["errors", "repairs", "degraded_reads"];

/// How long a usage figure (a walk over every inode) is reused by metrics.
const USAGE_TTL: Duration = Duration::from_secs(10);

/// Read-ahead of whole chunks: ids queued by readers, fetched into the read cache by background threads.
struct Prefetch {
    tx: Mutex<std::sync::mpsc::Sender<ChunkId>>,
    rx: Arc<Mutex<std::sync::mpsc::Receiver<ChunkId>>>,
    queued: Mutex<std::collections::HashSet<ChunkId>>,
    /// Signalled (with `queued`'s lock) whenever a queued chunk is done, so a reader that needs a chunk being
    /// fetched waits for it instead of reading it a second time.
    done: parking_lot::Condvar,
}

/// Where metadata snapshots stand: when the last was taken and the chunks of the last two saved (by this mount, or
/// named by the pointer of this database's last snapshot).
struct SnapshotState {
    last: Option<Instant>,
    /// The newest snapshot's chunk and generation: the pointer names it.
    current: Option<(ChunkId, u64)>,
    /// The one before it: the pointer names it as the fallback.
    previous: Option<ChunkId>,
}

/// Background read-ahead threads, and how many chunks past a sequential read they fetch.
const PREFETCH_THREADS: usize = 3;
pub(crate) const PREFETCH_CHUNKS: usize = 4;

/// Largest file offset accepted.
const MAX_FILE_SIZE: u64 = 1 << 60;
/// A flush stores at most about this much dirty data per round, bounding its extra memory.
const FLUSH_BATCH: u64 = 32 << 20;

/// Capacity of a pooled write-request buffer: the mount's largest write (`max_write`). Larger requests get their own.
pub const REQUEST_BUF: usize = 1 << 20;

pub(crate) fn now() -> Time {
    to_time(SystemTime::now())
}

pub(crate) fn to_time(t: SystemTime) -> Time {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Time {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let (mut sec, mut nsec) = (-(d.as_secs() as i64), d.subsec_nanos());
            if nsec > 0 {
                sec -= 1;
                nsec = 1_000_000_000 - nsec;
            }
            Time { sec, nsec }
        }
    }
}

fn to_system(t: Time) -> SystemTime {
    if t.sec >= 0 {
        UNIX_EPOCH + Duration::new(t.sec as u64, t.nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.sec.unsigned_abs()) + Duration::from_nanos(t.nsec as u64)
    }
}

impl Inner {
    /// The current record of `ino`: the in-memory one for open files, else the database's.
    fn inode(&self, tx: &mut Tx, ino: Ino) -> Result<Inode> {
        if let Some(f) = self.files.get(&ino) {
            return Ok(f.inode.clone());
        }
        tx.inode(ino)?.ok_or(Error::NotFound)
    }

    /// Stores an inode record, keeping an open file's in-memory copy in step.
    fn save(&mut self, tx: &mut Tx, inode: &Inode) -> Result<()> {
        if let Some(f) = self.files.get_mut(&inode.ino) {
            f.inode = inode.clone();
            f.attr_dirty = false;
        }
        tx.put_inode(inode)
    }

    fn attr(&self, inode: &Inode) -> Attr {
        let dirty = self
            .files
            .get(&inode.ino)
            .map(|f| f.dirty.bytes())
            .unwrap_or(0);
        Attr {
            ino: inode.ino,
            size: inode.size,
            blocks: (inode.data_bytes + dirty).div_ceil(512),
            atime: to_system(inode.atime),
            mtime: to_system(inode.mtime),
            ctime: to_system(inode.ctime),
            kind: FileKind::from_mode(inode.mode).unwrap_or(FileKind::File),
            perm: (inode.mode & 0o7777) as u16,
            nlink: inode.nlink,
            uid: inode.uid,
            gid: inode.gid,
            rdev: inode.rdev,
            generation: inode.generation,
        }
    }

    fn sync_dirty_gauge(&self) {
        self.dirty_gauge
            .store(self.dirty_total, std::sync::atomic::Ordering::Relaxed);
    }

    fn add_lookup(&mut self, ino: Ino) {
        *self.lookups.entry(ino).or_insert(0) += 1;
    }

    /// Deletes an inode whose last link, lookup and handle are gone, with its data references.
    fn maybe_reap(&mut self, tx: &mut Tx, ino: Ino) -> Result<()> {
        if ino == ROOT_INO || self.lookups.get(&ino).copied().unwrap_or(0) > 0 {
            return Ok(());
        }
        if let Some(f) = self.files.get(&ino) {
            if f.opens > 0 || f.is_flushing {
                return Ok(());
            }
        }
        let Some(inode) = (match self.files.get(&ino) {
            Some(f) => Some(f.inode.clone()),
            None => tx.inode(ino)?,
        }) else {
            return Ok(());
        };
        if inode.nlink > 0 {
            return Ok(());
        }
        if let Some(f) = self.files.remove(&ino) {
            self.dirty_total -= f.dirty.bytes();
            self.sync_dirty_gauge();
        }
        for e in tx.extents(ino, 0, u64::MAX)? {
            if let Some(id) = tx.remove_extent(ino, e.offset)? {
                self.pending_free.push(id);
            }
        }
        tx.delete_inode(ino)
    }

    /// An inode just lost its last link: reap it now or keep it as an orphan until its last user lets go.
    fn unlinked(&mut self, tx: &mut Tx, ino: Ino) -> Result<()> {
        self.maybe_reap(tx, ino)?;
        if tx.inode(ino)?.is_some() {
            tx.add_orphan(ino)?;
        }
        Ok(())
    }
}

impl Fs {
    /// Opens (creating on first use) the metadata database in `state_dir` over the given chunk store, and starts the
    /// background flusher and committer.
    ///
    /// Refuses a state directory that is missing or older than the metadata snapshot on the disks. Both happen when
    /// a machine is rebuilt (an fstab line restored without /var/lib, a backup of it restored): starting afresh
    /// would show an empty or outdated filesystem, reference chunks since deleted, and its first snapshot would
    /// replace the disks' pointer to the real metadata.
    pub fn start(chunks: Arc<dyn Chunks>, state_dir: &Path, opts: FsOptions) -> Result<Arc<Fs>> {
        let db_path = state_dir.join("meta.redb");
        let on_disks = chunks.newest_snapshot_generation();
        let absent = std::fs::metadata(&db_path).map_or(true, |m| m.len() == 0);
        if let (true, Some(g)) = (absent, on_disks) {
            return Err(Error::Volume(format!(
                "{} holds no metadata database, but the disks hold this volume's metadata (snapshot generation \
                 {g}): the state directory was lost, or the config names another one. Rebuild it from the disks \
                 with `valencefs recover` (valencefs-recover(8)); mounting as it is would show an empty volume",
                state_dir.display()
            )));
        }
        state_dir::ensure_private(state_dir)?;
        let meta = Meta::open(&db_path)?;
        let (own, recovered_at) = {
            let mut tx = meta.write()?;
            (
                tx.setting("snapshot_generation")?,
                tx.setting(recover::RECOVERED_AT)?,
            )
        };
        let local = own.max(recovered_at);
        if let Some(g) = on_disks.filter(|&g| local < g) {
            return Err(Error::Volume(format!(
                "{} is older than the metadata on the disks (snapshot generation {local}, the disks have {g}): it \
                 was restored from a backup, or another state directory has mounted these disks since. Files \
                 changed or deleted since would read wrong or fail. Move {} aside and rebuild it from the disks \
                 with `valencefs recover` (valencefs-recover(8))",
                db_path.display(),
                state_dir.display()
            )));
        }
        // The other way round — disks older than this database — is warned about, not refused. This database is
        // the newest metadata there is, and every chunk it names is verified when read (keyed ids, AEAD), so
        // rolled-back disks show as read errors, never as old contents; refusing would leave the owner only
        // `recover`, which restores exactly the rolled-back state. There are honest causes too: a crash, or too
        // few disks, while a snapshot was being saved (the generation is committed first). What a rollback does
        // endanger is a later `recover`, and the next snapshot (generation above both) rewrites the pointers.
        // Only `snapshot_generation` counts here: a recovered database's `recovered_at_generation` may exceed the
        // generations its own next snapshots take.
        let rolled_back =
            DisksRolledBack::check(own, on_disks).filter(|_| chunks.keeps_snapshots());
        if let Some(r) = rolled_back {
            tracing::warn!("{}", r.message(opts.read_only));
        }
        let fs = Fs::start_with_meta(chunks, meta, opts)?;
        if let Some(r) = rolled_back {
            let _ = fs.disks_rolled_back.set(r);
        }
        Ok(fs)
    }

    /// What [`Fs::start`] found when the disks' metadata pointers were older than this database (and warned
    /// about): `None` when they were not.
    pub fn disks_rolled_back(&self) -> Option<DisksRolledBack> {
        self.disks_rolled_back.get().copied()
    }

    /// Starts the filesystem over an already open metadata database.
    pub fn start_with_meta(
        chunks: Arc<dyn Chunks>,
        meta: Meta,
        opts: FsOptions,
    ) -> Result<Arc<Fs>> {
        let meta_reader = meta.reader();
        let metrics = crate::metrics::FsMetrics::default();
        let mut tx = meta.write()?;
        let base = tx
            .disk_counters()?
            .into_iter()
            .map(|(d, name, v)| ((d, name), v))
            .collect();
        if tx.inode(ROOT_INO)?.is_none() {
            // SAFETY: geteuid/getegid cannot fail and touch no memory.
            let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
            let root = Inode::new(ROOT_INO, libc::S_IFDIR | 0o755, ROOT_INO, uid, gid, now());
            tx.put_inode(&root)?;
        }
        let mut inner = Inner {
            meta,
            lookups: HashMap::new(),
            handles: HashMap::new(),
            next_fh: 1,
            files: HashMap::new(),
            dirty_total: 0,
            pending_free: Vec::new(),
            unsynced: false,
            stopping: false,
            flush_error: None,
            dirty_gauge: metrics.dirty_bytes.clone(),
        };
        // Inodes unlinked while open when the volume last stopped have no users now.
        for ino in tx.orphans()? {
            inner.maybe_reap(&mut tx, ino)?;
        }
        // Rows of chunks that lost their last reference before a stop are freed at the first durable commit.
        for (id, row) in tx.all_chunks()? {
            if row.refs == 0 {
                inner.pending_free.push(id);
            }
        }
        let capability_xattrs = tx.any_xattr_named(xattr::CAPABILITY)?;
        // The pointer this database's last snapshot wrote (same generation): its snapshots stay the fallback and
        // the one to delete next, as within one mount; otherwise the first snapshot starts afresh.
        let generation = tx.setting("snapshot_generation")?;
        let named = chunks
            .snapshot_pointer()
            .filter(|p| generation > 0 && p.0 == generation);
        tx.commit(true)?;
        let (ptx, prx) = std::sync::mpsc::channel();
        let fs = Arc::new(Fs {
            inner: Mutex::new(inner),
            cond: Condvar::new(),
            flusher_wake: Condvar::new(),
            region_scratch: Mutex::new(Vec::new()),
            extent_pool: cache::BufPool::for_extents(opts.cache_size),
            request_pool: cache::BufPool::new(REQUEST_BUF, 16),
            committer_wake: Condvar::new(),
            put_gate: RwLock::new(()),
            cache: Mutex::new(ChunkCache::new(opts.read_cache_size)),
            chunks,
            opts,
            threads: Mutex::new(Vec::new()),
            snapshots: Mutex::new(SnapshotState {
                last: None,
                current: named.map(|p| (p.1, p.0)),
                previous: named.and_then(|p| p.2),
            }),
            snapshot_stale: AtomicBool::new(true),
            release_below: AtomicU64::new(0),
            held_due: AtomicBool::new(false),
            prefetch: Prefetch {
                tx: Mutex::new(ptx),
                rx: Arc::new(Mutex::new(prx)),
                queued: Mutex::new(std::collections::HashSet::new()),
                done: parking_lot::Condvar::new(),
            },
            metrics,
            meta_reader,
            usage_cache: Mutex::new(None),
            capability_xattrs: capability_xattrs.into(),
            posix_acl: std::sync::atomic::AtomicBool::new(false),
            disks_rolled_back: std::sync::OnceLock::new(),
            disk_totals: Mutex::new(DiskTotals {
                base,
                written: Vec::new(),
            }),
        });
        for i in 0..PREFETCH_THREADS {
            let weak = Arc::downgrade(&fs);
            let rx = fs.prefetch.rx.clone();
            let t = std::thread::Builder::new()
                .name(format!("valencefs-readahead-{i}"))
                .spawn(move || prefetch_loop(weak, rx))
                .map_err(|e| Error::io("readahead thread", e))?;
            fs.threads.lock().push(t);
        }
        if !fs.opts.read_only {
            let weak = Arc::downgrade(&fs);
            let flusher = std::thread::Builder::new()
                .name("valencefs-flush".into())
                .spawn(move || file::flusher_loop(weak))
                .map_err(|e| Error::io("flusher thread", e))?;
            let weak = Arc::downgrade(&fs);
            let committer = std::thread::Builder::new()
                .name("valencefs-commit".into())
                .spawn(move || committer_loop(weak))
                .map_err(|e| Error::io("committer thread", e))?;
            fs.threads.lock().extend([flusher, committer]);
        }
        Ok(fs)
    }

    /// The options this filesystem runs with.
    pub fn options(&self) -> &FsOptions {
        &self.opts
    }

    /// Flushes all dirty data, commits durably and stops background threads. Called at unmount.
    pub fn shutdown(&self) -> Result<()> {
        let res = self.sync_all();
        if res.is_ok() {
            // The local database is durable already; a snapshot that cannot be placed (too few disks) only
            // widens the recovery window, so it is reported, not fatal to the unmount.
            if let Err(e) = self.snapshot(true) {
                tracing::warn!(
                    "metadata snapshot at unmount failed (the local state is durable): {e}"
                );
            }
        }
        self.inner.lock().stopping = true;
        self.flusher_wake.notify_all();
        self.committer_wake.notify_all();
        self.cond.notify_all();
        // Dropping the queue's sender wakes the readahead threads at once (they see it disconnected).
        *self.prefetch.tx.lock() = std::sync::mpsc::channel().0;
        let threads: Vec<_> = self.threads.lock().drain(..).collect();
        for t in threads {
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
        res
    }

    /// Makes everything written so far durable (syncfs).
    pub fn sync_all(&self) -> Result<()> {
        if self.opts.read_only {
            return Ok(());
        }
        let inos: Vec<Ino> = self.inner.lock().files.keys().copied().collect();
        for ino in inos {
            self.flush_file(ino, u64::MAX, false)?;
        }
        self.sync_durable()
    }

    /// Makes every committed change durable: chunk shards first, then the metadata that references them; then frees
    /// chunks whose last reference is now durably gone: at once when the store keeps no metadata snapshots, else
    /// into the `held` table, whose chunks are deleted once no snapshot `recover` could use names them.
    pub(crate) fn sync_durable(&self) -> Result<()> {
        let _gate = self.put_gate.write();
        let t0 = Instant::now();
        self.chunks.sync()?;
        let t_sync = t0.elapsed();
        let mut g = self.inner.lock();
        if let Err(e) = self.persist_disk_counters(&g) {
            tracing::warn!("recording disk error counters: {e}");
        }
        g.meta.commit_durable()?;
        tracing::debug!(
            "durable: disks synced in {:.1} ms, metadata in {:.1} ms",
            t_sync.as_secs_f64() * 1e3,
            (t0.elapsed() - t_sync).as_secs_f64() * 1e3
        );
        if g.unsynced {
            self.snapshot_stale.store(true, Ordering::SeqCst);
        }
        g.unsynced = false;
        let check_held = self.held_due.swap(false, Ordering::SeqCst);
        if g.pending_free.is_empty() && !check_held {
            return Ok(());
        }
        let pending = std::mem::take(&mut g.pending_free);
        let mut tx = g.meta.write()?;
        let hold = self.chunks.keeps_snapshots();
        // Snapshots up to this generation were taken before this commit and may name these chunks.
        let since = tx.setting("snapshot_generation")?;
        let mut freed = Vec::new();
        for id in pending {
            if let Some(row) = tx.forget_chunk_if_unused(&id)? {
                if hold {
                    tx.hold_chunk(&id, since, &row)?;
                } else {
                    freed.push(id);
                }
            }
        }
        if check_held {
            let below = self.release_below.load(Ordering::SeqCst);
            let mut left = false;
            for (id, held_since, _) in tx.all_held()? {
                if held_since < below {
                    tx.release_held(&id)?;
                    // Written again meanwhile (revived or stored anew): its row owns the shards now.
                    if tx.chunk(&id)?.is_none() {
                        freed.push(id);
                    }
                } else {
                    left = true;
                }
            }
            // Holds end only as snapshots move on, and a snapshot is taken only when something changed: ask for
            // the next one anyway, so an idle volume returns freed space within two intervals too.
            if left {
                self.snapshot_stale.store(true, Ordering::SeqCst);
            }
        }
        tx.commit(true)?;
        // Shards go only after the rows (and holds) are durably gone (FORMAT.md ordering rule); a crash here leaves
        // orphan shards that gc reclaims. Holding the gate and the lock keeps a concurrent flush from seeing the
        // chunk as absent and storing (or reviving) it again while its shards are being removed.
        let mut cache = self.cache.lock();
        for id in freed {
            cache.remove(&id);
            if let Err(e) = self.chunks.delete(&id) {
                tracing::warn!("freeing chunk {}: {e}", id.to_hex());
            }
        }
        Ok(())
    }

    /// Takes a metadata snapshot now (after making everything durable) if anything changed since the last one,
    /// whatever `snapshot_interval_secs` says.
    pub fn snapshot_now(&self) -> Result<()> {
        self.sync_all()?;
        self.snapshot(true)
    }

    /// Seals the metadata database onto the disks (promise 5: the volume survives losing this machine), when
    /// changes happened and the snapshot interval has passed, or always when `force`d (unmount). Then deletes the
    /// held chunks no snapshot the pointer names can reference any more.
    pub(crate) fn snapshot(&self, force: bool) -> Result<()> {
        if self.opts.read_only {
            return Ok(());
        }
        let mut snap = self.snapshots.lock();
        let due = snap.last.map_or(true, |t| {
            t.elapsed() >= Duration::from_secs(self.opts.snapshot_interval_secs)
        });
        if !self.snapshot_stale.load(Ordering::SeqCst) || !(force || due) {
            return Ok(());
        }
        let (generation, db) = {
            let _gate = self.put_gate.write();
            self.chunks.sync()?;
            let g = self.inner.lock();
            let mut tx = g.meta.write()?;
            let generation = tx.setting("snapshot_generation")? + 1;
            tx.set_setting("snapshot_generation", generation)?;
            // The integrity root travels inside the snapshot it describes (and stays in the local database, so
            // a later scrub can tell disks rolled back to an older generation).
            let integrity = tx.compute_integrity(generation)?;
            tx.set_integrity(&integrity)?;
            tx.commit(true)?;
            // The file now holds exactly the last durable commit; copy it while no commit can run.
            let db = g.meta.durable_image()?;
            self.snapshot_stale.store(false, Ordering::SeqCst);
            (generation, db)
        };
        let id = match self
            .chunks
            .save_snapshot(generation, &db, snap.current.map(|c| c.0))
        {
            Ok(Some(id)) => id,
            Ok(None) => {
                snap.last = Some(Instant::now());
                return Ok(());
            }
            Err(e) => {
                self.snapshot_stale.store(true, Ordering::SeqCst);
                return Err(e);
            }
        };
        // The pointer now names `id` and, as fallback, `snap.current`; the one before that can go, unless a file
        // happens to share its bytes.
        if let Some(old) = snap.previous.take() {
            if old != id && Some(old) != snap.current.map(|c| c.0) {
                let _gate = self.put_gate.write();
                let g = self.inner.lock();
                let mut tx = g.meta.write()?;
                if tx.chunk(&old)?.is_none() && tx.held_chunk(&old)?.is_none() {
                    let _ = self.chunks.delete(&old);
                }
            }
        }
        // The oldest generation a usable snapshot can now have: held chunks freed after it was taken (held since
        // a generation below it) are named by no snapshot `recover` would read.
        let oldest_named = snap.current.map_or(generation, |(_, g)| g);
        snap.previous = snap.current.replace((id, generation)).map(|c| c.0);
        snap.last = Some(Instant::now());
        drop(snap);
        self.release_below.fetch_max(oldest_named, Ordering::SeqCst);
        self.held_due.store(true, Ordering::SeqCst);
        self.sync_durable()
    }

    /// Ends a metadata transaction inside a flush, which holds the put gate: never durable here (a durable
    /// commit needs the gate exclusively); callers that promise durability sync after the flush.
    fn finish_grouped(&self, g: &mut MutexGuard<'_, Inner>, tx: Tx) -> Result<()> {
        tx.commit(false)?;
        g.unsynced = true;
        Ok(())
    }

    /// Ends a metadata transaction: durable at once when mounted `sync`, else grouped into the next durable commit.
    fn finish(&self, g: &mut MutexGuard<'_, Inner>, tx: Tx) -> Result<()> {
        if self.opts.sync {
            tx.commit(false)?;
            g.unsynced = true;
            return MutexGuard::unlocked(g, || self.sync_durable());
        }
        tx.commit(false)?;
        g.unsynced = true;
        Ok(())
    }

    /// Keeps POSIX ACLs (`system.posix_acl_access` / `_default`): setting one updates the mode, chmod updates it,
    /// and new nodes inherit a parent's default ACL, the umask then ignored. Only for a caller that enforces them:
    /// the FUSE adapter turns this on when the kernel accepts FUSE_POSIX_ACL. Until then setting an ACL fails with
    /// `EOPNOTSUPP`, never stored unenforced.
    pub fn enable_posix_acl(&self) {
        self.posix_acl
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn acls(&self) -> bool {
        self.posix_acl.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn writable(&self) -> Result<()> {
        if self.opts.read_only {
            return Err(Error::ReadOnly);
        }
        Ok(())
    }

    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let g = self.inner.lock();
        if let Some(f) = g.files.get(&ino) {
            return Ok(g.attr(&f.inode));
        }
        let mut tx = g.meta.write()?;
        let inode = tx.inode(ino)?.ok_or(Error::NotFound)?;
        Ok(g.attr(&inode))
    }

    pub fn forget(&self, ino: Ino, nlookup: u64) {
        let mut g = self.inner.lock();
        let left = match g.lookups.get_mut(&ino) {
            Some(n) => {
                *n = n.saturating_sub(nlookup);
                *n
            }
            None => return,
        };
        if left == 0 {
            g.lookups.remove(&ino);
            let res = (|| {
                let mut tx = g.meta.write()?;
                g.maybe_reap(&mut tx, ino)?;
                self.finish(&mut g, tx)
            })();
            if let Err(e) = res {
                tracing::warn!("forget {ino}: {e}");
            }
        }
    }

    pub fn statfs(&self) -> Result<StatFs> {
        let g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let totals = tx.totals()?;
        drop(tx);
        let bsize = 4096u64;
        let (total, free) = self
            .chunks
            .space()
            .unwrap_or((1 << 50, (1u64 << 50).saturating_sub(totals.chunk_bytes)));
        let files = totals.inodes;
        Ok(StatFs {
            blocks: total / bsize,
            bfree: free / bsize,
            bavail: free / bsize,
            files: files + (1 << 32),
            ffree: 1 << 32,
            bsize: bsize as u32,
            namelen: NAME_MAX as u32,
            frsize: bsize as u32,
        })
    }

    /// Reusable buffers for write requests that wait for a worker (emptied while the mount is idle).
    pub fn request_pool(&self) -> &BufPool {
        &self.request_pool
    }

    /// The core's live counters (the FUSE adapter records operations here).
    pub fn metrics(&self) -> &crate::metrics::FsMetrics {
        &self.metrics
    }

    /// Everything the metrics endpoint and `valencefs stats` show, except who is asking (mount point, pid and
    /// metrics address are left empty for the daemon to fill). Takes no lock the I/O path takes, except the disk
    /// state locks for a moment; usage comes from the last commit, refreshed at most every 10 s.
    pub fn stats(&self) -> crate::metrics::Snapshot {
        let (ops, io) = self.metrics.sample();
        let usage = {
            let mut cache = self.usage_cache.lock();
            match &*cache {
                Some((at, u)) if at.elapsed() < USAGE_TTL => Some(u.clone()),
                _ => match self.meta_reader.usage() {
                    Ok((t, files, logical)) => {
                        let u = crate::metrics::UsageSample {
                            files,
                            inodes: t.inodes,
                            logical_bytes: logical,
                            unique_chunk_bytes: t.chunk_bytes,
                            stored_bytes: t.stored_bytes,
                            dedup_ratio: if t.chunk_bytes == 0 {
                                1.0
                            } else {
                                logical as f64 / t.chunk_bytes as f64
                            },
                        };
                        *cache = Some((Instant::now(), u.clone()));
                        Some(u)
                    }
                    Err(e) => {
                        tracing::debug!("usage for metrics: {e}");
                        None
                    }
                },
            }
        };
        crate::metrics::Snapshot {
            mountpoint: String::new(),
            pid: std::process::id(),
            metrics_address: None,
            io,
            ops,
            usage,
            store: self.chunks.sample().map(|mut st| {
                let totals = self.disk_totals.lock();
                for d in &mut st.disks {
                    let base = |name: &str| {
                        totals
                            .base
                            .get(&(d.index as u64, name.to_string()))
                            .copied()
                            .unwrap_or(0)
                    };
                    let c = &d.counts;
                    d.lifetime = Some(crate::metrics::LifetimeCounts {
                        errors_seen: base("errors").saturating_add(c.errors),
                        repaired: base("repairs").saturating_add(c.repairs),
                        degraded_reads: base("degraded_reads").saturating_add(c.degraded_reads),
                    });
                }
                st
            }),
        }
    }

    /// The live per-disk values persisted as lifetime totals, in [`PERSISTED_DISK_COUNTERS`] order.
    fn live_disk_counters(&self) -> Vec<[u64; 3]> {
        self.chunks
            .sample()
            .map(|s| {
                s.disks
                    .iter()
                    .map(|d| [d.counts.errors, d.counts.repairs, d.counts.degraded_reads])
                    .collect()
            })
            .unwrap_or_default()
    }

    fn disk_counters_changed(&self) -> bool {
        !self.opts.read_only && self.live_disk_counters() != self.disk_totals.lock().written
    }

    /// Writes earlier mounts' totals plus this mount's counts into the open transaction when they changed, so
    /// the next durable commit records them (`valencefs status` shows them offline).
    fn persist_disk_counters(&self, g: &MutexGuard<'_, Inner>) -> Result<()> {
        let live = self.live_disk_counters();
        let mut totals = self.disk_totals.lock();
        if live == totals.written {
            return Ok(());
        }
        let mut tx = g.meta.write()?;
        for (disk, values) in live.iter().enumerate() {
            for (name, v) in PERSISTED_DISK_COUNTERS.iter().zip(values) {
                let base = totals
                    .base
                    .get(&(disk as u64, name.to_string()))
                    .copied()
                    .unwrap_or(0);
                tx.set_disk_counter(disk as u64, name, base.saturating_add(*v))?;
            }
        }
        drop(tx);
        totals.written = live;
        Ok(())
    }

    /// Logical bytes referenced, unique chunk bytes and bytes stored on disks (for status and tests).
    pub fn usage(&self) -> Result<crate::meta::Totals> {
        let g = self.inner.lock();
        let mut tx = g.meta.write()?;
        tx.totals()
    }
}

/// Fetches queued chunks into the read cache; ends when the filesystem stops.
fn prefetch_loop(fs: std::sync::Weak<Fs>, rx: Arc<Mutex<std::sync::mpsc::Receiver<ChunkId>>>) {
    loop {
        let id = match rx.lock().recv_timeout(Duration::from_millis(200)) {
            Ok(id) => id,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => match fs.upgrade() {
                Some(f) if !f.inner.lock().stopping => continue,
                _ => return,
            },
            Err(_) => return,
        };
        let Some(f) = fs.upgrade() else { return };
        if !f.cache.lock().contains(&id) {
            // Errors surface to the reader when it asks for the chunk itself.
            if let Ok(d) = f.chunks.get(&id) {
                f.cache.lock().insert(id, Arc::new(d));
            }
        }
        f.prefetch.queued.lock().remove(&id);
        f.prefetch.done.notify_all();
    }
}

/// Background durable commits every `commit_interval_secs` (and chunk freeing after them).
fn committer_loop(fs: std::sync::Weak<Fs>) {
    let mut last = Instant::now();
    loop {
        let Some(f) = fs.upgrade() else { return };
        {
            let mut g = f.inner.lock();
            if !g.stopping {
                f.committer_wake
                    .wait_for(&mut g, Duration::from_millis(100));
            }
            if g.stopping {
                return;
            }
            if last.elapsed() < Duration::from_secs(f.opts.commit_interval_secs.max(1)) {
                continue;
            }
            last = Instant::now();
            if !g.unsynced && g.pending_free.is_empty() && !f.disk_counters_changed() {
                drop(g);
                if let Err(e) = f.snapshot(false) {
                    tracing::error!("metadata snapshot failed: {e}");
                }
                continue;
            }
        }
        if let Err(e) = f.sync_durable().and_then(|_| f.snapshot(false)) {
            tracing::error!("background commit failed: {e}");
        }
    }
}
