//! A `tokenizer.json` whose ids are the model input as they come out, padded to a fixed
//! length: SigLIP 2's Gemma tokenizer (byte-fallback BPE, `<eos>` appended by the
//! post-processor, `<pad>` on the right), or any other `tokenizers` model.
//!
//! Follows `transformers`' fast tokenizers called with `padding="max_length"`,
//! `truncation=True`, `max_length=64`: the file's normalizer, pre-tokenizer, model and
//! post-processor, then truncation that leaves room for the special tokens and padding, as
//! `tokenizer_config.json` says (`pad_token`, `padding_side`, `truncation_side`,
//! `model_max_length`; `add_bos_token` / `add_eos_token` rewrite the post-processor as
//! `GemmaTokenizerFast.update_post_processor` does).

use super::config::{Side, TokenizerConfig};
use crate::error::{ClipError, Result};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, TruncationDirection, TruncationParams,
    TruncationStrategy,
};

/// The `model.type` values the `tokenizers` crate reads.
const MODEL_TYPES: [&str; 4] = ["BPE", "Unigram", "WordPiece", "WordLevel"];

pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    context_length: usize,
    pad_id: u32,
    eos_id: Option<u32>,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("context_length", &self.context_length)
            .field("pad_id", &self.pad_id)
            .finish()
    }
}

fn bad(msg: impl std::fmt::Display) -> ClipError {
    ClipError::Tokenizer(format!("tokenizer.json: {msg}"))
}

/// Reads `tokenizer.json`, with a clear error for a model type the crate does not know (its
/// own error would be an untagged-enum mismatch).
pub(crate) fn read_tokenizer_json(bytes: &[u8]) -> Result<tokenizers::Tokenizer> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let model = json
        .get("model")
        .ok_or_else(|| bad("no `model` (not a tokenizers file)"))?;
    match model.get("type") {
        None => {}
        Some(serde_json::Value::String(t)) if MODEL_TYPES.contains(&t.as_str()) => {}
        Some(t) => {
            return Err(bad(format!(
                "model type {t} is not supported (supported: {})",
                MODEL_TYPES.join(", ")
            )))
        }
    }
    check_bpe_merges(model)?;
    tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| bad(format!("cannot read it: {e}")))
}

/// A BPE merge's second part starts with the model's `continuing_subword_prefix`, which
/// the crate cuts off by byte count: a shorter part (or one the cut would split inside a
/// character) would panic there, so it is refused here (found by fuzzing).
fn check_bpe_merges(model: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    let Some(Value::String(prefix)) = model.get("continuing_subword_prefix") else {
        return Ok(());
    };
    let Some(Value::Array(merges)) = model.get("merges") else {
        return Ok(());
    };
    let lines = merges
        .iter()
        .filter(|m| !matches!(m, Value::String(l) if l.starts_with("#version")));
    for (rank, merge) in lines.enumerate() {
        // `["a", "b"]`, or the older `"a b"`.
        let second = match merge {
            Value::Array(pair) => pair.get(1).and_then(Value::as_str),
            Value::String(line) => line.split(' ').nth(1),
            _ => None,
        };
        if let Some(b) = second {
            if b.get(prefix.len()..).is_none() {
                return Err(bad(format!(
                    "merge {} ends in {b:?}, which does not start with the model's \
                     continuing_subword_prefix {prefix:?}",
                    rank + 1
                )));
            }
        }
    }
    Ok(())
}

