//! Shared by the SigLIP suites: the model folders under `fixtures/siglip/`, read with the
//! CLIP suites' `Golden` (`ClipConfig` parses SigLIP configs too).
#![allow(dead_code)]

use webclip::tokenizer::TokenizerFiles;

pub use crate::common::siglip_dirs;
pub use crate::common::Golden as SiglipGolden;

/// The tokenizer files of a folder, as `Tokenizer::from_files` takes them.
pub struct OwnedTokenizerFiles {
    pub tokenizer_json: Option<Vec<u8>>,
    pub spiece_model: Option<Vec<u8>>,
    pub tokenizer_config: Option<Vec<u8>>,
}

impl OwnedTokenizerFiles {
    pub fn of(g: &SiglipGolden) -> Self {
        OwnedTokenizerFiles {
            tokenizer_json: g.optional_file("tokenizer.json"),
            spiece_model: g.optional_file("spiece.model"),
            tokenizer_config: g.optional_file("tokenizer_config.json"),
        }
    }

    pub fn files(&self) -> TokenizerFiles<'_> {
        TokenizerFiles {
            tokenizer_json: self.tokenizer_json.as_deref(),
            spiece_model: self.spiece_model.as_deref(),
            tokenizer_config: self.tokenizer_config.as_deref(),
        }
    }
}
