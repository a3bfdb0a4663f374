//! SigLIP's `spiece.model`: the protobuf reader (src/tokenizer/protobuf.rs), the model it
//! describes (src/tokenizer/sentencepiece.rs), and `SiglipTokenizer` over it; strings
//! encoded with whatever loaded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webclip::tokenizer::{SentencePiece, SiglipTokenizer, TokenizerConfig};

fuzz_target!(|data: &[u8]| {
    match SentencePiece::from_bytes(data) {
        Ok(sp) => {
            for text in [
                "",
                "a photo of a cat",
                "  Ünïcödé\u{2581}\u{0}  tabs\tand\nlines ",
            ] {
                match sp.encode(text) {
                    Ok(ids) => assert!(ids.iter().all(|&id| (id as usize) < sp.vocab_size())),
                    Err(e) => webclip_fuzz::check_error(&e),
                }
            }
        }
        Err(e) => return webclip_fuzz::check_error(&e),
    }
    match SiglipTokenizer::new(data, &TokenizerConfig::default(), 16) {
        Ok(t) => match t.encode("A photo of 2 cats.") {
            Ok(ids) => assert_eq!(ids.len(), 16),
            Err(e) => webclip_fuzz::check_error(&e),
        },
        Err(e) => webclip_fuzz::check_error(&e),
    }
});
