//! How one matmul is launched: tile shape, split-K and grid, chosen from the product's
//! shape and the device's grid limit alone. Pure arithmetic, so unit tests cover every
//! branch without a GPU.

// The tile shapes and slice depth are the shader's overrides, so they live with its pipelines.
use super::pipelines::{MATMUL_BK, MATMUL_LARGE, MATMUL_SMALL};
use crate::error::{ClipError, Result};

/// Below this many workgroups a product's k range is split (a discrete GPU has ~100
/// compute units and wants a few workgroups each)...
pub const MATMUL_SPLIT_BELOW: usize = 128;
/// ...into chunks of at least this depth, at most this many.
pub const MATMUL_MIN_CHUNK: usize = 128;
pub const MATMUL_MAX_SPLITS: usize = 8;

/// The launch of `[m, k] x [k, n]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulPlan {
    /// The 64 x 64 tile (`MATMUL_LARGE`) rather than the 32 x 32 one.
    pub large: bool,
    /// Workgroups along n and m.
    pub groups: (u32, u32),
    /// Slices of k, each `k_chunk` deep (a multiple of `MATMUL_BK`); 1 = no split-K, else
    /// the tiles write `[splits, m, n]` partials that a reduce pass sums.
    pub splits: usize,
    pub k_chunk: usize,
}

impl MatmulPlan {
    /// Large tiles unless that leaves too few workgroups to occupy a discrete GPU (about
    /// 100 compute units); small tiles then give 4x as many, and split-K more.
    /// `max_groups` is the device's workgroups-per-dimension limit.
    pub fn new(m: usize, n: usize, k: usize, max_groups: u32) -> Result<MatmulPlan> {
        let tiles =
            |(wx, wy): (u32, u32)| (n.div_ceil(4 * wx as usize), m.div_ceil(4 * wy as usize));
        let count = |(gx, gy): (usize, usize)| gx * gy;
        let large = count(tiles(MATMUL_LARGE)) >= MATMUL_SPLIT_BELOW;
        let (gx, gy) = tiles(if large { MATMUL_LARGE } else { MATMUL_SMALL });
        let groups = gx * gy;
        let splits = if large || groups == 0 {
            1
        } else {
            MATMUL_SPLIT_BELOW
                .div_ceil(groups)
                .min(k / MATMUL_MIN_CHUNK)
                .clamp(1, MATMUL_MAX_SPLITS)
        };
        let k_chunk = k.div_ceil(splits).div_ceil(MATMUL_BK).max(1) * MATMUL_BK;
        // Rounding the chunk up to whole slices can leave fewer chunks than asked for.
        let splits = k.div_ceil(k_chunk).max(1);
        let too_large = || {
            ClipError::Gpu(format!(
                "a [{m}, {k}] x [{k}, {n}] product is too large for one launch"
            ))
        };
        let gx = u32::try_from(gx).map_err(|_| too_large())?;
        let gy = u32::try_from(gy).map_err(|_| too_large())?;
        if gx > max_groups || gy > max_groups {
            return Err(too_large());
        }
        Ok(MatmulPlan {
            large,
            groups: (gx, gy),
            splits,
            k_chunk,
        })
    }

    /// The tile's threads `(WG_X, WG_Y)`.
    pub fn tile(&self) -> (u32, u32) {
        if self.large {
            MATMUL_LARGE
        } else {
            MATMUL_SMALL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 65535;

    #[test]
    fn many_rows_take_large_tiles_without_split() {
        // ViT-B/32 at batch 32: 1600 rows x 768 -> 25 x 12 large tiles.
        let p = MatmulPlan::new(1600, 768, 768, MAX).unwrap();
        assert!(p.large);
        assert_eq!(p.groups, (12, 25));
        assert_eq!((p.splits, p.k_chunk), (1, 768));
        assert_eq!(p.tile(), MATMUL_LARGE);
    }

    #[test]
    fn few_rows_take_small_tiles_and_split_k() {
        // One image's class row through the projection: 1 x 512 out of 768.
        let p = MatmulPlan::new(1, 512, 768, MAX).unwrap();
        assert!(!p.large);
        assert_eq!(p.groups, (16, 1));
        // 128 / 16 groups = 8 splits wanted, but 768 / 128 allows 6: chunks of 128.
        assert_eq!((p.splits, p.k_chunk), (6, 128));
        assert!(p.k_chunk.is_multiple_of(MATMUL_BK));
        assert!(p.splits * p.k_chunk >= 768);
    }

    #[test]
    fn chunks_round_to_whole_slices_and_cover_k() {
        for k in [4, 16, 100, 130, 257, 768, 3072, 5000] {
            for (m, n) in [(1, 64), (7, 512), (50, 768), (200, 3072)] {
                let p = MatmulPlan::new(m, n, k, MAX).unwrap();
                assert!(p.k_chunk.is_multiple_of(MATMUL_BK), "{m} {n} {k}");
                assert!(p.splits >= 1 && p.splits <= MATMUL_MAX_SPLITS);
                // Every chunk but the last is whole and none is empty.
                assert!(p.splits * p.k_chunk >= k && (p.splits - 1) * p.k_chunk < k.max(1));
                if p.large {
                    assert_eq!(p.splits, 1);
                }
            }
        }
    }

    #[test]
    fn shallow_products_are_not_split() {
        // k below the minimum chunk: splitting would not pay.
        let p = MatmulPlan::new(2, 64, 100, MAX).unwrap();
        assert_eq!(p.splits, 1);
        assert_eq!(p.k_chunk, 112);
    }

    #[test]
    fn empty_products_launch_nothing_and_do_not_split() {
        let p = MatmulPlan::new(0, 512, 768, MAX).unwrap();
        assert_eq!(p.groups.1, 0);
        assert_eq!(p.splits, 1);
    }

    #[test]
    fn grids_beyond_the_device_limit_are_refused() {
        let e = MatmulPlan::new(64 * 70_000, 64, 64, MAX).unwrap_err();
        assert!(matches!(e, ClipError::Gpu(m) if m.contains("too large for one launch")));
    }
}
