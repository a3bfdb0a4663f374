//! Arbitrary strings through each tokenizer a supported checkpoint ships: CLIP's BPE
//! (`tokenizer.json`), SigLIP's SentencePiece (`spiece.model`) and SigLIP 2's Gemma
//! `tokenizer.json`, loaded once from the fixtures.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use webclip::tokenizer::{Tokenizer, TokenizerFiles};

struct Loaded {
    clip: Tokenizer,
    siglip: Tokenizer,
    gemma: Tokenizer,
}

fn tokenizers() -> &'static Loaded {
    static T: OnceLock<Loaded> = OnceLock::new();
    T.get_or_init(|| {
        let load = |dir: &str, json: Option<&str>, spm: Option<&str>, ctx: usize| {
            let json = json.map(|f| webclip_fuzz::fixture(&format!("{dir}/{f}")));
            let spm = spm.map(|f| webclip_fuzz::fixture(&format!("{dir}/{f}")));
            let cfg = webclip_fuzz::fixture(&format!("{dir}/tokenizer_config.json"));
            let files = TokenizerFiles {
                tokenizer_json: json.as_deref(),
                spiece_model: spm.as_deref(),
                tokenizer_config: Some(&cfg),
            };
            Tokenizer::from_files(&files, ctx).expect("fixture tokenizer loads")
        };
        Loaded {
            clip: load("tiny-quickgelu", Some("tokenizer.json"), None, 77),
            siglip: load("siglip/siglip-spm", None, Some("spiece.model"), 16),
            gemma: load("siglip/siglip2-gemma", Some("tokenizer.json"), None, 16),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let t = tokenizers();
    for tok in [&t.clip, &t.siglip, &t.gemma] {
        let ctx = tok.context_length();
        match tok.encode(&text) {
            Ok(ids) => {
                assert!(!ids.is_empty() && ids.len() <= ctx, "{} ids", ids.len());
                if tok.fixed_length() {
                    assert_eq!(ids.len(), ctx);
                }
            }
            Err(e) => webclip_fuzz::check_error(&e),
        }
        match tok.encode_padded(&text) {
            Ok(ids) => assert_eq!(ids.len(), ctx),
            Err(e) => webclip_fuzz::check_error(&e),
        }
    }
});
