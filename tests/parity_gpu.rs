//! The GPU engine against the transformers reference, fed the reference's own inputs
//! (as tests/parity_cpu.rs does for the CPU engine), plus the engine choice of
//! `Clip::load`. Without an adapter the tests print a note and pass, unless
//! `WEBCLIP_REQUIRE_GPU=1`, where they fail.
mod common;

use common::*;
use webclip::clip::{logits, Embeddings, Encoder, ModelFiles};
use webclip::gpu::{GpuBackend, GpuOptions};
use webclip::graph::{self, Backend, TextBatch};
use webclip::model::{ClipModel, SafeTensors, Towers};
use webclip::{BackendChoice, Clip, ClipError, ClipOptions};

fn require_gpu() -> bool {
    std::env::var("WEBCLIP_REQUIRE_GPU").as_deref() == Ok("1")
}

fn gpu() -> Option<GpuBackend> {
    gpu_with(&GpuOptions::default())
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

fn load_gpu(g: &Golden, file: &str) -> Option<Encoder<GpuBackend>> {
    load_gpu_with(g, file, &GpuOptions::default())
}

fn load_gpu_with(g: &Golden, file: &str, opts: &GpuOptions) -> Option<Encoder<GpuBackend>> {
    let backend = gpu_with(opts)?;
    let bytes = g.file(file);
    let st = SafeTensors::parse(&bytes).unwrap();
    let model = ClipModel::load(
        &g.config,
        &st,
        bytes.as_slice(),
        Towers::Both,
        &mut |r, t| backend.make_weight(r, t),
    )
    .unwrap();
    Some(Encoder { model, backend })
}

/// Every text of the fixture, cut after its end token (the fast path).
fn texts(g: &Golden) -> (Vec<Vec<u32>>, usize) {
    let ids = g.ids("input_ids");
    let mask = g.ids("attention_mask");
    let ctx = g.shape("input_ids")[1];
    let t = ids
        .chunks(ctx)
        .zip(mask.chunks(ctx))
        .map(|(t, m)| t[..m.iter().filter(|&&v| v != 0).count()].to_vec())
        .collect();
    (t, ctx)
}

#[test]
fn vision_hidden_states_and_features_match_reference() {
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        let Some(mut enc) = load_gpu(&g, "model.safetensors") else {
            return;
        };
        let tower = enc.model.vision.as_ref().unwrap();
        let px = g.pixels(&g.images[0]);
        let out = graph::vision_forward(&mut enc.backend, tower, &px, 1, true).unwrap();
        assert_eq!(
            out.hidden_states.len(),
            g.count("vision_hidden_states"),
            "{}",
            g.name
        );
        for (k, h) in out.hidden_states.iter().enumerate() {
            let got = pollster::block_on(enc.backend.read(h)).unwrap();
            let err = max_abs_diff(&got, &g.f32(&format!("vision_hidden_states.{k}")));
            // Tolerance of the fixtures' README: engine on reference inputs.
            assert!(
                err < 1e-3,
                "{} vision hidden state {k}: max abs error {err}",
                g.name
            );
        }
        let all: Vec<f32> = g.images.iter().flat_map(|i| g.pixels(i)).collect();
        let feats = pollster::block_on(enc.pixel_features(&all, g.images.len())).unwrap();
        let err = max_abs_diff(&feats.data, &g.f32("image_features"));
        assert!(err < 1e-3, "{} image_features: max abs error {err}", g.name);
    }
}

#[test]
fn text_hidden_states_and_features_match_reference() {
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        let Some(mut enc) = load_gpu(&g, "model.safetensors") else {
            return;
        };
        let tower = enc.model.text.as_ref().unwrap();
        let cfg = tower.config.clone();
        let ids = g.ids("input_ids");
        let mask = g.ids("attention_mask");
        let ctx = g.shape("input_ids")[1];
        // Full context, first text: every row of every hidden state, padding included.
        let first = TextBatch::full(ids[..ctx].to_vec(), &mask[..ctx], ctx, &cfg).unwrap();
        let out = graph::text_forward(&mut enc.backend, tower, &first, true).unwrap();
        assert_eq!(
            out.hidden_states.len(),
            g.count("text_hidden_states"),
            "{}",
            g.name
        );
        for (k, h) in out.hidden_states.iter().enumerate() {
            let got = pollster::block_on(enc.backend.read(h)).unwrap();
            let err = max_abs_diff(&got, &g.f32(&format!("text_hidden_states.{k}")));
            assert!(
                err < 1e-3,
                "{} text hidden state {k}: max abs error {err}",
                g.name
            );
        }
        // All texts, padded to the full context with the mask (valid_lens < seq_len).
        let full = TextBatch::full(ids.clone(), &mask, ctx, &cfg).unwrap();
        let feats = pollster::block_on(enc.token_features(&full)).unwrap();
        let err = max_abs_diff(&feats.data, &g.f32("text_features"));
        assert!(
            err < 1e-3,
            "{} padded text_features: max abs error {err}",
            g.name
        );
        // And cut after their end token (the fast path).
        let (cut, _) = texts(&g);
        let batch = TextBatch::from_tokens(&cut, &cfg, 49407).unwrap();
        let feats = pollster::block_on(enc.token_features(&batch)).unwrap();
        let err = max_abs_diff(&feats.data, &g.f32("text_features"));
        assert!(err < 1e-3, "{} text_features: max abs error {err}", g.name);
    }
}

