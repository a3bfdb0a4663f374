//! The inner loops of a search: one query against many compact rows. Each row format has a
//! plain scalar kernel (what native builds run, and what the SIMD kernels are tested
//! against) and, on wasm32 built with `+simd128`, an explicit 128-bit SIMD kernel: the
//! browser's scan of 100,000 rows is these loops and nothing else.
//!
//! Row formats (`dim` = embedding length):
//! - `f32`: `[dim]` floats.
//! - `f16`: `[dim]` IEEE half floats (bits as `u16`), widened to f32 in registers.
//! - `i8`: `[dim]` signed codes in [-127, 127] and one f32 scale per row (`x ≈ scale *
//!   code`); the query is quantised the same way, so the loop is an integer dot product
//!   (i8 x i8 -> i16 products, pairs summed into i32 lanes), scaled once per row.

/// `Σ a[i] * b[i]`.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::dot_f32(a, b)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::dot_f32(a, b)
    }
}

/// `Σ q[i] * f16(row[i])`.
#[inline]
pub fn dot_f16(q: &[f32], row: &[u16]) -> f32 {
    debug_assert_eq!(q.len(), row.len());
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::dot_f16(q, row)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::dot_f16(q, row)
    }
}

/// `Σ q[i] * row[i]` over signed bytes, exact in i32 (|sum| <= 127² * dim).
#[inline]
pub fn dot_i8(q: &[i8], row: &[i8]) -> i32 {
    debug_assert_eq!(q.len(), row.len());
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        simd::dot_i8(q, row)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        scalar::dot_i8(q, row)
    }
}

/// Plain code: the reference for the SIMD kernels, and the native path (LLVM vectorises
/// the four-accumulator f32 loops itself).
pub mod scalar {
    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0f32; 8];
        let chunks = a.len() / 8;
        for c in 0..chunks {
            for l in 0..8 {
                acc[l] += a[c * 8 + l] * b[c * 8 + l];
            }
        }
        let mut s: f32 = acc.iter().sum();
        for i in chunks * 8..a.len() {
            s += a[i] * b[i];
        }
        s
    }

    pub fn dot_f16(q: &[f32], row: &[u16]) -> f32 {
        let mut acc = [0f32; 8];
        let chunks = q.len() / 8;
        for c in 0..chunks {
            for l in 0..8 {
                acc[l] += q[c * 8 + l] * f16_to_f32(row[c * 8 + l]);
            }
        }
        let mut s: f32 = acc.iter().sum();
        for i in chunks * 8..q.len() {
            s += q[i] * f16_to_f32(row[i]);
        }
        s
    }

    pub fn dot_i8(q: &[i8], row: &[i8]) -> i32 {
        q.iter().zip(row).map(|(&a, &b)| a as i32 * b as i32).sum()
    }

    /// IEEE half to float (rows hold finite values only: `VectorStore` refuses others).
    #[inline]
    pub fn f16_to_f32(h: u16) -> f32 {
        half::f16::from_bits(h).to_f32()
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::*;

    /// Eight halves (one `v128` of u16) to two `f32x4`: the exponent-and-mantissa bits
    /// shifted into place and multiplied by 2^112 re-bias the exponent (15 -> 127) and turn
    /// half subnormals into the right float; the sign is or-ed back. Exact for every finite
    /// half (inf/NaN never reach a row).
    #[inline(always)]
    unsafe fn widen_f16(h: v128) -> (v128, v128) {
        let magic = f32x4_splat(f32::from_bits((127 + 112) << 23));
        let one = |x: v128| {
            let sign = i32x4_shl(v128_and(x, u32x4_splat(0x8000)), 16);
            let em = i32x4_shl(v128_and(x, u32x4_splat(0x7fff)), 13);
            v128_or(f32x4_mul(em, magic), sign)
        };
        (
            one(u32x4_extend_low_u16x8(h)),
            one(u32x4_extend_high_u16x8(h)),
        )
    }

    #[inline(always)]
    unsafe fn hsum(v: v128) -> f32 {
        f32x4_extract_lane::<0>(v)
            + f32x4_extract_lane::<1>(v)
            + f32x4_extract_lane::<2>(v)
            + f32x4_extract_lane::<3>(v)
    }

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let body = n / 16 * 16;
        // SAFETY: every load reads 4 floats at i < body <= n of both slices.
        unsafe {
            let (pa, pb) = (a.as_ptr(), b.as_ptr());
            let mut acc = [f32x4_splat(0.0); 4];
            let mut i = 0;
            while i < body {
                for (l, acc) in acc.iter_mut().enumerate() {
                    let x = v128_load(pa.add(i + 4 * l) as *const v128);
                    let y = v128_load(pb.add(i + 4 * l) as *const v128);
                    *acc = f32x4_add(*acc, f32x4_mul(x, y));
                }
                i += 16;
            }
            let s = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
            let mut s = hsum(s);
            for j in body..n {
                s += a[j] * b[j];
            }
            s
        }
    }

    pub fn dot_f16(q: &[f32], row: &[u16]) -> f32 {
        let n = q.len().min(row.len());
        let body = n / 16 * 16;
        // SAFETY: each step reads 16 halves of `row` and 16 floats of `q` below body <= n.
        unsafe {
            let (pq, pr) = (q.as_ptr(), row.as_ptr());
            let mut acc = [f32x4_splat(0.0); 4];
            let mut i = 0;
            while i < body {
                let (a, b) = widen_f16(v128_load(pr.add(i) as *const v128));
                let (c, d) = widen_f16(v128_load(pr.add(i + 8) as *const v128));
                for (l, r) in [a, b, c, d].into_iter().enumerate() {
                    let x = v128_load(pq.add(i + 4 * l) as *const v128);
                    acc[l] = f32x4_add(acc[l], f32x4_mul(x, r));
                }
                i += 16;
            }
            let s = f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3]));
            let mut s = hsum(s);
            for j in body..n {
                s += q[j] * super::scalar::f16_to_f32(row[j]);
            }
            s
        }
    }

    pub fn dot_i8(q: &[i8], row: &[i8]) -> i32 {
        let n = q.len().min(row.len());
        let body = n / 16 * 16;
        // SAFETY: each step reads 16 bytes of both slices below body <= n.
        unsafe {
            let (pq, pr) = (q.as_ptr(), row.as_ptr());
            let mut acc = i32x4_splat(0);
            let mut i = 0;
            while i < body {
                let x = v128_load(pq.add(i) as *const v128);
                let y = v128_load(pr.add(i) as *const v128);
                // Query codes lie in [-127, 127] and row codes in [-128, 127], so a sum of
                // two products (at most 2 * 128 * 127 = 32512) fits i16.
                let p = i16x8_add(i16x8_extmul_low_i8x16(x, y), i16x8_extmul_high_i8x16(x, y));
                acc = i32x4_add(acc, i32x4_extadd_pairwise_i16x8(p));
                i += 16;
            }
            let a = acc;
            let mut s = i32x4_extract_lane::<0>(a)
                + i32x4_extract_lane::<1>(a)
                + i32x4_extract_lane::<2>(a)
                + i32x4_extract_lane::<3>(a);
            for j in body..n {
                s += q[j] as i32 * row[j] as i32;
            }
            s
        }
    }
}
