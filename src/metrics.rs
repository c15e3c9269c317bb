//! Live counters of a mounted volume (FUSE operations and latencies, cache, per-disk shard I/O, errors, repairs)
//! and their renderings: Prometheus text exposition format, a human table, and serde JSON for `valencefs stats`.
//!
//! Everything on the I/O path is a `Relaxed` atomic increment: no lock is taken to count. A [`Snapshot`] is
//! assembled only when someone asks (a scrape, `valencefs stats`). This module knows nothing of fuser or redb.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// FUSE operations counted one by one, in the order they are rendered.
pub const OPS: [&str; 33] = [
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "releasedir",
    "fsyncdir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "fallocate",
    "lseek",
    "init",
    "destroy",
];

/// Index of an operation name in [`OPS`]. Panics on a name not in the table (a programming error, caught by tests).
pub const fn op(name: &str) -> usize {
    let mut i = 0;
    while i < OPS.len() {
        if const_eq(OPS[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("unknown FUSE operation name");
}

const fn const_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Upper bounds (seconds) of the latency histogram buckets; a last, implicit bucket is `+Inf`.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Count, errors and latency histogram of one operation.
#[derive(Default)]
struct OpCounter {
    count: AtomicU64,
    errors: AtomicU64,
    nanos: AtomicU64,
    /// Non-cumulative; index `LATENCY_BUCKETS.len()` is the `+Inf` overflow.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
}

/// Counters owned by the filesystem core and updated by the FUSE adapter.
pub struct FsMetrics {
    started: Instant,
    ops: [OpCounter; OPS.len()],
    /// Bytes returned by `read` / accepted by `write` (logical, before dedup and coding).
    pub read_bytes: AtomicU64,
    pub written_bytes: AtomicU64,
    /// Chunk reads served by the clean-chunk cache vs fetched from the store.
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Bytes written but not yet flushed to the store (a gauge, mirrored from the core's own total).
    pub dirty_bytes: std::sync::Arc<AtomicU64>,
    /// Chunks stored by flushes, and chunks that were already present (deduplicated).
    pub chunks_stored: AtomicU64,
    pub chunks_deduplicated: AtomicU64,
}

impl Default for FsMetrics {
    fn default() -> Self {
        FsMetrics {
            started: Instant::now(),
            ops: std::array::from_fn(|_| OpCounter::default()),
            read_bytes: AtomicU64::new(0),
            written_bytes: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            dirty_bytes: Default::default(),
            chunks_stored: AtomicU64::new(0),
            chunks_deduplicated: AtomicU64::new(0),
        }
    }
}

/// Started when a request arrives; [`FsMetrics::finish`] records it when the reply goes out.
#[derive(Clone, Copy, Debug)]
pub struct OpTimer {
    op: usize,
    start: Instant,
}

impl OpTimer {
    pub fn start(op: usize) -> OpTimer {
        OpTimer {
            op,
            start: Instant::now(),
        }
    }
}

impl FsMetrics {
    /// Records one finished operation.
    pub fn finish(&self, t: OpTimer, ok: bool) {
        self.record(t.op, t.start.elapsed(), ok);
    }

    pub fn record(&self, op: usize, took: Duration, ok: bool) {
        let Some(c) = self.ops.get(op) else { return };
        c.count.fetch_add(1, Relaxed);
        if !ok {
            c.errors.fetch_add(1, Relaxed);
        }
        c.nanos
            .fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
        let secs = took.as_secs_f64();
        let b = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        c.buckets[b].fetch_add(1, Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// The operation counters (only operations seen at least once), and the cache/byte counters.
    pub fn sample(&self) -> (Vec<OpSample>, IoSample) {
        let ops = OPS
            .iter()
            .zip(&self.ops)
            .filter(|(_, c)| c.count.load(Relaxed) > 0)
            .map(|(name, c)| OpSample {
                op: name.to_string(),
                count: c.count.load(Relaxed),
                errors: c.errors.load(Relaxed),
                seconds_sum: c.nanos.load(Relaxed) as f64 / 1e9,
                buckets: c.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            })
            .collect();
        let io = IoSample {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            read_bytes: self.read_bytes.load(Relaxed),
            written_bytes: self.written_bytes.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            dirty_bytes: self.dirty_bytes.load(Relaxed),
            chunks_stored: self.chunks_stored.load(Relaxed),
            chunks_deduplicated: self.chunks_deduplicated.load(Relaxed),
        };
        (ops, io)
    }
}

/// Per-disk counters kept by the chunk store.
#[derive(Default, Debug)]
pub struct DiskCounters {
    pub shard_reads: AtomicU64,
    pub shard_read_bytes: AtomicU64,
    pub shard_writes: AtomicU64,
    pub shard_write_bytes: AtomicU64,
    /// I/O errors, corrupt shards, and shards missing from a disk that is present.
    pub errors: AtomicU64,
    /// Shards rebuilt from the other disks and written back (heal on read).
    pub repairs: AtomicU64,
    /// Chunk reads that could not use this disk's shard and were served from the others.
    pub degraded_reads: AtomicU64,
}

/// A plain copy of [`DiskCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskCounts {
    pub shard_reads: u64,
    pub shard_read_bytes: u64,
    pub shard_writes: u64,
    pub shard_write_bytes: u64,
    pub errors: u64,
    pub repairs: u64,
    pub degraded_reads: u64,
}

impl DiskCounters {
    pub fn sample(&self) -> DiskCounts {
        DiskCounts {
            shard_reads: self.shard_reads.load(Relaxed),
            shard_read_bytes: self.shard_read_bytes.load(Relaxed),
            shard_writes: self.shard_writes.load(Relaxed),
            shard_write_bytes: self.shard_write_bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            repairs: self.repairs.load(Relaxed),
            degraded_reads: self.degraded_reads.load(Relaxed),
        }
    }
}

/// Counters of the store as a whole.
#[derive(Default, Debug)]
pub struct StoreCounters {
    /// Chunk reads that needed more than the k data shards (reconstruction).
    pub degraded_reads: AtomicU64,
    /// Chunk reads that failed: fewer than k good shards.
    pub unrecoverable_reads: AtomicU64,
}

/// One operation's counters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpSample {
    pub op: String,
    pub count: u64,
    pub errors: u64,
    pub seconds_sum: f64,
    /// Non-cumulative counts per [`LATENCY_BUCKETS`] bound, then the overflow.
    pub buckets: Vec<u64>,
}

/// Byte and cache counters of the core.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct IoSample {
    pub uptime_seconds: f64,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub dirty_bytes: u64,
    pub chunks_stored: u64,
    pub chunks_deduplicated: u64,
}

/// Space figures from the metadata (as of the last commit; refreshed at most every few seconds).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct UsageSample {
    pub files: u64,
    pub inodes: u64,
    pub logical_bytes: u64,
    pub unique_chunk_bytes: u64,
    pub stored_bytes: u64,
    /// logical / unique.
    pub dedup_ratio: f64,
}

/// One disk as the store sees it now.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DiskSample {
    pub index: usize,
    pub path: String,
    /// ok, missing, read-only, stale, foreign, unreadable.
    pub state: String,
    pub usable: bool,
    /// Since this mount.
    #[serde(flatten)]
    pub counts: DiskCounts,
    /// Over the volume's life (earlier mounts' totals from the metadata database plus this mount's).
    #[serde(default)]
    pub lifetime: Option<LifetimeCounts>,
}

/// Per-disk totals kept across mounts; the names `valencefs status` uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifetimeCounts {
    pub errors_seen: u64,
    pub repaired: u64,
    pub degraded_reads: u64,
}

