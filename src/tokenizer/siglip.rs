//! SigLIP's text input from `spiece.model`, as `transformers.SiglipTokenizer` builds it with
//! `padding="max_length"`, `truncation=True`, `max_length=64`.
//!
//! Follows `transformers/models/siglip/tokenization_siglip.py`: `"▁"` before the text (any
//! `"▁"` in it made a space), lower-case (`do_lower_case`), `canonicalize_text` (big_vision's:
//! ASCII punctuation removed, runs of whitespace to one space, stripped), then SentencePiece
//! with the model's `add_dummy_prefix` turned off on `unk_token + text`, the pieces of
//! `unk_token` dropped from the front (so that the leading `"▁"`, which nmt_nfkc maps to a
//! space, is not removed as leading whitespace); `</s>` is appended, the content cut so that
//! it stays last, then padded with the pad token (`</s>` too for SigLIP). An empty text is
//! `</s>` and padding only.

use super::config::{pad, Side, TokenizerConfig};
use super::sentencepiece::SentencePiece;
use crate::error::{ClipError, Result};

#[derive(Debug, Clone)]
pub struct SiglipTokenizer {
    sp: SentencePiece,
    /// `unk_token`, put before the text, and how many ids it encodes to.
    unk_token: String,
    unk_len: usize,
    context_length: usize,
    max_length: usize,
    eos_id: u32,
    pad_id: u32,
    lower_case: bool,
    padding_side: Side,
    truncation_side: Side,
}

/// Python's `str.isspace` (what `re`'s `\s` and `str.strip` use): Rust's `is_whitespace`
/// plus the ASCII separators U+001C..U+001F.
fn python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `SiglipTokenizer.canonicalize_text`: `string.punctuation` removed, `\s+` to one space,
/// stripped.
pub fn canonicalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_ascii_punctuation() {
            continue;
        }
        if python_space(c) {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
    }
    out
}

impl SiglipTokenizer {
    /// `spiece.model` bytes and the parsed `tokenizer_config.json` (its defaults when the
    /// file is absent); `context_length` is the text tower's `max_position_embeddings`.
    pub fn new(
        spiece_model: &[u8],
        config: &TokenizerConfig,
        context_length: usize,
    ) -> Result<Self> {
        let mut sp = SentencePiece::from_bytes(spiece_model)?;
        // `get_spm_processor`: the dummy prefix is added by hand, as "▁" before the text.
        sp.set_add_dummy_prefix(false);
        let max_length = config.max_length(context_length);
        if max_length < 1 {
            return Err(ClipError::Tokenizer(format!(
                "context length {context_length} leaves no room for the end token"
            )));
        }
        let id = |tok: &Option<String>, default: &str, what: &str| {
            let tok = tok.as_deref().unwrap_or(default);
            sp.piece_to_id(tok).ok_or_else(|| {
                ClipError::Tokenizer(format!(
                    "spiece.model has no piece {tok:?} (the {what} token of tokenizer_config.json)"
                ))
            })
        };
        let eos_id = id(&config.eos_token, "</s>", "end")?;
        let pad_id = id(&config.pad_token, "</s>", "pad")?;
        let unk_token = config.unk_token.clone().unwrap_or_else(|| "<unk>".into());
        let unk_len = sp.encode(&unk_token)?.len();
        Ok(SiglipTokenizer {
            unk_token,
            unk_len,
            context_length,
            max_length,
            eos_id,
            pad_id,
            lower_case: config.do_lower_case.unwrap_or(true),
            padding_side: config.padding_side,
            truncation_side: config.truncation_side,
            sp,
        })
    }

    /// The SentencePiece ids of the text, before the end token, truncation and padding.
    pub fn encode_content(&self, text: &str) -> Result<Vec<u32>> {
        // `tokenize`: "▁" + the text with its own "▁" made spaces; then lower case.
        let text = format!("\u{2581}{}", text.replace('\u{2581}', " "));
        let text = if self.lower_case {
            text.to_lowercase()
        } else {
            text
        };
        // `_tokenize`: canonicalise, encode after `unk_token`, drop its pieces.
        let canon = canonicalize_text(&text);
        let ids = self.sp.encode(&format!("{}{canon}", self.unk_token))?;
        Ok(match ids.get(self.unk_len..) {
            Some(rest) => rest.to_vec(),
            None => ids,
        })
    }