impl HfTokenizer {
    /// `tokenizer.json` bytes and the parsed `tokenizer_config.json`; every text becomes
    /// `context_length` ids (the text tower's `max_position_embeddings`).
    pub fn new(bytes: &[u8], config: &TokenizerConfig, context_length: usize) -> Result<Self> {
        let mut inner = read_tokenizer_json(bytes)?;
        let id = |inner: &tokenizers::Tokenizer, tok: &str, what: &str| {
            inner.token_to_id(tok).ok_or_else(|| {
                bad(format!(
                    "no token {tok:?} (the {what} token of tokenizer_config.json)"
                ))
            })
        };
        let pad_token = config
            .pad_token
            .clone()
            .or_else(|| inner.get_padding().map(|p| p.pad_token.clone()))
            .unwrap_or_else(|| "<pad>".to_string());
        let pad_id = id(&inner, &pad_token, "pad")?;
        if config.add_bos_token.is_some() || config.add_eos_token.is_some() {
            let post = rewrite_post_processor(&inner, config)?;
            inner.with_post_processor(Some(post));
        }
        let eos_id = config
            .eos_token
            .as_deref()
            .and_then(|t| inner.token_to_id(t));
        let max_length = config.max_length(context_length);
        let added = inner
            .get_post_processor()
            .map_or(0, |p| tokenizers::PostProcessor::added_tokens(p, false));
        if max_length <= added {
            return Err(bad(format!(
                "a length of {max_length} leaves no room for text after {added} special tokens"
            )));
        }
        let side = |s: Side| match s {
            Side::Left => (TruncationDirection::Left, PaddingDirection::Left),
            Side::Right => (TruncationDirection::Right, PaddingDirection::Right),
        };
        inner
            .with_truncation(Some(TruncationParams {
                direction: side(config.truncation_side).0,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| bad(format!("truncation: {e}")))?;
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::Fixed(context_length),
            direction: side(config.padding_side).1,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id: 0,
            pad_token,
        }));
        Ok(HfTokenizer {
            inner,
            context_length,
            pad_id,
            eos_id,
        })
    }

    /// The model input: exactly `context_length` ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| ClipError::Tokenizer(format!("cannot tokenize {text:?}: {e}")))?;
        let ids = enc.get_ids();
        if ids.len() != self.context_length {
            return Err(ClipError::Internal(format!(
                "tokenizer gave {} ids, not {}",
                ids.len(),
                self.context_length
            )));
        }
        Ok(ids.to_vec())
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }
    /// The `eos_token` of `tokenizer_config.json`, when it names one in the vocabulary.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }
    pub fn context_length(&self) -> usize {
        self.context_length
    }
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// `[<bos>] $A [<eos>]` as `add_bos_token` / `add_eos_token` ask; a flag the config leaves
/// out keeps what the file's post-processor does.
fn rewrite_post_processor(
    inner: &tokenizers::Tokenizer,
    config: &TokenizerConfig,
) -> Result<TemplateProcessing> {
    let probe = inner
        .encode("", true)
        .map_err(|e| bad(format!("post-processor: {e}")))?;
    let special = |tok: &Option<String>, default: &str| {
        let tok = tok.as_deref().unwrap_or(default).to_string();
        let id = inner.token_to_id(&tok);
        (tok, id)
    };
    let (bos, bos_id) = special(&config.bos_token, "<bos>");
    let (eos, eos_id) = special(&config.eos_token, "<eos>");
    let has = |id: Option<u32>| id.is_some_and(|id| probe.get_ids().contains(&id));
    let add_bos = config.add_bos_token.unwrap_or(has(bos_id));
    let add_eos = config.add_eos_token.unwrap_or(has(eos_id));
    let mut single = Vec::new();
    let mut pair = Vec::new();
    let mut tokens = Vec::new();
    for (on, tok, id, what) in [
        (add_bos, &bos, bos_id, "bos"),
        (add_eos, &eos, eos_id, "eos"),
    ] {
        if !on {
            continue;
        }
        let id = id.ok_or_else(|| {
            bad(format!(
                "add_{what}_token is on but the vocabulary has no {tok:?}"
            ))
        })?;
        tokens.push((tok.clone(), id));
    }
    let piece = |tok: &str, type_id: u32| format!("{tok}:{type_id}");
    if add_bos {
        single.push(piece(&bos, 0));
        pair.push(piece(&bos, 0));
    }
    single.push("$A:0".to_string());
    pair.push("$A:0".to_string());
    if add_eos {
        single.push(piece(&eos, 0));
        pair.push(piece(&eos, 0));
    }
    if add_bos {
        pair.push(piece(&bos, 1));
    }
    pair.push("$B:1".to_string());
    if add_eos {
        pair.push(piece(&eos, 1));
    }
    TemplateProcessing::builder()
        .try_single(single.join(" "))
        .and_then(|b| b.try_pair(pair.join(" ")))
        .map_err(|e| bad(format!("post-processor template: {e}")))?
        .special_tokens(tokens)
        .build()
        .map_err(|e| bad(format!("post-processor template: {e}")))
}
