//! A chunk store kept in memory, without encryption or redundancy: the test double for core tests.

use super::Chunks;
use crate::error::{Error, Result};
use crate::store::ChunkId;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Chunks in a hash map, with small content-defined chunks (4/16/64 KiB) so tests cross many boundaries.
#[derive(Default)]
pub struct MemChunks {
    map: Mutex<HashMap<ChunkId, Vec<u8>>>,
}

impl MemChunks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of chunks held.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Chunks for MemChunks {
    fn chunk_id(&self, data: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&[7; 32], data).as_bytes())
    }

    fn chunk_lengths(&self, data: &[u8]) -> Vec<usize> {
        fastcdc::v2020::FastCDC::new(data, 4096, 16384, 65536)
            .map(|c| c.length)
            .collect()
    }

    fn max_chunk_size(&self) -> usize {
        65536
    }

    fn put(&self, id: &ChunkId, data: &[u8]) -> Result<u64> {
        self.map.lock().insert(*id, data.to_vec());
        Ok(data.len() as u64)
    }

    fn get(&self, id: &ChunkId) -> Result<Vec<u8>> {
        self.map
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::Unrecoverable {
                chunk: id.to_hex(),
                good: 0,
                need: 1,
            })
    }

    fn delete(&self, id: &ChunkId) -> Result<()> {
        self.map.lock().remove(id);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}
