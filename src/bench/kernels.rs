//! The CPU kernels against the core's own limit, natively and in every wasm build: the
//! peak of the ISA's multiply-add (a register-only loop, on N threads at once) and the
//! GFLOP/s of every GEMM shape of a model. The wasm builds export it as `kernelBench`
//! (`tests/js/bench/kernels.mjs` runs it in Chromium); `webclip bench` prints it natively.

use crate::cpu::gemm::{matmul_threads, Epilogue, PackedMatrix};
use crate::cpu::simd::{Isa, Scalar, Simd};
use crate::error::Result;
use crate::model::random::Rng;
use crate::model::ClipConfig;
use std::time::Duration;

/// Independent FMA chains in the peak loop: more than latency x throughput (4 x 2 on
/// current x86 cores) so the loop is bound by FMA issue, not by latency.
pub const CHAINS: usize = 12;

/// Time since an arbitrary origin: `Instant` natively, `performance.now()` in wasm (where
/// `Instant` is missing), in a window or a worker alike.
pub fn now() -> Duration {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        ORIGIN.get_or_init(std::time::Instant::now).elapsed()
    }
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        let ms = js_sys::Reflect::get(&js_sys::global(), &"performance".into())
            .ok()
            .and_then(|p| {
                let now = js_sys::Reflect::get(&p, &"now".into()).ok()?;
                now.dyn_into::<js_sys::Function>().ok()?.call0(&p).ok()
            })
            .and_then(|v| v.as_f64())
            .unwrap_or_else(js_sys::Date::now);
        Duration::from_secs_f64(ms.max(0.0) / 1e3)
    }
}

/// Times of one benchmarked call.
pub struct Timing {
    pub best: Duration,
    pub median: Duration,
    /// Best on-CPU time of this thread (Linux): on a shared machine, wall time also counts
    /// the slices other processes got. Shown for one thread only (it omits the workers').
    pub best_cpu: Option<Duration>,
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid timespec (two 64-bit fields on 64-bit Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.sec as u64, ts.nsec as u32))
}

#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
pub(crate) fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Repeat `f` until `budget` has passed (at least `min_reps` times, after one warm-up).
pub fn time<F: FnMut() -> Result<()>>(
    mut f: F,
    min_reps: usize,
    budget: Duration,
) -> Result<Timing> {
    f()?;
    let start = now();
    let mut times = Vec::new();
    let mut best_cpu: Option<Duration> = None;
    while times.len() < min_reps || now() - start < budget {
        let c = thread_cpu_time();
        let t = now();
        f()?;
        times.push(now() - t);
        if let (Some(c0), Some(c1)) = (c, thread_cpu_time()) {
            let d = c1.saturating_sub(c0);
            best_cpu = Some(best_cpu.map_or(d, |b| b.min(d)));
        }
    }
    times.sort();
    Ok(Timing {
        best: times[0],
        median: times[times.len() / 2],
        best_cpu,
    })
}

/// The peak of the ISA's multiply-add: chains of `x = x * a + b`, bound by FMA issue where
/// it is one fused instruction. Where it is two (simd128 without relaxed SIMD, SSE) each
/// chain also waits on the multiply's latency, which a GEMM's accumulators do not: on a
/// core with separate multiply and add pipes (AMD's) the GEMM then reads above 100 %.
#[inline(always)]
unsafe fn fma_loop<S: Simd>(iters: usize, seed: f32) -> f32 {
    let mut acc = [S::splat(seed); CHAINS];
    let (a, b) = (S::splat(0.999_999), S::splat(1e-7));
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = S::fma(*x, a, b);
        }
    }
    acc.iter().map(|&v| S::hsum(v)).sum()
}

/// What `isa`'s multiply-add is in this build: the instruction mix its peak measures.
pub fn peak_mix(isa: Isa) -> &'static str {
    match isa {
        Isa::Avx2Fma => "AVX2 FMA",
        Isa::Sse2 => "SSE mul+add",
        Isa::Simd128 if cfg!(target_feature = "relaxed-simd") => "simd128 relaxed FMA",
        Isa::Simd128 => "simd128 mul+add",
        _ => "scalar mul+add",
    }
}

/// Peak single-core GFLOP/s of `isa`'s multiply-add (2 flops per lane per FMA).
pub fn fma_peak(isa: Isa) -> f64 {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(iters: usize, seed: f32) -> f32 {
        fma_loop::<crate::cpu::simd::Avx2Fma>(iters, seed)
    }
    let run = |iters: usize| -> f32 {
        let seed = std::hint::black_box(1.0);
        // SAFETY: each arm runs only when its ISA is available.
        unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2Fma if isa.is_available() => avx2(iters, seed),
                #[cfg(target_arch = "x86_64")]
                Isa::Sse2 => fma_loop::<crate::cpu::simd::Sse2>(iters, seed),
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                Isa::Simd128 => fma_loop::<crate::cpu::simd::Simd128>(iters, seed),
                _ => fma_loop::<Scalar>(iters, seed),
            }
        }
    };
    let lanes = match isa {
        Isa::Avx2Fma if isa.is_available() => 8,
        Isa::Sse2 if cfg!(target_arch = "x86_64") => 4,
        Isa::Simd128 if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) => 4,
        _ => 1,
    };
    // ~5 ms a run; best of 7, so that one undisturbed run is enough.
    let iters = 50_000_000 / lanes;
    let mut best = f64::MAX;
    for _ in 0..7 {
        let t = now();
        std::hint::black_box(run(std::hint::black_box(iters)));
        best = best.min((now() - t).as_secs_f64());
    }
    (iters * CHAINS * lanes * 2) as f64 / best.max(1e-9) / 1e9
}

