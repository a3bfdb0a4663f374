//! CPU backend benchmark on N threads: the FMA peak of the ISA in use (a register-only
//! microbenchmark, run on N threads at once), GFLOP/s of every GEMM shape of the model
//! against it, and encoder latencies on random weights of the real shape (timing does not
//! depend on the values).
//! Run: `cargo run --release --example cpu_bench [preset]` (or `webclip bench --backend cpu`).

use super::{sample_tokens, Latencies, Latency};
use crate::cpu::gemm::{matmul_threads, Epilogue, PackedMatrix};
use crate::cpu::simd::{Isa, Scalar, Simd};
use crate::cpu::{make_weight, CpuBackend, CpuWeight};
use crate::error::Result;
use crate::graph::{self, TextBatch};
use crate::model::quantize::DEFAULT_GROUP;
use crate::model::random::{write_random_weights, Rng};
use crate::model::{ClipConfig, ClipModel, Dtype, SafeTensors, Towers};
use std::io::Write;
use std::time::{Duration, Instant};

/// Independent FMA chains in the peak loop: more than latency x throughput (4 x 2 on
/// current x86 cores) so the loop is bound by FMA issue, not by latency.
const CHAINS: usize = 12;

/// Times of one benchmarked call.
struct Timing {
    best: Duration,
    median: Duration,
    /// Best on-CPU time of this thread (Linux): on a shared machine, wall time also counts
    /// the slices other processes got. Shown for one thread only (it omits the workers').
    best_cpu: Option<Duration>,
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
fn thread_cpu_time() -> Option<Duration> {
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
fn thread_cpu_time() -> Option<Duration> {
    None
}

/// Repeat `f` until `budget` has passed (at least `min_reps` times, after one warm-up).
fn time<F: FnMut() -> Result<()>>(mut f: F, min_reps: usize, budget: Duration) -> Result<Timing> {
    f()?;
    let start = Instant::now();
    let mut times = Vec::new();
    let mut best_cpu: Option<Duration> = None;
    while times.len() < min_reps || start.elapsed() < budget {
        let c = thread_cpu_time();
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
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

/// `x` as milliseconds, or "-".
fn ms(x: Option<Duration>) -> String {
    x.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
}

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
                _ => fma_loop::<Scalar>(iters, seed),
            }
        }
    };
    let lanes = match isa {
        Isa::Avx2Fma if isa.is_available() => 8,
        Isa::Sse2 if cfg!(target_arch = "x86_64") => 4,
        _ => 1,
    };
    // ~5 ms a run; best of 7, so that one undisturbed run is enough.
    let iters = 50_000_000 / lanes;
    let mut best = f64::MAX;
    for _ in 0..7 {
        let t = Instant::now();
        std::hint::black_box(run(std::hint::black_box(iters)));
        best = best.min(t.elapsed().as_secs_f64());
    }
    (iters * CHAINS * lanes * 2) as f64 / best / 1e9
}

/// The peak of `threads` cores together: [`fma_peak`] on that many OS threads at once
/// (a VM's cores need not all reach one core's peak).
pub fn fma_peak_threads(isa: Isa, threads: usize) -> f64 {
    if threads <= 1 {
        return fma_peak(isa);
    }
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..threads)
            .map(|_| s.spawn(move || fma_peak(isa)))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap_or(0.0)).sum()
    })
}

/// One GEMM of the model: `[m, k] x [k, n]`.
struct Shape {
    what: String,
    m: usize,
    k: usize,
    n: usize,
}

