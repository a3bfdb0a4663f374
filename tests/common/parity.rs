//! Backend-independent parity checks against the reference, fed the reference's own
//! inputs, written once over `Backend` so the CPU and GPU suites assert the same things.

use super::*;
use webclip::clip::{logits, probabilities, BackendModel, Embeddings, MakeWeight};
use webclip::graph::{self, Backend, TextBatch};
use webclip::model::{SafeTensors, Towers};

/// Load a fixture weights file onto `backend`, converting each tensor with `make`.
pub fn load_encoder<B: Backend>(
    g: &Golden,
    file: &str,
    backend: B,
    make: &mut MakeWeight<B>,
) -> BackendModel<B> {
    let bytes = g.file(file);
    let header = SafeTensors::read(&bytes).unwrap();
    BackendModel::load(&g.config, &header, &bytes, Towers::Both, backend, make).unwrap()
}

/// The reference's attention mask; SigLIP has none (every position is attended): ones.
pub fn golden_mask(g: &Golden) -> Vec<u32> {
    if g.has("attention_mask") {
        g.ids("attention_mask")
    } else {
        vec![1; g.ids("input_ids").len()]
    }
}

/// Every golden text as `TextBatch::from_tokens` takes it, from `input_ids` and the mask:
/// CLIP's cut after its end token (the fast path), SigLIP's whole (padding included).
pub fn golden_texts(g: &Golden) -> Vec<Vec<u32>> {
    let ids = g.ids("input_ids");
    let mask = golden_mask(g);
    let ctx = g.shape("input_ids")[1];
    ids.chunks(ctx)
        .zip(mask.chunks(ctx))
        .map(|(t, m)| t[..m.iter().filter(|&&v| v != 0).count()].to_vec())
        .collect()
}

/// Every vision hidden state of the first image, then all images' features, within the
/// fixtures' engine tolerance (max abs 1e-3).
pub fn check_vision<B: Backend>(enc: &mut BackendModel<B>, g: &Golden, backend: &str) {
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
            "{backend} {} vision hidden state {k}: max abs error {err}",
            g.name
        );
    }
    // SigLIP: every token after post_layernorm, the input of the pooling head.
    assert_eq!(
        out.normed_hidden_state.is_some(),
        g.has("vision_last_hidden_state"),
        "{}",
        g.name
    );
    if let Some(h) = &out.normed_hidden_state {
        let got = pollster::block_on(enc.backend.read(h)).unwrap();
        let err = max_abs_diff(&got, &g.f32("vision_last_hidden_state"));
        assert!(
            err < 1e-3,
            "{backend} {} vision_last_hidden_state: max abs error {err}",
            g.name
        );
    }
    let (img, _) = features(enc, g, false);
    let err = max_abs_diff(&img.data, &g.f32("image_features"));
    println!(
        "{backend} {} image_features: max abs error {err:.2e}",
        g.name
    );
    assert!(
        err < 1e-3,
        "{backend} {} image_features: max abs error {err}",
        g.name
    );
}

/// Every text hidden state of the first text over the full context (padding rows
/// included), then all texts' features both padded with the mask and cut after their end
/// token, within max abs 1e-3.
pub fn check_text<B: Backend>(enc: &mut BackendModel<B>, g: &Golden, backend: &str) {
    let tower = enc.model.text.as_ref().unwrap();
    let cfg = tower.config.clone();
    let ids = g.ids("input_ids");
    let mask = golden_mask(g);
    let ctx = g.shape("input_ids")[1];
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
            "{backend} {} text hidden state {k}: max abs error {err}",
            g.name
        );
    }
    let full = TextBatch::full(ids, &mask, ctx, &cfg).unwrap();
    let padded = pollster::block_on(enc.token_features(&full)).unwrap();
    let err = max_abs_diff(&padded.data, &g.f32("text_features"));
    assert!(
        err < 1e-3,
        "{backend} {} padded text_features: max abs error {err}",
        g.name
    );
    let (_, cut) = features(enc, g, true);
    let err = max_abs_diff(&cut.data, &g.f32("text_features"));
    println!(
        "{backend} {} text_features: max abs error {err:.2e}",
        g.name
    );
    assert!(
        err < 1e-3,
        "{backend} {} text_features: max abs error {err}",
        g.name
    );
}

/// Image features of every golden image and, if `text`, text features of every text.
pub fn features<B: Backend>(
    enc: &mut BackendModel<B>,
    g: &Golden,
    text: bool,
) -> (Embeddings, Embeddings) {
    let all: Vec<f32> = g.images.iter().flat_map(|i| g.pixels(i)).collect();
    let img = pollster::block_on(enc.pixel_features(&all, g.images.len())).unwrap();
    let txt = if text {
        let cfg = &enc.model.text.as_ref().unwrap().config;
        let pad = if cfg.causal { 49407 } else { cfg.pad_token_id };
        let batch = TextBatch::from_tokens(&golden_texts(g), cfg, pad).unwrap();
        pollster::block_on(enc.token_features(&batch)).unwrap()
    } else {
        Embeddings::default()
    };
    (img, txt)
}

/// `logits_per_image` within the fixtures' 1e-2, and SigLIP's sigmoid `probs_per_image`.
pub fn check_logits<B: Backend>(enc: &mut BackendModel<B>, g: &Golden, backend: &str) {
    let (img, txt) = features(enc, g, true);
    let m = &enc.model;
    let l = logits(&img, &txt, m.logit_scale, m.logit_bias);
    let err = max_abs_diff(&l.data, &g.f32("logits_per_image"));
    println!("{backend} {} logits: max abs error {err:.2e}", g.name);
    assert!(
        err < 1e-2,
        "{backend} {} logits: max abs error {err}",
        g.name
    );
    if g.has("probs_per_image") {
        let p = probabilities(m.config.family, &l);
        let err = max_abs_diff(&p, &g.f32("probs_per_image"));
        assert!(
            err < 1e-3,
            "{backend} {} sigmoid probabilities: max abs error {err}",
            g.name
        );
    }
}

/// Each image and text feature row has cosine above `min` to the reference.
pub fn check_cosines<B: Backend>(enc: &mut BackendModel<B>, g: &Golden, min: f32, what: &str) {
    let (img, txt) = features(enc, g, true);
    for (kind, got, want) in [
        ("image", &img, g.f32("image_features")),
        ("text", &txt, g.f32("text_features")),
    ] {
        for (i, row) in got.iter().enumerate() {
            let c = cosine(row, &want[i * got.dim..][..got.dim]);
            assert!(
                c > min,
                "{what} {} {kind} {i}: cosine {c} (needs > {min})",
                g.name
            );
        }
    }
}
