//! The GPU backend against the transformers reference, fed the reference's own inputs
//! (as tests/parity_cpu.rs does for the CPU backend), plus the backend choice of
//! `Clip::load`. Without an adapter the tests print a note and pass, unless
//! `WEBCLIP_REQUIRE_GPU=1`, where they fail.
mod common;

use common::parity::*;
use common::*;
use webclip::clip::BackendModel;
use webclip::gpu::{GpuBackend, GpuOptions, WeightPrecision};
use webclip::model::Towers;
use webclip::{BackendChoice, Clip, ClipError, ClipOptions};

fn require_gpu() -> bool {
    std::env::var("WEBCLIP_REQUIRE_GPU").as_deref() == Ok("1")
}

/// f32 storage, pinned: the 1e-3 bounds below hold for f32 weights only.
fn f32_weights() -> GpuOptions {
    GpuOptions {
        weights: WeightPrecision::F32,
        ..Default::default()
    }
}

fn gpu() -> Option<GpuBackend> {
    gpu_with(&f32_weights())
}

fn gpu_with(opts: &GpuOptions) -> Option<GpuBackend> {
    match pollster::block_on(GpuBackend::new(opts)) {
        Ok(g) => Some(g),
        Err(e) if require_gpu() => panic!("WEBCLIP_REQUIRE_GPU=1 but no GPU backend: {e}"),
        Err(e) => {
            eprintln!("note: skipping GPU parity test, no GPU backend: {e}");
            None
        }
    }
}

fn load_gpu(g: &Golden, file: &str) -> Option<BackendModel<GpuBackend>> {
    load_gpu_with(g, file, &f32_weights())
}

fn load_gpu_with(g: &Golden, file: &str, opts: &GpuOptions) -> Option<BackendModel<GpuBackend>> {
    let backend = gpu_with(opts)?;
    Some(load_encoder(g, file, backend, &mut |b, r, t| {
        b.make_weight(r, t)
    }))
}

#[test]
fn vision_hidden_states_and_features_match_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        let Some(mut enc) = load_gpu(&g, "model.safetensors") else {
            return;
        };
        check_vision(&mut enc, &g, "gpu");
    }
}

#[test]
fn text_hidden_states_and_features_match_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        let Some(mut enc) = load_gpu(&g, "model.safetensors") else {
            return;
        };
        check_text(&mut enc, &g, "gpu");
    }
}

#[test]
fn logits_match_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        let Some(mut enc) = load_gpu(&g, "model.safetensors") else {
            return;
        };
        check_logits(&mut enc, &g, "gpu");
    }
}

#[test]
fn fp16_checkpoint_matches_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        let Some(mut enc) = load_gpu(&g, "model.fp16.safetensors") else {
            return;
        };
        // Fixtures README: float16 weights, float32 arithmetic: cosine above 0.9999.
        check_cosines(&mut enc, &g, 0.9999, "gpu fp16 weights");
    }
}

#[test]
fn f16_weight_storage_keeps_features_within_tolerance() {
    let f16 = GpuOptions {
        weights: WeightPrecision::F16,
        ..Default::default()
    };
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        for file in ["model.safetensors", "model.fp16.safetensors"] {
            let Some(mut enc) = load_gpu_with(&g, file, &f16) else {
                return;
            };
            // README: float16 weights with float32 arithmetic, cosine above 0.9999.
            check_cosines(&mut enc, &g, 0.9999, &format!("gpu f16 storage of {file}"));
        }
    }
}

