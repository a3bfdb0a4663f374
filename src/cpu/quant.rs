//! int8 weights on the CPU: the packed panels of `gemm.rs` with one byte per value and
//! the scales beside them, dequantised a block at a time inside the matmul.
//!
//! The values use [`PackedMatrix`](super::gemm::PackedMatrix)'s layout exactly
//! (`[k slices, ceil(n / NR), kc, NR]`, zero padded); the scales are `[groups, npad]`, so
//! the NR scales of one depth of a panel are contiguous, like its values. The matmul asks
//! for the `kc x nc` block of each (K slice, column block) once and multiplies the f32
//! copy with the f32 micro-kernel: one dequantisation per weight per call, reused by every
//! M block. The block (at most KC x NC floats, 512 KiB) stays in L2 as the f32 weights'
//! own block would, and each panel slice of it (16 KiB) in L1 while the strips use it; the
//! weights streamed from memory are a quarter of the f32 ones, which is what bounds the
//! small-batch products.

use super::gemm::NR;
use super::ops::internal;
use crate::error::Result;
use crate::model::quantize::Q8;

/// int8 panels with their scales.
#[derive(Debug, Clone, PartialEq)]
pub struct I8Panels {
    pub(super) values: Vec<i8>,  // [k slices, ceil(n / NR), kc, NR]
    pub(super) scales: Vec<f32>, // [groups, npad]
    /// Input features per scale.
    pub(super) group: usize,
}

impl I8Panels {
    /// Pack `q` (`[n, k]`) into panels of depth `kc` at the offsets `offset(kk, panel)`.
    pub(super) fn pack(
        q: &Q8,
        npad: usize,
        offset: impl Fn(usize, usize) -> usize,
    ) -> Result<I8Panels> {
        let (n, k) = (q.rows, q.cols);
        let groups = q.groups();
        if q.values.len() != n * k || q.scales.len() != n * groups || q.group == 0 {
            return Err(internal(format_args!(
                "int8 matrix of {} values and {} scales is not {n} x {k} in groups of {}",
                q.values.len(),
                q.scales.len(),
                q.group
            )));
        }
        let mut values = vec![0i8; npad * k];
        // Padding columns get scale 1 and value 0.
        let mut scales = vec![1f32; groups * npad];
        for r in 0..n {
            let (p, j) = (r / NR, r % NR);
            for (kk, &v) in q.values[r * k..][..k].iter().enumerate() {
                values[offset(kk, p) + j] = v;
            }
            for g in 0..groups {
                scales[g * npad + r] = q.scales[r * groups + g];
            }
        }
        Ok(I8Panels {
            values,
            scales,
            group: q.group,
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.values.len() + 4 * self.scales.len()
    }

    /// The value at packed offset `at`, depth `kk`, output column `col`, as f32.
    pub(super) fn get(&self, at: usize, kk: usize, col: usize, npad: usize) -> f32 {
        self.values[at] as f32 * self.scales[(kk / self.group) * npad + col]
    }
}

/// The raw parts the loop nest reads, and the scratch it dequantises into.
#[derive(Clone, Copy)]
pub(super) struct RawI8 {
    pub values: *const i8,
    pub scales: *const f32,
    pub group: usize,
    /// `kc_max * NC` floats.
    pub scratch: *mut f32,
}

/// Dequantise the panels of columns `[jc, jc + nc)` of the K slice starting at `pc`
/// (depth `kc`) into `q.scratch`, in the packed layout: `[nc / NR panels, kc, NR]`.
///
/// # Safety
/// `jc` is a multiple of NR; the slice and its columns lie inside the packed matrix of
/// `npad` padded columns; the scratch holds `kc * ceil(nc / NR) * NR` floats.
#[inline(always)]
pub(super) unsafe fn dequantize_block(
    q: &RawI8,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    npad: usize,
) -> *const f32 {
    let panels = nc.div_ceil(NR);
    let first = jc / NR;
    for p in 0..panels {
        let src = q.values.add(pc * npad + (first + p) * kc * NR);
        let dst = q.scratch.add(p * kc * NR);
        for kk in 0..kc {
            // The NR scales of this depth: contiguous, as are the NR values.
            let s = q.scales.add(((pc + kk) / q.group) * npad + jc + p * NR);
            // Whole rows through local arrays: no aliasing for LLVM to guard against, so
            // it widens, converts and multiplies them in vector registers.
            let v: [i8; NR] = std::ptr::read_unaligned(src.add(kk * NR) as *const [i8; NR]);
            let sc: [f32; NR] = std::ptr::read_unaligned(s as *const [f32; NR]);
            let row: [f32; NR] = std::array::from_fn(|j| v[j] as f32 * sc[j]);
            std::ptr::write_unaligned(dst.add(kk * NR) as *mut [f32; NR], row);
        }
    }
    q.scratch
}
