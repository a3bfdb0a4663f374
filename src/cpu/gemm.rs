//! The matmul `C = act(A W^T + bias) + residual`, cache-blocked after Goto & van de Geijn,
//! "Anatomy of High-Performance Matrix Multiplication" (2008) and the BLIS loop nest:
//!
//! ```text
//! for jc in N step NC            (B block KC x NC stays in L2)
//!   for pc in K step KC          (one K slice; the first one overwrites C, later ones add)
//!     for ic in M step MC        pack A[ic.., pc..] into MR-row strips  (L2)
//!       for jr in NC step NR     B panel slice KC x NR, pre-packed      (L1)
//!         for ir in MC step MR   micro-kernel: MR x NR accumulators in registers
//!     on the last K slice: bias + activation + residual on the C block while it is hot
//! ```
//!
//! The weight `W` `[N, K]` is packed once at load time ([`PackedMatrix`]) into panels of
//! `NR = 16` output columns, K-major, so each micro-kernel step reads NR contiguous floats.
//! The layout is the same for every ISA; the micro-kernel height MR is per ISA (`MR_*`).

use super::ops::{epilogue_block, internal, unavailable, RawEpilogue};
use super::quant::{dequantize_block, I8Panels, RawI8};
use super::simd::{Isa, Scalar, Simd};
use crate::error::Result;
use crate::model::quantize::Q8;
use crate::model::Activation;

/// Output columns per packed panel (and per micro-kernel tile).
pub const NR: usize = 16;
/// Depth of one K slice: an A strip (MR x KC) and a B panel slice (KC x NR = 16 KiB)
/// together fit L1 (32-48 KiB).
const KC: usize = 256;
/// Rows of A per packed block: MC x KC = 96 KiB, well inside L2.
const MC: usize = 96;
/// Columns per outer block: a KC x NC slice of the weight is 512 KiB, about half an L2.
const NC: usize = 512;

// Micro-kernel rows per ISA; each row is NR / lanes vectors. AVX2: 6 x 2 ymm = 12
// accumulators + 2 B + 1 broadcast of 16 registers (the classic 6x16 shape). 128-bit
// (SSE2, wasm, whose JS engines map v128 onto the same 16 xmm on x86): 2 x 4 = 8 + 4 B + 1;
// 3 x 4 spills and measured a third slower. Scalar: 4 x 16 floats, vectorised by LLVM.
const MR_AVX2: usize = 6;
const MR_128: usize = 2;
const MR_SCALAR: usize = 4;

/// A `[n, k]` (`[out, in]`) weight packed for the micro-kernel. K is cut into slices of
/// `kc` (the last may be shorter); each slice holds `ceil(n / NR)` panels `[kc, NR]`
/// (the last zero-padded), so the KC x NC block one outer iteration reads is contiguous
/// and streams in order from memory.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedMatrix {
    n: usize,
    k: usize,
    kc: usize,
    panels: Panels,
}

/// The packed values: f32, or int8 with scales (`quant.rs`), in the same layout.
#[derive(Debug, Clone, PartialEq)]
enum Panels {
    F32(Vec<f32>), // [k slices, ceil(n / NR), kc, NR]
    I8(I8Panels),
}

/// Where the loop nest gets the `kc x nc` block of B panels for one (K slice, column
/// block): straight from the f32 panels, or dequantised from the int8 ones.
trait BlockSource: Copy {
    /// The panels of columns `[jc, jc + nc)` of the K slice at `pc` (depth `kc`),
    /// `[ceil(nc / NR), kc, NR]`.
    unsafe fn block(&self, pc: usize, kc: usize, jc: usize, nc: usize, npad: usize) -> *const f32;
}

#[derive(Clone, Copy)]
struct F32Source(*const f32);

impl BlockSource for F32Source {
    #[inline(always)]
    unsafe fn block(&self, pc: usize, kc: usize, jc: usize, _: usize, npad: usize) -> *const f32 {
        self.0.add(pc * npad + (jc / NR) * kc * NR)
    }
}