#[test]
fn auto_weight_precision_follows_the_adapters_shader_f16_feature() {
    let g = Golden::load(&model_dirs()[0]);
    let Some(probe) = gpu_with(&GpuOptions {
        weights: WeightPrecision::Auto,
        ..Default::default()
    }) else {
        return;
    };
    let has_f16 = probe.has_shader_f16();
    eprintln!(
        "adapter `{}` offers shader-f16: {has_f16}",
        probe.adapter_info().name
    );
    assert_eq!(probe.f16_weights(), has_f16);
    // Mesa's lavapipe (the CI adapter) offers shaderFloat16 with 16-bit storage, which
    // wgpu reports as SHADER_F16: there, Auto takes f16.
    if probe.adapter_info().name.starts_with("llvmpipe") {
        assert!(has_f16, "lavapipe is expected to offer shader-f16");
    }
    drop(probe);

    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let want = g.f32("text_features");
    let dim = g.config.projection_dim;
    for (weights, expect) in [
        (WeightPrecision::Auto, if has_f16 { "f16" } else { "f32" }),
        (WeightPrecision::F16, "f16"),
        (WeightPrecision::F32, "f32"),
    ] {
        let options = ClipOptions {
            backend: BackendChoice::Gpu,
            gpu: GpuOptions {
                weights,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut clip = load_clip(&g, &options).unwrap();
        assert_eq!(clip.backend().weights, Some(expect), "{weights:?}");
        let feats = pollster::block_on(clip.text_features(&texts)).unwrap();
        for (i, row) in feats.iter().enumerate() {
            let cos = cosine(row, &want[i * dim..][..dim]);
            // Fixtures README: float16 weights with float32 arithmetic, above 0.9999.
            assert!(cos > 0.9999, "{weights:?}: text {i} cosine {cos}");
        }
    }

    // The CPU backend ignores the option and says so by reporting no precision.
    let clip = load_clip(
        &g,
        &ClipOptions {
            backend: BackendChoice::Cpu,
            gpu: GpuOptions {
                weights: WeightPrecision::F16,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(clip.backend().weights, Some("f32"));
}

fn load_clip(g: &Golden, options: &ClipOptions) -> webclip::Result<Clip> {
    g.clip("model.safetensors", options)
}

#[test]
fn clip_load_picks_the_backend_and_says_why() {
    let dir = &model_dirs()[0];
    let g = Golden::load(dir);
    let Some(probe) = gpu() else { return };
    let software = probe.is_software();
    let adapter = probe.adapter_info().name.clone();
    drop(probe);

    // Gpu: takes any adapter, software ones included, and the texts match the reference.
    let gpu_opts = ClipOptions {
        backend: BackendChoice::Gpu,
        gpu: f32_weights(),
        ..Default::default()
    };
    let mut clip = load_clip(&g, &gpu_opts).unwrap();
    assert_eq!(clip.backend().kind, "webgpu");
    assert_eq!(clip.backend().adapter.as_deref(), Some(adapter.as_str()));
    assert_eq!(clip.backend().weights, Some("f32"));
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let feats = pollster::block_on(clip.text_features(&texts)).unwrap();
    let err = max_abs_diff(&feats.data, &g.f32("text_features"));
    assert!(err < 1e-3, "text_features through Clip on the GPU: {err}");

    // Auto: a software adapter is skipped, with the reason.
    let clip = load_clip(&g, &ClipOptions::default()).unwrap();
    let info = clip.backend();
    if software {
        assert_eq!(info.kind, "cpu", "{info:?}");
        assert!(info.reason.contains("software"), "{info:?}");
        assert!(info.reason.contains(&adapter), "{info:?}");
    } else {
        // A hardware adapter is measured against the CPU (see the test below).
        assert!(info.measured.is_some(), "{info:?}");
    }
}

#[test]
fn auto_measures_both_engines_keeps_the_faster_and_trusts_an_earlier_verdict() {
    let dir = &model_dirs()[0];
    let g = Golden::load(dir);
    if gpu().is_none() {
        return;
    }
    // The software adapter stands in for a hardware one: auto measures it too.
    let measuring = ClipOptions {
        gpu: GpuOptions {
            measure_software: true,
            ..f32_weights()
        },
        ..Default::default()
    };
    let mut clip = load_clip(&g, &measuring).unwrap();
    let info = clip.backend().clone();
    let m = info.measured.expect("auto measured both engines");
    assert_eq!(m.what, "image");
    assert!(m.cpu_ms > 0.0 && m.gpu_ms > 0.0, "{m:?}");
    let faster = if m.gpu_ms <= m.cpu_ms {
        "webgpu"
    } else {
        "cpu"
    };
    assert_eq!(info.kind, faster, "{info:?}");
    assert!(
        info.reason.contains("measured faster") && info.reason.contains("one image: CPU"),
        "{}",
        info.reason
    );
    // The model that was kept works and matches the reference.
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let feats = pollster::block_on(clip.text_features(&texts)).unwrap();
    let err = max_abs_diff(&feats.data, &g.f32("text_features"));
    assert!(err < 1e-3, "text_features after auto chose {faster}: {err}");

    // An earlier verdict is taken without measuring, either way.
    for (prefer, kind) in [(BackendChoice::Cpu, "cpu"), (BackendChoice::Gpu, "webgpu")] {
        let clip = load_clip(
            &g,
            &ClipOptions {
                prefer: Some(prefer),
                ..measuring.clone()
            },
        )
        .unwrap();
        let info = clip.backend();
        assert_eq!(info.kind, kind, "{info:?}");
        assert_eq!(info.measured, None);
        assert!(info.reason.contains("earlier"), "{}", info.reason);
    }
}

#[test]
fn no_adapter_is_an_error_for_gpu_and_a_fallback_for_auto() {
    let dir = &model_dirs()[0];
    let g = Golden::load(dir);
    // No backend enabled: no adapter can exist.
    let none = GpuOptions {
        backends: Some(wgpu::Backends::empty()),
        ..Default::default()
    };
    let err = load_clip(
        &g,
        &ClipOptions {
            backend: BackendChoice::Gpu,
            gpu: none.clone(),
            ..Default::default()
        },
    )
    .err()
    .expect("no adapter must fail for backend gpu");
    assert!(
        matches!(&err, ClipError::NoGpu(m) if m.contains("adapter")),
        "{err}"
    );
    assert_eq!(err.code(), "no-webgpu");
    let clip = load_clip(
        &g,
        &ClipOptions {
            gpu: none,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(clip.backend().kind, "cpu");
    assert!(
        clip.backend().reason.contains("unavailable"),
        "{:?}",
        clip.backend()
    );
}

#[test]
fn a_token_table_past_the_buffer_limit_is_paged_and_other_tensors_are_refused() {
    let dir = &model_dirs()[0];
    let g = Golden::load(dir);
    if gpu().is_none() {
        return;
    }
    let capped = |bytes: u64, towers: Towers| {
        load_clip(
            &g,
            &ClipOptions {
                backend: BackendChoice::Gpu,
                gpu: GpuOptions {
                    max_buffer_size: Some(bytes),
                    ..Default::default()
                },
                towers,
                ..Default::default()
            },
        )
    };
    // 2 MiB per buffer: the token embedding (49408 x D f32, over 12 MiB) is kept in pages,
    // as SigLIP 2's 256,000-token table is on WebGPU's guaranteed 128 MiB, and the texts
    // come out as the reference's.
    let mut clip = capped(2 << 20, Towers::Both).unwrap();
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let got = pollster::block_on(clip.text_features(&texts)).unwrap();
    let err = max_abs_diff(&got.data, &g.f32("text_features"));
    assert!(err < 1e-3, "paged token table: max abs error {err}");
    // 256 KiB: the patch conv (a matrix, never paged) cannot fit, and the error names it.
    let err = capped(256 << 10, Towers::Vision)
        .err()
        .expect("a too-small buffer limit must fail for backend gpu");
    assert!(
        matches!(&err, ClipError::Gpu(m) if m.contains("patch_embedding") && m.contains("MiB")),
        "{err}"
    );
}

#[test]
fn a_batch_refused_in_the_middle_of_its_pass_leaves_nothing_behind_for_the_next() {
    let g = Golden::load(&model_dirs()[0]);
    if gpu().is_none() {
        return;
    }
    // 2 MiB per buffer: a large batch of texts gets through its embedding and first
    // layers, then is refused at the MLP's widest activation.
    let opts = ClipOptions {
        backend: BackendChoice::Gpu,
        gpu: GpuOptions {
            max_buffer_size: Some(2 << 20),
            ..f32_weights()
        },
        towers: Towers::Text,
        ..Default::default()
    };
    let mut clip = load_clip(&g, &opts).unwrap();
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let want = g.f32("text_features");
    pollster::block_on(clip.text_features(&texts)).unwrap();
    let warm = clip.gpu_buffers().unwrap();

    let many: Vec<&str> = texts.iter().copied().cycle().take(512).collect();
    let err = pollster::block_on(clip.text_features(&many))
        .expect_err("a batch past the buffer limit must fail");
    assert_eq!(err.code(), "gpu", "{err}");
    assert!(err.to_string().contains("MiB"), "{err}");

    // What the refused pass recorded never runs, and its buffers are gone: the next
    // batch matches the reference on the same buffers as before.
    for _ in 0..2 {
        let got = pollster::block_on(clip.text_features(&texts)).unwrap();
        let e = max_abs_diff(&got.data, &want);
        assert!(e < 1e-3, "after the refused batch: max abs error {e}");
        assert_eq!(clip.gpu_buffers().unwrap(), warm);
    }
}

#[test]
fn a_lost_device_fails_the_next_call_with_a_device_lost_error_and_a_new_load_recovers() {
    let g = Golden::load(&model_dirs()[0]);
    let Some(probe) = gpu() else { return };
    drop(probe);
    let gpu_opts = ClipOptions {
        backend: BackendChoice::Gpu,
        gpu: f32_weights(),
        ..Default::default()
    };
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let want = g.f32("text_features");
    let mut clip = load_clip(&g, &gpu_opts).unwrap();
    pollster::block_on(clip.text_features(&texts[..1])).unwrap();
    assert!(!clip.is_device_lost());

    clip.lose_device_for_testing();
    assert!(clip.is_device_lost(), "the device-lost callback fired");
    for _ in 0..2 {
        let err = pollster::block_on(clip.text_features(&texts))
            .expect_err("a call on a lost device must fail");
        assert!(
            matches!(&err, ClipError::DeviceLost(m) if m.contains("Destroyed")),
            "{err}"
        );
        assert!(err.to_string().contains("device was lost"), "{err}");
        assert_eq!(err.code(), "device-lost");
        let err = pollster::block_on(clip.pixel_features(&g.pixels(&g.images[0]), 1))
            .expect_err("a call on a lost device must fail");
        assert!(
            matches!(&err, ClipError::DeviceLost(_)) && err.to_string().contains("lost"),
            "{err}"
        );
    }

    // Loading again gets a new device, which gives the reference's features.
    let mut clip = load_clip(&g, &gpu_opts).unwrap();
    assert!(!clip.is_device_lost());
    let feats = pollster::block_on(clip.text_features(&texts)).unwrap();
    let err = max_abs_diff(&feats.data, &want);
    assert!(err < 1e-3, "after a new load: max abs {err}");
}

/// The first fixture model on the GPU backend with f32 weights; `None` without an adapter.
fn first_model_on_gpu() -> Option<(Golden, Clip)> {
    let g = Golden::load(&model_dirs()[0]);
    drop(gpu()?);
    let opts = ClipOptions {
        backend: BackendChoice::Gpu,
        gpu: f32_weights(),
        ..Default::default()
    };
    let clip = load_clip(&g, &opts).unwrap();
    Some((g, clip))
}

#[test]
fn gpu_buffers_stay_flat_across_calls_and_count_the_weights() {
    let Some((g, mut clip)) = first_model_on_gpu() else {
        return;
    };
    let (loaded, loaded_bytes) = clip
        .gpu_buffers()
        .expect("a GPU backend counts its buffers");
    assert!(loaded > 0 && loaded_bytes > 0);
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    let pixels = g.pixels(&g.images[0]);
    let run = |clip: &mut Clip| {
        pollster::block_on(clip.text_features(&texts)).unwrap();
        pollster::block_on(clip.pixel_features(&pixels, 1)).unwrap();
        clip.gpu_buffers().unwrap()
    };
    // The first calls fill the activation pool; later ones of the same shapes reuse it.
    let warm = run(&mut clip);
    assert!(warm.1 > loaded_bytes, "activations are counted: {warm:?}");
    for i in 0..5 {
        assert_eq!(run(&mut clip), warm, "call {i} after warm-up");
    }
}

#[test]
fn a_device_lost_while_a_batch_runs_fails_that_batch_with_device_lost() {
    let Some((g, mut clip)) = first_model_on_gpu() else {
        return;
    };
    let one = g.pixels(&g.images[0]);
    let batch: Vec<f32> = (0..4).flat_map(|_| one.iter().copied()).collect();
    pollster::block_on(clip.pixel_features(&batch, 4)).unwrap();

    // Lost right after the batch's first submit, while it waits for the GPU.
    clip.device_breaker().unwrap().destroy_after_next_submit();
    let err = pollster::block_on(clip.pixel_features(&batch, 4))
        .expect_err("a batch whose device is lost must fail");
    assert_eq!(err.code(), "device-lost", "{err}");
    assert!(clip.is_device_lost());
}
