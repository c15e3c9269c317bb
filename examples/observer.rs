//! What someone holding every disk learns about a tree of files from chunk sizes alone (FORMAT.md §9): stores the
//! tree in a v1 and in a v2 volume (memory disks, the default chunker, compression on) and reads back only what an
//! observer sees, the envelope length in every shard header. Usage:
//! `cargo run --release --example observer -- [DIR, default /usr/share/doc] [chunk size, default 1M]`
//! (see `bench/observer.sh`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use valencefs::store::format::{ShardHeader, FORMAT_V1, FORMAT_V2, SHARD_DIR};
use valencefs::store::{ChunkerParams, CreateOptions, Disk, KdfParams, MemDisk, Store};

fn files(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = rd.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            files(&e.path(), out);
        } else if t.is_file() {
            if let Ok(b) = std::fs::read(e.path()) {
                out.push(b);
            }
        }
    }
}

/// Sizes an observer sees for one volume: each distinct chunk's envelope length.
struct Seen {
    chunks: usize,
    /// Envelope length → number of chunks with it.
    classes: BTreeMap<u64, usize>,
    /// Single-chunk files (the whole file is one chunk): how many share their envelope length with ≥ 10 others.
    single: usize,
    single_hidden: usize,
    stored: u64,
}

fn observe(tree: &[Vec<u8>], version: u16, chunker: ChunkerParams) -> Seen {
    let disks: Vec<Arc<MemDisk>> = (0..5).map(|_| Arc::new(MemDisk::new())).collect();
    let dyn_disks: Vec<Arc<dyn Disk>> = disks.iter().map(|d| d.clone() as Arc<dyn Disk>).collect();
    let opts = CreateOptions {
        kdf: KdfParams::insecure_fast(),
        chunker,
        format: version,
        ..Default::default()
    };
    let store = Store::create(dyn_disks, &opts, b"observer").unwrap();
    let mut single_ids = Vec::new();
    for f in tree {
        let mut lens = store.chunk_lengths(f);
        if lens.is_empty() {
            lens.push(0);
        }
        let single = lens.len() == 1;
        let mut off = 0;
        for l in lens {
            let piece = &f[off..off + l];
            off += l;
            let id = store.chunk_id(piece);
            store.put(&id, piece).unwrap();
            if single {
                single_ids.push(id);
            }
        }
    }
    // The observer's view: shard 0 headers (any shard would do) name a chunk id and its envelope length.
    let mut env_of: HashMap<[u8; 32], u64> = HashMap::new();
    let mut stored = 0;
    for d in &disks {
        stored += d.bytes();
        for name in d.list(&format!("{SHARD_DIR}/")).unwrap() {
            let file = d.get(&name).unwrap();
            let h = ShardHeader::decode(&file).unwrap();
            env_of.insert(h.chunk_id, h.envelope_len);
        }
    }
    let mut classes = BTreeMap::new();
    for l in env_of.values() {
        *classes.entry(*l).or_insert(0) += 1;
    }
    let single_hidden = single_ids
        .iter()
        .filter(|id| classes[&env_of[&id.0]] > 10)
        .count();
    Seen {
        chunks: env_of.len(),
        classes,
        single: single_ids.len(),
        single_hidden,
        stored,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "/usr/share/doc".into());
    let avg: u64 = match args.next().as_deref() {
        None => 1 << 20,
        Some(s) => {
            let (n, mult) = match s.strip_suffix(['K', 'k']) {
                Some(n) => (n, 1024),
                None => (s.strip_suffix(['M', 'm']).unwrap_or(s), 1 << 20),
            };
            n.parse::<u64>().expect("chunk size like 64K or 1M") * mult
        }
    };
    let chunker = ChunkerParams::with_avg(avg).unwrap();
    let mut tree = Vec::new();
    files(Path::new(&dir), &mut tree);
    let bytes: usize = tree.iter().map(|f| f.len()).sum();
    println!(
        "{dir}: {} files, {:.1} MiB; chunker {}/{}/{} KiB; 3+2 over memory disks",
        tree.len(),
        bytes as f64 / 1048576.0,
        chunker.min / 1024,
        chunker.avg / 1024,
        chunker.max / 1024
    );
    println!("| format | chunks | single-chunk files | distinct sizes seen | median chunks per size | single-chunk files in a size shared by > 10 chunks | stored MiB |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for v in [FORMAT_V1, FORMAT_V2] {
        let s = observe(&tree, v, chunker);
        // Median over chunks of the number of chunks sharing its size: a typical chunk's anonymity set.
        let mut per_chunk: Vec<usize> = s
            .classes
            .values()
            .flat_map(|&n| std::iter::repeat(n).take(n))
            .collect();
        per_chunk.sort_unstable();
        let median = per_chunk.get(per_chunk.len() / 2).copied().unwrap_or(0);
        println!(
            "| v{v} | {} | {} | {} | {} | {} ({:.0} %) | {:.1} |",
            s.chunks,
            s.single,
            s.classes.len(),
            median,
            s.single_hidden,
            100.0 * s.single_hidden as f64 / s.single.max(1) as f64,
            s.stored as f64 / 1048576.0
        );
    }
}
