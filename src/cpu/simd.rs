//! A tiny SIMD vector abstraction: the kernels in `gemm.rs` and `ops.rs` are written once
//! over [`Simd`] and monomorphised per instruction set (the pattern of the `gemm` / `pulp`
//! crates). Every method is `#[inline(always)]` so that, inlined into an entry point with
//! `#[target_feature(enable = "avx2,fma")]`, the intrinsics compile to single instructions.
//!
//! | [`Isa`]     | vector        | fma        | where                                   |
//! |-------------|---------------|------------|-----------------------------------------|
//! | `Avx2Fma`   | `__m256` (8)  | fused      | x86_64, detected at run time            |
//! | `Sse2`      | `__m128` (4)  | mul + add  | x86_64 baseline                         |
//! | `Simd128`   | `v128` (4)    | mul + add  | wasm32 built with `+simd128`            |
//! |             |               | fused      | ... and `+relaxed-simd` (`relaxed_madd`) |
//! | `Scalar`    | `f32` (1)     | mul + add  | everywhere (aarch64 relies on LLVM)     |

/// An instruction set the CPU kernels can run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Plain `f32` code; always available.
    Scalar,
    /// 128-bit SSE2 (every x86_64 CPU).
    Sse2,
    /// 256-bit AVX2 with fused multiply-add.
    Avx2Fma,
    /// WebAssembly 128-bit SIMD (compile-time: `-C target-feature=+simd128`).
    Simd128,
}

impl Isa {
    /// Whether this build, on this CPU, can run `self`.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Sse2 => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Every instruction set this build can run here, fastest first.
    pub fn available() -> Vec<Isa> {
        [Isa::Avx2Fma, Isa::Simd128, Isa::Sse2, Isa::Scalar]
            .into_iter()
            .filter(|i| i.is_available())
            .collect()
    }

    /// The fastest available instruction set (`std` caches the CPUID probe).
    pub fn best() -> Isa {
        [Isa::Avx2Fma, Isa::Simd128, Isa::Sse2]
            .into_iter()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Scalar)
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Sse2 => "sse2",
            Isa::Avx2Fma => "avx2+fma",
            Isa::Simd128 if cfg!(target_feature = "relaxed-simd") => "wasm simd128+relaxed-simd",
            Isa::Simd128 => "wasm simd128",
        }
    }
}

/// One vector type and its operations. All methods are `unsafe`: the caller guarantees
/// the instruction set is available and that pointers are valid for `LANES` floats
/// (no alignment needed).
pub(crate) trait Simd: Copy {
    type V: Copy;
    const LANES: usize;

    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    /// `a * b + c` (fused where the ISA has it).
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn abs(a: Self::V) -> Self::V;
    /// Lane-wise `if x < 0 { neg } else { other }`.
    unsafe fn select_neg(x: Self::V, neg: Self::V, other: Self::V) -> Self::V;
    /// `2^n` for lanes of `n` holding integers in `-126..=127`.
    unsafe fn pow2i(n: Self::V) -> Self::V;
    unsafe fn hsum(v: Self::V) -> f32;
    unsafe fn hmax(v: Self::V) -> f32;

    #[inline(always)]
    unsafe fn zero() -> Self::V {
        Self::splat(0.0)
    }
    /// Round to the nearest integer (ties to even), for `|x| < 2^22`: adding 1.5 * 2^23
    /// pushes the fraction out of the mantissa.
    #[inline(always)]
    unsafe fn round(x: Self::V) -> Self::V {
        let magic = Self::splat(12_582_912.0);
        Self::sub(Self::add(x, magic), magic)
    }
}

/// Scalar "vectors" of one lane: the fallback, and the tails of every SIMD loop.
#[derive(Clone, Copy)]
pub(crate) struct Scalar;

impl Simd for Scalar {
    type V = f32;
    const LANES: usize = 1;

