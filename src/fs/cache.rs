//! In-memory caches of the core: a file's dirty byte ranges (write-back) and the clean-chunk LRU (read cache).

use crate::store::ChunkId;
use lru::LruCache;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A dirty extent stops growing by appends at this size (a flush batch), so a flush takes a bounded batch without
/// copying, and a sequential writer's batch is usually one buffer that is chunked where it lies.
const MAX_EXTENT: usize = super::FLUSH_BATCH as usize;

/// An extent that outgrows its buffer past this size is moved into a whole-extent buffer from the extent pool:
/// a stream, not a small file.
const POOL_FROM: usize = 1 << 20;

/// Spare buffers of one capacity, kept for reuse instead of freed.
///
/// Fresh memory is expensive here: every page of a new buffer is faulted in and zeroed by the kernel (and, in a
/// VM, often backed anew by the host). A sequential writer fills a 32 MiB extent that a flush then stores and
/// frees; growing each new extent by doubling also copied it about once more. On a pg_dump that was a fifth of
/// the daemon's CPU, on the FUSE thread. A reused buffer keeps its pages.
pub struct BufPool {
    cap: usize,
    keep: usize,
    spare: parking_lot::Mutex<Vec<Vec<u8>>>,
}

impl BufPool {
    /// A pool of buffers with room for `cap` bytes, keeping at most `keep` spares.
    pub const fn new(cap: usize, keep: usize) -> Self {
        BufPool {
            cap,
            keep,
            spare: parking_lot::Mutex::new(Vec::new()),
        }
    }

    /// The pool for dirty extents: a few streams, each with one extent filling and one flushing. Spares are
    /// memory beyond the dirty budget, so they are kept to half of it (at least one, at most four: the default
    /// 256 MiB budget keeps four).
    pub const fn for_extents(dirty_budget: u64) -> Self {
        let keep = dirty_budget / 2 / MAX_EXTENT as u64;
        Self::new(
            MAX_EXTENT,
            if keep < 1 {
                1
            } else if keep > 4 {
                4
            } else {
                keep as usize
            },
        )
    }

    /// An empty buffer with room for `cap` bytes.
    pub fn take(&self) -> Vec<u8> {
        self.spare
            .lock()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.cap))
    }

    /// Keeps `buf` for reuse if it has room for `cap` bytes and the pool has room; frees it otherwise.
    pub fn give(&self, mut buf: Vec<u8>) {
        if buf.capacity() < self.cap {
            return;
        }
        let mut spare = self.spare.lock();
        if spare.len() < self.keep {
            buf.clear();
            spare.push(buf);
        }
    }

    /// Frees every spare buffer (an idle mount holds no memory for writes it is not getting).
    pub fn clear(&self) {
        self.spare.lock().clear();
    }

    /// Spare buffers held.
    pub fn spare(&self) -> usize {
        self.spare.lock().len()
    }
}

/// Dirty (written, not yet stored) byte ranges of one file. Ranges never overlap; adjacent ones may exist.
#[derive(Default, Debug)]
pub struct DirtyMap {
    map: BTreeMap<u64, Vec<u8>>,
    bytes: u64,
}