fn gemm_shapes(c: &ClipConfig) -> Vec<Shape> {
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

/// Run the whole benchmark for a config preset (e.g. `vit-b-32`) on `threads` threads
/// (0: every core), printing to `out`, and return the encoder latencies (best of the runs).
/// The matmul shapes, the encoders, and with `int8` the same encoders on int8 weights
/// (quantised at load, as `weights: 'int8'` does) next to f32, with the bytes each holds.
pub fn run_bench(
    preset: &str,
    threads: usize,
    int8: bool,
    out: &mut dyn Write,
) -> Result<Latencies> {
    let config = ClipConfig::preset(preset)?;
    let isa = Isa::best();
    let mut backend = CpuBackend::with_threads(threads);
    let threads = backend.threads();
    let io = |e: std::io::Error| crate::error::ClipError::Io(e.to_string());
    writeln!(
        out,
        "# webclip CPU backend, {preset}, {threads} thread{}, ISA {}",
        if threads == 1 { "" } else { "s" },
        isa.name()
    )
    .map_err(io)?;
    let peak_before = fma_peak_threads(isa, threads);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        writeln!(
            out,
            "(this CPU also has AVX-512F, unused: its intrinsics need Rust 1.89, above the \
             crate's MSRV; ratios are against the AVX2 peak)"
        )
        .map_err(io)?;
    }
    if isa != Isa::Sse2 && Isa::Sse2.is_available() {
        writeln!(
            out,
            "FMA peak (sse2 mul+add, {threads} thread(s)): {:.1} GFLOP/s",
            fma_peak_threads(Isa::Sse2, threads)
        )
        .map_err(io)?;
    }

    // (shape, best ms, GFLOP/s best / median / on-CPU)
    let mut rows = Vec::new();
    let mut rng = Rng::new(7);
    for s in gemm_shapes(&config) {
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
            Duration::from_millis(300),
        )?;
        let flop = 2.0 * (s.m * s.k * s.n) as f64;
        let gflops = |d: Duration| flop / d.as_secs_f64().max(1e-9) / 1e9;
        rows.push((
            s,
            t.best.as_secs_f64() * 1e3,
            gflops(t.best),
            gflops(t.median),
            t.best_cpu.filter(|_| threads == 1).map(gflops),
        ));
    }
    // The clock moves with load and temperature: the peak is the best of two
    // measurements, before and after the GEMMs.
    let peak = peak_before.max(fma_peak_threads(isa, threads));
    writeln!(
        out,
        "FMA peak ({}, {CHAINS} chains, {threads} thread(s)): {peak:.1} GFLOP/s",
        isa.name()
    )
    .map_err(io)?;
    writeln!(
        out,
        "\n## Matmul (act x W^T, packed weights, epilogue: bias)\n"
    )
    .map_err(io)?;
    writeln!(
        out,
        "| shape | M | K | N | best ms | GFLOP/s | median GFLOP/s | on-CPU GFLOP/s | of peak |"
    )
    .map_err(io)?;
    writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|").map_err(io)?;
    for (s, ms, g, median, cpu) in rows {
        writeln!(
            out,
            "| {} | {} | {} | {} | {ms:.3} | {g:.1} | {median:.1} | {} | {:.0}% |",
            s.what,
            s.m,
            s.k,
            s.n,
            cpu.map_or("-".into(), |c| format!("{c:.1}")),
            100.0 * g / peak
        )
        .map_err(io)?;
    }

    // Random weights of the real shape, in memory (f16 halves the temporary file).
    let mut file = Vec::new();
    write_random_weights(&mut file, &config, 1, Dtype::F16)?;
    let st = SafeTensors::parse(&file)?;
    // The bytes the weights hold once loaded, counted as they are made.
    let load = |quantize: bool| -> Result<(ClipModel<CpuWeight>, usize)> {
        let mut held = 0usize;
        let model = ClipModel::load(
            &config,
            &st,
            file.as_slice(),
            Towers::Both,
            &mut |role, t| {
                let t = match quantize {
                    true => t.quantized(role, DEFAULT_GROUP)?,
                    false => t,
                };
                let w = make_weight(role, t)?;
                held += w.bytes();
                Ok(w)
            },
        )?;
        Ok((model, held))
    };
    let (model, held_f32) = load(false)?;
    let int8_model = match int8 {
        true => Some(load(true)?),
        false => None,
    };
    drop(file);

    writeln!(out, "\n## Encoders\n").map_err(io)?;
    writeln!(out, "| encoder | input | best ms | median ms | on-CPU ms |").map_err(io)?;
    writeln!(out, "|---|---|---:|---:|---:|").map_err(io)?;
    let mut latencies = Latencies {
        preset: preset.into(),
        rows: Vec::new(),
    };
    let vision = model.vision()?;
    let v = &config.vision_config;
    let mut image_ms = Vec::new();
    for batch in [1, 8] {
        let px = rng.fill_uniform(batch * 3 * v.image_size * v.image_size, 1.0);
        let t = time(
            || graph::vision_forward(&mut backend, vision, &px, batch, false).map(|_| ()),
            if batch == 1 { 3 } else { 2 },
            Duration::from_millis(1500),
        )?;
        writeln!(
            out,
            "| image | batch {batch} | {} | {} | {} |",
            ms(Some(t.best)),
            ms(Some(t.median)),
            ms(t.best_cpu.filter(|_| threads == 1))
        )
        .map_err(io)?;
        latencies.rows.push(Latency {
            what: format!("image batch {batch}"),
            ms: t.best.as_secs_f64() * 1e3,
        });
        image_ms.push((batch, px));
    }
    let text = model.text()?;
    let t = &config.text_config;
    // CLIP runs a text up to its end token; SigLIP always runs its whole context.
    let lens = match t.causal {
        true => vec![t.max_position_embeddings, 10],
        false => vec![t.max_position_embeddings],
    };
    for len in lens {
        let ids = sample_tokens(t, len, &mut rng);
        let batch = TextBatch::from_tokens(&[ids], t, t.pad_token_id)?;
        let timing = time(
            || graph::text_forward(&mut backend, text, &batch, false).map(|_| ()),
            3,
            Duration::from_millis(1000),
        )?;
        writeln!(
            out,
            "| text | {len} tokens | {} | {} | {} |",
            ms(Some(timing.best)),
            ms(Some(timing.median)),
            ms(timing.best_cpu.filter(|_| threads == 1))
        )
        .map_err(io)?;
        // Named so that presets of other context lengths line up side by side.
        let what = match len == t.max_position_embeddings {
            true => "text, full context".to_string(),
            false => format!("text, {len} tokens"),
        };
        latencies.rows.push(Latency {
            what,
            ms: timing.best.as_secs_f64() * 1e3,
        });
    }
    if let Some((m8, held_i8)) = &int8_model {
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        writeln!(
            out,
            "\n## int8 weights (group {DEFAULT_GROUP}, dequantised per block in the matmul) vs f32, runs alternating\n"
        )
        .map_err(io)?;
        writeln!(
            out,
            "| image | f32 ms/image (best) | int8 ms/image (best) | int8 / f32 | f32 median | int8 median |"
        )
        .map_err(io)?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|").map_err(io)?;
        let v8 = m8.vision()?;
        // f32 and int8 runs alternate, so that a noisy neighbour slows both alike.
        for (batch, px) in &image_ms {
            let reps = if *batch == 1 { 7 } else { 3 };
            let (mut t32, mut t8) = (Vec::new(), Vec::new());
            for _ in 0..reps {
                for (tower, times) in [(vision, &mut t32), (v8, &mut t8)] {
                    let start = std::time::Instant::now();
                    graph::vision_forward(&mut backend, tower, px, *batch, false)?;
                    times.push(start.elapsed());
                }
            }
            for t in [&mut t32, &mut t8] {
                t.sort();
            }
            let per = |d: Duration| d.as_secs_f64() * 1e3 / *batch as f64;
            writeln!(
                out,
                "| batch {batch} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} |",
                per(t32[0]),
                per(t8[0]),
                t8[0].as_secs_f64() / t32[0].as_secs_f64().max(1e-12),
                per(t32[reps / 2]),
                per(t8[reps / 2])
            )
            .map_err(io)?;
        }
        writeln!(
            out,
            "\nweights held after load: f32 {:.1} MiB, int8 {:.1} MiB ({:.1} % of f32)",
            mib(held_f32),
            mib(*held_i8),
            100.0 * *held_i8 as f64 / held_f32.max(1) as f64
        )
        .map_err(io)?;
    }
    Ok(latencies)
}
