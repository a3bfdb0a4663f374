//! Inputs the fuzz targets (`fuzz/`) found to crash webclip, each reduced to what makes it
//! fail and kept here so that the normal suite guards the fix.

use webclip::tokenizer::{ClipTokenizer, HfTokenizer, TokenizerConfig};

/// A minimal BPE `tokenizer.json` with `continuing_subword_prefix` and these merges.
fn bpe_json(prefix: &str, merges: &str) -> Vec<u8> {
    bpe_json_with(prefix, r#"{"a":0,"b":1,"ab":2,"é":3,"aé":4}"#, merges)
}

fn bpe_json_with(prefix: &str, vocab: &str, merges: &str) -> Vec<u8> {
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
        "normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,
        "model":{{"type":"BPE","dropout":null,"unk_token":null,
        "continuing_subword_prefix":{prefix:?},"end_of_word_suffix":null,"fuse_unk":false,
        "byte_fallback":false,"ignore_merges":false,
        "vocab":{vocab},"merges":{merges}}}}}"#
    )
    .into_bytes()
}

#[test]
fn a_bpe_prefix_longer_than_a_merge_is_an_error_not_a_panic() {
    // tokenizers 0.22 cut the prefix off each merge's second part by byte count and
    // panicked ("byte index 15 is out of bounds") on a merge shorter than the prefix.
    for merges in [
        r#"[["a","b"]]"#,
        r#"["a b"]"#,
        r##"["#version: 0.2","a b"]"##,
    ] {
        let json = bpe_json("RRRRRRRRRRRRRRR", merges);
        let err = HfTokenizer::new(&json, &TokenizerConfig::default(), 16).unwrap_err();
        assert_eq!(err.code(), "bad-tokenizer", "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("continuing_subword_prefix") && msg.contains("merge 1"),
            "{msg}"
        );
        assert!(ClipTokenizer::from_json(&json, 77).is_err());
    }
    // A cut inside a character (the prefix is one byte, "é" two) panicked the same way.
    let json = bpe_json("#", r#"[["a","é"]]"#);
    let err = HfTokenizer::new(&json, &TokenizerConfig::default(), 16).unwrap_err();
    assert!(
        err.to_string().contains("continuing_subword_prefix"),
        "{err}"
    );
}

#[test]
fn merges_that_carry_the_prefix_still_load() {
    // The check refuses only what the crate cannot cut: "@@b" carries the prefix "@@".
    let json = bpe_json_with(
        "@@",
        r#"{"a":0,"@@b":1,"ab":2,"<pad>":3}"#,
        r#"[["a","@@b"]]"#,
    );
    HfTokenizer::new(&json, &TokenizerConfig::default(), 16).unwrap();
}
