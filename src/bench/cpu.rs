//! CPU backend benchmark on N threads: the FMA peak of the ISA in use (a register-only
//! microbenchmark, run on N threads at once), GFLOP/s of every GEMM shape of the model
//! against it, and encoder latencies on random weights of the real shape (timing does not
//! depend on the values).
//! Run: `cargo run --release --example cpu_bench [preset]` (or `webclip bench --backend cpu`).

use super::kernels::{fma_peak_threads, gemm_against_peak, peak_mix, time, CHAINS};
use super::{sample_tokens, Latencies, Latency};
use crate::cpu::simd::Isa;
use crate::cpu::{make_weight, CpuBackend, CpuWeight};
use crate::error::Result;
use crate::graph::{self, TextBatch};
use crate::model::quantize::DEFAULT_GROUP;
use crate::model::random::{write_random_weights, Rng};
use crate::model::{ClipConfig, ClipModel, Dtype, SafeTensors, Towers};
use std::io::Write;
use std::time::Duration;

/// `x` as milliseconds, or "-".
fn ms(x: Option<Duration>) -> String {
    x.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1e3))
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
    let (peak, rows) = gemm_against_peak(&config, isa, threads, Duration::from_millis(300))?;
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

    let mut rng = Rng::new(7);
    writeln!(
        out,
        "FMA peak ({}, {CHAINS} chains, {threads} thread(s)): {peak:.1} GFLOP/s",
        peak_mix(isa)
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
    for r in rows {
        let s = &r.shape;
        writeln!(
            out,
            "| {} | {} | {} | {} | {:.3} | {:.1} | {:.1} | {} | {:.0}% |",
            s.what,
            s.m,
            s.k,
            s.n,
            r.best_ms,
            r.gflops,
            r.median_gflops,
            r.on_cpu_gflops.map_or("-".into(), |c| format!("{c:.1}")),
            100.0 * r.gflops / peak
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
    // Where the time goes: each operation timed inside the fastest of three passes, on
    // f32 weights and (with `int8`) on int8 ones.
    let profiled = std::iter::once(("", &model))
        .chain(int8_model.iter().map(|(m8, _)| (" on int8 weights", m8)));
    for (weights, m) in profiled {
        for (batch, px) in &image_ms {
            let (total, ops) =
                super::profile::fastest_vision_pass(&mut backend, m.vision()?, px, *batch, 3)?;
            writeln!(
                out,
                "\n## Image batch {batch}{weights}, by operation ({:.1} ms in all)\n\n{}",
                total.as_secs_f64() * 1e3,
                super::profile::table(&ops, total)
            )
            .map_err(io)?;
        }
    }
    if let Some((m8, held_i8)) = &int8_model {
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        let how = match crate::cpu::qdot::available(isa, DEFAULT_GROUP) {
            true => "integer dot products on 7-bit activations",
            false => "dequantised per block in the matmul",
        };
        writeln!(
            out,
            "\n## int8 weights (group {DEFAULT_GROUP}, {how}) vs f32, runs alternating\n"
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