/// The peak of `threads` cores together (a VM's cores need not all reach one core's
/// peak): [`fma_peak`] on that many OS threads at once natively; in wasm, one loop per
/// thread of the CPU engine's pool, the sum of what each measured while they all ran.
pub fn fma_peak_threads(isa: Isa, threads: usize) -> f64 {
    if threads <= 1 {
        return fma_peak(isa);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..threads)
                .map(|_| s.spawn(move || fma_peak(isa)))
                .collect();
            runs.into_iter().map(|r| r.join().unwrap_or(0.0)).sum()
        })
    }
    #[cfg(target_arch = "wasm32")]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        let sum = AtomicU64::new(0); // MFLOP/s, summed over the tasks
        let tasks = threads.min(crate::cpu::pool::available());
        crate::cpu::pool::parallel_for(tasks, tasks, &|_| {
            sum.fetch_add((fma_peak(isa) * 1e3) as u64, Ordering::Relaxed);
        });
        sum.load(Ordering::Relaxed) as f64 / 1e3
    }
}

/// One GEMM of the model: `[m, k] x [k, n]`.
#[derive(Debug, Clone)]
pub struct Shape {
    pub what: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

/// Every matmul shape of the model's towers: vision at batch 1 and 8, text at the full
/// context and at 10 tokens.
pub fn gemm_shapes(c: &ClipConfig) -> Vec<Shape> {
    let v = &c.vision_config;
    let t = &c.text_config;
    let mut out = Vec::new();
    for batch in [1, 8] {
        let m = batch * v.num_positions();
        let (h, i) = (v.hidden_size, v.intermediate_size);
        let p = batch * v.grid() * v.grid();
        out.push(Shape {
            what: format!("vision b{batch} patch embed"),
            m: p,
            k: v.patch_dim(),
            n: h,
        });
        for (name, k, n) in [("qkv/out proj", h, h), ("fc1", h, i), ("fc2", i, h)] {
            out.push(Shape {
                what: format!("vision b{batch} {name}"),
                m,
                k,
                n,
            });
        }
    }
    for m in [t.max_position_embeddings, 10] {
        let (h, i) = (t.hidden_size, t.intermediate_size);
        for (name, k, n) in [("qkv/out proj", h, h), ("fc1", h, i), ("fc2", i, h)] {
            out.push(Shape {
                what: format!("text {m} tok {name}"),
                m,
                k,
                n,
            });
        }
    }
    out
}

/// One shape's measurement.
#[derive(Debug, Clone)]
pub struct GemmRow {
    pub shape: Shape,
    pub best_ms: f64,
    pub gflops: f64,
    pub median_gflops: f64,
    /// From this thread's CPU time, where the platform has it (1 thread only).
    pub on_cpu_gflops: Option<f64>,
}

/// Every shape of [`gemm_shapes`] on `threads` threads (packed weights, bias epilogue), each
/// timed for `budget`.
pub fn gemm_rows(
    config: &ClipConfig,
    isa: Isa,
    threads: usize,
    budget: Duration,
) -> Result<Vec<GemmRow>> {
    let mut rows = Vec::new();
    let mut rng = Rng::new(7);
    for s in gemm_shapes(config) {
        let a = rng.fill_uniform(s.m * s.k, 1.0); // [m, k]
        let w = PackedMatrix::pack(&rng.fill_uniform(s.n * s.k, 0.05), s.n, s.k)?;
        let bias = rng.fill_uniform(s.n, 0.05); // [n]
        let mut c = vec![0f32; s.m * s.n]; // [m, n]
        let ep = Epilogue {
            bias: Some(&bias),
            ..Default::default()
        };
        let t = time(
            || matmul_threads(isa, threads, &a, s.m, &w, &mut c, &ep),
            3,
            budget,
        )?;
        let flop = 2.0 * (s.m * s.k * s.n) as f64;
        let gflops = |d: Duration| flop / d.as_secs_f64().max(1e-9) / 1e9;
        rows.push(GemmRow {
            best_ms: t.best.as_secs_f64() * 1e3,
            gflops: gflops(t.best),
            median_gflops: gflops(t.median),
            on_cpu_gflops: t.best_cpu.filter(|_| threads == 1).map(gflops),
            shape: s,
        });
    }
    Ok(rows)
}

/// [`gemm_rows`] and the peak of `threads` cores they are held against: the better of a
/// measurement before and one after, as the clock moves with load and temperature.
pub fn gemm_against_peak(
    config: &ClipConfig,
    isa: Isa,
    threads: usize,
    budget: Duration,
) -> Result<(f64, Vec<GemmRow>)> {
    let before = fma_peak_threads(isa, threads);
    let rows = gemm_rows(config, isa, threads, budget)?;
    Ok((before.max(fma_peak_threads(isa, threads)), rows))
}
