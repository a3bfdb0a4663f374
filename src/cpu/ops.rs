//! Vectorised element-wise and row kernels over [`Simd`]: exp, the GELU family, the
//! matmul epilogue (bias, activation, residual), LayerNorm, softmax and multi-head
//! attention. Each is written once, generic over the vector type, and called through
//! the safe, ISA-dispatching functions at the bottom. Scalar references: `reference.rs`.
//!
//! exp follows Cephes `expf` (range reduction by ln 2, degree-6 polynomial, ~2 ulp);
//! erf follows the Numerical Recipes erfc fit used by the scalar reference.

use super::pool::{parallel_for, parts, scratch, split, Shared};
use super::simd::{Isa, Scalar, Simd};
use crate::error::{ClipError, Result};
use crate::graph::AttentionShape;
use crate::model::Activation;

// ---------------------------------------------------------------------------------------
// Vector math
// ---------------------------------------------------------------------------------------

/// `e^x`, relative error ~2e-7 for x in [-87, 88]; inputs are clamped to that range
/// (below it the true value is < 2e-38, which every use here treats as 0).
#[inline(always)]
pub(crate) unsafe fn exp<S: Simd>(x: S::V) -> S::V {
    let x = S::min(S::max(x, S::splat(-87.0)), S::splat(88.0));
    let n = S::round(S::mul(x, S::splat(std::f32::consts::LOG2_E)));
    // ln 2 split in two so that n * C1 is exact.
    let r = S::fma(n, S::splat(-0.693_359_4), x);
    let r = S::fma(n, S::splat(2.121_944_4e-4), r);
    let mut p = S::splat(1.987_569_1e-4);
    p = S::fma(p, r, S::splat(1.398_199_9e-3));
    p = S::fma(p, r, S::splat(8.333_452e-3));
    p = S::fma(p, r, S::splat(4.166_579_6e-2));
    p = S::fma(p, r, S::splat(1.666_666_5e-1));
    p = S::fma(p, r, S::splat(0.5));
    let y = S::fma(S::mul(p, r), r, S::add(r, S::splat(1.0)));
    S::mul(y, S::pow2i(n))
}

/// `erfc(|z|)` by the Numerical Recipes Chebyshev fit (fractional error < 1.2e-7 in
/// exact arithmetic), as the scalar reference `reference::erf` uses.
#[inline(always)]
unsafe fn erfc_abs<S: Simd>(z: S::V) -> S::V {
    let z = S::abs(z);
    let t = S::div(S::splat(1.0), S::fma(S::splat(0.5), z, S::splat(1.0)));
    let mut p = S::splat(0.170_872_77);
    for c in [
        -0.822_152_23,
        1.488_515_9,
        -1.135_204,
        0.278_868_07,
        -0.186_288_06,
        0.096_784_18,
        0.374_091_96,
        1.000_023_7,
        -1.265_512_2,
    ] {
        p = S::fma(p, t, S::splat(c));
    }
    // t * exp(-z^2 + p)
    let arg = S::fma(S::sub(S::zero(), z), z, p);
    S::mul(t, exp::<S>(arg))
}

