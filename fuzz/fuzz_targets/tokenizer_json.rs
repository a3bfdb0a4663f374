//! `tokenizer.json` loading: as CLIP's BPE (which checks its special tokens) and as any
//! other Hugging Face tokenizer (SigLIP 2), then one encode with what loaded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webclip::tokenizer::{ClipTokenizer, HfTokenizer, TokenizerConfig};

fuzz_target!(|data: &[u8]| {
    match ClipTokenizer::from_json(data, 77) {
        Ok(t) => match t.encode("a photo of a cat") {
            Ok(ids) => assert!(ids.len() <= 77),
            Err(e) => webclip_fuzz::check_error(&e),
        },
        Err(e) => webclip_fuzz::check_error(&e),
    }
    match HfTokenizer::new(data, &TokenizerConfig::default(), 16) {
        Ok(t) => match t.encode("A photo of 2 cats.") {
            Ok(ids) => assert!(ids.len() <= 16),
            Err(e) => webclip_fuzz::check_error(&e),
        },
        Err(e) => webclip_fuzz::check_error(&e),
    }
});
