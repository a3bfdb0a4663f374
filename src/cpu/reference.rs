//! Plain scalar reference kernels: the straightforward loops the SIMD kernels (`gemm.rs`,
//! `ops.rs`) are tested against, and the accuracy reference for `erf`. Not used by the
//! backend itself.

use super::qdot::quantize_row;
use crate::graph::AttentionShape;
use crate::model::quantize::Q8;
use crate::model::Activation;

/// `out[m, n] = sum_k a[m, k] * b[n, k]`: activations times a `[out, in]` weight.
pub fn matmul_nt(a: &[f32], b: &[f32], out: &mut [f32], m: usize, k: usize, n: usize) {
    for i in 0..m {
        let ar = &a[i * k..][..k];
        for j in 0..n {
            let br = &b[j * k..][..k];
            out[i * n + j] = ar.iter().zip(br).map(|(x, y)| x * y).sum();
        }
    }
}

/// Bias, activation, then residual, on rows of width `n`.
pub fn epilogue(
    out: &mut [f32],
    n: usize,
    bias: Option<&[f32]>,
    act: Option<Activation>,
    residual: Option<&[f32]>,
) {
    for (r, row) in out.chunks_mut(n).enumerate() {
        if let Some(b) = bias {
            row.iter_mut().zip(b).for_each(|(x, b)| *x += b);
        }
        if let Some(a) = act {
            row.iter_mut().for_each(|x| *x = activate(a, *x));
        }
        if let Some(res) = residual {
            row.iter_mut()
                .zip(&res[r * n..][..n])
                .for_each(|(x, r)| *x += r);
        }
    }
}

pub fn activate(a: Activation, x: f32) -> f32 {
    match a {
        Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
        Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2)),
        Activation::GeluTanh => {
            0.5 * x
                * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
    }
}

/// erf with |error| < 1.2e-7 (Numerical Recipes' erfc, Chebyshev fit), in f64 for headroom.
pub fn erf(x: f32) -> f32 {
    let x = x as f64;
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    (if x >= 0.0 { 1.0 - r } else { r - 1.0 }) as f32
}

pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, dim: usize, out: &mut [f32]) {
    for (row, o) in x.chunks(dim).zip(out.chunks_mut(dim)) {
        let mean = row.iter().sum::<f32>() / dim as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for i in 0..dim {
            o[i] = (row[i] - mean) * inv * w[i] + b[i];
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Queries `[sequences * queries, width]` over keys and values `[sequences * keys, width]`,
/// as [`crate::graph::Backend::attention`].
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    width: usize,
    shape: AttentionShape,
    valid_lens: &[usize],
) {
    let AttentionShape {
        queries,
        keys: seq_keys,
        heads,
        causal,
    } = shape;
    let hd = width / heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut scores = vec![0f32; seq_keys];
    for (s, &valid) in valid_lens.iter().enumerate() {
        let (base, kv_base) = (s * queries, s * seq_keys);
        for h in 0..heads {
            for i in 0..queries {
                let qi = &q[(base + i) * width + h * hd..][..hd];
                let keys = if causal { valid.min(i + 1) } else { valid }.max(1);
                let mut max = f32::NEG_INFINITY;
                for j in 0..keys {
                    let kj = &k[(kv_base + j) * width + h * hd..][..hd];
                    scores[j] = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
                    max = max.max(scores[j]);
                }
                let mut sum = 0.0;
                for sc in scores.iter_mut().take(keys) {
                    *sc = (*sc - max).exp();
                    sum += *sc;
                }
                let o = &mut out[(base + i) * width + h * hd..][..hd];
                o.fill(0.0);
                for j in 0..keys {
                    let p = scores[j] / sum;
                    let vj = &v[(kv_base + j) * width + h * hd..][..hd];
                    o.iter_mut().zip(vj).for_each(|(o, v)| *o += p * v);
                }
            }
        }
    }
}

/// The integer matmul's arithmetic (`cpu::qdot`) in f64: each row of `a` (`[m, k]`)
/// quantised per weight group as the kernel quantises it, times the int8 weight `w`
/// (`[n, k]`), each group's exact integer dot product scaled back.
pub fn matmul_nt_int8_codes(a: &[f32], w: &Q8, out: &mut [f32], m: usize) {
    let (n, k, group, groups) = (w.rows, w.cols, w.group, w.groups());
    let mut codes = vec![0u8; k.div_ceil(4) * 4];
    let (mut step, mut lo) = (vec![0f32; groups], vec![0f32; groups]);
    for i in 0..m {
        quantize_row(&a[i * k..][..k], group, &mut codes, &mut step, &mut lo);
        for j in 0..n {
            let mut total = 0f64;
            for g in 0..groups {
                let (mut dot, mut sum) = (0i64, 0i64);
                let inputs = g * group..((g + 1) * group).min(k);
                for (&c, &v) in codes[inputs.clone()].iter().zip(&w.values[j * k..][inputs]) {
                    dot += i64::from(c) * i64::from(v);
                    sum += i64::from(v);
                }
                let (s, l) = (f64::from(step[g]), f64::from(lo[g]));
                total += f64::from(w.scales[j * groups + g]) * (s * dot as f64 + l * sum as f64);
            }
            out[i * n + j] = total as f32;
        }
    }
}