    #[inline(always)]
    unsafe fn splat(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        *p
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        *p = v
    }
    #[inline(always)]
    unsafe fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    unsafe fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    unsafe fn mul(a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    unsafe fn div(a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    unsafe fn max(a: f32, b: f32) -> f32 {
        a.max(b)
    }
    #[inline(always)]
    unsafe fn min(a: f32, b: f32) -> f32 {
        a.min(b)
    }
    #[inline(always)]
    unsafe fn fma(a: f32, b: f32, c: f32) -> f32 {
        // Not `mul_add`: without hardware FMA that is a slow libm call.
        a * b + c
    }
    #[inline(always)]
    unsafe fn abs(a: f32) -> f32 {
        a.abs()
    }
    #[inline(always)]
    unsafe fn select_neg(x: f32, neg: f32, other: f32) -> f32 {
        if x < 0.0 {
            neg
        } else {
            other
        }
    }
    #[inline(always)]
    unsafe fn pow2i(n: f32) -> f32 {
        f32::from_bits(((n as i32 + 127) as u32) << 23)
    }
    #[inline(always)]
    unsafe fn hsum(v: f32) -> f32 {
        v
    }
    #[inline(always)]
    unsafe fn hmax(v: f32) -> f32 {
        v
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2Fma, Sse2};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// SSE2, 4 lanes; no FMA (it is not part of SSE2).
    #[derive(Clone, Copy)]
    pub(crate) struct Sse2;

    impl Simd for Sse2 {
        type V = __m128;
        const LANES: usize = 4;

        #[inline(always)]
        unsafe fn splat(x: f32) -> __m128 {
            _mm_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m128 {
            _mm_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m128) {
            _mm_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn add(a: __m128, b: __m128) -> __m128 {
            _mm_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m128, b: __m128) -> __m128 {
            _mm_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m128, b: __m128) -> __m128 {
            _mm_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn div(a: __m128, b: __m128) -> __m128 {
            _mm_div_ps(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m128, b: __m128) -> __m128 {
            _mm_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn min(a: __m128, b: __m128) -> __m128 {
            _mm_min_ps(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: __m128, b: __m128, c: __m128) -> __m128 {
            _mm_add_ps(_mm_mul_ps(a, b), c)
        }
        #[inline(always)]
        unsafe fn abs(a: __m128) -> __m128 {
            _mm_andnot_ps(_mm_set1_ps(-0.0), a)
        }
        #[inline(always)]
        unsafe fn select_neg(x: __m128, neg: __m128, other: __m128) -> __m128 {
            let m = _mm_cmplt_ps(x, _mm_setzero_ps());
            _mm_or_ps(_mm_and_ps(m, neg), _mm_andnot_ps(m, other))
        }
        #[inline(always)]
        unsafe fn pow2i(n: __m128) -> __m128 {
            let e = _mm_add_epi32(_mm_cvtps_epi32(n), _mm_set1_epi32(127));
            _mm_castsi128_ps(_mm_slli_epi32::<23>(e))
        }
        #[inline(always)]
        unsafe fn hsum(v: __m128) -> f32 {
            let hi = _mm_movehl_ps(v, v);
            let s = _mm_add_ps(v, hi);
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
        #[inline(always)]
        unsafe fn hmax(v: __m128) -> f32 {
            let hi = _mm_movehl_ps(v, v);
            let s = _mm_max_ps(v, hi);
            let s = _mm_max_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
    }

    /// AVX2 + FMA, 8 lanes. Only reachable through `#[target_feature(enable = "avx2,fma")]`
    /// entry points that check `Isa::Avx2Fma.is_available()` first.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2Fma;

    impl Simd for Avx2Fma {
        type V = __m256;
        const LANES: usize = 8;

        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            _mm256_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            _mm256_mul_ps(a, b)
        }
        #[inline(always)]
        unsafe fn div(a: __m256, b: __m256) -> __m256 {
            _mm256_div_ps(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            _mm256_max_ps(a, b)
        }
        #[inline(always)]
        unsafe fn min(a: __m256, b: __m256) -> __m256 {
            _mm256_min_ps(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn abs(a: __m256) -> __m256 {
            _mm256_andnot_ps(_mm256_set1_ps(-0.0), a)
        }
        #[inline(always)]
        unsafe fn select_neg(x: __m256, neg: __m256, other: __m256) -> __m256 {
            // blendv picks by the sign bit, which is set exactly for x < 0 (and -0.0,
            // NaN with sign: both give the same value in our uses).
            _mm256_blendv_ps(other, neg, x)
        }
        #[inline(always)]
        unsafe fn pow2i(n: __m256) -> __m256 {
            let e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
            _mm256_castsi256_ps(_mm256_slli_epi32::<23>(e))
        }
        #[inline(always)]
        unsafe fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            Sse2::hsum(s)
        }
        #[inline(always)]
        unsafe fn hmax(v: __m256) -> f32 {
            let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            Sse2::hmax(s)
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use wasm::Simd128;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::Simd;
    use core::arch::wasm32::*;

    /// WebAssembly SIMD, 4 lanes. Relaxed SIMD's fused multiply-add only in the build made
    /// with `+relaxed-simd` (not every browser has it: js/wasm.js picks the build).
    #[derive(Clone, Copy)]
    pub(crate) struct Simd128;

    impl Simd for Simd128 {
        type V = v128;
        const LANES: usize = 4;

        #[inline(always)]
        unsafe fn splat(x: f32) -> v128 {
            f32x4_splat(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> v128 {
            v128_load(p as *const v128)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: v128) {
            v128_store(p as *mut v128, v)
        }
        #[inline(always)]
        unsafe fn add(a: v128, b: v128) -> v128 {
            f32x4_add(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: v128, b: v128) -> v128 {
            f32x4_sub(a, b)
        }
        #[inline(always)]
        unsafe fn mul(a: v128, b: v128) -> v128 {
            f32x4_mul(a, b)
        }
        #[inline(always)]
        unsafe fn div(a: v128, b: v128) -> v128 {
            f32x4_div(a, b)
        }
        #[inline(always)]
        unsafe fn max(a: v128, b: v128) -> v128 {
            // pmax is the cheap one (maps to maxps); our inputs hold no NaN.
            f32x4_pmax(a, b)
        }
        #[inline(always)]
        unsafe fn min(a: v128, b: v128) -> v128 {
            f32x4_pmin(a, b)
        }
        #[inline(always)]
        unsafe fn fma(a: v128, b: v128, c: v128) -> v128 {
            // Relaxed: fused or not, as the CPU does it (x86 with FMA and Arm: fused); the
            // fixtures' tolerances hold either way.
            #[cfg(target_feature = "relaxed-simd")]
            return f32x4_relaxed_madd(a, b, c);
            #[cfg(not(target_feature = "relaxed-simd"))]
            return f32x4_add(f32x4_mul(a, b), c);
        }
        #[inline(always)]
        unsafe fn abs(a: v128) -> v128 {
            f32x4_abs(a)
        }
        #[inline(always)]
        unsafe fn select_neg(x: v128, neg: v128, other: v128) -> v128 {
            v128_bitselect(neg, other, f32x4_lt(x, f32x4_splat(0.0)))
        }
        #[inline(always)]
        unsafe fn pow2i(n: v128) -> v128 {
            let e = i32x4_add(i32x4_trunc_sat_f32x4(n), i32x4_splat(127));
            i32x4_shl(e, 23)
        }
        #[inline(always)]
        unsafe fn hsum(v: v128) -> f32 {
            (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v))
                + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
        }
        #[inline(always)]
        unsafe fn hmax(v: v128) -> f32 {
            f32x4_extract_lane::<0>(v)
                .max(f32x4_extract_lane::<1>(v))
                .max(f32x4_extract_lane::<2>(v).max(f32x4_extract_lane::<3>(v)))
        }
    }
}
