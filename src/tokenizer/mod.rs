//! Text to token ids, for each tokenizer a supported checkpoint ships:
//!
//! | files | kind | as |
//! | --- | --- | --- |
//! | `tokenizer.json` with `<\|startoftext\|>` (CLIP) | [`ClipTokenizer`] | `CLIPTokenizer` |
//! | `spiece.model` (SigLIP) | [`SiglipTokenizer`] over [`SentencePiece`] | `SiglipTokenizer` |
//! | another `tokenizer.json` (SigLIP 2's Gemma) | [`HfTokenizer`] | `GemmaTokenizerFast` |
//!
//! [`Tokenizer`] holds any of them; `tokenizer_config.json` (`tokenizer_class`) or, without
//! it, the files present decide which.

mod clip;
mod config;
mod hf;
mod protobuf;
pub mod sentencepiece;
mod siglip;

pub use clip::ClipTokenizer;
pub use config::{Side, TokenizerConfig};
pub use hf::HfTokenizer;
pub use sentencepiece::SentencePiece;
pub use siglip::{canonicalize_text, SiglipTokenizer};

use crate::error::{ClipError, Result};

/// The tokenizer files of a model folder, as bytes (`None`: the file is absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenizerFiles<'a> {
    pub tokenizer_json: Option<&'a [u8]>,
    pub spiece_model: Option<&'a [u8]>,
    pub tokenizer_config: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// CLIP's byte-level BPE from `tokenizer.json`.
    Clip,
    /// SigLIP's SentencePiece unigram model from `spiece.model`.
    SentencePiece,
    /// Any other `tokenizer.json`, its ids padded to a fixed length (SigLIP 2).
    Json,
}

#[derive(Debug)]
pub enum Tokenizer {
    Clip(ClipTokenizer),
    SentencePiece(SiglipTokenizer),
    Json(HfTokenizer),
}

impl Tokenizer {
    /// Which tokenizer the files describe: `tokenizer_config.json`'s `tokenizer_class` when
    /// it names one, else `spiece.model` before `tokenizer.json`, and a `tokenizer.json`
    /// with CLIP's start token is CLIP's.
    pub fn kind_of(files: &TokenizerFiles, config: &TokenizerConfig) -> Result<TokenizerKind> {
        let class = config.tokenizer_class.as_deref();
        let missing = |file: &str| {
            ClipError::NotFound(format!(
                "{file} (tokenizer_config.json names {} for this model)",
                class.unwrap_or_default()
            ))
        };
        match class {
            Some("SiglipTokenizer") => {
                return match files.spiece_model {
                    Some(_) => Ok(TokenizerKind::SentencePiece),
                    None => Err(missing("spiece.model")),
                }
            }
            Some("CLIPTokenizer" | "CLIPTokenizerFast") => {
                return match files.tokenizer_json {
                    Some(_) => Ok(TokenizerKind::Clip),
                    None => Err(missing("tokenizer.json")),
                }
            }
            _ => {}
        }
        if let Some(json) = files.tokenizer_json {
            // Without a class, `spiece.model` wins: SigLIP repositories ship it, and a
            // `tokenizer.json` beside it would lack `SiglipTokenizer`'s canonicalisation.
            if class.is_none() && files.spiece_model.is_some() {
                return Ok(TokenizerKind::SentencePiece);
            }
            // CLIP's start token, as a JSON string (the file is parsed once, later).
            const START: &[u8] = b"\"<|startoftext|>\"";
            let clip = class.is_none() && json.windows(START.len()).any(|w| w == START);
            return Ok(if clip {
                TokenizerKind::Clip
            } else {
                TokenizerKind::Json
            });
        }
        match (files.spiece_model, class) {
            (Some(_), None) => Ok(TokenizerKind::SentencePiece),
            (Some(_), Some(c)) => Err(ClipError::Unsupported(format!(
                "tokenizer class {c} from spiece.model alone (supported: SiglipTokenizer; other \
                 classes need their tokenizer.json)"
            ))),
            (None, _) => Err(ClipError::NotFound(
                "a tokenizer: the model has neither tokenizer.json nor spiece.model".into(),
            )),
        }
    }

    /// The tokenizer of a model folder; `context_length` is the text tower's
    /// `max_position_embeddings`.
    pub fn from_files(files: &TokenizerFiles, context_length: usize) -> Result<Self> {
        let config = match files.tokenizer_config {
            Some(b) => TokenizerConfig::from_json(b)?,
            None => TokenizerConfig::default(),
        };
        fn need<'a>(f: Option<&'a [u8]>, name: &str) -> Result<&'a [u8]> {
            f.ok_or_else(|| ClipError::Internal(format!("tokenizer kind chosen without {name}")))
        }
        Ok(match Self::kind_of(files, &config)? {
            TokenizerKind::Clip => Tokenizer::Clip(ClipTokenizer::from_json(
                need(files.tokenizer_json, "tokenizer.json")?,
                context_length,
            )?),
            TokenizerKind::SentencePiece => Tokenizer::SentencePiece(SiglipTokenizer::new(
                need(files.spiece_model, "spiece.model")?,
                &config,
                context_length,
            )?),
            TokenizerKind::Json => Tokenizer::Json(HfTokenizer::new(
                need(files.tokenizer_json, "tokenizer.json")?,
                &config,
                context_length,
            )?),
        })
    }

    pub fn kind(&self) -> TokenizerKind {
        match self {
            Tokenizer::Clip(_) => TokenizerKind::Clip,
            Tokenizer::SentencePiece(_) => TokenizerKind::SentencePiece,
            Tokenizer::Json(_) => TokenizerKind::Json,
        }
    }

    /// Whether the padding is part of the model input (SigLIP: every position is attended),
    /// so [`encode`](Self::encode) gives exactly `context_length` ids.
    pub fn fixed_length(&self) -> bool {
        !matches!(self, Tokenizer::Clip(_))
    }

    /// The ids the text tower takes: CLIP's `<|startoftext|> ... <|endoftext|>` unpadded
    /// (its causal encoder is read at the end token), the others' padded to
    /// `context_length`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Clip(t) => t.encode(text),
            Tokenizer::SentencePiece(t) => t.encode(text),
            Tokenizer::Json(t) => t.encode(text),
        }
    }

    /// Exactly `context_length` ids, padded with the pad token.
    pub fn encode_padded(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Clip(t) => t.encode_padded(text),
            _ => self.encode(text),
        }
    }

    pub fn pad_id(&self) -> u32 {
        match self {
            Tokenizer::Clip(t) => t.pad_id(),
            Tokenizer::SentencePiece(t) => t.pad_id(),
            Tokenizer::Json(t) => t.pad_id(),
        }
    }

    pub fn context_length(&self) -> usize {
        match self {
            Tokenizer::Clip(t) => t.context_length(),
            Tokenizer::SentencePiece(t) => t.context_length(),
            Tokenizer::Json(t) => t.context_length(),
        }
    }
}