impl DirtyMap {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Writes `data` at `off`, newest data winning. Returns the change in dirty bytes. A growing extent takes its
    /// buffer from `pool` once it is large.
    pub fn insert(&mut self, off: u64, data: &[u8], pool: &BufPool) -> i64 {
        if data.is_empty() {
            return 0;
        }
        let end = off + data.len() as u64;
        let before = self.bytes;
        // Fast path: the extent that starts at or before `off` and reaches it, when no later extent is touched.
        if let Some((start, ext_len)) = self
            .map
            .range(..=off)
            .next_back()
            .map(|(&s, d)| (s, d.len()))
        {
            let ext_end = start + ext_len as u64;
            let next_overlaps = self.map.range(off + 1..end).next().is_some();
            if !next_overlaps && off <= ext_end {
                let ext = self.map.get_mut(&start).expect("just found");
                let rel = (off - start) as usize;
                let new_len = rel + data.len();
                if new_len <= ext.len() {
                    // Within the extent.
                    ext[rel..new_len].copy_from_slice(data);
                    return 0;
                }
                if new_len <= MAX_EXTENT {
                    // Appending (or overwriting the end): no zero-fill before the copy.
                    ext.truncate(rel);
                    append(ext, data, pool);
                    self.bytes = self.bytes - ext_len as u64 + new_len as u64;
                    return self.bytes as i64 - before as i64;
                }
                // The extent would outgrow a flush batch: it keeps `[start, off)` and `data` starts the next one.
                if rel == 0 {
                    self.map.remove(&start);
                } else {
                    ext.truncate(rel);
                }
                self.map.insert(off, data.to_vec());
                self.bytes = self.bytes - ext_len as u64 + new_len as u64;
                return self.bytes as i64 - before as i64;
            }
        }
        // General case (the write reaches into a later extent, or starts in a gap): each piece of `data` that lands
        // in an extent is copied into it where it lies, and each piece in a gap is appended to the extent ending
        // there (room permitting) or becomes an extent of its own. No extent grows past a batch and no write copies
        // more than its own bytes: merging the extents instead once built a buffer of both, up to 64 MiB, under
        // the core lock.
        let mut pos = off;
        while pos < end {
            let covering = self
                .map
                .range_mut(..=pos)
                .next_back()
                .filter(|(&s, d)| s + d.len() as u64 > pos);
            if let Some((&s, ext)) = covering {
                let rel = (pos - s) as usize;
                let n = (ext.len() - rel).min((end - pos) as usize);
                let at = (pos - off) as usize;
                ext[rel..rel + n].copy_from_slice(&data[at..at + n]);
                pos += n as u64;
                continue;
            }
            let gap_end = self.map.range(pos..end).next().map_or(end, |(&s, _)| s);
            let piece = &data[(pos - off) as usize..(gap_end - off) as usize];
            let before_gap =
                self.map.range_mut(..pos).next_back().filter(|(&s, d)| {
                    s + d.len() as u64 == pos && d.len() + piece.len() <= MAX_EXTENT
                });
            match before_gap {
                Some((_, ext)) => append(ext, piece, pool),
                None => {
                    self.map.insert(pos, piece.to_vec());
                }
            }
            self.bytes += piece.len() as u64;
            pos = gap_end;
        }
        self.bytes as i64 - before as i64
    }

    /// [`DirtyMap::insert_under`] taking the buffer: when nothing was written over its range since (the usual
    /// case), it becomes the extent as it is, without a copy.
    pub fn insert_under_owned(&mut self, off: u64, data: Vec<u8>) -> i64 {
        let end = off + data.len() as u64;
        let overlaps = self
            .map
            .range(..end)
            .next_back()
            .is_some_and(|(&s, d)| s + d.len() as u64 > off);
        if overlaps || data.is_empty() {
            return self.insert_under(off, &data);
        }
        let n = data.len() as i64;
        self.bytes += data.len() as u64;
        self.map.insert(off, data);
        n
    }

    /// Puts back data taken by a failed flush without overwriting anything written since.
    pub fn insert_under(&mut self, off: u64, data: &[u8]) -> i64 {
        let mut delta = 0;
        let mut pos = off;
        let end = off + data.len() as u64;
        while pos < end {
            // Find the next dirty extent at or after pos (or covering it).
            let covering = self
                .map
                .range(..=pos)
                .next_back()
                .filter(|(&s, d)| s + d.len() as u64 > pos)
                .map(|(&s, d)| s + d.len() as u64);
            if let Some(e) = covering {
                pos = e.min(end);
                continue;
            }
            let next = self
                .map
                .range(pos..end)
                .next()
                .map(|(&s, _)| s)
                .unwrap_or(end);
            let slice = &data[(pos - off) as usize..(next - off) as usize];
            self.map.insert(pos, slice.to_vec());
            self.bytes += slice.len() as u64;
            delta += slice.len() as i64;
            pos = next;
        }
        delta
    }