impl BlockSource for RawI8 {
    #[inline(always)]
    unsafe fn block(&self, pc: usize, kc: usize, jc: usize, nc: usize, npad: usize) -> *const f32 {
        dequantize_block(self, pc, kc, jc, nc, npad)
    }
}

/// Depth of the K slices of a matrix with `k` inputs: even slices, no thin remainder.
fn slice_depth(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC).max(1)).max(1)
}

impl PackedMatrix {
    /// Pack an int8 `[n, k]` matrix with its scales; it stays int8 in memory (a quarter
    /// of f32, plus the scales) and is dequantised block by block in [`matmul`].
    pub fn pack_i8(q: &Q8) -> Result<Self> {
        let (n, k) = (q.rows, q.cols);
        let npad = n.div_ceil(NR) * NR;
        Ok(PackedMatrix {
            n,
            k,
            kc: slice_depth(k),
            panels: Panels::I8(I8Panels::pack(q, npad)?),
        })
    }

    /// Whether the values are int8.
    pub fn is_i8(&self) -> bool {
        matches!(self.panels, Panels::I8(_))
    }

    /// Bytes the packed values (and scales) hold.
    pub fn bytes(&self) -> usize {
        match &self.panels {
            Panels::F32(d) => 4 * d.len(),
            Panels::I8(q) => q.bytes(),
        }
    }

    /// Pack a row-major `[n, k]` matrix.
    pub fn pack(w: &[f32], n: usize, k: usize) -> Result<Self> {
        if Some(w.len()) != n.checked_mul(k) {
            return Err(internal(format_args!(
                "matrix of {} values is not {n} x {k}",
                w.len()
            )));
        }
        let kc = slice_depth(k);
        let npad = n.div_ceil(NR) * NR;
        let mut data = vec![0f32; npad * k];
        for (r, row) in w.chunks_exact(k.max(1)).enumerate().take(n) {
            let (p, j) = (r / NR, r % NR);
            for (kk, &x) in row.iter().enumerate() {
                data[Self::offset(kc, k, npad, kk, p) + j] = x;
            }
        }
        Ok(PackedMatrix {
            n,
            k,
            kc,
            panels: Panels::F32(data),
        })
    }

    /// Where row `kk` of panel `p` starts.
    #[inline(always)]
    fn offset(kc: usize, k: usize, npad: usize, kk: usize, p: usize) -> usize {
        let pc = kk - kk % kc;
        let this_kc = kc.min(k - pc);
        pc * npad + p * this_kc * NR + (kk - pc) * NR
    }

    /// Output features (rows of the original matrix).
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features (columns of the original matrix).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The original row-major `[n, k]` matrix (int8 values dequantised).
    pub fn unpack(&self) -> Vec<f32> {
        let npad = self.n.div_ceil(NR) * NR;
        let mut w = vec![0f32; self.n * self.k];
        for (r, row) in w.chunks_exact_mut(self.k.max(1)).enumerate().take(self.n) {
            for (kk, x) in row.iter_mut().enumerate() {
                *x = match &self.panels {
                    Panels::F32(d) => d[Self::offset(self.kc, self.k, npad, kk, r / NR) + r % NR],
                    Panels::I8(q) => q.get(kk, r, npad),
                };
            }
        }
        w
    }
}

/// What to do with each output element after the product.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>, // [n]
    pub activation: Option<Activation>,
    pub residual: Option<&'a [f32]>, // [m, n]
}

/// Pack rows `[0, mc)` x cols `[0, kc)` of `a` (row stride `lda`) into strips of MR rows,
/// each `[kc, MR]`, so the micro-kernel broadcasts A from consecutive addresses.
/// Rows past `mc` in the last strip are left as they are: the tile for a partial strip
/// only reads its valid rows.
#[inline(always)]
unsafe fn pack_a<const MR: usize>(a: *const f32, lda: usize, mc: usize, kc: usize, dst: *mut f32) {
    let mut strip = 0;
    while strip < mc {
        let rows = MR.min(mc - strip);
        let d = dst.add(strip * kc);
        for r in 0..rows {
            let src = a.add((strip + r) * lda);
            for p in 0..kc {
                *d.add(p * MR + r) = *src.add(p);
            }
        }
        strip += MR;
    }
}

