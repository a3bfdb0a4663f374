//! CLIP's byte-level BPE via the `tokenizers` crate, from `tokenizer.json` bytes.

use crate::error::{ClipError, Result};

pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    context_length: usize,
    bos_id: u32,
    eos_id: u32,
    pad_id: u32,
}

impl ClipTokenizer {
    /// `tokenizer.json` bytes; `context_length` is the text tower's `max_position_embeddings`.
    pub fn from_json(bytes: &[u8], context_length: usize) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes)
            .map_err(|e| ClipError::Tokenizer(format!("cannot read tokenizer.json: {e}")))?;
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
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| ClipError::Tokenizer(format!("cannot tokenize {text:?}: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if ids.first() != Some(&self.bos_id) {
            ids.insert(0, self.bos_id);
        }
        if ids.last() != Some(&self.eos_id) || ids.len() == 1 {
            ids.push(self.eos_id);
        }
        if ids.len() > self.context_length {
            ids.truncate(self.context_length);
            ids[self.context_length - 1] = self.eos_id;
        }
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