    /// Copies dirty bytes that fall in `[off, off + buf.len())` into `buf`.
    pub fn overlay(&self, off: u64, buf: &mut [u8]) {
        overlay_ranges(
            self.map
                .range(..off + buf.len() as u64)
                .map(|(&s, d)| (s, d.as_slice())),
            off,
            buf,
        );
    }

    /// Removes dirty extents, lowest offsets first, until their cost reaches `limit`: each extent costs its
    /// length plus `overhead` (the stored data around it that re-chunking reads and rewrites), so scattered small
    /// writes make small batches and a flush's memory and work stay bounded.
    /// An extent that continues the previous one costs only its length: the stored data around a contiguous run
    /// is re-chunked once.
    pub fn take_batch(&mut self, limit: u64, overhead: u64) -> Vec<(u64, Vec<u8>)> {
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut taken = 0u64;
        while taken < limit {
            let Some((s, d)) = self.map.pop_first() else {
                break;
            };
            let continues = out.last().is_some_and(|(ps, pd)| ps + pd.len() as u64 == s);
            taken += d.len() as u64 + if continues { 0 } else { overhead };
            self.bytes -= d.len() as u64;
            out.push((s, d));
        }
        out
    }

    /// Drops dirty bytes in `[off, off + len)`. Returns the (negative) change in dirty bytes.
    pub fn punch(&mut self, off: u64, len: u64) -> i64 {
        let end = off.saturating_add(len);
        let before = self.bytes;
        let hit: Vec<u64> = self
            .map
            .range(..end)
            .rev()
            .take_while(|(&s, d)| s + d.len() as u64 > off)
            .map(|(&s, _)| s)
            .collect();
        for s in hit {
            let mut d = self.map.remove(&s).expect("listed");
            self.bytes -= d.len() as u64;
            let e = s + d.len() as u64;
            if e > end {
                let tail = d.split_off((end - s) as usize);
                self.bytes += tail.len() as u64;
                self.map.insert(end, tail);
            }
            if s < off {
                d.truncate((off - s) as usize);
                self.bytes += d.len() as u64;
                self.map.insert(s, d);
            }
        }
        self.bytes as i64 - before as i64
    }

    /// The dirty ranges as (start, end) pairs.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.map
            .iter()
            .map(|(&s, d)| (s, s + d.len() as u64))
            .collect()
    }
}

/// Appends `data` to the extent `ext`, moving it into a whole-extent buffer from `pool` once it outgrows its own
/// and is large.
fn append(ext: &mut Vec<u8>, data: &[u8], pool: &BufPool) {
    let new_len = ext.len() + data.len();
    if new_len > ext.capacity() && new_len > POOL_FROM {
        let mut whole = pool.take();
        whole.extend_from_slice(ext);
        pool.give(std::mem::replace(ext, whole));
    }
    ext.extend_from_slice(data);
}

/// Copies the parts of `ranges` (start, bytes) that fall in `[off, off + buf.len())` into `buf`.
pub fn overlay_ranges<'a>(ranges: impl Iterator<Item = (u64, &'a [u8])>, off: u64, buf: &mut [u8]) {
    let end = off + buf.len() as u64;
    for (s, d) in ranges {
        let e = s + d.len() as u64;
        if e <= off || s >= end {
            continue;
        }
        let from = s.max(off);
        let to = e.min(end);
        buf[(from - off) as usize..(to - off) as usize]
            .copy_from_slice(&d[(from - s) as usize..(to - s) as usize]);
    }
}

/// Recently read chunk plaintexts, bounded in bytes.
pub struct ChunkCache {
    lru: LruCache<ChunkId, Arc<Vec<u8>>>,
    bytes: u64,
    budget: u64,
}