/// One activation on a vector.
#[inline(always)]
pub(crate) unsafe fn activate<S: Simd>(a: Activation, x: S::V) -> S::V {
    let one = S::splat(1.0);
    match a {
        // x * sigmoid(1.702 x)
        Activation::QuickGelu => S::div(x, S::add(one, exp::<S>(S::mul(S::splat(-1.702), x)))),
        // 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(|x|/sqrt 2) for x < 0, which avoids the
        // cancellation of 1 + erf for negative x.
        Activation::Gelu => {
            let r = erfc_abs::<S>(S::mul(x, S::splat(std::f32::consts::FRAC_1_SQRT_2)));
            let phi2 = S::select_neg(x, r, S::sub(S::splat(2.0), r));
            S::mul(S::mul(S::splat(0.5), x), phi2)
        }
        // 0.5 x (1 + tanh y) = x * sigmoid(2y), y = sqrt(2/pi) (x + 0.044715 x^3)
        Activation::GeluTanh => {
            let x3 = S::mul(S::mul(x, x), x);
            let y = S::mul(
                S::fma(S::splat(0.044_715), x3, x),
                S::splat(-2.0 * 0.797_884_6), // -2 sqrt(2/pi)
            );
            S::div(x, S::add(one, exp::<S>(y)))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Row kernels (raw pointers: callers check every length first)
// ---------------------------------------------------------------------------------------

/// Where the epilogue reads from; pointers already offset to the block's first row/column.
#[derive(Clone, Copy)]
pub(crate) struct RawEpilogue {
    pub bias: Option<*const f32>, // [cols]
    pub activation: Option<Activation>,
    pub residual: Option<(*const f32, usize)>, // [rows, ld]
}

impl RawEpilogue {
    /// The same epilogue for the block whose first element is at (`row`, `col`).
    ///
    /// # Safety
    /// The block lies inside the bias and residual this epilogue points to.
    #[inline(always)]
    pub(crate) unsafe fn at(self, row: usize, col: usize) -> RawEpilogue {
        RawEpilogue {
            bias: self.bias.map(|p| p.add(col)),
            activation: self.activation,
            residual: self.residual.map(|(p, ld)| (p.add(row * ld + col), ld)),
        }
    }
}

/// `c = act(c + bias) + residual` on a `rows x cols` block of `c` (row stride `ldc`).
#[inline(always)]
pub(crate) unsafe fn epilogue_block<S: Simd>(
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    ep: RawEpilogue,
) {
    #[inline(always)]
    unsafe fn one<S: Simd>(c: *mut f32, r: usize, j: usize, ldc: usize, ep: RawEpilogue) {
        let p = c.add(r * ldc + j);
        let mut v = S::load(p);
        if let Some(b) = ep.bias {
            v = S::add(v, S::load(b.add(j)));
        }
        if let Some(a) = ep.activation {
            v = activate::<S>(a, v);
        }
        if let Some((res, ld)) = ep.residual {
            v = S::add(v, S::load(res.add(r * ld + j)));
        }
        S::store(p, v);
    }
    let body = cols - cols % S::LANES;
    for r in 0..rows {
        let mut j = 0;
        while j < body {
            one::<S>(c, r, j, ldc, ep);
            j += S::LANES;
        }
        for j in body..cols {
            one::<Scalar>(c, r, j, ldc, ep);
        }
    }
}

/// Sum of `n` floats.
#[inline(always)]
unsafe fn sum<S: Simd>(x: *const f32, n: usize) -> f32 {
    let body = n - n % S::LANES;
    let mut acc = S::zero();
    let mut i = 0;
    while i < body {
        acc = S::add(acc, S::load(x.add(i)));
        i += S::LANES;
    }
    let mut s = S::hsum(acc);
    for i in body..n {
        s += *x.add(i);
    }
    s
}

/// Dot product of `n` floats.
#[inline(always)]
unsafe fn dot<S: Simd>(a: *const f32, b: *const f32, n: usize) -> f32 {
    let body = n - n % S::LANES;
    let mut acc = S::zero();
    let mut i = 0;
    while i < body {
        acc = S::fma(S::load(a.add(i)), S::load(b.add(i)), acc);
        i += S::LANES;
    }
    let mut s = S::hsum(acc);
    for i in body..n {
        s += *a.add(i) * *b.add(i);
    }
    s
}

/// `y += alpha * x` over `n` floats.
#[inline(always)]
unsafe fn axpy<S: Simd>(alpha: f32, x: *const f32, y: *mut f32, n: usize) {
    let body = n - n % S::LANES;
    let av = S::splat(alpha);
    let mut i = 0;
    while i < body {
        S::store(y.add(i), S::fma(av, S::load(x.add(i)), S::load(y.add(i))));
        i += S::LANES;
    }
    for i in body..n {
        *y.add(i) += alpha * *x.add(i);
    }
}

/// `y *= alpha` over `n` floats.
#[inline(always)]
unsafe fn scale<S: Simd>(alpha: f32, y: *mut f32, n: usize) {
    let body = n - n % S::LANES;
    let av = S::splat(alpha);
    let mut i = 0;
    while i < body {
        S::store(y.add(i), S::mul(av, S::load(y.add(i))));
        i += S::LANES;
    }
    for i in body..n {
        *y.add(i) *= alpha;
    }
}

/// In-place stable softmax numerator: `x = exp(x - max)`; returns the sum.
#[inline(always)]
unsafe fn softmax_exp<S: Simd>(x: *mut f32, n: usize) -> f32 {
    let body = n - n % S::LANES;
    let mut mv = S::splat(f32::NEG_INFINITY);
    let mut i = 0;
    while i < body {
        mv = S::max(mv, S::load(x.add(i)));
        i += S::LANES;
    }
    let mut max = S::hmax(mv);
    for i in body..n {
        max = max.max(*x.add(i));
    }
    let maxv = S::splat(max);
    let mut acc = S::zero();
    let mut i = 0;
    while i < body {
        let e = exp::<S>(S::sub(S::load(x.add(i)), maxv));
        S::store(x.add(i), e);
        acc = S::add(acc, e);
        i += S::LANES;
    }
    let mut s = S::hsum(acc);
    for i in body..n {
        let e = exp::<Scalar>(*x.add(i) - max);
        *x.add(i) = e;
        s += e;
    }
    s
}

/// LayerNorm of `rows` rows of width `dim` (two passes: mean, then centred variance).
#[inline(always)]
unsafe fn layer_norm_impl<S: Simd>(
    x: *const f32,
    w: *const f32,
    b: *const f32,
    eps: f32,
    rows: usize,
    dim: usize,
    out: *mut f32,
) {
    let body = dim - dim % S::LANES;
    for r in 0..rows {
        let xr = x.add(r * dim);
        let or = out.add(r * dim);
        let mean = sum::<S>(xr, dim) / dim as f32;
        let mv = S::splat(mean);
        let mut acc = S::zero();
        let mut i = 0;
        while i < body {
            let d = S::sub(S::load(xr.add(i)), mv);
            acc = S::fma(d, d, acc);
            i += S::LANES;
        }
        let mut var = S::hsum(acc);
        for i in body..dim {
            let d = *xr.add(i) - mean;
            var += d * d;
        }
        let inv = 1.0 / (var / dim as f32 + eps).sqrt();
        let iv = S::splat(inv);
        let mut i = 0;
        while i < body {
            let d = S::mul(S::sub(S::load(xr.add(i)), mv), iv);
            S::store(or.add(i), S::fma(d, S::load(w.add(i)), S::load(b.add(i))));
            i += S::LANES;
        }
        for i in body..dim {
            *or.add(i) = (*xr.add(i) - mean) * inv * *w.add(i) + *b.add(i);
        }
    }
}

/// Multi-head attention, one query row at a time: scores by dot products, stable
/// softmax, then the probability-weighted sum of value rows. `scores` holds `seq_len`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn attention_impl<S: Simd>(
    q: *const f32,
    k: *const f32,
    v: *const f32,
    out: *mut f32,
    width: usize,
    shape: AttentionShape,
    valid_lens: &[usize],
    pairs: (usize, usize),
    scores: *mut f32,
) {
    let AttentionShape {
        queries,
        keys: seq_keys,
        heads,
        causal,
    } = shape;
    let hd = width / heads;
    let sc = 1.0 / (hd as f32).sqrt();
    // (sequence, head) pairs `pairs.0..pairs.1`: one thread's share.
    for pair in pairs.0..pairs.1 {
        let (s, h) = (pair / heads, pair % heads);
        let valid = valid_lens[s];
        let (q_base, kv_base) = (s * queries, s * seq_keys);
        let col = h * hd;
        for i in 0..queries {
            let qi = q.add((q_base + i) * width + col);
            let keys = if causal { valid.min(i + 1) } else { valid }.max(1);
            for j in 0..keys {
                *scores.add(j) = dot::<S>(qi, k.add((kv_base + j) * width + col), hd) * sc;
            }
            let total = softmax_exp::<S>(scores, keys);
            let o = out.add((q_base + i) * width + col);
            std::ptr::write_bytes(o, 0, hd);
            for j in 0..keys {
                axpy::<S>(*scores.add(j), v.add((kv_base + j) * width + col), o, hd);
            }
            scale::<S>(1.0 / total, o, hd);
        }
    }
}

/// Activation in place over a slice.
#[inline(always)]
unsafe fn activation_impl<S: Simd>(a: Activation, x: *mut f32, n: usize) {
    epilogue_block::<S>(
        x,
        n,
        1,
        n,
        RawEpilogue {
            bias: None,
            activation: Some(a),
            residual: None,
        },
    );
}

// ---------------------------------------------------------------------------------------
// Safe entry points, one per ISA
// ---------------------------------------------------------------------------------------

/// Expand a generic kernel call for the requested ISA; AVX2 goes through a
/// `#[target_feature]` function so that the inlined generic code is compiled for it.
macro_rules! isa_dispatch {
    ($isa:expr, $kernel:ident ( $($arg:ident : $ty:ty),* $(,)? )) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2($($arg: $ty),*) {
            $kernel::<super::simd::Avx2Fma>($($arg),*)
        }
        if !$isa.is_available() {
            return Err(unavailable($isa));
        }
        // SAFETY: the ISA is available (checked above); the caller checked the lengths.
        unsafe {
            match $isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2Fma => avx2($($arg),*),
                #[cfg(target_arch = "x86_64")]
                Isa::Sse2 => $kernel::<super::simd::Sse2>($($arg),*),
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                Isa::Simd128 => $kernel::<super::simd::Simd128>($($arg),*),
                _ => $kernel::<Scalar>($($arg),*),
            }
        }
    }};
}

