//! int8 weights on the CPU: one byte per value in panels of NR output columns, laid out
//! for integer dot products (`qdot.rs`), with the scales beside them.
//!
//! Layout: `[ceil(n / NR) panels, ceil(k / 4) quads, NR, 4]`, zero padded: a quad holds four
//! consecutive inputs of one output column, so one 32-bit lane of a vector is one column's
//! four-term dot product (`vpmaddubsw` + `vpmaddwd` on AVX2, `i32x4.relaxed_dot_i8x16_i7x16_add`
//! in wasm). The scales are `[groups, npad]` (the NR scales of one group of a panel are
//! contiguous, like its values), and so are `sums`, each group's sum of its int8 values per
//! column, which the integer matmul needs for the activations' offset.
//!
//! Where an ISA has no integer kernel (SSE2, wasm without relaxed SIMD, scalar), the f32 loop
//! nest of `gemm.rs` asks for the `kc x nc` block of each (K slice, column block) once and
//! multiplies the f32 copy ([`dequantize_block`]) with the f32 micro-kernel: one
//! dequantisation per weight per call, reused by every M block. The block (at most KC x NC
//! floats, 512 KiB) stays in L2 as the f32 weights' own block would; the weights streamed
//! from memory are a quarter of the f32 ones, which is what bounds the small-batch products.

use super::gemm::NR;
use super::ops::internal;
use crate::error::Result;
use crate::model::quantize::Q8;

/// Bytes of one quad row of a panel: NR columns of four inputs.
pub(super) const QUAD: usize = 4 * NR;

/// int8 panels with their scales.
#[derive(Debug, Clone, PartialEq)]
pub struct I8Panels {
    pub(super) values: Vec<i8>,  // [ceil(n / NR), ceil(k / 4), NR, 4]
    pub(super) scales: Vec<f32>, // [groups, npad]
    /// Per group and column, the sum of the group's int8 values.
    pub(super) sums: Vec<f32>, // [groups, npad]
    /// Input features per scale.
    pub(super) group: usize,
    /// Quads (of four inputs) per panel: `ceil(k / 4)`.
    pub(super) quads: usize,
}

impl I8Panels {
    /// Pack `q` (`[n, k]`) into panels for `npad` (padded) output columns.
    pub(super) fn pack(q: &Q8, npad: usize) -> Result<I8Panels> {
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
        let quads = k.div_ceil(4);
        let mut values = vec![0i8; npad * quads * 4];
        // Padding columns get scale 1 and value 0.
        let mut scales = vec![1f32; groups * npad];
        let mut sums = vec![0f32; groups * npad];
        for r in 0..n {
            let panel = &mut values[(r / NR) * quads * QUAD..][..quads * QUAD];
            let j = r % NR;
            for (kk, &v) in q.values[r * k..][..k].iter().enumerate() {
                panel[(kk / 4) * QUAD + j * 4 + kk % 4] = v;
                sums[(kk / q.group) * npad + r] += f32::from(v);
            }
            for g in 0..groups {
                scales[g * npad + r] = q.scales[r * groups + g];
            }
        }
        Ok(I8Panels {
            values,
            scales,
            sums,
            group: q.group,
            quads,
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.values.len() + 4 * (self.scales.len() + self.sums.len())
    }

    /// The weight of input `kk` for output column `col`, as f32.
    pub(super) fn get(&self, kk: usize, col: usize, npad: usize) -> f32 {
        let at = (col / NR) * self.quads * QUAD + (kk / 4) * QUAD + (col % NR) * 4 + kk % 4;
        f32::from(self.values[at]) * self.scales[(kk / self.group) * npad + col]
    }

    /// The raw parts the f32 loop nest reads, with `scratch` to dequantise into.
    pub(super) fn raw(&self, scratch: *mut f32) -> RawI8 {
        RawI8 {
            values: self.values.as_ptr(),
            scales: self.scales.as_ptr(),
            group: self.group,
            quads: self.quads,
            scratch,
        }
    }
}

/// The raw parts the loop nest reads, and the scratch it dequantises into.
#[derive(Clone, Copy)]
pub(super) struct RawI8 {
    pub values: *const i8,
    pub scales: *const f32,
    pub group: usize,
    pub quads: usize,
    /// `kc_max * NC` floats.
    pub scratch: *mut f32,
}

/// Dequantise the panels of columns `[jc, jc + nc)` for inputs `[pc, pc + kc)` into
/// `q.scratch`, in the f32 packed layout: `[ceil(nc / NR) panels, kc, NR]`.
///
/// # Safety
/// `jc` is a multiple of NR; the inputs and columns lie inside the packed matrix of
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
        let src = q.values.add((first + p) * q.quads * QUAD);
        let dst = q.scratch.add(p * kc * NR);
        let mut kk = pc;
        while kk < pc + kc {
            // One quad at a time: its four inputs are four rows of the f32 block. Whole
            // arrays: no aliasing for LLVM to guard against, so the transposition and the
            // conversion stay in vector registers.
            let quad: [i8; QUAD] =
                std::ptr::read_unaligned(src.add((kk / 4) * QUAD) as *const [i8; QUAD]);
            // Transposed first (a fixed shuffle), so each input's row is contiguous.
            let rows: [[i8; NR]; 4] =
                std::array::from_fn(|d| std::array::from_fn(|j| quad[j * 4 + d]));
            let end = (kk - kk % 4 + 4).min(pc + kc);
            while kk < end {
                let v = &rows[kk % 4];
                // The NR scales of this input's group: contiguous.
                let s = q.scales.add((kk / q.group) * npad + jc + p * NR);
                let sc: [f32; NR] = std::ptr::read_unaligned(s as *const [f32; NR]);
                let row: [f32; NR] = std::array::from_fn(|j| f32::from(v[j]) * sc[j]);
                std::ptr::write_unaligned(dst.add((kk - pc) * NR) as *mut [f32; NR], row);
                kk += 1;
            }
        }
    }
    q.scratch
}
