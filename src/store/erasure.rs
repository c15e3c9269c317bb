//! Reed-Solomon over GF(2^8) (the `reed-solomon-erasure` crate, pure Rust, no SIMD C build): split an envelope
//! into k data + m parity shards and rebuild from any k.

use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::error::{Error, Result};

/// A codec for one k+m layout. Systematic: data shards are the envelope itself, so a read with every data shard
/// present needs no decoding.
pub struct Codec {
    rs: ReedSolomon,
    k: usize,
    m: usize,
}

impl Codec {
    pub fn new(k: usize, m: usize) -> Result<Codec> {
        let rs = ReedSolomon::new(k, m)
            .map_err(|e| Error::Invalid(format!("Reed-Solomon {k}+{m}: {e:?}")))?;
        Ok(Codec { rs, k, m })
    }

    /// Shard length for an envelope: every shard has the same length (the last data shard is zero-padded).
    pub fn shard_len(&self, envelope_len: usize) -> usize {
        envelope_len.div_ceil(self.k).max(1)
    }

    /// Splits and encodes: returns k+m shards of equal length.
    pub fn encode(&self, envelope: &[u8]) -> Vec<Vec<u8>> {
        self.encode_with_prefix(envelope, 0)
    }

    /// Like [`Codec::encode`], but every returned buffer starts with `prefix` zero bytes (room for a shard
    /// header) followed by the shard: the shard files are built without another copy of the payload.
    pub fn encode_with_prefix(&self, envelope: &[u8], prefix: usize) -> Vec<Vec<u8>> {
        let len = self.shard_len(envelope.len());
        let mut data: Vec<Vec<u8>> = (0..self.k)
            .map(|i| {
                let start = (i * len).min(envelope.len());
                let end = ((i + 1) * len).min(envelope.len());
                let mut s = Vec::with_capacity(prefix + len);
                s.resize(prefix, 0);
                s.extend_from_slice(&envelope[start..end]);
                s.resize(prefix + len, 0);
                s
            })
            .collect();
        let mut parity = vec![vec![0u8; prefix + len]; self.m];
        {
            let d: Vec<&[u8]> = data.iter().map(|s| &s[prefix..]).collect();
            let mut p: Vec<&mut [u8]> = parity.iter_mut().map(|s| &mut s[prefix..]).collect();
            self.rs
                .encode_sep(&d, &mut p)
                .expect("shard counts and lengths are consistent");
        }
        data.extend(parity);
        data
    }

    /// Rebuilds every missing shard in place from any k present ones (all present shards must have equal length).
    pub fn reconstruct(&self, shards: &mut [Option<Vec<u8>>]) -> Result<()> {
        self.rs
            .reconstruct(shards)
            .map_err(|e| Error::Corrupt(format!("Reed-Solomon reconstruction failed: {e:?}")))
    }

    /// Rebuilds only the missing data shards (parity shards stay `None` if missing): the cheaper read path.
    pub fn reconstruct_data(&self, shards: &mut [Option<Vec<u8>>]) -> Result<()> {
        self.rs
            .reconstruct_data(shards)
            .map_err(|e| Error::Corrupt(format!("Reed-Solomon reconstruction failed: {e:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_k_rebuild() {
        let c = Codec::new(3, 2).unwrap();
        let env: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let shards = c.encode(&env);
        assert_eq!(shards.len(), 5);
        let mut opt: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
        opt[0] = None;
        opt[3] = None;
        c.reconstruct(&mut opt).unwrap();
        let joined: Vec<u8> = opt[..3].iter().flat_map(|s| s.clone().unwrap()).collect();
        assert_eq!(&joined[..1000], &env[..]);
        let mut opt: Vec<Option<Vec<u8>>> = shards.into_iter().map(Some).collect();
        opt[0] = None;
        opt[1] = None;
        opt[2] = None;
        assert!(c.reconstruct(&mut opt).is_err());
    }
}
