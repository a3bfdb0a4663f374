//! `tokenizer_config.json`: the settings `transformers` reads next to the vocabulary file
//! (`PreTrainedTokenizerBase.__init__`): special tokens, padding and truncation sides, the
//! maximum length, lower-casing, and whether BOS/EOS are added.

use crate::error::{ClipError, Result};
use serde::Deserialize;
use serde_json::Value;

/// Which end of the sequence padding or truncation applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Side {
    Left,
    #[default]
    Right,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerConfig {
    pub tokenizer_class: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
    pub padding_side: Side,
    pub truncation_side: Side,
    /// `None` when absent or `transformers`' "no limit" sentinel (1e30).
    pub model_max_length: Option<usize>,
    pub do_lower_case: Option<bool>,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
}

fn bad(msg: impl std::fmt::Display) -> ClipError {
    ClipError::Tokenizer(format!("tokenizer_config.json: {msg}"))
}

impl TokenizerConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        #[derive(Deserialize)]
        struct Raw {
            tokenizer_class: Option<String>,
            bos_token: Option<Value>,
            eos_token: Option<Value>,
            pad_token: Option<Value>,
            unk_token: Option<Value>,
            padding_side: Option<String>,
            truncation_side: Option<String>,
            model_max_length: Option<f64>,
            do_lower_case: Option<bool>,
            add_bos_token: Option<bool>,
            add_eos_token: Option<bool>,
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(bad)?;
        // A token is a string or a serialised `AddedToken` (`{"content": "</s>", ...}`).
        let token = |v: Option<Value>, name: &str| -> Result<Option<String>> {
            match v {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(Value::Object(o)) => match o.get("content") {
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    _ => Err(bad(format!("{name} has no string `content`"))),
                },
                Some(v) => Err(bad(format!("{name} is {v}, expected a string"))),
            }
        };
        let side = |v: Option<String>, name: &str| match v.as_deref() {
            None | Some("right") => Ok(Side::Right),
            Some("left") => Ok(Side::Left),
            Some(s) => Err(bad(format!(
                "{name} is {s:?}, expected \"left\" or \"right\""
            ))),
        };
        let model_max_length = match raw.model_max_length {
            None => None,
            Some(v) if v.is_nan() || v < 1.0 => {
                return Err(bad(format!(
                    "model_max_length {v} is not a positive length"
                )))
            }
            // `VERY_LARGE_INTEGER` (int(1e30)) stands for "no limit".
            Some(v) if v >= u32::MAX as f64 => None,
            Some(v) => Some(v as usize),
        };
        Ok(TokenizerConfig {
            tokenizer_class: raw.tokenizer_class,
            bos_token: token(raw.bos_token, "bos_token")?,
            eos_token: token(raw.eos_token, "eos_token")?,
            pad_token: token(raw.pad_token, "pad_token")?,
            unk_token: token(raw.unk_token, "unk_token")?,
            padding_side: side(raw.padding_side, "padding_side")?,
            truncation_side: side(raw.truncation_side, "truncation_side")?,
            model_max_length,
            do_lower_case: raw.do_lower_case,
            add_bos_token: raw.add_bos_token,
            add_eos_token: raw.add_eos_token,
        })
    }

    /// The length texts are cut to: `model_max_length`, at most the model's
    /// `context_length` positions.
    pub fn max_length(&self, context_length: usize) -> usize {
        self.model_max_length
            .map_or(context_length, |m| m.min(context_length))
    }
}

/// Pads `ids` with `pad` to `len` on `side`.
pub(crate) fn pad(ids: &mut Vec<u32>, len: usize, pad: u32, side: Side) {
    if ids.len() >= len {
        return;
    }
    match side {
        Side::Right => ids.resize(len, pad),
        Side::Left => {
            let n = len - ids.len();
            ids.splice(0..0, std::iter::repeat_n(pad, n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tokens_sides_and_lengths() {
        let c = TokenizerConfig::from_json(
            br#"{"eos_token": "</s>", "pad_token": {"content": "<pad>", "lstrip": false},
                 "unk_token": null, "padding_side": "left", "model_max_length": 64,
                 "do_lower_case": true, "tokenizer_class": "SiglipTokenizer"}"#,
        )
        .unwrap();
        assert_eq!(c.eos_token.as_deref(), Some("</s>"));
        assert_eq!(c.pad_token.as_deref(), Some("<pad>"));
        assert_eq!(c.unk_token, None);
        assert_eq!(c.padding_side, Side::Left);
        assert_eq!(c.truncation_side, Side::Right);
        assert_eq!(c.max_length(77), 64);
        assert_eq!(c.max_length(16), 16);
        let c = TokenizerConfig::from_json(br#"{"model_max_length": 1e30}"#).unwrap();
        assert_eq!(c.max_length(64), 64);
        for bad in [
            &br#"{"padding_side": "up"}"#[..],
            br#"{"model_max_length": 0}"#,
            br#"{"model_max_length": -5}"#,
            br#"{"eos_token": 5}"#,
            br#"{"eos_token": {"id": 1}}"#,
            b"not json",
        ] {
            assert!(
                matches!(
                    TokenizerConfig::from_json(bad),
                    Err(ClipError::Tokenizer(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn pads_either_side() {
        let mut v = vec![5, 6];
        pad(&mut v, 4, 0, Side::Right);
        assert_eq!(v, [5, 6, 0, 0]);
        let mut v = vec![5, 6];
        pad(&mut v, 4, 0, Side::Left);
        assert_eq!(v, [0, 0, 5, 6]);
        pad(&mut v, 2, 9, Side::Left);
        assert_eq!(v, [0, 0, 5, 6]);
    }
}
