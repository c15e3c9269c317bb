//! File data: open/read/write/release, truncate and hole punching, and the flush that turns dirty ranges into chunks.
//!
//! A flush takes a batch of a file's dirty ranges, widens each to the stored extents it overlaps (and the one that
//! ends where it starts, so appends re-chunk the previous tail and cut points stay content-defined), re-chunks that
//! region, stores new chunks outside the lock, then swaps the extents in one metadata transaction.

use super::perm::{self, R, W};
use super::*;
use crate::meta::Extent;
use crate::metrics::FsMetrics as FsMetricsAdd;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

impl Fs {
    pub fn open(&self, ctx: &Ctx, ino: Ino, flags: i32) -> Result<u64> {
        self.open_inner(ctx, ino, flags, true)
    }

    fn open_inner(&self, ctx: &Ctx, ino: Ino, flags: i32, check: bool) -> Result<u64> {
        let acc = flags & libc::O_ACCMODE;
        let wants_write = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if wants_write {
            self.writable()?;
        }
        let fh = {
            let mut g = self.inner.lock();
            let mut tx = g.meta.write()?;
            let inode = g.inode(&mut tx, ino)?;
            if inode.is_dir() && wants_write {
                return Err(Error::IsDir);
            }
            if check {
                let mut mask = 0;
                if acc == libc::O_RDONLY || acc == libc::O_RDWR {
                    mask |= R;
                }
                if wants_write {
                    mask |= W;
                }
                perm::check(self.opts.check_permissions, ctx, &inode, mask)?;
            }
            let fh = g.next_fh;
            g.next_fh += 1;
            g.handles.insert(fh, Handle { ino, flags });
            if inode.is_file() {
                g.files
                    .entry(ino)
                    .or_insert_with(|| FileState::new(inode))
                    .opens += 1;
            }
            fh
        };
        if flags & libc::O_TRUNC != 0 && acc != libc::O_RDONLY {
            if let Err(e) = self.truncate(ctx, ino, 0) {
                let _ = self.release(ino, fh);
                return Err(e);
            }
        }
        Ok(fh)
    }

