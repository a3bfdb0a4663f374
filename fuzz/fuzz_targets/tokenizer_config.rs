//! `tokenizer_config.json`, and the choice of tokenizer it makes with the files present.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webclip::tokenizer::{Tokenizer, TokenizerConfig, TokenizerFiles};

fuzz_target!(|data: &[u8]| {
    let cfg = match TokenizerConfig::from_json(data) {
        Ok(c) => c,
        Err(e) => return webclip_fuzz::check_error(&e),
    };
    assert!(cfg.max_length(64) <= 64);
    let json = br#"{"added_tokens": [{"content": "<|startoftext|>"}]}"#;
    for (tokenizer_json, spiece_model) in [
        (Some(&json[..]), None),
        (None, Some(&b"\x0a\x00"[..])),
        (Some(&json[..]), Some(&b"\x0a\x00"[..])),
        (None, None),
    ] {
        let files = TokenizerFiles {
            tokenizer_json,
            spiece_model,
            tokenizer_config: Some(data),
        };
        if let Err(e) = Tokenizer::kind_of(&files, &cfg) {
            webclip_fuzz::check_error(&e);
        }
        // The whole load with those (mostly invalid) files: typed errors only.
        if let Err(e) = Tokenizer::from_files(&files, 16) {
            webclip_fuzz::check_error(&e);
        }
    }
});
