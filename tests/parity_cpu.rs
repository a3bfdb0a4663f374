//! The CPU backend against the transformers reference, fed the reference's own inputs.
mod common;

use common::parity::*;
use common::*;
use webclip::cpu::{self, CpuBackend};

fn load(g: &Golden, file: &str) -> webclip::clip::BackendModel<CpuBackend> {
    load_encoder(g, file, CpuBackend::default(), &mut |_, r, t| {
        cpu::make_weight(r, t)
    })
}

#[test]
fn vision_hidden_states_and_features_match_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        check_vision(&mut load(&g, "model.safetensors"), &g, "cpu");
    }
}

#[test]
fn text_hidden_states_and_features_match_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        check_text(&mut load(&g, "model.safetensors"), &g, "cpu");
    }
}

#[test]
fn logits_match_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        check_logits(&mut load(&g, "model.safetensors"), &g, "cpu");
    }
}

#[test]
fn fp16_checkpoint_matches_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        // Fixtures README: float16 weights with float32 arithmetic, cosine above 0.9999.
        check_cosines(
            &mut load(&g, "model.fp16.safetensors"),
            &g,
            0.9999,
            "cpu fp16 weights",
        );
    }
}