/// A kernel asked for on an ISA this machine or build lacks.
pub(crate) fn unavailable(isa: Isa) -> ClipError {
    ClipError::Unsupported(format!(
        "the {} CPU kernels are not available on this machine or build",
        isa.name()
    ))
}

/// The kernels' own length checks, which keep their unsafe loops in bounds. Callers (the
/// backend, after the graph's shape checks) pass matching lengths, so a mismatch is a bug.
pub(crate) fn internal(what: impl std::fmt::Display) -> ClipError {
    ClipError::Internal(format!("CPU kernel: {what}"))
}

fn check(what: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(internal(format_args!(
            "{what} holds {got} values, expected {want}"
        )))
    }
}

/// `x = act(x)` element-wise.
pub fn activation(isa: Isa, a: Activation, x: &mut [f32]) -> Result<()> {
    let (xp, n) = (x.as_mut_ptr(), x.len());
    isa_dispatch!(isa, activation_impl(a: Activation, xp: *mut f32, n: usize));
    Ok(())
}

/// LayerNorm over each row of `x` `[rows, dim]` into `out` (same shape).
pub fn layer_norm(
    isa: Isa,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    dim: usize,
    out: &mut [f32],
) -> Result<()> {
    if dim == 0 || !x.len().is_multiple_of(dim) {
        return Err(internal(format_args!(
            "layer norm input of {} values is not rows of {dim}",
            x.len()
        )));
    }
    check("layer norm weight", weight.len(), dim)?;
    check("layer norm bias", bias.len(), dim)?;
    check("layer norm output", out.len(), x.len())?;
    let rows = x.len() / dim;
    let (xp, wp, bp, op) = (x.as_ptr(), weight.as_ptr(), bias.as_ptr(), out.as_mut_ptr());
    isa_dispatch!(
        isa,
        layer_norm_impl(
            xp: *const f32,
            wp: *const f32,
            bp: *const f32,
            eps: f32,
            rows: usize,
            dim: usize,
            op: *mut f32,
        )
    );
    Ok(())
}