    /// Creates and opens a regular file; adds a lookup like `lookup`.
    pub fn create(
        &self,
        ctx: &Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(Attr, u64)> {
        let attr = self.mknod(ctx, parent, name, libc::S_IFREG | (mode & 0o7777), umask, 0)?;
        let fh = self.open_inner(ctx, attr.ino, flags & !libc::O_TRUNC, false)?;
        Ok((attr, fh))
    }

    /// Queues a chunk for the background prefetchers unless it is cached or already queued.
    fn prefetch(&self, id: ChunkId) {
        if self.cache.lock().contains(&id) {
            return;
        }
        if self.prefetch.queued.lock().insert(id) {
            let _ = self.prefetch.tx.lock().send(id);
        }
    }

    /// A chunk's plaintext, from the read cache or the store.
    fn chunk(&self, id: &ChunkId) -> Result<Arc<Vec<u8>>> {
        if let Some(d) = self.cache.lock().get(id) {
            FsMetricsAdd::add(&self.metrics.cache_hits, 1);
            return Ok(d);
        }
        // Being fetched by read-ahead: wait for it rather than read it twice (bounded, in case it is slow).
        {
            let mut q = self.prefetch.queued.lock();
            let deadline = Instant::now() + Duration::from_secs(5);
            while q.contains(id) && Instant::now() < deadline {
                self.prefetch.done.wait_until(&mut q, deadline);
            }
        }
        if let Some(d) = self.cache.lock().get(id) {
            FsMetricsAdd::add(&self.metrics.cache_hits, 1);
            return Ok(d);
        }
        FsMetricsAdd::add(&self.metrics.cache_misses, 1);
        let d = Arc::new(self.chunks.get(id)?);
        self.cache.lock().insert(*id, d.clone());
        Ok(d)
    }

    /// Reads up to `size` bytes at `offset` (short only at end of file).
    pub fn read(&self, ino: Ino, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        match self.read_once(ino, fh, offset, size) {
            // A chunk freed between taking the extent list and reading it: the next snapshot no longer names it.
            Err(Error::Unrecoverable { .. }) | Err(Error::NotFound) => {
                self.read_once(ino, fh, offset, size)
            }
            r => r,
        }
    }

    fn read_once(&self, ino: Ino, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let (extents, flushing, dirty, len) = {
            let mut g = self.inner.lock();
            if !g.handles.contains_key(&fh) {
                return Err(Error::BadHandle);
            }
            let mut tx = g.meta.write()?;
            let inode = g.inode(&mut tx, ino)?;
            if inode.is_dir() {
                return Err(Error::IsDir);
            }
            if offset >= inode.size {
                return Ok(Vec::new());
            }
            let len = (inode.size - offset).min(size as u64) as usize;
            let end = offset + len as u64;
            let extents = tx.extents(ino, offset, end)?;
            // Sequential readers get the next chunks fetched in the background while they consume this one.
            if end < inode.size {
                let ahead = super::PREFETCH_CHUNKS as u64 * self.chunks.max_chunk_size() as u64;
                for e in tx
                    .extents(ino, end, end + ahead)?
                    .iter()
                    .take(super::PREFETCH_CHUNKS)
                {
                    self.prefetch(e.chunk);
                }
            }
            drop(tx);
            let noatime = self.opts.noatime || self.opts.read_only;
            let f = g.files.get_mut(&ino);
            let (flushing, dirty) = match f {
                Some(f) => {
                    let mut d = vec![0u8; 0];
                    let ranges = f.dirty.ranges();
                    let mut dirty = Vec::new();
                    for (s, e) in ranges {
                        if e > offset && s < end {
                            let from = s.max(offset);
                            let to = e.min(end);
                            d.resize((to - from) as usize, 0);
                            f.dirty.overlay(from, &mut d);
                            dirty.push((from, std::mem::take(&mut d)));
                        }
                    }
                    // relatime: update atime when it is older than mtime/ctime or a day old.
                    if !noatime {
                        let t = now();
                        let i = &mut f.inode;
                        if i.atime <= i.mtime || i.atime <= i.ctime || t.sec - i.atime.sec >= 86400
                        {
                            i.atime = t;
                            f.attr_dirty = true;
                        }
                    }
                    (f.flushing.clone(), dirty)
                }
                None => (Vec::new(), Vec::new()),
            };
            (extents, flushing, dirty, len)
        };
        let mut buf = vec![0u8; len];
        self.overlay_extents(extents.iter(), offset, &mut buf)?;
        cache::overlay_ranges(
            flushing.iter().map(|(s, d)| (*s, d.as_slice())),
            offset,
            &mut buf,
        );
        cache::overlay_ranges(
            dirty.iter().map(|(s, d)| (*s, d.as_slice())),
            offset,
            &mut buf,
        );
        Ok(buf)
    }

    /// Writes `data` at `offset` (or at the end for handles opened with O_APPEND, unless the kernel's writeback
    /// cache placed the write: its offsets are final, and its page flushes may come in any order); returns bytes
    /// written.
    pub fn write(&self, ino: Ino, fh: u64, offset: u64, data: &[u8]) -> Result<u32> {
        self.write_with(ino, fh, offset, data, false)
    }

    /// [`Fs::write`] that also clears setuid, and setgid when group-executable, when `kill_suidgid`: the kernel
    /// asks for that (FUSE_WRITE_KILL_SUIDGID) on writes by callers without CAP_FSETID once the mount handles
    /// privilege killing itself (FUSE_HANDLE_KILLPRIV_V2).
    pub fn write_with(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        data: &[u8],
        kill_suidgid: bool,
    ) -> Result<u32> {
        self.writable()?;
        {
            let mut g = self.inner.lock();
            let budget = self.opts.cache_size;
            while g.dirty_total > 0 && g.dirty_total + data.len() as u64 > budget && !g.stopping {
                if let Some(e) = &g.flush_error {
                    return Err(e.to_error());
                }
                self.flusher_wake.notify_all();
                self.cond.wait_for(&mut g, Duration::from_millis(200));
            }
            self.write_locked(&mut g, ino, fh, offset, data, kill_suidgid)?;
        }
        if self.opts.sync {
            self.fsync(ino, fh, false)?;
        }
        Ok(data.len() as u32)
    }

    /// [`Fs::write_with`] if it can finish at once: the core lock is free, the write fits the cache budget and
    /// the mount is not `sync`. `None` means nothing was done; the caller then uses `write_with` on a thread that
    /// may wait. The FUSE session thread uses this to take a write straight from the kernel's request buffer (no
    /// copy, no hand-over to a worker).
    pub fn try_write_now(
        &self,
        ino: Ino,
        fh: u64,
        offset: u64,
        data: &[u8],
        kill_suidgid: bool,
    ) -> Option<Result<u32>> {
        if self.opts.sync || self.opts.read_only {
            return None;
        }
        let mut g = self.inner.try_lock()?;
        if g.dirty_total > 0 && g.dirty_total + data.len() as u64 > self.opts.cache_size {
            return None;
        }
        Some(
            self.write_locked(&mut g, ino, fh, offset, data, kill_suidgid)
                .map(|()| data.len() as u32),
        )
    }

    /// The body of a write, under the core lock, once the cache has room.
    fn write_locked(
        &self,
        g: &mut MutexGuard<'_, Inner>,
        ino: Ino,
        fh: u64,
        offset: u64,
        data: &[u8],
        kill_suidgid: bool,
    ) -> Result<()> {
        let flags = g.handles.get(&fh).ok_or(Error::BadHandle)?.flags;
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            return Err(Error::BadHandle);
        }
        let budget = self.opts.cache_size;
        let f = g.files.get_mut(&ino).ok_or(Error::BadHandle)?;
        let off = if flags & libc::O_APPEND != 0 && !self.opts.kernel_writeback {
            f.inode.size
        } else {
            offset
        };
        let end = off
            .checked_add(data.len() as u64)
            .ok_or(Error::FileTooBig)?;
        if end > MAX_FILE_SIZE {
            return Err(Error::FileTooBig);
        }
        let delta = f.dirty.insert(off, data, &self.extent_pool);
        if kill_suidgid {
            kill_suid_sgid(&mut f.inode);
        }
        let t = now();
        f.inode.size = f.inode.size.max(end);
        f.inode.mtime = t;
        f.inode.ctime = t;
        f.attr_dirty = true;
        f.dirty_since.get_or_insert_with(Instant::now);
        g.dirty_total = (g.dirty_total as i64 + delta) as u64;
        g.sync_dirty_gauge();
        if g.dirty_total > budget / 4 {
            self.flusher_wake.notify_all();
        }
        Ok(())
    }

    /// Called at each close(2) of a descriptor. Nothing is promised durable by it unless mounted `sync`.
    pub fn flush(&self, ino: Ino, fh: u64) -> Result<()> {
        if self.opts.sync {
            return self.fsync(ino, fh, false);
        }
        Ok(())
    }