/// The store: layout, redundancy now vs target, and per-disk counters.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoreSample {
    pub k: u8,
    pub m: u8,
    /// Disks in use now; the volume needs k to read and tolerates losing (usable − k) more.
    pub disks_usable: u64,
    /// k + m.
    pub disks_target: u64,
    pub degraded_reads: u64,
    pub unrecoverable_reads: u64,
    pub disks: Vec<DiskSample>,
}

/// Everything `valencefs stats` prints and the metrics endpoint serves. Fields are only ever added.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Snapshot {
    pub mountpoint: String,
    pub pid: u32,
    /// The `-o metrics=` address actually listening, if any.
    pub metrics_address: Option<String>,
    pub io: IoSample,
    pub ops: Vec<OpSample>,
    pub usage: Option<UsageSample>,
    pub store: Option<StoreSample>,
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Writes `# HELP` and `# TYPE` of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A float in exposition syntax (integers without a fraction, `+Inf`/`NaN` spelled as Prometheus wants).
fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Renders the snapshot in the Prometheus text exposition format (version 0.0.4).
pub fn render_prometheus(s: &Snapshot) -> String {
    let mut o = String::with_capacity(8192);
    let simple = |o: &mut String, name: &str, kind: &str, help: &str, v: f64| {
        family(o, name, kind, help);
        let _ = writeln!(o, "{name} {}", num(v));
    };
    simple(
        &mut o,
        "valencefs_uptime_seconds",
        "gauge",
        "Seconds since the volume was mounted.",
        s.io.uptime_seconds,
    );
    family(
        &mut o,
        "valencefs_fuse_requests_total",
        "counter",
        "FUSE requests answered, by operation.",
    );
    for op in &s.ops {
        let _ = writeln!(
            o,
            "valencefs_fuse_requests_total{{op=\"{}\"}} {}",
            op.op, op.count
        );
    }
    family(
        &mut o,
        "valencefs_fuse_errors_total",
        "counter",
        "FUSE requests that failed, by operation (ENOENT and ENODATA are answers, not failures).",
    );
    for op in &s.ops {
        let _ = writeln!(
            o,
            "valencefs_fuse_errors_total{{op=\"{}\"}} {}",
            op.op, op.errors
        );
    }
    let h = "valencefs_fuse_request_duration_seconds";
    family(
        &mut o,
        h,
        "histogram",
        "Time from a FUSE request's arrival to its reply, by operation.",
    );
    for op in &s.ops {
        let mut cum = 0;
        for (i, n) in op.buckets.iter().enumerate() {
            cum += n;
            let le = LATENCY_BUCKETS.get(i).map_or("+Inf".into(), |b| num(*b));
            let _ = writeln!(o, "{h}_bucket{{op=\"{}\",le=\"{le}\"}} {cum}", op.op);
        }
        let _ = writeln!(o, "{h}_sum{{op=\"{}\"}} {}", op.op, num(op.seconds_sum));
        let _ = writeln!(o, "{h}_count{{op=\"{}\"}} {}", op.op, op.count);
    }
    let io = &s.io;
    for (name, help, v) in [
        (
            "valencefs_read_bytes_total",
            "Bytes returned to readers.",
            io.read_bytes,
        ),
        (
            "valencefs_written_bytes_total",
            "Bytes accepted from writers (before deduplication, compression and coding).",
            io.written_bytes,
        ),
        (
            "valencefs_cache_hits_total",
            "Chunk reads served from the clean-chunk cache.",
            io.cache_hits,
        ),
        (
            "valencefs_cache_misses_total",
            "Chunk reads that went to the disks.",
            io.cache_misses,
        ),
        (
            "valencefs_chunks_stored_total",
            "New chunks written to the disks by flushes.",
            io.chunks_stored,
        ),
        (
            "valencefs_chunks_deduplicated_total",
            "Chunks flushed that were already stored (deduplicated).",
            io.chunks_deduplicated,
        ),
    ] {
        simple(&mut o, name, "counter", help, v as f64);
    }
    simple(
        &mut o,
        "valencefs_cache_dirty_bytes",
        "gauge",
        "Bytes written and not yet flushed to the disks.",
        io.dirty_bytes as f64,
    );
    if let Some(u) = &s.usage {
        for (name, help, v) in [
            (
                "valencefs_logical_bytes",
                "Sum of regular file sizes.",
                u.logical_bytes as f64,
            ),
            (
                "valencefs_unique_bytes",
                "Plaintext bytes of the distinct chunks referenced.",
                u.unique_chunk_bytes as f64,
            ),
            (
                "valencefs_stored_bytes",
                "Bytes the referenced chunks occupy on the disks (all shards and headers).",
                u.stored_bytes as f64,
            ),
            (
                "valencefs_dedup_ratio",
                "Logical bytes per unique chunk byte.",
                u.dedup_ratio,
            ),
            ("valencefs_files", "Regular files.", u.files as f64),
            ("valencefs_inodes", "Inodes of every kind.", u.inodes as f64),
        ] {
            simple(&mut o, name, "gauge", help, v);
        }
    }
    if let Some(st) = &s.store {
        for (name, help, v) in [
            (
                "valencefs_redundancy_disks_usable",
                "Disks in use now.",
                st.disks_usable,
            ),
            (
                "valencefs_redundancy_disks_target",
                "Disks the layout is built for (k+m).",
                st.disks_target,
            ),
            (
                "valencefs_redundancy_data_shards",
                "k: shards needed to read a chunk.",
                st.k as u64,
            ),
            (
                "valencefs_redundancy_tolerable_losses",
                "Further disk losses survivable now (usable disks minus k).",
                st.disks_usable.saturating_sub(st.k as u64),
            ),
        ] {
            simple(&mut o, name, "gauge", help, v as f64);
        }
        for (name, help, v) in [
            (
                "valencefs_degraded_reads_total",
                "Chunk reads that needed reconstruction from parity.",
                st.degraded_reads,
            ),
            (
                "valencefs_unrecoverable_reads_total",
                "Chunk reads that failed: too few good shards (EIO).",
                st.unrecoverable_reads,
            ),
        ] {
            simple(&mut o, name, "counter", help, v as f64);
        }
        family(
            &mut o,
            "valencefs_disk_up",
            "gauge",
            "1 if the disk is in use, 0 if missing, stale or unreadable.",
        );
        for d in &st.disks {
            let _ = writeln!(
                o,
                "valencefs_disk_up{{disk=\"{}\",index=\"{}\",state=\"{}\"}} {}",
                label(&d.path),
                d.index,
                d.state,
                d.usable as u8
            );
        }
        type Pick = fn(&DiskCounts) -> u64;
        let per_disk: [(&str, &str, Pick); 7] = [
            (
                "valencefs_disk_shard_reads_total",
                "Shard files read.",
                |c| c.shard_reads,
            ),
            (
                "valencefs_disk_shard_read_bytes_total",
                "Bytes of shard files read.",
                |c| c.shard_read_bytes,
            ),
            (
                "valencefs_disk_shard_writes_total",
                "Shard files written (new chunks and repairs).",
                |c| c.shard_writes,
            ),
            (
                "valencefs_disk_shard_write_bytes_total",
                "Bytes of shard files written.",
                |c| c.shard_write_bytes,
            ),
            (
                "valencefs_disk_errors_total",
                "I/O errors, corrupt shards and shards missing from a present disk.",
                |c| c.errors,
            ),
            (
                "valencefs_disk_repairs_total",
                "Shards rebuilt from the other disks and written back (heal on read).",
                |c| c.repairs,
            ),
            (
                "valencefs_disk_degraded_reads_total",
                "Chunk reads served without this disk's shard.",
                |c| c.degraded_reads,
            ),
        ];
        for (name, help, pick) in per_disk {
            family(&mut o, name, "counter", help);
            for d in &st.disks {
                let _ = writeln!(
                    o,
                    "{name}{{disk=\"{}\",index=\"{}\"}} {}",
                    label(&d.path),
                    d.index,
                    pick(&d.counts)
                );
            }
        }
    }
    o
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

/// Renders the snapshot as the table `valencefs stats` prints.
pub fn render_table(s: &Snapshot) -> String {
    let mut o = String::new();
    let io = &s.io;
    let _ = writeln!(
        o,
        "mount       {} (pid {}, up {:.0} s)",
        s.mountpoint, s.pid, io.uptime_seconds
    );
    if let Some(a) = &s.metrics_address {
        let _ = writeln!(o, "metrics     http://{a}/metrics");
    }
    let _ = writeln!(
        o,
        "io          {} read, {} written; {} dirty (not yet on disks)",
        mb(io.read_bytes),
        mb(io.written_bytes),
        mb(io.dirty_bytes)
    );
    let lookups = io.cache_hits + io.cache_misses;
    let _ = writeln!(
        o,
        "cache       {} hits, {} misses ({:.1}% hit)",
        io.cache_hits,
        io.cache_misses,
        if lookups == 0 {
            0.0
        } else {
            io.cache_hits as f64 * 100.0 / lookups as f64
        }
    );
    let _ = writeln!(
        o,
        "chunks      {} stored, {} deduplicated",
        io.chunks_stored, io.chunks_deduplicated
    );
    if let Some(u) = &s.usage {
        let _ = writeln!(
            o,
            "space       {} files, {} logical, {} unique, {} stored (dedup {:.2}x)",
            u.files,
            mb(u.logical_bytes),
            mb(u.unique_chunk_bytes),
            mb(u.stored_bytes),
            u.dedup_ratio
        );
    }
    if let Some(st) = &s.store {
        let _ = writeln!(
            o,
            "redundancy  {}+{}: {}/{} disks usable, survives {} more losses; {} degraded reads, {} unrecoverable",
            st.k,
            st.m,
            st.disks_usable,
            st.disks_target,
            st.disks_usable.saturating_sub(st.k as u64),
            st.degraded_reads,
            st.unrecoverable_reads
        );
        let _ = writeln!(
            o,
            "\n{:>3} {:<10} {:>9} {:>9} {:>7} {:>8} {:>9}  path",
            "#", "state", "reads", "writes", "errors", "repairs", "degraded"
        );
        for d in &st.disks {
            let c = &d.counts;
            let _ = writeln!(
                o,
                "{:>3} {:<10} {:>9} {:>9} {:>7} {:>8} {:>9}  {}",
                d.index,
                d.state,
                c.shard_reads,
                c.shard_writes,
                c.errors,
                c.repairs,
                c.degraded_reads,
                d.path
            );
        }
    }
    if !s.ops.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<12} {:>10} {:>7} {:>10}",
            "operation", "count", "errors", "mean ms"
        );
        for op in &s.ops {
            let _ = writeln!(
                o,
                "{:<12} {:>10} {:>7} {:>10.3}",
                op.op,
                op.count,
                op.errors,
                if op.count == 0 {
                    0.0
                } else {
                    op.seconds_sum * 1e3 / op.count as f64
                }
            );
        }
    }
    o
}

