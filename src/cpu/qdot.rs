//! int8 matmuls on integer dot products, where the ISA has them (AVX2 natively; in wasm
//! relaxed SIMD's `i32x4.relaxed_dot_i8x16_i7x16_add`, or simd128's `i32x4.dot_i16x8_s` on
//! widened bytes); elsewhere (SSE2, scalar) `gemm.rs` dequantises the int8 panels and
//! multiplies in f32.
//!
//! The activations are quantised as each matmul starts, per row and per group of the
//! weight's scales, to 7 bits: `a ~ lo + step * q` with `q` in 0..=127, `lo` the group's
//! least value and `step = (max - min) / 127`. Seven bits are what the instructions take:
//! relaxed SIMD's `i32x4.relaxed_dot_i8x16_i7x16_add` is only defined for a 7-bit second
//! operand, and AVX2's `vpmaddubsw` (unsigned times signed bytes, pairs summed in i16)
//! cannot saturate when the unsigned side is at most 127 (2 x 127 x 127 < 32,767). An offset
//! per group, rather than a symmetric range, spends all 128 codes on the values there are,
//! which matters for the skewed inputs of `fc2` (GELU outputs). For output column `j`:
//!
//! ```text
//! sum_i a_i w_ij = sum_groups scale_gj * (step_g * sum_i q_i v_ij + lo_g * sum_i v_ij)
//! ```
//!
//! with `v` the int8 weights, `sum_i q_i v_ij` exact in i32 (four products per 32-bit lane
//! per instruction: the quad layout of `quant.rs`), and `sum_i v_ij` stored at pack time.
//! The f32 arithmetic is per group (64 inputs by default), not per input.
//!
//! The loop nest: the columns are cut into whole panels per thread; a block of panels (its
//! int8 values about 128 KiB, in L2) is swept by strips of MR rows (their codes in L1), and
//! each strip's bias, activation and residual are applied while its block is hot.

// Builds with no integer kernel (wasm without SIMD, other targets) never reach the loop
// nest: `available` is false there.
#![cfg_attr(
    not(any(
        target_arch = "x86_64",
        all(target_arch = "wasm32", target_feature = "simd128")
    )),
    allow(dead_code)
)]

use super::gemm::NR;
use super::ops::{epilogue_block, internal, RawEpilogue};
use super::pool::{self, Shared};
use super::quant::{I8Panels, QUAD};
use super::simd::{Isa, Simd};
use crate::error::Result;
use std::sync::atomic::{AtomicBool, Ordering};

/// The largest activation code: 7 bits.
pub const QMAX: f32 = 127.0;

/// int8 values of the panels one block of a strip's sweep covers.
const BLOCK_BYTES: usize = 128 << 10;

/// Whether the runtime's `i32x4.relaxed_dot_i8x16_i7x16_add` gives the answer this code is
/// written for. The JS layer probes it before loading and says so ([`set_relaxed_dot`]):
/// V8 before 11.4 (Node.js 20 with `--experimental-wasm-relaxed-simd`) answers otherwise.
static RELAXED_DOT: AtomicBool = AtomicBool::new(true);

/// Use (or not) relaxed SIMD's integer dot product; without it the relaxed builds use the
/// plain simd128 kernel (`i32x4.dot_i16x8_s` on widened bytes).
pub fn set_relaxed_dot(ok: bool) {
    RELAXED_DOT.store(ok, Ordering::Relaxed);
}

/// The instruction the int8 matmuls of groups of `group` inputs multiply with on `isa`, or
/// None where they dequantise.
pub fn instruction(isa: Isa, group: usize) -> Option<&'static str> {
    if !available(isa, group) {
        return None;
    }
    Some(match isa {
        Isa::Simd128
            if cfg!(target_feature = "relaxed-simd") && RELAXED_DOT.load(Ordering::Relaxed) =>
        {
            "i32x4.relaxed_dot_i8x16_i7x16_add"
        }
        Isa::Simd128 => "i32x4.dot_i16x8_s",
        _ => "vpmaddubsw",
    })
}

/// Whether this build multiplies int8 panels with `group` inputs per scale by integer dot
/// products on `isa` (groups must hold whole quads).
pub fn available(isa: Isa, group: usize) -> bool {
    group.is_multiple_of(4)
        && match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => true,
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => true,
            _ => false,
        }
}