/// The micro-kernel: `R <= MR` rows by NR columns, `NV` vectors of `S::LANES` per row,
/// accumulated over `kc` in registers, then written (`accumulate`: added) to `c`,
/// of which only the first `ncols` columns exist.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn tile<S: Simd, const MR: usize, const R: usize, const NV: usize>(
    kc: usize,
    a: *const f32, // [kc, MR]
    b: *const f32, // [kc, NR]
    c: *mut f32,   // [R, ldc]
    ldc: usize,
    ncols: usize,
    accumulate: bool,
) {
    debug_assert!(NV * S::LANES == NR && R <= MR);
    // Plain index loops over const bounds: LLVM unrolls them fully and keeps `acc` and
    // `bv` in registers (iterator adapters here left them in stack slots).
    let mut acc = [[S::zero(); NV]; R];
    for p in 0..kc {
        let bp = b.add(p * NR);
        let ap = a.add(p * MR);
        let mut bv = [S::zero(); NV];
        #[allow(clippy::needless_range_loop)]
        for v in 0..NV {
            bv[v] = S::load(bp.add(v * S::LANES));
        }
        #[allow(clippy::needless_range_loop)]
        for r in 0..R {
            let av = S::splat(*ap.add(r));
            for v in 0..NV {
                acc[r][v] = S::fma(av, bv[v], acc[r][v]);
            }
        }
    }
    store_tile::<S, R, NV>(&acc, c, ldc, ncols, accumulate);
}

/// Write (`accumulate`: add) an `R x NR` tile of accumulators to `c`, of which only the
/// first `ncols` columns exist.
#[inline(always)]
pub(super) unsafe fn store_tile<S: Simd, const R: usize, const NV: usize>(
    acc: &[[S::V; NV]; R],
    c: *mut f32, // [R, ldc]
    ldc: usize,
    ncols: usize,
    accumulate: bool,
) {
    if ncols == NR {
        for (r, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                let p = c.add(r * ldc + v * S::LANES);
                S::store(p, if accumulate { S::add(S::load(p), x) } else { x });
            }
        }
    } else {
        let mut buf = [0f32; NR];
        for (r, row) in acc.iter().enumerate() {
            for (v, &x) in row.iter().enumerate() {
                S::store(buf.as_mut_ptr().add(v * S::LANES), x);
            }
            for (j, &x) in buf.iter().enumerate().take(ncols) {
                let p = c.add(r * ldc + j);
                *p = if accumulate { *p + x } else { x };
            }
        }
    }
}

/// One MR-strip against one panel slice: the full-height tile, or a shorter one for the
/// last strip (every height up to MR is its own monomorphised kernel).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn strip<S: Simd, const MR: usize, const NV: usize>(
    rows: usize,
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ncols: usize,
    acc: bool,
) {
    // Heights 1..=5 below plus MR itself: MR may not exceed 6.
    const { assert!(MR >= 1 && MR <= 6) };
    macro_rules! heights {
        ($($h:literal)*) => {
            match rows {
                r if r == MR => tile::<S, MR, MR, NV>(kc, a, b, c, ldc, ncols, acc),
                $($h => tile::<S, MR, $h, NV>(kc, a, b, c, ldc, ncols, acc),)*
                _ => {}
            }
        };
    }
    heights!(1 2 3 4 5);
}

/// One matmul call, as raw parts: `a` `[m, k]` (row stride `lda`), `b` where the packed
/// weight's blocks come from, `c` `[m, n]` (row stride `ldc`), of which this call computes
/// columns `cols` (whole panels: one thread's share).
#[derive(Clone, Copy)]
struct Gemm<B> {
    a: *const f32,
    lda: usize,
    m: usize,
    k: usize,
    n: usize,
    cols: (usize, usize),
    b: B,
    c: *mut f32,
    ldc: usize,
    ep: RawEpilogue,
    kc_max: usize,
    mc_max: usize,
}

