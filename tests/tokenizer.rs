//! The tokenizer against `transformers.CLIPTokenizer`: every golden text's padded ids must be
//! equal to the reference `input_ids` (no tolerance: one wrong id is a different text).
mod common;

use common::*;
use webclip::tokenizer::ClipTokenizer;

fn tokenizer_for(g: &Golden) -> ClipTokenizer {
    ClipTokenizer::from_json(
        &g.file("tokenizer.json"),
        g.config.text_config.max_position_embeddings,
    )
    .unwrap()
}

#[test]
fn padded_ids_equal_reference_input_ids() {
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        let tok = tokenizer_for(&g);
        let ctx = g.shape("input_ids")[1];
        assert_eq!(tok.context_length(), ctx, "{}", g.name);
        let want = g.ids("input_ids");
        assert_eq!(want.len(), g.texts.len() * ctx, "{}", g.name);
        for (text, want) in g.texts.iter().zip(want.chunks(ctx)) {
            let got = tok.encode_padded(text).unwrap();
            assert_eq!(got, want, "{}: ids of {text:?}", g.name);
        }
    }
}

#[test]
fn unpadded_ids_match_attention_mask() {
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        let tok = tokenizer_for(&g);
        let ctx = g.shape("input_ids")[1];
        let mask = g.ids("attention_mask");
        for (text, mask) in g.texts.iter().zip(mask.chunks(ctx)) {
            let ids = tok.encode(text).unwrap();
            let len = mask.iter().filter(|&&m| m != 0).count();
            assert_eq!(ids.len(), len, "{}: length of {text:?}", g.name);
            assert_eq!(ids[0], tok.bos_id());
            assert_eq!(*ids.last().unwrap(), tok.eos_id());
        }
    }
}

#[test]
fn golden_covers_the_edge_cases() {
    // The checks above only mean something if the fixtures hold these cases.
    let g = Golden::load(&model_dirs()[0]);
    let tok = tokenizer_for(&g);
    assert!(g.texts.iter().any(|t| t.is_empty()), "no empty text");
    assert!(
        g.texts
            .iter()
            .any(|t| tok.encode(t).unwrap().len() == tok.context_length()
                && t.split_whitespace().count() > tok.context_length()),
        "no text long enough to be truncated"
    );
    assert_eq!(
        tok.encode("").unwrap(),
        vec![tok.bos_id(), tok.eos_id()],
        "empty text"
    );
}

#[test]
fn truncation_keeps_the_end_token_last() {
    let g = Golden::load(&model_dirs()[0]);
    let tok = tokenizer_for(&g);
    let long = "cat ".repeat(500);
    let ids = tok.encode(&long).unwrap();
    assert_eq!(ids.len(), tok.context_length());
    assert_eq!(ids[0], tok.bos_id());
    assert_eq!(*ids.last().unwrap(), tok.eos_id());
    let cat = tok.encode("cat").unwrap()[1];
    assert!(ids[1..ids.len() - 1].iter().all(|&t| t == cat));
}

#[test]
fn a_tokenizer_json_without_normalizer_gets_clips() {
    // Strip the normalizer: upper case, NFD accents and odd whitespace must still give the
    // reference ids, as the CLIP normalizer is then installed in Rust.
    let g = Golden::load(&model_dirs()[0]);
    let mut json: serde_json::Value = serde_json::from_slice(&g.file("tokenizer.json")).unwrap();
    json["normalizer"] = serde_json::Value::Null;
    let bare = ClipTokenizer::from_json(
        &serde_json::to_vec(&json).unwrap(),
        g.config.text_config.max_position_embeddings,
    )
    .unwrap();
    let tok = tokenizer_for(&g);
    for text in &g.texts {
        assert_eq!(
            bare.encode(text).unwrap(),
            tok.encode(text).unwrap(),
            "{text:?}"
        );
    }
    // NFD input ("e" + combining acute) tokenizes as the NFC one.
    assert_eq!(
        tok.encode("Cafe\u{301}").unwrap(),
        tok.encode("café").unwrap()
    );
}

#[test]
fn bad_tokenizer_json_is_an_error() {
    assert!(ClipTokenizer::from_json(b"not json", 77).is_err());
    assert!(ClipTokenizer::from_json(b"{}", 77).is_err());
    let g = Golden::load(&model_dirs()[0]);
    assert!(ClipTokenizer::from_json(&g.file("tokenizer.json"), 1).is_err());
}

#[test]
fn shipped_tokenizer_gives_reference_ids() {
    // `data/clip-tokenizer.json` is what `webclip gen-weights` writes into new model
    // folders: it must tokenize like the reference.
    let shipped = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/clip-tokenizer.json"),
    )
    .unwrap();
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        let ctx = g.shape("input_ids")[1];
        let tok = ClipTokenizer::from_json(&shipped, ctx).unwrap();
        for (text, want) in g.texts.iter().zip(g.ids("input_ids").chunks(ctx)) {
            assert_eq!(
                tok.encode_padded(text).unwrap(),
                want,
                "{}: {text:?}",
                g.name
            );
        }
    }
}