/// Quantise one row of activations, `group` inputs at a time: the codes into `codes`
/// (`ceil(k / 4) * 4` bytes; past `k`, zero), each group's `step` and `lo`. A group holding
/// a NaN or an infinity gets a NaN step, so its outputs are NaN, as the f32 product's are.
pub fn quantize_row(a: &[f32], group: usize, codes: &mut [u8], step: &mut [f32], lo: &mut [f32]) {
    for (g, x) in a.chunks(group.max(1)).enumerate() {
        let (mut min, mut max, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0f32);
        for &v in x {
            min = min.min(v);
            max = max.max(v);
            sum += v;
        }
        let s = (max - min) / QMAX;
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        // (v - min) * inv lies in [0, 127] up to rounding; `as` saturates what is past it.
        for (c, &v) in codes[g * group..].iter_mut().zip(x) {
            *c = ((v - min) * inv + 0.5) as u8;
        }
        step[g] = if sum.is_finite() { s } else { f32::NAN };
        lo[g] = min;
    }
    codes[a.len()..].fill(0);
}

thread_local! {
    /// The calling thread's codes, and steps and offsets, kept across calls.
    static ROWS: std::cell::RefCell<(Vec<u8>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `out = act(a w^T + bias) + residual` on integer dot products: `a` `[m, k]`, `w` packed
/// from `[n, k]`, on up to `threads` threads. The caller has checked every length against
/// `m`, `k`, `n`, and that [`available`] holds.
#[allow(clippy::too_many_arguments)]
pub(super) fn matmul(
    isa: Isa,
    threads: usize,
    a: &[f32],
    m: usize,
    w: &I8Panels,
    (k, n): (usize, usize),
    out: &mut [f32],
    ep: RawEpilogue,
) -> Result<()> {
    if !available(isa, w.group) || w.quads != k.div_ceil(4) {
        return Err(internal(format_args!(
            "no integer matmul on {} for groups of {} ({k} inputs in {} quads)",
            isa.name(),
            w.group,
            w.quads
        )));
    }
    let groups = k.div_ceil(w.group);
    let lda = w.quads * 4;
    ROWS.with(|rows| {
        let (codes, scales) = &mut *rows.borrow_mut();
        if codes.len() < m * lda {
            codes.resize(m * lda, 0);
        }
        if scales.len() < 2 * m * groups {
            scales.resize(2 * m * groups, 0.0);
        }
        let (steps, los) = scales.split_at_mut(m * groups);
        // Quantise, rows split across the threads. Weighed as 64 flops a value (two passes,
        // the first a chain of dependent adds: about 2 ns a value), so that batch 1's 50 rows
        // split too; weighed as 4 they ran on one thread, a serial share that cost int8 on two
        // threads a fifth of its speed.
        let (c, s, l) = (
            Shared(codes.as_mut_ptr()),
            Shared(steps.as_mut_ptr()),
            Shared(los.as_mut_ptr()),
        );
        let parts = pool::parts(threads, 64 * m * k, m);
        pool::parallel_for(parts, parts, &|part| {
            for r in pool::split(m, 1, parts, part) {
                // SAFETY: each part writes its own rows of the three buffers, sized above.
                unsafe {
                    quantize_row(
                        &a[r * k..][..k],
                        w.group,
                        std::slice::from_raw_parts_mut(c.get().add(r * lda), lda),
                        std::slice::from_raw_parts_mut(s.get().add(r * groups), groups),
                        std::slice::from_raw_parts_mut(l.get().add(r * groups), groups),
                    )
                }
            }
        });
        let job = Job {
            codes: codes.as_ptr(),
            lda,
            steps: steps.as_ptr(),
            los: los.as_ptr(),
            groups,
            values: w.values.as_ptr(),
            scales: w.scales.as_ptr(),
            sums: w.sums.as_ptr(),
            quads: w.quads,
            qpg: w.group / 4,
            npad: n.div_ceil(NR) * NR,
            c: out.as_mut_ptr(),
            m,
            n,
            ep,
        };
        let parts = pool::parts(threads, 2 * m * n * k.max(1), n.div_ceil(NR));
        let job = &job;
        pool::parallel_for(parts, parts, &|part| {
            let cols = pool::split(n, NR, parts, part);
            // SAFETY: the ISA is available (checked above), every buffer covers m, k, n,
            // and each part writes its own columns.
            unsafe { run(isa, job, cols.start / NR, cols.end.div_ceil(NR)) }
        });
        Ok(())
    })
}

/// One matmul as raw parts.
struct Job {
    codes: *const u8, // [m, lda]
    lda: usize,
    steps: *const f32, // [m, groups]
    los: *const f32,   // [m, groups]
    groups: usize,
    values: *const i8, // I8Panels
    scales: *const f32,
    sums: *const f32,
    quads: usize,
    /// Quads per group.
    qpg: usize,
    npad: usize,
    c: *mut f32, // [m, n]
    m: usize,
    n: usize,
    ep: RawEpilogue,
}

// SAFETY: only `c` is written, each thread its own columns; everything outlives the loop.
unsafe impl Sync for Job {}

/// One strip of rows against one panel.
struct Tile {
    a: *const u8, // the strip's codes, rows `lda` apart
    lda: usize,
    steps: *const f32, // the strip's steps and offsets, rows `groups` apart
    los: *const f32,
    groups: usize,
    b: *const i8,       // the panel: [quads, NR, 4]
    scales: *const f32, // the panel's first column of [groups, npad]
    sums: *const f32,
    npad: usize,
    quads: usize,
    qpg: usize,
    c: *mut f32, // [rows, ldc]
    ldc: usize,
    ncols: usize,
}

/// One group's share of an output vector, its integer sums `dot` scaled back:
/// `sum + scale * (step * dot + lo * weight_sum)` (the formula at the top of this file).
#[inline(always)]
unsafe fn add_group<S: Simd>(
    sum: S::V,
    dot: S::V,
    step: S::V,
    lo: S::V,
    scale: S::V,
    weight_sum: S::V,
) -> S::V {
    S::fma(scale, S::fma(step, dot, S::mul(lo, weight_sum)), sum)
}

/// One ISA's micro-kernel.
trait Kernel {
    type S: Simd;
    /// Rows per strip (at most 4).
    const MR: usize;
    /// `R` rows by NR columns of the strip against the panel, written to `t.c`.
    unsafe fn tile<const R: usize>(t: &Tile);
}

/// Panels `[p0, p1)` of the job on kernel `K`.
#[inline(always)]
unsafe fn part<K: Kernel>(j: &Job, p0: usize, p1: usize) {
    let block = (BLOCK_BYTES / (j.quads * QUAD).max(1)).max(1);
    let mut pb = p0;
    while pb < p1 {
        let pe = (pb + block).min(p1);
        let (c0, c1) = (pb * NR, (pe * NR).min(j.n));
        let mut i = 0;
        while i < j.m {
            let rows = K::MR.min(j.m - i);
            for p in pb..pe {
                let col = p * NR;
                let t = Tile {
                    a: j.codes.add(i * j.lda),
                    lda: j.lda,
                    steps: j.steps.add(i * j.groups),
                    los: j.los.add(i * j.groups),
                    groups: j.groups,
                    b: j.values.add(p * j.quads * QUAD),
                    scales: j.scales.add(col),
                    sums: j.sums.add(col),
                    npad: j.npad,
                    quads: j.quads,
                    qpg: j.qpg,
                    c: j.c.add(i * j.n + col),
                    ldc: j.n,
                    ncols: NR.min(j.n - col),
                };
                match rows {
                    1 => K::tile::<1>(&t),
                    2 => K::tile::<2>(&t),
                    3 => K::tile::<3>(&t),
                    _ => K::tile::<4>(&t),
                }
            }
            let ep = j.ep.at(i, c0);
            epilogue_block::<K::S>(j.c.add(i * j.n + c0), j.n, rows, c1 - c0, ep);
            i += rows;
        }
        pb = pe;
    }
}

/// Panels `[p0, p1)` on `isa`'s kernel.
///
/// # Safety
/// [`available`] holds for `isa`; the job's pointers cover its shapes.
unsafe fn run(isa: Isa, j: &Job, p0: usize, p1: usize) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(j: &Job, p0: usize, p1: usize) {
        part::<x86::Avx2>(j, p0, p1)
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => avx2(j, p0, p1),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => {
            #[cfg(target_feature = "relaxed-simd")]
            if RELAXED_DOT.load(Ordering::Relaxed) {
                return part::<wasm::Relaxed>(j, p0, p1);
            }
            part::<wasm::Widened>(j, p0, p1)
        }
        // Unreachable: `matmul` checked `available`.
        _ => {
            let _ = (j, p0, p1);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{add_group, Kernel, Tile, QUAD};
    use crate::cpu::gemm::store_tile;
    use crate::cpu::simd::Avx2Fma;
    use std::arch::x86_64::*;

    /// AVX2: a row's 16 columns are two vectors of 8 i32 lanes, each lane one column's
    /// four-input dot product (`vpmaddubsw` to i16 pairs, `vpmaddwd` by ones to i32).
    /// 4 rows: 8 integer accumulators + 2 B + 1 broadcast + ones + a temporary of the 16
    /// registers; the 8 f32 sums, touched once a group, may live on the stack.
    pub(super) struct Avx2;

    impl Kernel for Avx2 {
        type S = Avx2Fma;
        const MR: usize = 4;

        #[inline(always)]
        unsafe fn tile<const R: usize>(t: &Tile) {
            let ones = _mm256_set1_epi16(1);
            let mut sum = [[_mm256_setzero_ps(); 2]; R];
            let mut q = 0;
            for g in 0..t.groups {
                let end = (q + t.qpg).min(t.quads);
                let mut acc = [[_mm256_setzero_si256(); 2]; R];
                while q < end {
                    let bp = t.b.add(q * QUAD);
                    let b = [
                        _mm256_loadu_si256(bp as *const __m256i),
                        _mm256_loadu_si256(bp.add(32) as *const __m256i),
                    ];
                    #[allow(clippy::needless_range_loop)]
                    for r in 0..R {
                        let quad =
                            std::ptr::read_unaligned(t.a.add(r * t.lda + q * 4) as *const i32);
                        let av = _mm256_set1_epi32(quad);
                        for v in 0..2 {
                            let pairs = _mm256_maddubs_epi16(av, b[v]);
                            acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(pairs, ones));
                        }
                    }
                    q += 1;
                }
                let at = g * t.npad;
                let sw = [
                    _mm256_loadu_ps(t.scales.add(at)),
                    _mm256_loadu_ps(t.scales.add(at + 8)),
                ];
                let sv = [
                    _mm256_loadu_ps(t.sums.add(at)),
                    _mm256_loadu_ps(t.sums.add(at + 8)),
                ];
                for r in 0..R {
                    let step = _mm256_set1_ps(*t.steps.add(r * t.groups + g));
                    let lo = _mm256_set1_ps(*t.los.add(r * t.groups + g));
                    for v in 0..2 {
                        let dot = _mm256_cvtepi32_ps(acc[r][v]);
                        sum[r][v] = add_group::<Avx2Fma>(sum[r][v], dot, step, lo, sw[v], sv[v]);
                    }
                }
            }
            store_tile::<Avx2Fma, R, 2>(&sum, t.c, t.ldc, t.ncols, false);
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::{add_group, Kernel, Tile, QUAD};
    use crate::cpu::gemm::store_tile;
    use crate::cpu::simd::Simd128;
    use core::arch::wasm32::*;

    /// Relaxed SIMD: a row's 16 columns are four vectors of 4 i32 lanes, each lane one
    /// column's four-input dot product (`i32x4.relaxed_dot_i8x16_i7x16_add`: int8 weights
    /// first, the 7-bit codes second). 2 rows: 8 accumulators + 4 B + 1 broadcast, and
    /// the two temporaries V8 uses to lower the instruction without AVX-VNNI.
    #[cfg(target_feature = "relaxed-simd")]
    pub(super) struct Relaxed;

    #[cfg(target_feature = "relaxed-simd")]
    impl Kernel for Relaxed {
        type S = Simd128;
        const MR: usize = 2;

        #[inline(always)]
        unsafe fn tile<const R: usize>(t: &Tile) {
            let mut sum = [[f32x4_splat(0.0); 4]; R];
            let mut q = 0;
            for g in 0..t.groups {
                let end = (q + t.qpg).min(t.quads);
                let mut acc = [[i32x4_splat(0); 4]; R];
                while q < end {
                    let bp = t.b.add(q * QUAD) as *const v128;
                    let b = [
                        v128_load(bp),
                        v128_load(bp.add(1)),
                        v128_load(bp.add(2)),
                        v128_load(bp.add(3)),
                    ];
                    #[allow(clippy::needless_range_loop)]
                    for r in 0..R {
                        let av = v128_load32_splat(t.a.add(r * t.lda + q * 4) as *const u32);
                        for v in 0..4 {
                            acc[r][v] = i32x4_relaxed_dot_i8x16_i7x16_add(b[v], av, acc[r][v]);
                        }
                    }
                    q += 1;
                }
                let at = t.scales.add(g * t.npad) as *const v128;
                let sums = t.sums.add(g * t.npad) as *const v128;
                for r in 0..R {
                    let step = f32x4_splat(*t.steps.add(r * t.groups + g));
                    let lo = f32x4_splat(*t.los.add(r * t.groups + g));
                    for v in 0..4 {
                        let dot = f32x4_convert_i32x4(acc[r][v]);
                        let (sw, sv) = (v128_load(at.add(v)), v128_load(sums.add(v)));
                        sum[r][v] = add_group::<Simd128>(sum[r][v], dot, step, lo, sw, sv);
                    }
                }
            }
            store_tile::<Simd128, R, 4>(&sum, t.c, t.ldc, t.ncols, false);
        }
    }

    /// Plain simd128: `i32x4.dot_i16x8_s` (`pmaddwd`) on bytes widened to i16. Each 16-byte
    /// quad vector (4 columns x 4 inputs) widens to two i16 vectors of two columns each; a
    /// dot product by the row's four codes (repeated) leaves two partial sums per column,
    /// added once per group. The 16 columns go in two halves of 8, so that 2 rows keep 8
    /// accumulators + 4 widened B + 2 codes in the 16 registers.
    pub(super) struct Widened;

    impl Kernel for Widened {
        type S = Simd128;
        const MR: usize = 2;

        #[inline(always)]
        unsafe fn tile<const R: usize>(t: &Tile) {
            let mut sum = [[f32x4_splat(0.0); 4]; R];
            for half in 0..2 {
                let mut q = 0;
                for g in 0..t.groups {
                    let end = (q + t.qpg).min(t.quads);
                    // Per row: columns (0, 1), (2, 3) of the half's first vector, then its
                    // second's, two lanes a column.
                    let mut acc = [[i32x4_splat(0); 4]; R];
                    while q < end {
                        let bp = (t.b.add(q * QUAD) as *const v128).add(2 * half);
                        let (b0, b1) = (v128_load(bp), v128_load(bp.add(1)));
                        let w = [
                            i16x8_extend_low_i8x16(b0),
                            i16x8_extend_high_i8x16(b0),
                            i16x8_extend_low_i8x16(b1),
                            i16x8_extend_high_i8x16(b1),
                        ];
                        #[allow(clippy::needless_range_loop)]
                        for r in 0..R {
                            let codes = v128_load32_splat(t.a.add(r * t.lda + q * 4) as *const u32);
                            let av = u16x8_extend_low_u8x16(codes);
                            for v in 0..4 {
                                acc[r][v] = i32x4_add(acc[r][v], i32x4_dot_i16x8(av, w[v]));
                            }
                        }
                        q += 1;
                    }
                    let at = t.scales.add(g * t.npad + 8 * half) as *const v128;
                    let sums = t.sums.add(g * t.npad + 8 * half) as *const v128;
                    for r in 0..R {
                        let step = f32x4_splat(*t.steps.add(r * t.groups + g));
                        let lo = f32x4_splat(*t.los.add(r * t.groups + g));
                        for j in 0..2 {
                            let (l, h) = (acc[r][2 * j], acc[r][2 * j + 1]);
                            let dot = i32x4_add(
                                i32x4_shuffle::<0, 2, 4, 6>(l, h),
                                i32x4_shuffle::<1, 3, 5, 7>(l, h),
                            );
                            let (sw, sv) = (v128_load(at.add(j)), v128_load(sums.add(j)));
                            let s = &mut sum[r][2 * half + j];
                            *s = add_group::<Simd128>(
                                *s,
                                f32x4_convert_i32x4(dot),
                                step,
                                lo,
                                sw,
                                sv,
                            );
                        }
                    }
                }
            }
            store_tile::<Simd128, R, 4>(&sum, t.c, t.ldc, t.ncols, false);
        }
    }
}