// SAFETY: the pointers are only read, except `c`, of which each thread writes its own
// columns (`cols`), and an int8 source's scratch, which is each thread's own; they outlive
// the parallel loop that shares them.
unsafe impl<B> Send for Gemm<B> {}
unsafe impl<B> Sync for Gemm<B> {}

impl Gemm<()> {
    /// This call for columns `cols`, with blocks from `b`.
    fn part<B>(&self, cols: (usize, usize), b: B) -> Gemm<B> {
        let Gemm {
            a,
            lda,
            m,
            k,
            n,
            c,
            ldc,
            ep,
            kc_max,
            mc_max,
            ..
        } = *self;
        Gemm {
            a,
            lda,
            m,
            k,
            n,
            cols,
            b,
            c,
            ldc,
            ep,
            kc_max,
            mc_max,
        }
    }
}

thread_local! {
    /// Each thread's packed-A scratch and int8 dequantisation scratch, kept across calls
    /// (no allocation per matmul).
    static APACK: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    static DEQUANT: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The blocked loop nest over columns `g.cols`, over f32 or int8 panels (`B`); `apack`
/// holds `mc_max * kc_max`.
#[inline(always)]
unsafe fn gemm_impl<S: Simd, const MR: usize, const NV: usize, B: BlockSource>(
    g: &Gemm<B>,
    apack: *mut f32,
) {
    let Gemm {
        a,
        lda,
        m,
        k,
        n,
        cols: (first, end),
        b,
        c,
        ldc,
        ep,
        kc_max,
        mc_max,
    } = *g;
    let npad = n.div_ceil(NR) * NR;
    if k == 0 {
        for r in 0..m {
            std::ptr::write_bytes(c.add(r * ldc + first), 0, end - first);
        }
        epilogue_block::<S>(c.add(first), ldc, m, end - first, ep.at(0, first));
        return;
    }
    let mut jc = first;
    while jc < end {
        let nc = NC.min(end - jc);
        let mut pc = 0;
        while pc < k {
            let kc = kc_max.min(k - pc);
            let last = pc + kc == k;
            // This block of B, read by every M block below.
            let bblock = b.block(pc, kc, jc, nc, npad);
            let mut ic = 0;
            while ic < m {
                let mc = mc_max.min(m - ic);
                pack_a::<MR>(a.add(ic * lda + pc), lda, mc, kc, apack);
                let mut jr = 0;
                while jr < nc {
                    let col = jc + jr;
                    let bp = bblock.add((jr / NR) * kc * NR);
                    let ncols = NR.min(n - col);
                    let mut ir = 0;
                    while ir < mc {
                        strip::<S, MR, NV>(
                            MR.min(mc - ir),
                            kc,
                            apack.add(ir * kc),
                            bp,
                            c.add((ic + ir) * ldc + col),
                            ldc,
                            ncols,
                            pc > 0,
                        );
                        ir += MR;
                    }
                    jr += NR;
                }
                if last {
                    epilogue_block::<S>(c.add(ic * ldc + jc), ldc, mc, nc, ep.at(ic, jc));
                }
                ic += mc;
            }
            pc += kc;
        }
        jc += nc;
    }
}

/// `out = act(a w^T + bias) + residual` with `a` `[m, k]`, `w` packed from `[n, k]`,
/// `out` `[m, n]` (every value overwritten: what it held does not matter), on the given
/// ISA, on this thread.
pub fn matmul(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: &PackedMatrix,
    out: &mut [f32],
    ep: &Epilogue,
) -> Result<()> {
    matmul_threads(isa, 1, a, m, w, out, ep)
}

/// [`matmul`] on up to `threads` threads ([`super::pool`]): the columns are cut into
/// ranges of whole panels, each range running the whole loop nest with its own A packing
/// (and, for int8 weights, its own dequantised blocks).
#[allow(clippy::too_many_arguments)]
pub fn matmul_threads(
    isa: Isa,
    threads: usize,
    a: &[f32],
    m: usize,
    w: &PackedMatrix,
    out: &mut [f32],
    ep: &Epilogue,
) -> Result<()> {
    let (k, n) = (w.k, w.n);
    let len = |what: &str, got: usize, want: usize| {
        if got == want {
            Ok(())
        } else {
            Err(internal(format_args!(
                "matmul {what} holds {got} values, expected {want} ({m} x {k} times {k} x {n})"
            )))
        }
    };
    len("input", a.len(), m * k)?;
    len("output", out.len(), m * n)?;
    if let Some(b) = ep.bias {
        len("bias", b.len(), n)?;
    }
    if let Some(r) = ep.residual {
        len("residual", r.len(), m * n)?;
    }
    if !isa.is_available() {
        return Err(unavailable(isa));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let raw_ep = RawEpilogue {
        bias: ep.bias.map(|b| b.as_ptr()),
        activation: ep.activation,
        residual: ep.residual.map(|r| (r.as_ptr(), n)),
    };
    if let Panels::I8(q) = &w.panels {
        if super::qdot::available(isa, q.group) {
            return super::qdot::matmul(isa, threads, a, m, q, (k, n), out, raw_ep);
        }
    }
    let mr = match isa {
        Isa::Avx2Fma => MR_AVX2,
        Isa::Sse2 | Isa::Simd128 => MR_128,
        Isa::Scalar => MR_SCALAR,
    };
    // The K slices are the packed weight's; M blocks are even (no thin remainder).
    let kc_max = w.kc;
    let mc_max = m.div_ceil(m.div_ceil(MC)).div_ceil(mr) * mr;
    let whole = Gemm {
        a: a.as_ptr(),
        lda: k,
        m,
        k,
        n,
        cols: (0, n),
        b: (),
        c: out.as_mut_ptr(),
        ldc: n,
        ep: raw_ep,
        kc_max,
        mc_max,
    };
    let flops = 2 * m * n * k.max(1);
    let parts = super::pool::parts(threads, flops, n.div_ceil(NR));
    let whole = &whole; // captured whole: `Gemm` is Sync, its raw-pointer fields are not
    let run_part = |part: usize| {
        let cols = super::pool::split(n, NR, parts, part);
        if cols.is_empty() {
            return;
        }
        let cols = (cols.start, cols.end);
        APACK.with(|apack| {
            // [mc_max / MR, kc_max, MR]
            let apack = super::pool::scratch(&mut apack.borrow_mut(), mc_max * kc_max);
            // SAFETY: the ISA is available; every length was checked against m, k, n
            // above, `apack` holds mc_max x kc_max, the int8 scratch kc_max x NC (columns
            // rounded up to NR), and `cols` is this part's own.
            unsafe {
                match &w.panels {
                    Panels::F32(data) => {
                        run(isa, &whole.part(cols, F32Source(data.as_ptr())), apack)
                    }
                    Panels::I8(q) => DEQUANT.with(|scratch| {
                        let scratch = super::pool::scratch(
                            &mut scratch.borrow_mut(),
                            kc_max * NC.min(n.div_ceil(NR) * NR),
                        );
                        run(isa, &whole.part(cols, q.raw(scratch)), apack)
                    }),
                }
            }
        });
    };
    super::pool::parallel_for(parts, parts, &run_part);
    Ok(())
}

/// The loop nest on `isa`, monomorphised for it.
///
/// # Safety
/// As [`gemm_impl`]: `isa` is available and `g`'s pointers cover its shapes.
unsafe fn run<B: BlockSource>(isa: Isa, g: &Gemm<B>, apack: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2<B: BlockSource>(g: &Gemm<B>, apack: *mut f32) {
        gemm_impl::<super::simd::Avx2Fma, MR_AVX2, 2, B>(g, apack)
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => avx2(g, apack),
        #[cfg(target_arch = "x86_64")]
        Isa::Sse2 => gemm_impl::<super::simd::Sse2, MR_128, 4, B>(g, apack),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Simd128 => gemm_impl::<super::simd::Simd128, MR_128, 4, B>(g, apack),
        _ => gemm_impl::<Scalar, MR_SCALAR, 16, B>(g, apack),
    }
}