impl ChunkCache {
    pub fn new(budget: u64) -> Self {
        ChunkCache {
            lru: LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    pub fn get(&mut self, id: &ChunkId) -> Option<Arc<Vec<u8>>> {
        self.lru.get(id).cloned()
    }

    pub fn insert(&mut self, id: ChunkId, data: Arc<Vec<u8>>) {
        if data.len() as u64 > self.budget {
            return;
        }
        self.bytes += data.len() as u64;
        if let Some(old) = self.lru.put(id, data) {
            self.bytes -= old.len() as u64;
        }
        while self.bytes > self.budget {
            match self.lru.pop_lru() {
                Some((_, d)) => self.bytes -= d.len() as u64,
                None => break,
            }
        }
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.lru.contains(id)
    }

    pub fn remove(&mut self, id: &ChunkId) {
        if let Some(d) = self.lru.pop(id) {
            self.bytes -= d.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extent_spares_stay_within_half_the_dirty_budget() {
        for (budget, keep) in [
            (16u64 << 20, 1),
            (64 << 20, 1),
            (128 << 20, 2),
            (256 << 20, 4),
            (4 << 30, 4),
        ] {
            let pool = BufPool::for_extents(budget);
            for _ in 0..6 {
                pool.give(Vec::with_capacity(MAX_EXTENT));
            }
            assert_eq!(pool.spare(), keep, "budget {budget}");
        }
    }

    fn read(m: &DirtyMap, off: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        m.overlay(off, &mut b);
        b
    }

    #[test]
    fn dirty_map_matches_a_flat_model() {
        let mut rng = 12345u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut m = DirtyMap::default();
        let pool = BufPool::for_extents(256 << 20);
        let mut model = vec![0u8; 4096];
        for round in 0..2000 {
            let off = next() % 4000;
            let len = (next() % 96) as usize;
            let op = next() % 10;
            if op < 7 {
                let byte = (round % 250 + 1) as u8;
                let data = vec![byte; len.min(4096 - off as usize)];
                m.insert(off, &data, &pool);
                model[off as usize..off as usize + data.len()].copy_from_slice(&data);
            } else if op < 9 {
                m.punch(off, len as u64);
                model[off as usize..(off as usize + len).min(4096)].fill(0);
            } else {
                let taken = m.take_batch(100, 10);
                // A write that lands while the batch is away wins over the batch's older bytes.
                let byte = (round % 250 + 1) as u8;
                let data = vec![byte; len.min(4096 - off as usize)];
                m.insert(off, &data, &pool);
                model[off as usize..off as usize + data.len()].copy_from_slice(&data);
                for (i, (s, d)) in taken.into_iter().rev().enumerate() {
                    if i % 2 == 0 {
                        m.insert_under(s, &d);
                    } else {
                        m.insert_under_owned(s, d);
                    }
                }
            }
            assert_eq!(read(&m, 0, 4096), model, "round {round}");
            let ranges = m.ranges();
            assert_eq!(m.bytes(), ranges.iter().map(|(s, e)| e - s).sum::<u64>());
            assert!(
                ranges.windows(2).all(|w| w[0].1 <= w[1].0),
                "overlap at round {round}"
            );
        }
    }

    #[test]
    fn streams_fill_pooled_extents_no_larger_than_a_batch() {
        let pool = BufPool::for_extents(256 << 20);
        let piece: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let total = 70u64 << 20;
        let fill = |m: &mut DirtyMap| {
            let mut off = 0u64;
            while off < total {
                let n = piece.len().min((total - off) as usize);
                m.insert(off, &piece[..n], &pool);
                off += n as u64;
            }
        };
        let mut m = DirtyMap::default();
        fill(&mut m);
        assert_eq!(m.bytes(), total);
        let ranges = m.ranges();
        assert_eq!(ranges.first().map(|r| r.0), Some(0));
        assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0), "{ranges:?}");
        assert_eq!(ranges.last().map(|r| r.1), Some(total));
        assert!(
            ranges.iter().all(|(s, e)| e - s <= MAX_EXTENT as u64),
            "{ranges:?}"
        );
        // Bytes read back where the stream crossed extents.
        for (s, _) in &ranges[1..] {
            let at = s - 1000;
            let expect: Vec<u8> = (at..at + 2000)
                .map(|o| ((o % piece.len() as u64) % 251) as u8)
                .collect();
            assert_eq!(read(&m, at, 2000), expect);
        }
        // A flush hands the whole buffers back; the next stream reuses them instead of allocating.
        let batch = m.take_batch(u64::MAX, 0);
        assert!(m.is_empty());
        let whole = batch
            .iter()
            .filter(|(_, d)| d.capacity() >= MAX_EXTENT)
            .count();
        assert!(whole >= 2, "{whole} whole-extent buffers");
        for (_, d) in batch {
            pool.give(d);
        }
        assert_eq!(pool.spare(), whole);
        let mut m2 = DirtyMap::default();
        fill(&mut m2);
        assert_eq!(pool.spare(), 0, "the second stream took the spare buffers");
        assert_eq!(m2.bytes(), total);
        pool.clear();
        assert_eq!(pool.spare(), 0);
    }

    #[test]
    fn writes_past_a_full_extent_start_the_next() {
        let pool = BufPool::for_extents(256 << 20);
        let mut m = DirtyMap::default();
        m.insert(0, &vec![1u8; MAX_EXTENT], &pool);
        let at = MAX_EXTENT as u64 - 100;
        assert_eq!(m.insert(at, &[2u8; 300], &pool), 200);
        assert_eq!(m.ranges(), vec![(0, at), (at, at + 300)]);
        let mut expect = vec![1u8; 100];
        expect.extend([2u8; 300]);
        assert_eq!(read(&m, at - 100, 400), expect);
        // A write covering a whole extent and more replaces it.
        let mut m = DirtyMap::default();
        m.insert(0, &[3u8; 100], &pool);
        assert_eq!(
            m.insert(0, &vec![4u8; MAX_EXTENT + 10], &pool),
            MAX_EXTENT as i64 - 90
        );
        assert_eq!(m.ranges(), vec![(0, MAX_EXTENT as u64 + 10)]);
        assert_eq!(read(&m, 0, 8), vec![4u8; 8]);
        assert_eq!(m.bytes(), MAX_EXTENT as u64 + 10);
    }

    #[test]
    fn writes_across_extents_land_in_place() {
        let pool = BufPool::for_extents(256 << 20);
        let mut m = DirtyMap::default();
        let big = MAX_EXTENT as u64;
        m.insert(0, &vec![1u8; MAX_EXTENT], &pool);
        m.insert(big, &vec![2u8; MAX_EXTENT], &pool);
        m.insert(2 * big + 100, &[3u8; 300], &pool);
        // Across the boundary of two full extents, and on into a gap and the small extent after it.
        assert_eq!(m.insert(big - 50, &[4u8; 100], &pool), 0);
        assert_eq!(m.insert(2 * big - 10, &[5u8; 300], &pool), 100);
        assert_eq!(
            m.ranges(),
            vec![
                (0, big),
                (big, 2 * big),
                (2 * big, 2 * big + 100),
                (2 * big + 100, 2 * big + 400)
            ],
            "no extent was merged into a buffer of both"
        );
        let mut expect = vec![1u8; 10];
        expect.extend([4u8; 100]);
        expect.extend([2u8; 10]);
        assert_eq!(read(&m, big - 60, 120), expect);
        let mut expect = vec![2u8; 5];
        expect.extend([5u8; 300]);
        expect.extend([3u8; 5]);
        assert_eq!(read(&m, 2 * big - 15, 310), expect);
        assert_eq!(m.bytes(), 2 * big + 400);
        // A gap piece joins the small extent that ends where it starts.
        let mut m = DirtyMap::default();
        m.insert(0, &[1u8; 10], &pool);
        m.insert(20, &[2u8; 10], &pool);
        assert_eq!(m.insert(5, &[3u8; 20], &pool), 10);
        assert_eq!(m.ranges(), vec![(0, 20), (20, 30)]);
        let mut expect = vec![1u8; 5];
        expect.extend([3u8; 20]);
        expect.extend([2u8; 5]);
        assert_eq!(read(&m, 0, 30), expect);
    }

    #[test]
    fn chunk_cache_stays_in_budget() {
        let mut c = ChunkCache::new(100);
        for i in 0..10u8 {
            c.insert(ChunkId([i; 32]), Arc::new(vec![i; 30]));
        }
        assert!(c.bytes <= 100);
        assert!(c.get(&ChunkId([9; 32])).is_some());
        assert!(c.get(&ChunkId([0; 32])).is_none());
    }
}
