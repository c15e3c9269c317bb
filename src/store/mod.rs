//! The chunk store: chunk → seal → Reed-Solomon shards → disks, and back, verified.
//!
//! (Interface placeholder; the implementation lands with the chunk-store work.)

/// A chunk's identity: keyed BLAKE3 of its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}
