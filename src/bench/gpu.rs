//! `webclip bench --backend gpu`: the GPU backend on whatever adapter wgpu finds, with
//! ViT-B/32-shaped random weights (no download). Prints the adapter, image latency and
//! throughput per batch size, text latency, and the GFLOP/s of each of the model's
//! matrix products. Native only (it blocks on the device).

use super::kernels::thread_cpu_time;
use super::{sample_tokens, Latencies, Latency};
use crate::clip::BackendModel;
use crate::error::Result;
use crate::gpu::{GpuBackend, GpuOptions, GpuWeight};
use crate::graph::{self, Backend, TextBatch};
use crate::model::random::{write_random_weights, Rng};
use crate::model::{ClipConfig, Dtype, HostTensor, Linear, SafeTensors, Towers, WeightRole};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A [`ClipConfig::preset`] name.
    pub preset: String,
    /// Image batch sizes to time.
    pub image_batches: Vec<usize>,
    /// Texts per text batch.
    pub text_batch: usize,
    /// Timed runs per figure, after one warm-up run.
    pub iterations: usize,
    pub gpu: GpuOptions,
    /// Quantise the matrices to int8 at upload (`ClipOptions::int8`).
    pub int8: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            preset: "vit-b-32".into(),
            image_batches: vec![1, 32],
            text_batch: 8,
            // Software adapters (lavapipe in CI) take seconds per pass: one run by default.
            iterations: 1,
            gpu: GpuOptions::default(),
            int8: false,
        }
    }
}

/// Mean seconds of `iterations` runs of `f`, after one warm-up run.
fn time<F: FnMut() -> Result<()>>(iterations: usize, mut f: F) -> Result<f64> {
    f()?;
    let start = Instant::now();
    for _ in 0..iterations.max(1) {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() / iterations.max(1) as f64)
}

