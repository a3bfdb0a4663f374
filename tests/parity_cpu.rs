//! The CPU engine against the transformers reference, fed the reference's own inputs.
mod common;

use common::*;
use webclip::clip::Encoder;
use webclip::cpu::{self, CpuBackend};
use webclip::graph::{self, Backend, TextBatch};
use webclip::model::{ClipModel, SafeTensors, Towers};

fn load_cpu(g: &Golden, file: &str) -> Encoder<CpuBackend> {
    let bytes = g.file(file);
    let st = SafeTensors::parse(&bytes).unwrap();
    let model = ClipModel::load(
        &g.config,
        &st,
        bytes.as_slice(),
        Towers::Both,
        &mut cpu::make_weight,
    )
    .unwrap();
    Encoder {
        model,
        backend: CpuBackend,
    }
}

#[test]
fn vision_hidden_states_and_features_match_reference() {
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        let mut enc = load_cpu(&g, "model.safetensors");
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
            assert!(
                err < 1e-3,
                "{} vision hidden state {k}: max abs error {err}",
                g.name
            );
        }
        // All images, batched, from the reference pixel values.
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
        let mut enc = load_cpu(&g, "model.safetensors");
        let tower = enc.model.text.as_ref().unwrap();
        let ids = g.ids("input_ids");
        let mask = g.ids("attention_mask");
        let ctx = g.shape("input_ids")[1];
        // Full context, first text: every row of every hidden state.
        let first = TextBatch::full(ids[..ctx].to_vec(), &mask[..ctx], ctx, &tower.config).unwrap();
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
        // All texts, cut after their end token (the fast path).
        let texts: Vec<Vec<u32>> = ids
            .chunks(ctx)
            .zip(mask.chunks(ctx))
            .map(|(t, m)| t[..m.iter().filter(|&&v| v != 0).count()].to_vec())
            .collect();
        let batch = TextBatch::from_tokens(&texts, &tower.config, 49407).unwrap();
        let feats = pollster::block_on(enc.token_features(&batch)).unwrap();
        let err = max_abs_diff(&feats.data, &g.f32("text_features"));
        assert!(err < 1e-3, "{} text_features: max abs error {err}", g.name);
    }
}