pub mod exposition;

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let m = FsMetrics::default();
        m.record(op("read"), Duration::from_micros(300), true);
        m.record(op("read"), Duration::from_millis(30), false);
        m.record(op("write"), Duration::from_secs(20), true);
        FsMetrics::add(&m.written_bytes, 4096);
        let (ops, io) = m.sample();
        let d = DiskCounters::default();
        d.shard_writes.fetch_add(3, Relaxed);
        Snapshot {
            mountpoint: "/mnt".into(),
            pid: 1,
            metrics_address: None,
            io,
            ops,
            usage: Some(UsageSample::default()),
            store: Some(StoreSample {
                k: 3,
                m: 2,
                disks_usable: 4,
                disks_target: 5,
                degraded_reads: 1,
                unrecoverable_reads: 0,
                disks: vec![DiskSample {
                    index: 0,
                    path: "/srv/d\"1\\x".into(),
                    state: "ok".into(),
                    usable: true,
                    counts: d.sample(),
                    lifetime: None,
                }],
            }),
        }
    }

    #[test]
    fn op_names_resolve() {
        assert_eq!(OPS[op("lseek")], "lseek");
        assert_eq!(op("lookup"), 0);
    }

    #[test]
    fn prometheus_text_parses_and_holds_the_counts() {
        let text = render_prometheus(&snapshot());
        let s = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(s["valencefs_fuse_requests_total{op=\"read\"}"], 2.0);
        assert_eq!(s["valencefs_fuse_errors_total{op=\"read\"}"], 1.0);
        assert_eq!(
            s["valencefs_fuse_request_duration_seconds_bucket{op=\"read\",le=\"0.0005\"}"],
            1.0
        );
        assert_eq!(
            s["valencefs_fuse_request_duration_seconds_bucket{op=\"write\",le=\"10\"}"],
            0.0
        );
        assert_eq!(
            s["valencefs_fuse_request_duration_seconds_bucket{op=\"write\",le=\"+Inf\"}"],
            1.0
        );
        assert_eq!(s["valencefs_written_bytes_total"], 4096.0);
        assert_eq!(
            s["valencefs_disk_shard_writes_total{disk=\"/srv/d\\\"1\\\\x\",index=\"0\"}"],
            3.0
        );
        assert_eq!(s["valencefs_redundancy_tolerable_losses"], 1.0);
        assert!(render_table(&snapshot()).contains("read"));
    }

    #[test]
    fn parser_rejects_malformed_text() {
        for bad in [
            "x_total 1\n",
            "# HELP x_total h\n# TYPE x_total counter\nx_total one\n",
            "# HELP x h\n# TYPE x counter\nx 1\n",
            "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n",
        ] {
            assert!(exposition::parse(bad).is_err(), "accepted: {bad}");
        }
    }
}