    /// The model input: `ids </s> pad...`, exactly `context_length` long.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode_content(text)?;
        let keep = self.max_length - 1;
        if ids.len() > keep {
            match self.truncation_side {
                Side::Right => ids.truncate(keep),
                Side::Left => {
                    ids.drain(..ids.len() - keep);
                }
            }
        }
        ids.push(self.eos_id);
        pad(
            &mut ids,
            self.context_length,
            self.pad_id,
            self.padding_side,
        );
        Ok(ids)
    }

    pub fn sentencepiece(&self) -> &SentencePiece {
        &self.sp
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

#[cfg(test)]
mod tests {
    use super::super::sentencepiece::tests::model_bytes;
    use super::*;

    #[test]
    fn canonicalize_follows_big_vision() {
        assert_eq!(canonicalize_text("  A,  b!!\t c\n"), "A b c");
        assert_eq!(canonicalize_text("black-and-white"), "blackandwhite");
        assert_eq!(canonicalize_text("a - b"), "a b");
        // Non-ASCII punctuation stays; Python's whitespace includes U+001C..U+001F, NBSP.
        assert_eq!(canonicalize_text("«x»\u{1f}y\u{a0}z"), "«x» y z");
        assert_eq!(canonicalize_text("?!."), "");
        assert_eq!(canonicalize_text(""), "");
    }

    fn toy(config: &str, ctx: usize) -> SiglipTokenizer {
        let pieces = [
            ("<pad>", 0.0, 3),
            ("</s>", 0.0, 3),
            ("<unk>", 0.0, 2),
            ("\u{2581}", -2.0, 1),
            ("\u{2581}a", -1.0, 1),
            ("b", -3.0, 1),
        ];
        let cfg = TokenizerConfig::from_json(config.as_bytes()).unwrap();
        SiglipTokenizer::new(&model_bytes(&pieces, &[], None, &[]), &cfg, ctx).unwrap()
    }

    #[test]
    fn end_token_truncation_and_padding() {
        let t = toy("{}", 6);
        assert_eq!(t.encode("A, b").unwrap(), vec![4, 3, 5, 1, 1, 1]);
        assert_eq!(t.encode("").unwrap(), vec![1; 6]);
        assert_eq!(t.encode("...").unwrap(), vec![1; 6]);
        // Cut so that the end token stays last.
        assert_eq!(t.encode("a a a a a a a").unwrap(), vec![4, 4, 4, 4, 4, 1]);
        let t = toy(
            r#"{"pad_token": "<pad>", "padding_side": "left", "truncation_side": "left",
                "model_max_length": 4}"#,
            6,
        );
        assert_eq!(t.encode("a b").unwrap(), vec![0, 0, 4, 3, 5, 1]);
        assert_eq!(t.encode("a a a b").unwrap(), vec![0, 0, 4, 3, 5, 1]);
        // "▁" in the text is a space; upper case is lowered unless do_lower_case is off.
        let t = toy("{}", 6);
        assert_eq!(t.encode("a\u{2581}b").unwrap(), t.encode("a b").unwrap());
        let t = toy(r#"{"do_lower_case": false}"#, 6);
        assert_eq!(t.encode("A").unwrap(), vec![3, 2, 1, 1, 1, 1]);
    }

    #[test]
    fn missing_special_pieces_are_errors() {
        let pieces = [("<unk>", 0.0, 2), ("a", -1.0, 1)];
        let bytes = model_bytes(&pieces, &[], None, &[]);
        let e = SiglipTokenizer::new(&bytes, &TokenizerConfig::default(), 64).unwrap_err();
        assert!(e.to_string().contains("</s>"), "{e}");
    }
}
