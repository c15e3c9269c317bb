//! Content-defined chunking: FastCDC v2020 with a gear table seeded from the volume key.
//!
//! The seed makes cut points depend on the key, so chunk lengths seen on the disks do not fingerprint known content
//! for someone without the key (a 64-bit seed: a hindrance, not a proof; see FORMAT.md).

use fastcdc::v2020::{FastCDC, Normalization};

use super::format::ChunkerParams;

/// Splits `data` into content-defined pieces; the lengths sum to `data.len()` and each is at most `params.max`.
/// Empty input gives no pieces.
pub fn chunk_lengths(params: &ChunkerParams, seed: u64, data: &[u8]) -> Vec<usize> {
    if data.is_empty() {
        return Vec::new();
    }
    cutter(params, seed, data).map(|c| c.length).collect()
}

/// The volume's chunker over `data` (non-empty).
fn cutter<'a>(params: &ChunkerParams, seed: u64, data: &'a [u8]) -> FastCDC<'a> {
    FastCDC::with_level_and_seed(
        data,
        params.min,
        params.avg,
        params.max,
        Normalization::Level1,
        seed,
    )
}

/// The length of the first piece [`chunk_lengths`] would cut from `data`, without scanning past it (0 for empty
/// input).
pub fn first_chunk_len(params: &ChunkerParams, seed: u64, data: &[u8]) -> usize {
    if data.is_empty() {
        return 0;
    }
    cutter(params, seed, data)
        .next()
        .map_or(data.len(), |c| c.length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_cover_input_and_depend_on_seed() {
        let p = ChunkerParams {
            min: 1024,
            avg: 4096,
            max: 16384,
        };
        let mut data = vec![0u8; 200_000];
        let mut x: u32 = 1;
        for b in data.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        let a = chunk_lengths(&p, 1, &data);
        let b = chunk_lengths(&p, 2, &data);
        assert_eq!(a.iter().sum::<usize>(), data.len());
        assert_eq!(b.iter().sum::<usize>(), data.len());
        assert!(a.iter().all(|&l| l <= 16384));
        assert_ne!(a, b, "cut points must depend on the seed");
        assert!(chunk_lengths(&p, 1, &[]).is_empty());
        // The first cut alone, at every starting point of the cuts above and inside a chunk.
        let mut at = 0;
        for &l in &a {
            assert_eq!(
                first_chunk_len(&p, 1, &data[at..]),
                chunk_lengths(&p, 1, &data[at..])[0]
            );
            assert_eq!(first_chunk_len(&p, 1, &data[at..at + l]), l);
            at += l;
        }
        assert_eq!(
            first_chunk_len(&p, 1, &data[77..]),
            chunk_lengths(&p, 1, &data[77..])[0]
        );
        assert_eq!(first_chunk_len(&p, 1, &[]), 0);
    }
}