    /// Last close of a handle.
    pub fn release(&self, ino: Ino, fh: u64) -> Result<()> {
        let mut g = self.inner.lock();
        g.handles.remove(&fh);
        let Some(f) = g.files.get_mut(&ino) else {
            return Ok(());
        };
        f.opens = f.opens.saturating_sub(1);
        let dirty = !f.dirty.is_empty();
        self.settle(&mut g, ino)?;
        if dirty {
            self.flusher_wake.notify_all();
        }
        Ok(())
    }

    /// Stores an idle file's pending attributes and drops its in-memory state (reaping it if unlinked).
    fn settle(&self, g: &mut MutexGuard<'_, Inner>, ino: Ino) -> Result<()> {
        let Some(f) = g.files.get(&ino) else {
            return Ok(());
        };
        if !f.idle() {
            return Ok(());
        }
        let mut tx = g.meta.write()?;
        let f = g.files.remove(&ino).expect("present");
        if f.attr_dirty && f.inode.nlink > 0 {
            tx.put_inode(&f.inode)?;
        }
        if f.inode.nlink == 0 {
            // Keep the record current for the reap below, which reads it from the database.
            tx.put_inode(&f.inode)?;
            g.maybe_reap(&mut tx, ino)?;
        }
        self.finish_grouped(g, tx)
    }

    /// Returns once the file's data and metadata are durable.
    pub fn fsync(&self, ino: Ino, _fh: u64, _datasync: bool) -> Result<()> {
        if self.opts.read_only {
            return Ok(());
        }
        self.flush_file(ino, u64::MAX, false)?;
        {
            let mut g = self.inner.lock();
            if let Some(f) = g.files.get(&ino) {
                if f.attr_dirty {
                    let inode = f.inode.clone();
                    let mut tx = g.meta.write()?;
                    g.save(&mut tx, &inode)?;
                    tx.commit(false)?;
                    g.unsynced = true;
                }
            }
        }
        self.sync_durable()
    }

    /// Waits until no flush of `ino` is running (truncate and hole punching must not race one).
    fn wait_not_flushing(&self, g: &mut MutexGuard<'_, Inner>, ino: Ino) {
        while g.files.get(&ino).is_some_and(|f| f.is_flushing) {
            self.cond.wait(g);
        }
    }

    /// Removes the file's data in `[start, end)`: stored extents are cut (their chunks stay shared), dirty bytes
    /// dropped. Returns the change in stored extent bytes.
    fn cut_range(&self, g: &mut Inner, tx: &mut Tx, ino: Ino, start: u64, end: u64) -> Result<i64> {
        let mut delta = 0i64;
        for e in tx.extents(ino, start, end)? {
            if let Some(id) = tx.remove_extent(ino, e.offset)? {
                g.pending_free.push(id);
            }
            delta -= e.len as i64;
            if e.offset < start {
                let left = Extent {
                    len: (start - e.offset) as u32,
                    ..e
                };
                tx.put_extent(ino, &left)?;
                delta += left.len as i64;
            }
            if e.end() > end {
                let right = Extent {
                    offset: end,
                    chunk_offset: e.chunk_offset + (end - e.offset) as u32,
                    len: (e.end() - end) as u32,
                    chunk: e.chunk,
                };
                tx.put_extent(ino, &right)?;
                delta += right.len as i64;
            }
        }
        if let Some(f) = g.files.get_mut(&ino) {
            let d = f.dirty.punch(start, end - start);
            g.dirty_total = (g.dirty_total as i64 + d) as u64;
            g.sync_dirty_gauge();
        }
        Ok(delta)
    }

    /// Sets a regular file's size, dropping data beyond it.
    pub(crate) fn truncate(&self, ctx: &Ctx, ino: Ino, size: u64) -> Result<()> {
        self.writable()?;
        if size > MAX_FILE_SIZE {
            return Err(Error::FileTooBig);
        }
        let mut g = self.inner.lock();
        self.wait_not_flushing(&mut g, ino);
        let mut tx = g.meta.write()?;
        let mut inode = g.inode(&mut tx, ino)?;
        if inode.is_dir() {
            return Err(Error::IsDir);
        }
        if !inode.is_file() {
            return Err(Error::Invalid("truncate of a special file".into()));
        }
        if self.opts.check_permissions && !g.handles.values().any(|h| h.ino == ino) {
            perm::check(true, ctx, &inode, W)?;
        }
        // Truncation (and open with O_TRUNC) by an unprivileged caller drops setuid/setgid, as on Linux's local
        // filesystems; uid 0 stands for CAP_FSETID, which FUSE does not show us.
        if ctx.uid != 0 {
            kill_suid_sgid(&mut inode);
        }
        if size < inode.size {
            let d = self.cut_range(&mut g, &mut tx, ino, size, u64::MAX)?;
            inode.data_bytes = (inode.data_bytes as i64 + d).max(0) as u64;
        }
        let t = now();
        inode.size = size;
        inode.mtime = t;
        inode.ctime = t;
        g.save(&mut tx, &inode)?;
        self.finish(&mut g, tx)
    }

