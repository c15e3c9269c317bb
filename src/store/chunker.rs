//! Content-defined chunking: FastCDC v2020 with a gear table that depends on the volume key.
//!
//! The keyed gear table makes cut points depend on the key, so chunk lengths seen on the disks do not fingerprint
//! known content for someone without the key. Format v1 XORs a 64-bit seed into the crate's public table (the
//! crate's own keying: weak, since low hash bits depend only on low seed bits); format v2 takes all 256 entries
//! from a BLAKE3 XOF of the chunker subkey (FORMAT.md §4). Both run the crate's `cut_gear` loop, so the cut points
//! of v1 volumes are exactly what they always were (pinned by `tests/store_kat.rs`).

use fastcdc::v2020::{cut_gear, get_gear_with_seed, logarithm2, Normalization, MASKS};

use super::format::ChunkerParams;

/// A gear table and its left-shifted twin, as FastCDC v2020 uses them.
pub struct Gear {
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl std::fmt::Debug for Gear {
    // Derived from the key: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gear(<redacted>)")
    }
}

impl Gear {
    /// Format v1: the crate's public table XORed with a 64-bit seed.
    pub fn from_seed(seed: u64) -> Gear {
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Gear { gear, gear_ls }
    }

    /// Format v2: every entry from a keyed XOF (`table_bytes` = 2,048 bytes, eight per entry, little-endian).
    pub fn from_table_bytes(table_bytes: &[u8; 2048]) -> Gear {
        let mut gear = Box::new([0u64; 256]);
        for (i, g) in gear.iter_mut().enumerate() {
            *g = u64::from_le_bytes(table_bytes[i * 8..i * 8 + 8].try_into().expect("8"));
        }
        let mut gear_ls = Box::new([0u64; 256]);
        for (l, g) in gear_ls.iter_mut().zip(gear.iter()) {
            *l = g << 1;
        }
        Gear { gear, gear_ls }
    }
}

/// The cutting state for one volume's parameters (FastCDC v2020, normalisation level 1).
struct Cutter<'g> {
    params: ChunkerParams,
    gear: &'g Gear,
    mask_s: u64,
    mask_l: u64,
}

impl<'g> Cutter<'g> {
    fn new(params: &ChunkerParams, gear: &'g Gear) -> Self {
        let bits = logarithm2(params.avg);
        let nc = Normalization::Level1.bits();
        Cutter {
            params: *params,
            gear,
            mask_s: MASKS[(bits + nc) as usize],
            mask_l: MASKS[(bits - nc) as usize],
        }
    }

    /// Length of the piece cut from the start of `data` (non-empty).
    fn cut(&self, data: &[u8]) -> usize {
        let (_, n) = cut_gear(
            data,
            self.params.min as usize,
            self.params.avg as usize,
            self.params.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear.gear,
            &self.gear.gear_ls,
        );
        n
    }
}

/// Splits `data` into content-defined pieces; the lengths sum to `data.len()` and each is at most `params.max`.
/// Empty input gives no pieces. `params` must have passed [`ChunkerParams::validate`].
pub fn chunk_lengths(params: &ChunkerParams, gear: &Gear, data: &[u8]) -> Vec<usize> {
    let c = Cutter::new(params, gear);
    let mut out = Vec::with_capacity(data.len() / params.avg.max(1) as usize + 1);
    let mut at = 0;
    while at < data.len() {
        let n = c.cut(&data[at..]);
        if n == 0 {
            break;
        }
        out.push(n);
        at += n;
    }
    out
}

/// The length of the first piece [`chunk_lengths`] would cut from `data`, without scanning past it (0 for empty
/// input).
pub fn first_chunk_len(params: &ChunkerParams, gear: &Gear, data: &[u8]) -> usize {
    if data.is_empty() {
        return 0;
    }
    Cutter::new(params, gear).cut(data)
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
        let (g1, g2) = (Gear::from_seed(1), Gear::from_seed(2));
        let a = chunk_lengths(&p, &g1, &data);
        let b = chunk_lengths(&p, &g2, &data);
        assert_eq!(a.iter().sum::<usize>(), data.len());
        assert_eq!(b.iter().sum::<usize>(), data.len());
        assert!(a.iter().all(|&l| l <= 16384));
        assert_ne!(a, b, "cut points must depend on the seed");
        assert!(chunk_lengths(&p, &g1, &[]).is_empty());
        // The first cut alone, at every starting point of the cuts above and inside a chunk.
        let mut at = 0;
        for &l in &a {
            assert_eq!(
                first_chunk_len(&p, &g1, &data[at..]),
                chunk_lengths(&p, &g1, &data[at..])[0]
            );
            assert_eq!(first_chunk_len(&p, &g1, &data[at..at + l]), l);
            at += l;
        }
        assert_eq!(
            first_chunk_len(&p, &g1, &data[77..]),
            chunk_lengths(&p, &g1, &data[77..])[0]
        );
        assert_eq!(first_chunk_len(&p, &g1, &[]), 0);
        // Format v1 cut points are the crate iterator's, exactly (existing volumes keep deduplicating).
        let crate_cuts: Vec<usize> = fastcdc::v2020::FastCDC::with_level_and_seed(
            &data,
            p.min,
            p.avg,
            p.max,
            Normalization::Level1,
            1,
        )
        .map(|c| c.length)
        .collect();
        assert_eq!(a, crate_cuts);
        // A keyed table (format v2) cuts elsewhere, with the same size discipline.
        let mut t = [0u8; 2048];
        blake3::Hasher::new().finalize_xof().fill(&mut t);
        let v2 = chunk_lengths(&p, &Gear::from_table_bytes(&t), &data);
        assert_eq!(v2.iter().sum::<usize>(), data.len());
        assert!(v2.iter().all(|&l| l <= 16384));
        assert_ne!(v2, a);
    }
}
