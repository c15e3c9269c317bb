//! Helpers shared by the `store_*` integration tests: disk sets, small-chunk options, seeded data.
#![allow(dead_code)]

use std::sync::Arc;

use rand::{RngCore, SeedableRng};
use valencefs::store::{
    ChunkId, ChunkerParams, CreateOptions, Disk, FaultDisk, KdfParams, MemDisk, Redundancy, Store,
};

pub const PASS: &[u8] = b"correct horse battery staple";

/// Options for tests: cheap KDF, small chunks (16/64/256 KiB) so many chunks fit in little data.
pub fn opts(r: &str) -> CreateOptions {
    CreateOptions {
        redundancy: r.parse::<Redundancy>().unwrap(),
        compression: true,
        kdf: KdfParams::insecure_fast(),
        chunker: ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        },
        ..Default::default()
    }
}

pub fn as_dyn<D: Disk + 'static>(v: &[Arc<D>]) -> Vec<Arc<dyn Disk>> {
    v.iter().map(|d| d.clone() as Arc<dyn Disk>).collect()
}

pub fn mem_disks(n: usize) -> Vec<Arc<MemDisk>> {
    (0..n).map(|_| Arc::new(MemDisk::new())).collect()
}

/// `n` fault disks, each over its own memory disk (returned too, for tampering).
pub fn fault_disks(n: usize) -> (Vec<Arc<FaultDisk>>, Vec<Arc<MemDisk>>) {
    let mems = mem_disks(n);
    let faults = mems
        .iter()
        .map(|m| Arc::new(FaultDisk::over_mem(m.clone())))
        .collect();
    (faults, mems)
}

pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Half random, half repetitive text: exercises both the compressed and the stored envelope.
pub fn mixed(len: usize, seed: u64) -> Vec<u8> {
    let mut v = random(len, seed);
    let text = b"valencefs compressible line of text 0123456789\n";
    for (i, b) in v.iter_mut().enumerate().skip(len / 2) {
        *b = text[i % text.len()];
    }
    v
}

/// Chunks `data`, stores every piece, returns the ids in order (the "manifest").
pub fn write_all(store: &Store, data: &[u8]) -> Vec<ChunkId> {
    let mut off = 0;
    let mut ids = Vec::new();
    for len in store.chunk_lengths(data) {
        let piece = &data[off..off + len];
        let id = store.chunk_id(piece);
        store.put(&id, piece).unwrap();
        ids.push(id);
        off += len;
    }
    assert_eq!(off, data.len());
    ids
}

pub fn read_all(store: &Store, ids: &[ChunkId]) -> valencefs::Result<Vec<u8>> {
    let mut out = Vec::new();
    for id in ids {
        out.extend_from_slice(&store.get(id)?);
    }
    Ok(out)
}