/// Run the benchmark, print its figures to stdout and return the encoder latencies.
pub fn run_bench(opts: &BenchOptions) -> Result<Latencies> {
    let config = ClipConfig::preset(&opts.preset)?;
    // Start-up: the device and the kernels this weight storage needs, compiled.
    let t0 = Instant::now();
    let gpu = pollster::block_on(GpuBackend::new(&opts.gpu))?;
    let start_up = t0.elapsed();
    let info = gpu.adapter_info().clone();
    let software = gpu.is_software();
    println!(
        "adapter: {} ({:?}, {:?}){}{}",
        info.name,
        info.device_type,
        info.backend,
        if gpu.uses_subgroups() {
            ", subgroups"
        } else {
            ""
        },
        if software {
            " -- a software rasteriser: expect CPU-bound figures"
        } else {
            ""
        }
    );
    println!(
        "model: {} (random weights, stored as {})",
        opts.preset,
        match (opts.int8, gpu.f16_weights()) {
            (true, _) => "int8",
            (false, true) => "f16",
            (false, false) => "f32",
        }
    );

    match gpu.tensor_cores() {
        Ok(()) => println!("tensor cores: the f16 matmul of large tiles runs on them"),
        Err(why) => println!("tensor cores: not used ({why})"),
    }
    println!(
        "start-up: {:.2} s (device, and compiling the kernels of this weight storage)",
        start_up.as_secs_f64()
    );

    let mut bytes = Vec::new();
    write_random_weights(&mut bytes, &config, 0, Dtype::F32)?;
    let st = SafeTensors::parse(&bytes)?;
    let t0 = Instant::now();
    let mut held = 0u64;
    let mut enc = BackendModel::load(
        &config,
        &st,
        bytes.as_slice(),
        Towers::Both,
        gpu,
        &mut |g, role, t| {
            let t = match opts.int8 {
                true => t.quantized(role, crate::model::quantize::DEFAULT_GROUP)?,
                false => t,
            };
            let w = g.make_weight(role, t)?;
            held += w.bytes();
            Ok(w)
        },
    )?;
    drop(bytes);
    println!(
        "upload: {:.2} s, weights {:.1} MiB on the device",
        t0.elapsed().as_secs_f64(),
        held as f64 / (1 << 20) as f64
    );

    let v = &config.vision_config;
    let per_image = v.num_channels * v.image_size * v.image_size;
    let mut rng = Rng::new(1);
    let mut latencies = Latencies {
        preset: opts.preset.clone(),
        rows: Vec::new(),
    };
    for &batch in &opts.image_batches {
        let px = rng.fill_uniform(batch * per_image, 1.0);
        let s = time(opts.iterations, || {
            pollster::block_on(enc.pixel_features(&px, batch)).map(|_| ())
        })?;
        println!(
            "image batch {batch:>3}: {:8.1} ms  ({:.1} images/s)",
            s * 1e3,
            batch as f64 / s
        );
        latencies.rows.push(Latency {
            what: format!("image batch {batch}"),
            ms: s * 1e3,
        });
    }

    // Host overhead: what this thread spends recording and submitting one image pass at
    // batch 1 (the wait for the GPU and the readback excluded), best of five, with the
    // pass's kernel launches. CPU work, so a software adapter measures it fairly.
    {
        let px = rng.fill_uniform(per_image, 1.0);
        let vision = enc.model.vision()?;
        let mut best: Option<(std::time::Duration, Option<std::time::Duration>, u64, u64)> = None;
        for _ in 0..5 {
            let before = enc.backend.dispatches();
            let made_before = enc.backend.bind_groups_made();
            let (cpu0, t0) = (thread_cpu_time(), Instant::now());
            let out = graph::vision_forward(&mut enc.backend, vision, &px, 1, false)?;
            let launches = enc.backend.dispatches() - before;
            let made = enc.backend.bind_groups_made() - made_before;
            let read = enc.backend.read(&out.features); // submits now, resolves later
            let wall = t0.elapsed();
            let cpu = thread_cpu_time()
                .zip(cpu0)
                .map(|(c1, c0)| c1.saturating_sub(c0));
            pollster::block_on(read)?;
            if best.as_ref().is_none_or(|(w, ..)| wall < *w) {
                best = Some((wall, cpu, launches, made));
            }
        }
        if let Some((wall, cpu, launches, made)) = best {
            let ms = |d: std::time::Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
            println!(
                "host overhead, image batch 1: {} to record and submit ({} of CPU), {launches} dispatches, {made} bind groups made",
                ms(wall),
                cpu.map_or("-".into(), ms)
            );
        }
    }

    // Short prompts, 12 to 19 tokens (SigLIP pads each to its full context).
    let t = &config.text_config;
    let texts: Vec<Vec<u32>> = (0..opts.text_batch)
        .map(|i| sample_tokens(t, 12 + i % 8, &mut rng))
        .collect();
    if !texts.is_empty() {
        let batch = TextBatch::from_tokens(&texts, t, t.pad_token_id)?;
        let s = time(opts.iterations, || {
            pollster::block_on(enc.token_features(&batch)).map(|_| ())
        })?;
        println!(
            "text batch {:>3} ({} tokens): {:8.1} ms  ({:.1} texts/s)",
            texts.len(),
            batch.seq_len,
            s * 1e3,
            texts.len() as f64 / s
        );
        latencies.rows.push(Latency {
            what: format!("text batch {}", texts.len()),
            ms: s * 1e3,
        });
    }

    // The model's matrix products, alone: [rows, in] x [out, in]^T.
    let b = &mut enc.backend;
    let (vh, vi) = (v.hidden_size, v.intermediate_size);
    let (th, ti) = (t.hidden_size, t.intermediate_size);
    let mut shapes = vec![];
    for &batch in &opts.image_batches {
        let rows = batch * v.num_positions();
        shapes.push((format!("vision b{batch} qkv/out"), rows, vh, vh));
        shapes.push((format!("vision b{batch} fc1"), rows, vh, vi));
        shapes.push((format!("vision b{batch} fc2"), rows, vi, vh));
    }
    let trows = opts.text_batch.max(1) * 16;
    shapes.push((format!("text {trows} rows qkv/out"), trows, th, th));
    shapes.push((format!("text {trows} rows fc1"), trows, th, ti));
    shapes.push((format!("text {trows} rows fc2"), trows, ti, th));
    println!("matmul (rows x in -> out):");
    for (name, m, k, n) in shapes {
        let w = host(&mut rng, "w", vec![n, k]);
        let bias = host(&mut rng, "b", vec![n]);
        let linear: Linear<GpuWeight> = Linear {
            weight: b.make_weight(WeightRole::Matrix, w)?,
            bias: Some(b.make_weight(WeightRole::Vector, bias)?),
            in_features: k,
            out_features: n,
        };
        let x = b.input(&rng.fill_uniform(m * k, 1.0), m, k)?;
        // Ten products per submission, so launch and readback costs do not dominate
        // (one on a software adapter, where each takes up to seconds).
        let reps = if software { 1 } else { 10 };
        let s = time(opts.iterations, || {
            let mut y = b.linear(&x, &linear, None, None)?;
            for _ in 1..reps {
                y = b.linear(&x, &linear, None, None)?;
            }
            pollster::block_on(b.read(&y)).map(|_| ())
        })? / reps as f64;
        let gflops = 2.0 * (m * k * n) as f64 / s / 1e9;
        println!(
            "  {name:<24} {m:>5} x {k:>4} -> {n:>4}: {:8.3} ms  {gflops:8.1} GFLOP/s",
            s * 1e3
        );
    }
    Ok(latencies)
}

fn host(rng: &mut Rng, name: &str, shape: Vec<usize>) -> HostTensor {
    let n = shape.iter().product();
    let scale = 1.0 / (*shape.last().unwrap_or(&1) as f32).sqrt();
    HostTensor {
        name: name.into(),
        shape,
        data: rng.fill_uniform(n, scale),
        quant: None,
    }
}