/// Multi-head attention with the semantics of `graph::Backend::attention`: `q`, `k`,
/// `v`, `out` are `[valid_lens.len() * seq_len, width]`, `width = heads * head_dim`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    isa: Isa,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    width: usize,
    shape: AttentionShape,
    valid_lens: &[usize],
) -> Result<()> {
    attention_threads(isa, 1, q, k, v, out, width, shape, valid_lens)
}

/// [`attention`] on up to `threads` threads, split by (sequence, head).
#[allow(clippy::too_many_arguments)]
pub fn attention_threads(
    isa: Isa,
    threads: usize,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    width: usize,
    shape: AttentionShape,
    valid_lens: &[usize],
) -> Result<()> {
    let AttentionShape {
        queries,
        keys,
        heads,
        causal,
    } = shape;
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(internal(format_args!(
            "attention width {width} does not split into {heads} heads"
        )));
    }
    if let Some(&bad) = valid_lens.iter().find(|&&l| l > keys) {
        return Err(internal(format_args!(
            "attention valid length {bad} exceeds the {keys} keys"
        )));
    }
    if causal && queries > keys {
        return Err(internal(format_args!(
            "causal attention of {queries} queries over {keys} keys"
        )));
    }
    let n = valid_lens.len() * queries * width;
    let kv = valid_lens.len() * keys * width;
    check("attention queries", q.len(), n)?;
    check("attention keys", k.len(), kv)?;
    check("attention values", v.len(), kv)?;
    check("attention output", out.len(), n)?;
    if n == 0 || kv == 0 {
        return Ok(());
    }
    if !isa.is_available() {
        return Err(unavailable(isa));
    }
    let (qp, kp, vp) = (
        Shared(q.as_ptr().cast_mut()),
        Shared(k.as_ptr().cast_mut()),
        Shared(v.as_ptr().cast_mut()),
    );
    let op = Shared(out.as_mut_ptr());
    let pairs = valid_lens.len() * heads;
    // Work per (sequence, head) pair, to decide whether splitting pays.
    let flops = 4 * queries * keys * (width / heads);
    let parts = parts(threads, pairs * flops, pairs);
    let run = |part: usize| {
        let share = split(pairs, 1, parts, part);
        SCORES.with(|scratch_of| {
            let sp = scratch(&mut scratch_of.borrow_mut(), keys); // [keys] of one query
            let share = (share.start, share.end);
            let (qp, kp, vp, op) = (
                qp.get().cast_const(),
                kp.get().cast_const(),
                vp.get().cast_const(),
                op.get(),
            );
            // Cannot fail: the ISA was checked above. Each part writes the output columns
            // of its own (sequence, head) pairs.
            let _ = attention_part(isa, qp, kp, vp, op, width, shape, valid_lens, share, sp);
        });
    };
    parallel_for(parts, parts, &run);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn attention_part(
    isa: Isa,
    qp: *const f32,
    kp: *const f32,
    vp: *const f32,
    op: *mut f32,
    width: usize,
    shape: AttentionShape,
    valid_lens: &[usize],
    share: (usize, usize),
    sp: *mut f32,
) -> Result<()> {
    isa_dispatch!(
        isa,
        attention_impl(
            qp: *const f32,
            kp: *const f32,
            vp: *const f32,
            op: *mut f32,
            width: usize,
            shape: AttentionShape,
            valid_lens: &[usize],
            share: (usize, usize),
            sp: *mut f32,
        )
    );
    Ok(())
}

thread_local! {
    /// Each thread's attention scores, kept across calls (no allocation per call).
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}
