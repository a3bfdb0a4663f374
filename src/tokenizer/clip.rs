//! CLIP's byte-level BPE via the `tokenizers` crate, from `tokenizer.json` bytes.
//!
//! Follows `transformers.CLIPTokenizer` (fast) with `padding="max_length"`, `truncation=True`,
//! `max_length=77`: `<|startoftext|> tokens <|endoftext|>`, the content cut so that the end
//! token stays last, then padded with the pad token (`<|endoftext|>` for CLIP).
//!
//! The text normalisation the reference applies (NFC, runs of whitespace to one space, lower
//! case) lives in `tokenizer.json`'s normalizer; when a file's normalizer does not do it,
//! [`ClipTokenizer::from_json`] installs CLIP's own, as the vocabulary only holds lower-case
//! words and an upper-case word would silently split into other tokens.

use crate::error::{ClipError, Result};
use tokenizers::normalizers::replace::ReplacePattern;
use tokenizers::normalizers::{Lowercase, NormalizerWrapper, Replace, Sequence, NFC};
use tokenizers::{NormalizedString, Normalizer};

pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    context_length: usize,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("context_length", &self.context_length)
            .field("bos_id", &self.bos_id)
            .field("eos_id", &self.eos_id)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

impl ClipTokenizer {
    /// `tokenizer.json` bytes; `context_length` is the text tower's `max_position_embeddings`.
    pub fn from_json(bytes: &[u8], context_length: usize) -> Result<Self> {
        if context_length < 2 {
            return Err(ClipError::Tokenizer(format!(
                "context length {context_length} leaves no room for the start and end tokens"
            )));
        }
        let mut inner = super::hf::read_tokenizer_json(bytes)?;
        // Some tokenizer.json files carry their own padding/truncation (77, `LongestFirst`);
        // we pad and truncate here, the same way whatever the file says.
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| ClipError::Tokenizer(format!("tokenizer.json: {e}")))?;
        if !normalizes_like_clip(inner.get_normalizer()) {
            inner.with_normalizer(Some(clip_normalizer()?));
        }
        let id = |tok: &str| {
            inner.token_to_id(tok).ok_or_else(|| {
                ClipError::Tokenizer(format!(
                    "tokenizer.json has no `{tok}` token: not a CLIP tokenizer"
                ))
            })
        };
        let bos_id = id("<|startoftext|>")?;
        let eos_id = id("<|endoftext|>")?;
        Ok(ClipTokenizer {
            inner,
            context_length,
            bos_id,
            eos_id,
            pad_id: eos_id,
        })
    }

    /// `<|startoftext|> ... <|endoftext|>`, truncated to the context length with the end
    /// token kept last; not padded.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        // Without the post-processor: the start/end tokens are added here, so a
        // tokenizer.json with or without a `RobertaProcessing` step gives the same ids.
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| ClipError::Tokenizer(format!("cannot tokenize {text:?}: {e}")))?;
        let body = enc.get_ids();
        let keep = body.len().min(self.context_length - 2);
        let mut ids = Vec::with_capacity(keep + 2);
        ids.push(self.bos_id);
        ids.extend_from_slice(&body[..keep]);
        ids.push(self.eos_id);
        Ok(ids)
    }

    /// Like [`encode`](Self::encode), padded with the pad token to the context length.
    pub fn encode_padded(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(text)?;
        ids.resize(self.context_length, self.pad_id);
        Ok(ids)
    }

    pub fn bos_id(&self) -> u32 {
        self.bos_id
    }
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    pub fn context_length(&self) -> usize {
        self.context_length
    }
}

/// Whether `tokenizer.json`'s normalizer does what the reference does before BPE: NFC,
/// runs of whitespace to one space, lower case. Tested on a probe string rather than by
/// reading the JSON, so any spelling of the same steps is accepted.
fn normalizes_like_clip(normalizer: Option<&NormalizerWrapper>) -> bool {
    let Some(n) = normalizer else {
        return false;
    };
    // "E" + combining acute (NFC: "é"), a tab and a newline, an upper-case "X".
    let mut probe = NormalizedString::from("E\u{301}\t\n X");
    n.normalize(&mut probe).is_ok() && probe.get() == "\u{e9} x"
}

/// NFC, `\s+` to one space, lower case: the normalizer of `openai/clip-vit-base-patch32`'s
/// tokenizer.json, for files that lack it (the vocabulary holds lower-case words only).
fn clip_normalizer() -> Result<NormalizerWrapper> {
    let ws = Replace::new(ReplacePattern::Regex(r"\s+".into()), " ")
        .map_err(|e| ClipError::Tokenizer(format!("whitespace normalizer: {e}")))?;
    Ok(Sequence::new(vec![NFC.into(), ws.into(), Lowercase.into()]).into())
}