    /// `mode`: 0 (extend), `FALLOC_FL_KEEP_SIZE`, or `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`.
    pub fn fallocate(&self, ino: Ino, _fh: u64, offset: u64, length: u64, mode: i32) -> Result<()> {
        self.writable()?;
        let end = offset
            .checked_add(length)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(Error::FileTooBig)?;
        if length == 0 {
            return Err(Error::Invalid("zero length".into()));
        }
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        let mut g = self.inner.lock();
        self.wait_not_flushing(&mut g, ino);
        let mut tx = g.meta.write()?;
        let mut inode = g.inode(&mut tx, ino)?;
        if !inode.is_file() {
            return Err(if inode.is_dir() {
                Error::IsDir
            } else {
                Error::NotSupported
            });
        }
        let t = now();
        match mode {
            0 => {
                if end > inode.size {
                    inode.size = end;
                }
            }
            libc::FALLOC_FL_KEEP_SIZE => {}
            // Punching a hole and zeroing a range are the same here: a hole reads as zeros and costs nothing.
            // Zeroing without KEEP_SIZE also extends the file, like mode 0.
            m if m == punch
                || m == libc::FALLOC_FL_ZERO_RANGE
                || m == libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE =>
            {
                let stop = end.min(inode.size);
                if offset < stop {
                    let d = self.cut_range(&mut g, &mut tx, ino, offset, stop)?;
                    inode.data_bytes = (inode.data_bytes as i64 + d).max(0) as u64;
                }
                if m & libc::FALLOC_FL_KEEP_SIZE == 0 && end > inode.size {
                    inode.size = end;
                }
                inode.mtime = t;
            }
            _ => return Err(Error::NotSupported),
        }
        inode.ctime = t;
        g.save(&mut tx, &inode)?;
        self.finish(&mut g, tx)
    }

    /// SEEK_DATA / SEEK_HOLE: the next offset ≥ `offset` that is data or hole.
    pub fn lseek(&self, ino: Ino, _fh: u64, offset: i64, whence: i32) -> Result<i64> {
        let g = self.inner.lock();
        let mut tx = g.meta.write()?;
        let inode = g.inode(&mut tx, ino)?;
        if offset < 0 {
            return Err(Error::Invalid("negative offset".into()));
        }
        let off = offset as u64;
        if off >= inode.size {
            return Err(Error::NoSuchOffset);
        }
        let mut ranges: Vec<(u64, u64)> = tx
            .extents(ino, off, u64::MAX)?
            .iter()
            .map(|e| (e.offset, e.end()))
            .collect();
        if let Some(f) = g.files.get(&ino) {
            ranges.extend(f.dirty.ranges());
            ranges.extend(f.flushing.iter().map(|(s, d)| (*s, s + d.len() as u64)));
        }
        ranges.retain(|&(_, e)| e > off);
        ranges.sort_unstable();
        match whence {
            libc::SEEK_DATA => match ranges.first() {
                Some(&(s, _)) if s.max(off) < inode.size => Ok(s.max(off) as i64),
                _ => Err(Error::NoSuchOffset),
            },
            libc::SEEK_HOLE => {
                let mut pos = off;
                for (s, e) in ranges {
                    if s > pos {
                        break;
                    }
                    pos = pos.max(e);
                }
                Ok(pos.min(inode.size) as i64)
            }
            _ => Err(Error::Invalid("whence".into())),
        }
    }

    /// Flushes up to about `limit` bytes of the file's dirty data into the chunk store. With `hold_tail` (flushes
    /// that make room in the cache, not ones that promise durability) a batch's trailing partial chunk may stay
    /// dirty; see [`Fs::store_regions`]. The call then ends, leaving that tail for the writer to extend.
    pub(crate) fn flush_file(&self, ino: Ino, limit: u64, hold_tail: bool) -> Result<()> {
        let mut done = 0u64;
        while done < limit {
            let (n, held) = self.flush_round(ino, hold_tail)?;
            if n == 0 || held {
                break;
            }
            done += n;
        }
        Ok(())
    }

    /// One flush batch; returns the dirty bytes it stored (0 when the file was clean) and whether it kept a
    /// trailing partial chunk dirty.
    fn flush_round(&self, ino: Ino, hold_tail: bool) -> Result<(u64, bool)> {
        let _gate = self.put_gate.read();
        let mut g = self.inner.lock();
        self.wait_not_flushing(&mut g, ino);
        let Some(f) = g.files.get_mut(&ino) else {
            return Ok((0, false));
        };
        if f.dirty.is_empty() {
            if f.attr_dirty {
                let inode = f.inode.clone();
                let mut tx = g.meta.write()?;
                g.save(&mut tx, &inode)?;
                self.finish_grouped(&mut g, tx)?;
            }
            self.settle(&mut g, ino)?;
            return Ok((0, false));
        }
        let batch: Vec<(u64, Arc<Vec<u8>>)> = f
            .dirty
            .take_batch(
                FLUSH_BATCH.min(self.opts.cache_size / 4).max(1 << 20),
                self.chunks.max_chunk_size() as u64,
            )
            .into_iter()
            .map(|(s, d)| (s, Arc::new(d)))
            .collect();
        f.dirty_since = if f.dirty.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        f.flushing = batch.clone();
        f.is_flushing = true;
        let cut = f.cdc_cut;
        let batch_bytes: u64 = batch.iter().map(|(_, d)| d.len() as u64).sum();
        let old = {
            let mut tx = g.meta.write()?;
            let mut old = BTreeMap::new();
            for (s, d) in &batch {
                for x in tx.extents(ino, s.saturating_sub(1), s + d.len() as u64)? {
                    old.insert(x.offset, x);
                }
            }
            old
        };
        drop(g);
        let t0 = Instant::now();
        let stored = self.store_regions(&batch, &old, hold_tail, cut);
        let t_store = t0.elapsed();
        let mut g = self.inner.lock();
        let mut held = None;
        let res = match stored {
            Ok(st) => {
                held = st.held;
                self.commit_flush(&mut g, ino, &old, &st.extents, &st.chunks)
            }
            Err(e) => Err(e),
        };
        if res.is_err() {
            held = None;
        }
        tracing::debug!(
            "flush inode {ino}: {batch_bytes} bytes, stored in {:.1} ms, committed in {:.1} ms",
            t_store.as_secs_f64() * 1e3,
            (t0.elapsed() - t_store).as_secs_f64() * 1e3
        );
        let mut total = g.dirty_total - batch_bytes;
        let f = g
            .files
            .get_mut(&ino)
            .expect("a flushing file keeps its state");
        f.flushing.clear();
        f.is_flushing = false;
        let held_bytes = held.as_ref().map_or(0, |(_, d)| d.len() as u64);
        if let Some((at, d)) = held {
            // Newer writes to the same bytes win; the tail only fills what they left.
            total = (total as i64 + f.dirty.insert_under_owned(at, d)) as u64;
            f.dirty_since.get_or_insert_with(Instant::now);
            f.cdc_cut = Some(at);
        }
        if let Err(e) = &res {
            let f = g.files.get_mut(&ino).expect("present");
            for (s, d) in batch.iter().rev() {
                total = (total as i64 + f.dirty.insert_under(*s, d)) as u64;
            }
            f.dirty_since.get_or_insert_with(Instant::now);
            g.flush_error = Some(FlushError::from(e));
            tracing::error!("flushing inode {ino}: {e}");
        } else {
            g.flush_error = None;
        }
        g.dirty_total = total;
        g.sync_dirty_gauge();
        self.cond.notify_all();
        self.settle(&mut g, ino)?;
        drop(g);
        // The batch's buffers are free now (`flushing` and the store let go of theirs): keep whole ones for the
        // next extents a writer fills.
        for (_, d) in batch {
            if let Ok(d) = Arc::try_unwrap(d) {
                self.extent_pool.give(d);
            }
        }
        res.map(|_| (batch_bytes - held_bytes, held_bytes > 0))
    }