/// Image and text features of one encoder, for logits and fp16 comparisons.
fn features(enc: &mut Encoder<GpuBackend>, g: &Golden) -> (Embeddings, Embeddings) {
    let all: Vec<f32> = g.images.iter().flat_map(|i| g.pixels(i)).collect();
    let img = pollster::block_on(enc.pixel_features(&all, g.images.len())).unwrap();
    let (cut, _) = texts(g);
    let tower = enc.model.text.as_ref().unwrap();
    let batch = TextBatch::from_tokens(&cut, &tower.config, 49407).unwrap();
    let txt = pollster::block_on(enc.token_features(&batch)).unwrap();
    (img, txt)
}

#[test]
fn logits_match_reference() {
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        let Some(mut enc) = load_gpu(&g, "model.safetensors") else {
            return;
        };
        let (img, txt) = features(&mut enc, &g);
        let l = logits(&img, &txt, enc.model.logit_scale);
        let err = max_abs_diff(&l.data, &g.f32("logits_per_image"));
        assert!(err < 1e-2, "{} logits: max abs error {err}", g.name);
    }
}

#[test]
fn fp16_checkpoint_matches_reference() {
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        let Some(mut enc) = load_gpu(&g, "model.fp16.safetensors") else {
            return;
        };
        let (img, txt) = features(&mut enc, &g);
        for (what, got, want) in [
            ("image", &img, g.f32("image_features")),
            ("text", &txt, g.f32("text_features")),
        ] {
            for (i, row) in got.iter().enumerate() {
                let c = cosine(row, &want[i * got.dim..][..got.dim]);
                // README: float16 weights, float32 arithmetic: cosine above 0.9999.
                assert!(c > 0.9999, "{} fp16 {what} {i}: cosine {c}", g.name);
            }
        }
    }
}

#[test]
fn f16_weight_storage_keeps_features_within_tolerance() {
    let f16 = GpuOptions {
        f16_weights: true,
        ..Default::default()
    };
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        for file in ["model.safetensors", "model.fp16.safetensors"] {
            let Some(mut enc) = load_gpu_with(&g, file, &f16) else {
                return;
            };
            let (img, txt) = features(&mut enc, &g);
            for (what, got, want) in [
                ("image", &img, g.f32("image_features")),
                ("text", &txt, g.f32("text_features")),
            ] {
                for (i, row) in got.iter().enumerate() {
                    let c = cosine(row, &want[i * got.dim..][..got.dim]);
                    // README: float16 weights, cosine above 0.9999 with f32 arithmetic.
                    assert!(
                        c > 0.9999,
                        "{} {file} f16 storage {what} {i}: cosine {c}",
                        g.name
                    );
                }
            }
        }
    }
}

fn model_files<'a>(
    config: &'a [u8],
    weights: &'a Vec<u8>,
    st: &'a SafeTensors,
    tok: &'a [u8],
) -> ModelFiles<'a> {
    ModelFiles {
        config,
        weights,
        weights_header: st,
        tokenizer: Some(tok),
        preprocessor: None,
    }
}

fn load_clip(g: &Golden, options: &ClipOptions) -> webclip::Result<Clip> {
    let config = g.file("config.json");
    let weights = g.file("model.safetensors");
    let st = SafeTensors::parse(&weights).unwrap();
    let tok = g.file("tokenizer.json");
    pollster::block_on(Clip::load(
        model_files(&config, &weights, &st, &tok),
        options,
    ))
}

#[test]
fn clip_load_picks_the_engine_and_says_why() {
    let dir = &model_dirs()[0];
    let g = Golden::load(dir);
    let Some(probe) = gpu() else { return };
    let software = probe.is_software();
    let adapter = probe.adapter_info().name.clone();
    drop(probe);

    // Gpu: takes any adapter, software ones included, and the texts match the reference.
    let gpu_opts = ClipOptions {
        backend: BackendChoice::Gpu,
        ..Default::default()
    };
    let mut clip = load_clip(&g, &gpu_opts).unwrap();
    assert_eq!(clip.backend().kind, "webgpu");
    assert_eq!(clip.backend().adapter.as_deref(), Some(adapter.as_str()));
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
        assert_eq!(info.kind, "webgpu", "{info:?}");
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
        matches!(&err, ClipError::Gpu(m) if m.contains("adapter")),
        "{err}"
    );
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
fn limits_too_small_for_the_checkpoint_are_an_error() {
    let dir = &model_dirs()[0];
    let g = Golden::load(dir);
    if gpu().is_none() {
        return;
    }
    // 1 MiB per buffer: the token embedding (49408 x D f32) cannot fit.
    let small = GpuOptions {
        max_buffer_size: Some(1 << 20),
        ..Default::default()
    };
    let err = load_clip(
        &g,
        &ClipOptions {
            backend: BackendChoice::Gpu,
            gpu: small.clone(),
            ..Default::default()
        },
    )
    .err()
    .expect("a too-small buffer limit must fail for backend gpu");
    assert!(
        matches!(&err, ClipError::Gpu(m) if m.contains("token_embedding") && m.contains("MiB")),
        "{err}"
    );
    // The vision tower alone fits, and runs.
    let clip = load_clip(
        &g,
        &ClipOptions {
            backend: BackendChoice::Gpu,
            gpu: small,
            towers: Towers::Vision,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(clip.backend().kind, "webgpu");
}

#[test]
fn a_lost_device_fails_the_next_call_with_a_gpu_error_and_a_new_load_recovers() {
    let g = Golden::load(&model_dirs()[0]);
    let Some(probe) = gpu() else { return };
    drop(probe);
    let gpu_opts = ClipOptions {
        backend: BackendChoice::Gpu,
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
            matches!(&err, ClipError::Gpu(m) if m.contains("device was lost") && m.contains("Destroyed")),
            "{err}"
        );
        let err = pollster::block_on(clip.pixel_features(&g.pixels(&g.images[0]), 1))
            .expect_err("a call on a lost device must fail");
        assert!(
            matches!(&err, ClipError::Gpu(m) if m.contains("lost")),
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
