//! Chunk-store benchmark: each stage alone, then the whole pipeline over memory and tmpfs directory disks.
//!
//! Run: `bench/store.sh` (= `cargo bench --bench store`). Env: `VFS_BENCH_MIB` (pipeline data per repeat,
//! default 128), `VFS_BENCH_REPEATS` (default 3), `VFS_BENCH_DIR` (default /dev/shm),
//! `VFS_BENCH_ONLY` (e.g. `3+2 mem v3`: one pipeline only), `VFS_BENCH_CHUNK` (average chunk size, e.g. `64K`).
//! Every pipeline runs for format v2 (one stripe per chunk) and v3 (packed stripes).

use std::sync::Arc;
use std::time::Instant;

use rand::{RngCore, SeedableRng};
use valencefs::store::crypto::Keys;
use valencefs::store::erasure::Codec;
use valencefs::store::{
    open_dir_disk, ChunkId, CreateOptions, Disk, FaultDisk, Faults, KdfParams, MemDisk, Redundancy,
    Store,
};

const MIB: f64 = 1024.0 * 1024.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median and (min, max) of throughputs in MiB/s over `repeats` runs of `f`, which processes `bytes` per run.
fn measure(repeats: usize, bytes: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut v: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            f();
            bytes as f64 / MIB / t.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn show(name: &str, r: (f64, f64, f64)) -> f64 {
    println!(
        "{name:<44} {:>9.0} MiB/s  (min {:.0}, max {:.0})",
        r.0, r.1, r.2
    );
    r.0
}

fn harmonic(stages: &[f64]) -> f64 {
    1.0 / stages.iter().map(|t| 1.0 / t).sum::<f64>()
}

fn main() {
    let repeats = env_usize("VFS_BENCH_REPEATS", 3).max(3);
    let total = env_usize("VFS_BENCH_MIB", 128) << 20;
    let shm = std::path::PathBuf::from(
        std::env::var("VFS_BENCH_DIR").unwrap_or_else(|_| "/dev/shm".into()),
    );
    let cores = 2usize;
    let mut data = vec![0u8; total];
    rand::rngs::StdRng::seed_from_u64(1).fill_bytes(&mut data);
    println!("valencefs store bench: {} MiB random data per pipeline run, {repeats} repeats, {cores} threads", total >> 20);

    // ---- Stages alone (one thread, 1 MiB units over 64 MiB). ----
    let unit = 1 << 20;
    let stage_bytes = 64 << 20;
    let keys = Keys::from_master([7; 32]);
    let vid = [1u8; 16];
    let pieces: Vec<&[u8]> = data[..stage_bytes].chunks(unit).collect();
    println!("\n-- stages, one thread, 1 MiB units --");
    let aes = show(
        "AES-256-GCM seal",
        measure(repeats, stage_bytes, || {
            for p in &pieces {
                std::hint::black_box(keys.seal_chunk(&vid, &[0; 32], 0, p));
            }
        }),
    );
    // The reference: RustCrypto's aes-gcm (the crate sealing used before aws-lc-rs), same sizes, in place.
    show(
        "  reference: RustCrypto aes-gcm seal",
        measure(repeats, stage_bytes, || {
            use aes_gcm::aead::{AeadInPlace, KeyInit};
            let c = aes_gcm::Aes256Gcm::new_from_slice(&[7; 32]).unwrap();
            for p in &pieces {
                let mut buf = p.to_vec();
                let nonce = aes_gcm::Nonce::from_slice(&[0; 12]);
                std::hint::black_box(
                    c.encrypt_in_place_detached(nonce, b"aad", &mut buf)
                        .unwrap(),
                );
            }
        }),
    );
    let sealed: Vec<Vec<u8>> = pieces
        .iter()
        .map(|p| keys.seal_chunk(&vid, &[0; 32], 0, p))
        .collect();
    // Opening consumes its buffer: clone outside the timed region.
    let mut opens: Vec<f64> = (0..repeats)
        .map(|_| {
            let copies = sealed.clone();
            let t = Instant::now();
            for c in copies {
                std::hint::black_box(keys.open_chunk(&vid, &[0; 32], c).unwrap());
            }
            stage_bytes as f64 / MIB / t.elapsed().as_secs_f64()
        })
        .collect();
    opens.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let aes_open = show(
        "AES-256-GCM open",
        (opens[opens.len() / 2], opens[0], opens[opens.len() - 1]),
    );
    let b3 = show(
        "BLAKE3 keyed (chunk id)",
        measure(repeats, stage_bytes, || {
            for p in &pieces {
                std::hint::black_box(keys.chunk_id(p));
            }
        }),
    );
    let params = valencefs::store::ChunkerParams::default();
    let gear = valencefs::store::chunker::Gear::from_seed(42);
    let cdc = show(
        "FastCDC v2020 256K/1M/4M",
        measure(repeats, stage_bytes, || {
            std::hint::black_box(valencefs::store::chunker::chunk_lengths(
                &params,
                &gear,
                &data[..stage_bytes],
            ));
        }),
    );
    let zstd_r = show(
        "zstd -1 attempt on random data",
        measure(repeats, stage_bytes, || {
            for p in &pieces {
                std::hint::black_box(zstd::bulk::compress(p, 1).unwrap());
            }
        }),
    );
    let text: Vec<u8> =
        b"valencefs compressible text line 0123456789 abcdefghij\n".repeat(stage_bytes / 55 + 1);
    let text = &text[..stage_bytes];
    let zstd_t = show(
        "zstd -1 on text",
        measure(repeats, stage_bytes, || {
            for p in text.chunks(unit) {
                std::hint::black_box(zstd::bulk::compress(p, 1).unwrap());
            }
        }),
    );
    let mut rs = Vec::new();
    for (k, m) in [(2usize, 1usize), (3, 2), (5, 4)] {
        let codec = Codec::new(k, m).unwrap();
        let enc = show(
            &format!("RS encode {k}+{m} (per envelope byte)"),
            measure(repeats, stage_bytes, || {
                for p in &pieces {
                    std::hint::black_box(codec.encode(p));
                }
            }),
        );
        let encoded: Vec<Vec<Vec<u8>>> = pieces.iter().map(|p| codec.encode(p)).collect();
        let rec = show(
            &format!("RS reconstruct {k}+{m}, {m} data shards lost"),
            measure(repeats, stage_bytes, || {
                for e in &encoded {
                    let mut o: Vec<Option<Vec<u8>>> = e.iter().cloned().map(Some).collect();
                    for s in o.iter_mut().take(m) {
                        *s = None;
                    }
                    codec.reconstruct(&mut o).unwrap();
                    std::hint::black_box(o);
                }
            }),
        );
        rs.push((k, m, enc, rec));
    }
    let t = Instant::now();
    let slot = keys.wrap(&vid, b"pw", &KdfParams::default()).unwrap();
    println!(
        "{:<44} {:>9.3} s",
        "Argon2id default keyslot (256 MiB, t=2)",
        t.elapsed().as_secs_f64()
    );
    std::hint::black_box(slot);

    // ---- Whole pipeline. ----
    println!("\n-- pipeline, {cores} threads, compression on, default chunker --");
    println!("(ceiling = {cores} × 1/Σ(1/stage); write stages: FastCDC, BLAKE3, AES-GCM, RS encode; read: AES-GCM open, BLAKE3)");
    for &(k, m, enc, rec) in &rs {
        let write_ceiling = cores as f64 * harmonic(&[cdc, b3, aes, enc]);
        let read_ceiling = cores as f64 * harmonic(&[aes_open, b3]);
        let degraded_ceiling = cores as f64 * harmonic(&[aes_open, b3, rec]);
        for kind in ["mem", "tmpfs"] {
            for format in [2u16, 3] {
                // VFS_BENCH_ONLY="3+2 mem v3" runs just that pipeline (for profiling).
                if std::env::var("VFS_BENCH_ONLY")
                    .is_ok_and(|o| o != format!("{k}+{m} {kind} v{format}"))
                {
                    continue;
                }
                pipeline(
                    (kind, format),
                    k,
                    m,
                    &data,
                    repeats,
                    &shm,
                    (write_ceiling, read_ceiling, degraded_ceiling),
                );
            }
        }
    }
    let _ = (zstd_r, zstd_t);
}

fn make_disks(
    kind: &str,
    n: usize,
    shm: &std::path::Path,
    run: usize,
) -> (Vec<Arc<FaultDisk>>, Option<tempfile::TempDir>) {
    let (inner, dir): (Vec<Arc<dyn Disk>>, _) = if kind == "mem" {
        (
            (0..n)
                .map(|_| Arc::new(MemDisk::new()) as Arc<dyn Disk>)
                .collect(),
            None,
        )
    } else {
        let t = tempfile::Builder::new()
            .prefix(&format!("vfs-bench-{run}-"))
            .tempdir_in(shm)
            .unwrap();
        (
            (0..n)
                .map(|i| open_dir_disk(&t.path().join(format!("d{i}"))))
                .collect(),
            Some(t),
        )
    };
    (
        inner
            .into_iter()
            .map(|d| Arc::new(FaultDisk::new(d)))
            .collect(),
        dir,
    )
}

fn pipeline(
    (kind, format): (&str, u16),
    k: usize,
    m: usize,
    data: &[u8],
    repeats: usize,
    shm: &std::path::Path,
    ceilings: (f64, f64, f64),
) {
    let mut w = Vec::new();
    let mut r = Vec::new();
    let mut d = Vec::new();
    let mut stored = 0u64;
    let mut files = 0usize;
    for run in 0..repeats {
        let (disks, _dir) = make_disks(kind, k + m, shm, run);
        let opts = CreateOptions {
            redundancy: Redundancy {
                k: k as u8,
                m: m as u8,
            },
            kdf: KdfParams::insecure_fast(),
            format,
            // VFS_BENCH_CHUNK=64K: the average chunk size (default 1M).
            chunker: std::env::var("VFS_BENCH_CHUNK")
                .ok()
                .map(|c| {
                    let kib: u64 = c.trim_end_matches(['K', 'k']).parse().expect("64K");
                    valencefs::store::ChunkerParams::with_avg(kib << 10).unwrap()
                })
                .unwrap_or_default(),
            ..CreateOptions::default()
        };
        let dyn_disks: Vec<Arc<dyn Disk>> =
            disks.iter().map(|x| x.clone() as Arc<dyn Disk>).collect();
        let store = Store::create(dyn_disks, &opts, b"bench").unwrap();
        let halves: Vec<&[u8]> = data.chunks(data.len().div_ceil(2)).collect();
        let t = Instant::now();
        let results: Vec<(Vec<ChunkId>, u64)> = std::thread::scope(|s| {
            let hs: Vec<_> = halves
                .iter()
                .map(|h| {
                    let store = &store;
                    s.spawn(move || {
                        let mut ids = Vec::new();
                        let mut bytes = 0;
                        let mut off = 0;
                        for len in store.chunk_lengths(h) {
                            let piece = &h[off..off + len];
                            let id = store.chunk_id(piece);
                            bytes += store.put(&id, piece).unwrap();
                            ids.push(id);
                            off += len;
                        }
                        (ids, bytes)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        store.sync().unwrap();
        w.push(data.len() as f64 / MIB / t.elapsed().as_secs_f64());
        stored = results.iter().map(|x| x.1).sum();
        files = store.shard_counts().iter().map(|c| c.unwrap_or(0)).sum();
        let read = |store: &Store| {
            let t = Instant::now();
            std::thread::scope(|s| {
                for (ids, _) in &results {
                    s.spawn(move || {
                        for id in ids {
                            std::hint::black_box(store.get(id).unwrap());
                        }
                    });
                }
            });
            data.len() as f64 / MIB / t.elapsed().as_secs_f64()
        };
        r.push(read(&store));
        for x in disks.iter().take(m) {
            x.set(Faults {
                missing: true,
                ..Faults::default()
            });
        }
        d.push(read(&store));
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (wm, wl, wh) = med(&mut w);
    let (rm, rl, rh) = med(&mut r);
    let (dm, dl, dh) = med(&mut d);
    let gib = data.len() as f64 / (1024.0 * MIB);
    println!(
        "{k}+{m} {kind:<5} v{format} write {wm:>6.0} MiB/s ({wl:.0}-{wh:.0}) = {:.2}× ceiling {:.0} | read {rm:>6.0} ({rl:.0}-{rh:.0}) = {:.2}× ceiling {:.0} | degraded read ({m} lost) {dm:>6.0} ({dl:.0}-{dh:.0}) = {:.2}× read | shard files/GiB {:.0} | stored/written {:.3}",
        wm / ceilings.0,
        ceilings.0,
        rm / ceilings.1,
        ceilings.1,
        dm / rm,
        files as f64 / gib,
        stored as f64 / data.len() as f64,
    );
}