    /// Stores a flush batch; runs without the lock. Large dirty runs are re-chunked together with the stored extents
    /// they touch (content-defined chunks: dedup and stable boundaries). Small runs (random overwrites, small
    /// appends synced one by one) are not: they are packed into one or a few patch chunks, and the stored extents
    /// they overlap are cut around them, so a 4 KiB write costs a 4 KiB share of one chunk instead of re-encoding
    /// the ~1 MiB chunk under it. Returns the extents replacing `old` and the chunks that are new.
    ///
    /// A region ends where the batch ends, not at a content-defined cut, so its last chunk is cut short; the next
    /// append would re-read and re-chunk it (the widening above), storing it twice. With `hold_tail`, a last chunk
    /// that lies wholly in one dirty run ending the region is not stored but handed back (`held`) to stay dirty,
    /// and the next flush starts at a real cut: `cut` names such an offset, where the stored extent ending there is
    /// not widened into the next region.
    fn store_regions(
        &self,
        batch: &[(u64, Arc<Vec<u8>>)],
        old: &BTreeMap<u64, Extent>,
        hold_tail: bool,
        cut: Option<u64>,
    ) -> Result<Stored> {
        let max_chunk = self.chunks.max_chunk_size().max(1);
        let patch_max = (max_chunk / 4).min(PATCH_MAX);
        let run = |i: usize| (batch[i].0, batch[i].0 + batch[i].1.len() as u64);
        // Seed regions with the large runs; a small run overlapping a region joins it (and may widen it), until
        // nothing changes.
        let mut seeded: Vec<bool> = batch.iter().map(|(_, d)| d.len() > patch_max).collect();
        let regions = loop {
            let mut spans: Vec<(u64, u64)> = Vec::new();
            for i in (0..batch.len()).filter(|&i| seeded[i]) {
                let (s, e) = run(i);
                spans.push((s, e));
                // The stored extents the run overlaps, and the one ending where it starts (chunking goes on from
                // that extent's start, so appends keep their cut points).
                spans.extend(
                    old.values()
                        .filter(|x| {
                            (x.end() > s || (x.end() == s && cut != Some(s))) && x.offset < e
                        })
                        .map(|x| (x.offset, x.end())),
                );
            }
            spans.sort_unstable();
            let mut regions: Vec<(u64, u64)> = Vec::new();
            for (s, e) in spans {
                match regions.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => regions.push((s, e)),
                }
            }
            let mut grew = false;
            for (i, seed) in seeded.iter_mut().enumerate() {
                let (s, e) = run(i);
                // Touching counts: a small run right before or after a region is re-chunked with it.
                if !*seed && regions.iter().any(|&(rs, re)| s <= re && e >= rs) {
                    *seed = true;
                    grew = true;
                }
            }
            if !grew {
                break regions;
            }
        };
        let in_region = |x: &Extent| {
            regions
                .iter()
                .any(|&(rs, re)| x.offset >= rs && x.end() <= re)
        };

        // (buffer, start, len) of every chunk to store, and the extents that will name them.
        let mut pieces: Vec<(Arc<Vec<u8>>, usize, usize)> = Vec::new();
        let mut extents: Vec<(Extent, usize)> = Vec::new(); // (extent, piece index; chunk id filled in below)
        let mut held = None;
        let mut built: Vec<Arc<Vec<u8>>> = Vec::new();
        for &(rs, re) in &regions {
            let inside_old = old.values().any(|e| e.offset >= rs && e.end() <= re);
            let runs: Vec<usize> = (0..batch.len())
                .filter(|&i| seeded[i] && run(i).0 >= rs && run(i).1 <= re)
                .collect();
            let tiles = runs.first().is_some_and(|&i| run(i).0 == rs)
                && runs.last().is_some_and(|&i| run(i).1 == re)
                && runs.windows(2).all(|w| run(w[0]).1 == run(w[1]).0);
            // The region's chunks, in order, as (buffer, start, len).
            let mut parts = if tiles && !inside_old {
                // Dirty buffers that tile the region, nothing stored under them: chunk them where they lie.
                let bufs: Vec<Arc<Vec<u8>>> = runs.iter().map(|&i| batch[i].1.clone()).collect();
                chunk_across(&*self.chunks, &bufs)
            } else {
                let b = Arc::new(self.region_buffer(batch, &seeded, old, rs, re)?);
                built.push(b.clone());
                let mut at = 0;
                let lens = self.chunks.chunk_lengths(&b);
                lens.into_iter()
                    .map(|len| {
                        at += len;
                        (b.clone(), at - len, len)
                    })
                    .collect()
            };
            if hold_tail && held.is_none() && parts.len() > 1 {
                let (b, st, len) = parts.last().expect("non-empty");
                let from = re - *len as u64;
                if (0..batch.len()).any(|i| seeded[i] && run(i).0 <= from && run(i).1 == re) {
                    held = Some((from, b[*st..st + len].to_vec()));
                    parts.pop();
                }
            }
            let mut at = rs;
            for (b, st, len) in parts {
                // All-zero pieces become holes: sparse data costs nothing.
                if b[st..st + len].iter().any(|&x| x != 0) {
                    extents.push((
                        Extent {
                            offset: at,
                            chunk: ChunkId([0; 32]),
                            chunk_offset: 0,
                            len: len as u32,
                        },
                        pieces.len(),
                    ));
                    pieces.push((b, st, len));
                }
                at += len as u64;
            }
        }
        // Patches: the small runs outside every region, packed in file order into chunks of at most `max_chunk`.
        let small: Vec<usize> = (0..batch.len()).filter(|&i| !seeded[i]).collect();
        let mut patch: Vec<u8> = Vec::new();
        let mut patch_extents: Vec<Extent> = Vec::new();
        let mut flush_patch = |patch: &mut Vec<u8>, pe: &mut Vec<Extent>| {
            if patch.is_empty() {
                return;
            }
            let idx = pieces.len();
            let len = patch.len();
            pieces.push((Arc::new(std::mem::take(patch)), 0, len));
            extents.extend(pe.drain(..).map(|e| (e, idx)));
        };
        for &i in &small {
            let (s, d) = &batch[i];
            if patch.len() + d.len() > max_chunk {
                flush_patch(&mut patch, &mut patch_extents);
            }
            patch_extents.push(Extent {
                offset: *s,
                chunk: ChunkId([0; 32]),
                chunk_offset: patch.len() as u32,
                len: d.len() as u32,
            });
            patch.extend_from_slice(d);
        }
        flush_patch(&mut patch, &mut patch_extents);

        // Stored extents outside the regions stay, minus the parts the patches now cover.
        let mut kept: Vec<Extent> = Vec::new();
        for x in old.values().filter(|x| !in_region(x)) {
            let mut pos = x.offset;
            for (s, e) in small
                .iter()
                .map(|&i| run(i))
                .filter(|&(s, e)| s < x.end() && e > x.offset)
            {
                if s > pos {
                    kept.push(sub_extent(x, pos, s));
                }
                pos = pos.max(e);
            }
            if pos < x.end() {
                kept.push(sub_extent(x, pos, x.end()));
            }
        }

        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 4);
        // Chunk ids (a keyed BLAKE3 pass over every byte) on the same workers as the puts below.
        let ids: Vec<ChunkId> = par_each(workers, pieces.len(), |i| {
            let (b, s, l) = &pieces[i];
            self.chunks.chunk_id(&b[*s..s + l])
        });
        let mut out: Vec<Extent> = extents
            .into_iter()
            .map(|(e, p)| Extent { chunk: ids[p], ..e })
            .collect();
        out.extend(kept);
        // Which chunks are new? The put gate (held by our caller) keeps a known chunk from being freed meanwhile,
        // and a held one (freed, shards kept for recovery) from being deleted: that one is revived, not stored.
        let mut todo: Vec<usize> = Vec::new();
        let mut revived: Vec<NewChunk> = Vec::new();
        {
            let g = self.inner.lock();
            let mut tx = g.meta.write()?;
            let mut seen = std::collections::HashSet::new();
            for (i, id) in ids.iter().enumerate() {
                if seen.insert(*id) && tx.chunk(id)?.is_none() {
                    match tx.held_chunk(id)? {
                        Some((_, row)) => revived.push(NewChunk {
                            id: *id,
                            len: row.len,
                            stored: row.stored,
                            stripe: row.stripe,
                        }),
                        None => todo.push(i),
                    }
                }
            }
        }
        FsMetricsAdd::add(&self.metrics.chunks_stored, todo.len() as u64);
        FsMetricsAdd::add(
            &self.metrics.chunks_deduplicated,
            (ids.len() - todo.len()) as u64,
        );
        let results = par_each(workers, todo.len(), |k| {
            let (b, st, l) = &pieces[todo[k]];
            self.chunks.put_stripe(&ids[todo[k]], &b[*st..st + l])
        });
        let mut new_chunks = revived;
        for (&i, r) in todo.iter().zip(results) {
            let (stored, stripe) = r?;
            new_chunks.push(NewChunk {
                id: ids[i],
                len: pieces[i].2 as u64,
                stored,
                stripe,
            });
        }
        drop(pieces);
        // Give a built region buffer back for the next flush: no fresh pages to fault in and zero each time.
        for b in built {
            if let Ok(mut b) = Arc::try_unwrap(b) {
                let mut scratch = self.region_scratch.lock();
                if b.capacity() > scratch.capacity() {
                    b.clear();
                    *scratch = b;
                }
            }
        }
        Ok(Stored {
            extents: out,
            chunks: new_chunks,
            held,
        })
    }

    /// The file's bytes in `[rs, re)` as the flush will store them: stored extents overlaid with the batch's
    /// seeded runs (holes read as zeros). Reuses the flusher's scratch buffer when it is free.
    fn region_buffer(
        &self,
        batch: &[(u64, Arc<Vec<u8>>)],
        seeded: &[bool],
        old: &BTreeMap<u64, Extent>,
        rs: u64,
        re: u64,
    ) -> Result<Vec<u8>> {
        let mut buf = std::mem::take(&mut *self.region_scratch.lock());
        buf.clear();
        buf.resize((re - rs) as usize, 0);
        let inside_old = old.values().filter(|e| e.offset >= rs && e.end() <= re);
        self.overlay_extents(inside_old, rs, &mut buf)?;
        let inside = (0..batch.len())
            .filter(|&i| seeded[i])
            .map(|i| (batch[i].0, batch[i].1.as_slice()));
        cache::overlay_ranges(inside, rs, &mut buf);
        Ok(buf)
    }
    /// Copies the stored bytes of `extents` that fall in `[off, off + buf.len())` into `buf`.
    fn overlay_extents<'a>(
        &self,
        extents: impl Iterator<Item = &'a Extent>,
        off: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        for e in extents {
            let data = self.chunk(&e.chunk)?;
            let piece = data
                .get(e.chunk_offset as usize..e.chunk_offset as usize + e.len as usize)
                .ok_or_else(|| {
                    Error::Corrupt(format!(
                        "chunk {} shorter than its extent",
                        e.chunk.to_hex()
                    ))
                })?;
            cache::overlay_ranges(std::iter::once((e.offset, piece)), off, buf);
        }
        Ok(())
    }

    /// Swaps a flushed region's old extents for the new ones in one metadata transaction.
    fn commit_flush(
        &self,
        g: &mut MutexGuard<'_, Inner>,
        ino: Ino,
        old: &BTreeMap<u64, Extent>,
        new_extents: &[Extent],
        new_chunks: &[NewChunk],
    ) -> Result<()> {
        let mut tx = g.meta.write()?;
        let mut delta = 0i64;
        for x in old.values() {
            if let Some(id) = tx.remove_extent(ino, x.offset)? {
                g.pending_free.push(id);
            }
            delta -= x.len as i64;
        }
        for c in new_chunks {
            tx.ensure_chunk(&c.id, c.len, c.stored, c.stripe)?;
        }
        for e in new_extents {
            tx.put_extent(ino, e)?;
            delta += e.len as i64;
        }
        let f = g
            .files
            .get_mut(&ino)
            .expect("a flushing file keeps its state");
        f.inode.data_bytes = (f.inode.data_bytes as i64 + delta).max(0) as u64;
        let inode = f.inode.clone();
        g.save(&mut tx, &inode)?;
        self.finish_grouped(g, tx)
    }
}

/// Clears setuid, and setgid when the group may execute (otherwise setgid marks mandatory locking and stays).
fn kill_suid_sgid(inode: &mut Inode) {
    inode.mode &= !libc::S_ISUID;
    if inode.mode & libc::S_IXGRP != 0 {
        inode.mode &= !libc::S_ISGID;
    }
}

/// The part `[from, to)` of the file range an extent covers.
fn sub_extent(x: &Extent, from: u64, to: u64) -> Extent {
    Extent {
        offset: from,
        chunk: x.chunk,
        chunk_offset: x.chunk_offset + (from - x.offset) as u32,
        len: (to - from) as u32,
    }
}

/// Content-defined chunks of the concatenation of `bufs` as (buffer, start, len), without first copying the
/// buffers into one: the cuts are those of the concatenation. FastCDC starts afresh at every cut, and a cut it
/// finds before the end of its input does not depend on what follows, so each buffer is chunked where it lies and
/// only a chunk that crosses into the next buffer (at most the largest chunk size) is copied, into one of its own.
fn chunk_across(chunks: &dyn Chunks, bufs: &[Arc<Vec<u8>>]) -> Vec<(Arc<Vec<u8>>, usize, usize)> {
    let max = chunks.max_chunk_size().max(1);
    let mut out = Vec::new();
    // The start of a chunk whose cut lies beyond the buffers seen so far.
    let mut carry: Vec<u8> = Vec::new();
    for (i, buf) in bufs.iter().enumerate() {
        let last = i + 1 == bufs.len();
        let mut from = 0;
        while !carry.is_empty() {
            let had = carry.len();
            // A chunk is at most `max` long: no more of this buffer can be in it.
            let take = buf.len().min(max.saturating_sub(had));
            carry.extend_from_slice(&buf[..take]);
            let first = chunks.first_chunk_len(&carry);
            if first == carry.len() && take == buf.len() && !last {
                // No cut before this buffer ends either: the chunk goes on into the next one.
                from = buf.len();
                break;
            }
            if first >= had {
                carry.truncate(first);
                let len = carry.len();
                out.push((Arc::new(std::mem::take(&mut carry)), 0, len));
                from = first - had;
                break;
            }
            // A cut inside the carried bytes (not expected: they were an unfinished chunk): keep what follows it.
            out.push((Arc::new(carry[..first].to_vec()), 0, first));
            carry.truncate(had);
            carry.drain(..first);
        }
        if from == buf.len() {
            continue;
        }
        let lens = chunks.chunk_lengths(&buf[from..]);
        let n = lens.len();
        let mut at = from;
        for (j, len) in lens.into_iter().enumerate() {
            if j + 1 == n && !last {
                // Room for the whole chunk it starts: stitching on the next buffer's head needs no realloc.
                carry = Vec::with_capacity(max);
                carry.extend_from_slice(&buf[at..at + len]);
            } else {
                out.push((buf.clone(), at, len));
            }
            at += len;
        }
    }
    debug_assert!(carry.is_empty(), "the last buffer ends the last chunk");
    out
}

/// Dirty runs at most this long (and at most a quarter of the largest chunk) are stored as patches, not re-chunked.
const PATCH_MAX: usize = 64 << 10;

/// What [`Fs::store_regions`] did: the extents replacing the old ones, the chunks it stored (or revived), and the
/// trailing partial chunk it handed back to stay dirty (file offset, bytes).
struct Stored {
    extents: Vec<Extent>,
    chunks: Vec<NewChunk>,
    held: Option<(u64, Vec<u8>)>,
}

/// A chunk a flush just stored: its id, plaintext length, bytes on disks and stripe hash.
pub(crate) struct NewChunk {
    id: ChunkId,
    len: u64,
    stored: u64,
    stripe: [u8; 32],
}

/// The last background flush failure, kept so writers get an error instead of waiting forever.
pub(crate) struct FlushError {
    no_space: bool,
    message: String,
}

impl FlushError {
    fn from(e: &Error) -> Self {
        FlushError {
            no_space: e.errno() == libc::ENOSPC,
            message: e.to_string(),
        }
    }

    pub(crate) fn to_error(&self) -> Error {
        if self.no_space {
            Error::NoSpace {
                disk: self.message.clone(),
            }
        } else {
            Error::io(&self.message, std::io::Error::from_raw_os_error(libc::EIO))
        }
    }
}

/// Background writeback: flushes the file with the most dirty data when over a quarter of the budget, and any file
/// whose oldest dirty byte is older than the commit interval.
pub(crate) fn flusher_loop(fs: std::sync::Weak<Fs>) {
    loop {
        let Some(f) = fs.upgrade() else { return };
        let target = {
            let mut g = f.inner.lock();
            if g.stopping {
                return;
            }
            // Over budget with a file that has dirty data to take: flush again at once. A writer blocked on the
            // budget wakes this thread only while it waits, so waiting here first (a wakeup sent during the last
            // flush is lost) stalled every write for its 200 ms re-check under a small cache.
            let pressing = g.dirty_total > f.opts.cache_size / 4
                && g.files
                    .values()
                    .any(|s| !s.is_flushing && !s.dirty.is_empty());
            if !pressing {
                f.flusher_wake.wait_for(&mut g, Duration::from_millis(500));
            }
            if g.stopping {
                return;
            }
            let max_age = Duration::from_secs(f.opts.commit_interval_secs.max(1));
            if g.dirty_total > f.opts.cache_size / 4 {
                g.files
                    .iter()
                    .filter(|(_, s)| !s.is_flushing && !s.dirty.is_empty())
                    .max_by_key(|(_, s)| s.dirty.bytes())
                    .map(|(i, _)| (*i, FLUSH_BATCH, true))
            } else {
                g.files
                    .iter()
                    .find(|(_, s)| {
                        !s.is_flushing && s.dirty_since.is_some_and(|t| t.elapsed() >= max_age)
                    })
                    .map(|(i, _)| (*i, u64::MAX, false))
            }
        };
        if let Some((ino, limit, hold_tail)) = target {
            if let Err(e) = f.flush_file(ino, limit, hold_tail) {
                tracing::error!("background flush of inode {ino}: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        } else if f.inner.lock().dirty_total == 0 {
            // Idle: give the region buffer and spare extent buffers (a flush batch each) back rather than hold
            // them until the next burst.
            *f.region_scratch.lock() = Vec::new();
            f.extent_pool.clear();
            f.request_pool.clear();
        }
    }
}

/// `f(0..n)` on up to `workers` scoped threads (the calling thread runs inline when one is enough), results in
/// index order.
fn par_each<T: Send>(workers: usize, n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let workers = workers.min(n);
    if workers <= 1 {
        return (0..n).map(f).collect();
    }
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k >= n {
                    break;
                }
                *slots[k].lock() = Some(f(k));
            });
        }
    });
    slots
        .into_iter()
        .map(|s| s.into_inner().expect("every job ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::mem::MemChunks;
    use proptest::prelude::*;

    proptest! {
        /// Chunking split buffers gives the cuts (and bytes) of chunking their concatenation.
        #[test]
        fn chunk_across_matches_one_buffer(
            seed in any::<u64>(),
            splits in proptest::collection::vec(0usize..200_000, 0..6),
            repetitive in any::<bool>(),
        ) {
            let chunks = MemChunks::new();
            let mut x = seed | 1;
            let len = 400_000usize;
            let data: Vec<u8> = (0..len)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Long runs of one byte leave no cut point before the largest chunk size.
                    if repetitive && (i / 70_000) % 2 == 1 { 9 } else { x as u8 }
                })
                .collect();
            let mut cuts: Vec<usize> = splits.into_iter().filter(|&c| c > 0 && c < len).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let mut bufs = Vec::new();
            let mut prev = 0;
            for c in cuts.into_iter().chain([len]) {
                bufs.push(Arc::new(data[prev..c].to_vec()));
                prev = c;
            }
            let got = chunk_across(&chunks, &bufs);
            let want = chunks.chunk_lengths(&data);
            prop_assert_eq!(got.iter().map(|p| p.2).collect::<Vec<_>>(), want);
            let mut at = 0;
            for (b, s, l) in &got {
                prop_assert_eq!(&b[*s..s + l], &data[at..at + l]);
                at += l;
            }
        }
    }
}
