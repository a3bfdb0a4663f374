//! The CLIP graph, written once over the small set of operations in [`Backend`]; the CPU
//! backend (`cpu/`) and the GPU backend (`gpu/`) implement those operations, never the
//! graph. The graph runs them through [`Checked`] (`check.rs`), which checks every
//! operation's shapes once, so the backends need not.
//! Follows `transformers/models/clip/modeling_clip.py` (CLIPVisionTransformer,
//! CLIPTextTransformer, CLIPEncoderLayer) and `models/siglip/modeling_siglip.py`
//! (SiglipVisionTransformer, SiglipTextTransformer, SiglipMultiheadAttentionPoolingHead)
//! at transformers 5.24.

pub mod check;

pub use check::Checked;

use crate::error::{ClipError, Result};
use crate::model::{
    Activation, EncoderLayer, LayerNorm, Linear, PoolingHead, TextConfig, TextTower, VisionPooling,
    VisionTower,
};
use std::future::Future;

/// An activation's `(rows, cols)`, which the graph's checks read.
pub trait Dims {
    fn dims(&self) -> (usize, usize);
}

/// The shape a weight was loaded with, which the graph's checks read.
pub trait Shape {
    fn shape(&self) -> &[usize];
}

/// The operations the graph needs. Activations are row-major matrices `[rows, cols]`
/// that live wherever the backend keeps them; only [`Backend::read`] brings one back.
///
/// Callers go through [`Checked`], which checks each operation's shapes against what its
/// documentation here says; an implementation may take them as given (without panicking
/// or reading out of bounds when they are not) and checks only its own limits.
pub trait Backend {
    /// How the backend stores one weight tensor.
    type Weight: Shape;
    /// An activation matrix on the backend.
    type Act: Dims;

    /// Host data `[rows, cols]` onto the backend.
    fn input(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<Self::Act>;

    /// `act(x W^T + b) + residual`, with `W` `[out, in]` as stored by `Linear`.
    fn linear(
        &mut self,
        x: &Self::Act,
        linear: &Linear<Self::Weight>,
        activation: Option<Activation>,
        residual: Option<&Self::Act>,
    ) -> Result<Self::Act>;

    /// LayerNorm over each row.
    fn layer_norm(&mut self, x: &Self::Act, ln: &LayerNorm<Self::Weight>) -> Result<Self::Act>;

    /// Multi-head scaled dot-product attention over `valid_lens.len()` sequences. `q` is
    /// `[sequences * shape.queries, heads * head_dim]` (sequence `s` holds rows
    /// `s * queries ..`), `k` and `v` `[sequences * shape.keys, heads * head_dim]` (rows
    /// `s * keys ..`). Query `i` of sequence `s` sees key `j` when `j < valid_lens[s]` and,
    /// if `causal` (then `queries == keys`), `j <= i`. Scale `1/sqrt(head_dim)`. Returns
    /// `q`'s shape.
    fn attention(
        &mut self,
        q: &Self::Act,
        k: &Self::Act,
        v: &Self::Act,
        shape: AttentionShape,
        valid_lens: &[usize],
    ) -> Result<Self::Act>;

    /// Vision embeddings for `batch` images from patch embeddings `[batch * patches, hidden]`.
    /// With a class embedding (CLIP) output row `b * (patches + 1)` is `class + pos[0]` and
    /// row `b * (patches + 1) + 1 + p` is `patch_embeds[b * patches + p] + pos[1 + p]`;
    /// without one (SigLIP) row `b * patches + p` is `patch_embeds[b * patches + p] + pos[p]`.
    fn vision_embed(
        &mut self,
        patch_embeds: &Self::Act,
        class_embedding: Option<&Self::Weight>,
        position_embedding: &Self::Weight,
        batch: usize,
    ) -> Result<Self::Act>;

    /// Text embeddings: row `i` is `token_embedding[ids[i]] + position_embedding[i % seq_len]`.
    /// Every id is below the vocabulary size ([`Checked::text_embed`] makes sure of it).
    fn text_embed(
        &mut self,
        ids: &[u32],
        seq_len: usize,
        token_embedding: &Self::Weight,
        position_embedding: &Self::Weight,
    ) -> Result<Self::Act>;

    /// The rows `rows` of `x`, in that order.
    fn gather_rows(&mut self, x: &Self::Act, rows: &[usize]) -> Result<Self::Act>;

    /// Bring an activation back as `[rows * cols]` f32.
    fn read(&mut self, x: &Self::Act) -> impl Future<Output = Result<Vec<f32>>>;

    /// A pass failed before [`Backend::read`]: forget what it recorded, so that none of it
    /// runs with (or is blamed on) the next pass.
    fn abandon_pass(&mut self) {}
}

/// What one attention call computes (see [`Backend::attention`]): `queries` query rows and
/// `keys` key/value rows per sequence, `heads` heads; `causal` masks key `j > i` for query
/// `i` and needs `queries == keys`. Self-attention has `queries == keys`; SigLIP's pooling
/// head has one query per image over all its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    pub queries: usize,
    pub keys: usize,
    pub heads: usize,
    pub causal: bool,
}

impl AttentionShape {
    /// Every row of a sequence of `len` attends to the others (or, if `causal`, to those
    /// before it).
    pub fn self_attention(len: usize, heads: usize, causal: bool) -> Self {
        AttentionShape {
            queries: len,
            keys: len,
            heads,
            causal,
        }
    }
}

/// One encoder layer (pre-LN transformer block), as CLIPEncoderLayer.
fn encoder_layer<B: Backend>(
    b: &mut Checked<B>,
    layer: &EncoderLayer<B::Weight>,
    h: &B::Act,
    seq_len: usize,
    causal: bool,
    valid_lens: &[usize],
    activation: Activation,
) -> Result<B::Act> {
    let attn = &layer.self_attn;
    let x = b.layer_norm(h, &layer.layer_norm1)?;
    let q = b.linear(&x, &attn.q_proj, None, None)?;
    let k = b.linear(&x, &attn.k_proj, None, None)?;
    let v = b.linear(&x, &attn.v_proj, None, None)?;
    let shape = AttentionShape::self_attention(seq_len, attn.num_heads, causal);
    let ctx = b.attention(&q, &k, &v, shape, valid_lens)?;
    let h = b.linear(&ctx, &attn.out_proj, None, Some(h))?;
    let x = b.layer_norm(&h, &layer.layer_norm2)?;
    let x = b.linear(&x, &layer.mlp.fc1, Some(activation), None)?;
    b.linear(&x, &layer.mlp.fc2, None, Some(&h))
}

/// The encoder layers over sequences of `seq_len` rows, which both towers of both
/// families share.
struct Stack<'a> {
    seq_len: usize,
    causal: bool,
    valid_lens: &'a [usize],
    activation: Activation,
}

impl Stack<'_> {
    /// The encoder output; with `hidden_states`, the input of every layer is kept there.
    fn run<B: Backend>(
        &self,
        b: &mut Checked<B>,
        layers: &[EncoderLayer<B::Weight>],
        mut h: B::Act,
        mut hidden_states: Option<&mut Vec<B::Act>>,
    ) -> Result<B::Act> {
        for layer in layers {
            let next = encoder_layer(
                b,
                layer,
                &h,
                self.seq_len,
                self.causal,
                self.valid_lens,
                self.activation,
            )?;
            let input = std::mem::replace(&mut h, next);
            if let Some(states) = hidden_states.as_deref_mut() {
                states.push(input);
            }
        }
        Ok(h)
    }
}

/// Pool `rows` of `h` (one per sequence), LayerNorm them and project: CLIP's towers and
/// SigLIP's text tower. LayerNorm is per row, so pooling first and normalising only the
/// pooled rows gives the same result as transformers' normalise-everything-then-pool.
fn pool_norm_project<B: Backend>(
    b: &mut Checked<B>,
    h: &B::Act,
    rows: &[usize],
    norm: &LayerNorm<B::Weight>,
    projection: &Linear<B::Weight>,
) -> Result<B::Act> {
    let pooled = b.gather_rows(h, rows)?;
    let pooled = b.layer_norm(&pooled, norm)?;
    b.linear(&pooled, projection, None, None)
}

/// SigLIP's attention-pooling head over `x` (`batch` images of `tokens` rows, after
/// `post_layernorm`): the probe attends over each image's tokens, then
/// `h + mlp(layernorm(h))`. One row per image.
fn pooling_head<B: Backend>(
    b: &mut Checked<B>,
    head: &PoolingHead<B::Weight>,
    x: &B::Act,
    batch: usize,
    tokens: usize,
    activation: Activation,
) -> Result<B::Act> {
    let a = &head.attention;
    let dim = head.probe.len();
    let probe = b.input(&head.probe.repeat(batch), batch, dim)?;
    let q = b.linear(&probe, &a.q_proj, None, None)?;
    let k = b.linear(x, &a.k_proj, None, None)?;
    let v = b.linear(x, &a.v_proj, None, None)?;
    let shape = AttentionShape {
        queries: 1,
        keys: tokens,
        heads: a.num_heads,
        causal: false,
    };
    let ctx = b.attention(&q, &k, &v, shape, &vec![tokens; batch])?;
    let h = b.linear(&ctx, &a.out_proj, None, None)?;
    let y = b.layer_norm(&h, &head.layernorm)?;
    let y = b.linear(&y, &head.mlp.fc1, Some(activation), None)?;
    b.linear(&y, &head.mlp.fc2, None, Some(&h))
}

/// Flatten `[batch, C, S, S]` pixels into patch rows `[batch * grid^2, C * P * P]`, inner
/// order (channel, y, x) to match the conv weight `[hidden, C, P, P]`. Pixels right of or
/// below the last whole patch are dropped, as the stride-P conv does.
pub fn patchify(
    pixels: &[f32],
    batch: usize,
    channels: usize,
    image_size: usize,
    patch: usize,
) -> Vec<f32> {
    let grid = image_size / patch;
    let mut out = Vec::with_capacity(batch * grid * grid * channels * patch * patch);
    for b in 0..batch {
        let img = &pixels[b * channels * image_size * image_size..];
        for gy in 0..grid {
            for gx in 0..grid {
                for c in 0..channels {
                    for py in 0..patch {
                        let row = (c * image_size + gy * patch + py) * image_size + gx * patch;
                        out.extend_from_slice(&img[row..row + patch]);
                    }
                }
            }
        }
    }
    out
}

/// What either tower returns: projected features and, on request, the hidden states
/// (the input of every encoder layer, then the encoder output), as activations.
pub struct Forward<A> {
    /// `[batch, projection_dim]`, before L2 normalisation.
    pub features: A,
    /// `[batch * tokens, hidden]` each; empty unless asked for.
    pub hidden_states: Vec<A>,
    /// SigLIP's vision `last_hidden_state` (every token after `post_layernorm`: the
    /// pooling head's input), when hidden states are asked for; `None` otherwise.
    pub normed_hidden_state: Option<A>,
}

/// The vision tower on `batch` preprocessed images `[batch, C, S, S]`.
pub fn vision_forward<B: Backend>(
    b: &mut B,
    tower: &VisionTower<B::Weight>,
    pixels: &[f32],
    batch: usize,
    keep_hidden_states: bool,
) -> Result<Forward<B::Act>> {
    let c = &tower.config;
    check::pixels(c, pixels.len(), batch)?;
    let b = &mut Checked::new(b);
    let patches = patchify(pixels, batch, c.num_channels, c.image_size, c.patch_size);
    let patch_rows = batch * c.num_patches();
    let x = b.input(&patches, patch_rows, c.patch_dim())?;
    let x = b.linear(&x, &tower.patch_embedding, None, None)?;
    let x = b.vision_embed(
        &x,
        tower.class_embedding.as_ref(),
        &tower.position_embedding,
        batch,
    )?;
    let h = match &tower.pre_layrnorm {
        Some(ln) => b.layer_norm(&x, ln)?,
        None => x,
    };

    let tokens = c.num_positions();
    let stack = Stack {
        seq_len: tokens,
        causal: false,
        valid_lens: &vec![tokens; batch],
        activation: c.hidden_act,
    };
    let mut hidden_states = Vec::new();
    let h = stack.run(
        b,
        &tower.layers,
        h,
        keep_hidden_states.then_some(&mut hidden_states),
    )?;
    let (features, normed_hidden_state) = match &tower.pooling {
        VisionPooling::ClassToken { visual_projection } => {
            // The class token of each image.
            let class_rows: Vec<usize> = (0..batch).map(|i| i * tokens).collect();
            let features =
                pool_norm_project(b, &h, &class_rows, &tower.post_layernorm, visual_projection)?;
            (features, None)
        }
        VisionPooling::Head(head) => {
            let normed = b.layer_norm(&h, &tower.post_layernorm)?;
            let features = pooling_head(b, head, &normed, batch, tokens, c.hidden_act)?;
            (features, keep_hidden_states.then_some(normed))
        }
    };
    if keep_hidden_states {
        hidden_states.push(h);
    }
    Ok(Forward {
        features,
        hidden_states,
        normed_hidden_state,
    })
}

/// Token ids for the text tower: `batch` sequences of `seq_len`, the row of each sequence
/// that is pooled, and how many leading tokens of each are real (the attention mask).
#[derive(Debug, Clone, PartialEq)]
pub struct TextBatch {
    pub ids: Vec<u32>,
    pub seq_len: usize,
    pub pool_positions: Vec<usize>,
    pub valid_lens: Vec<usize>,
}

impl TextBatch {
    /// Build a batch from tokenised texts. CLIP (a causal tower): each text is
    /// `<|startoftext|> ... <|endoftext|>` without padding; only the pooled row is read, so
    /// every sequence stops right after its end token: the batch is as long as its longest
    /// text, not the full context, with the same result at a fraction of the cost. SigLIP
    /// (bidirectional, pooled at the last position): the padding is part of the input, so
    /// every text is padded with `pad_id` to the full context, as its tokenizer pads.
    pub fn from_tokens(texts: &[Vec<u32>], tower: &TextConfig, pad_id: u32) -> Result<Self> {
        let context = tower.max_position_embeddings;
        let mut pool_positions = Vec::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            if t.is_empty() || t.len() > context {
                return Err(ClipError::Input(format!(
                    "text {i} has {} tokens; expected 1..={context}",
                    t.len()
                )));
            }
            pool_positions.push(tower_pool_position(t, context, tower));
        }
        let seq_len = pool_positions.iter().map(|p| p + 1).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(texts.len() * seq_len);
        for t in texts {
            let n = t.len().min(seq_len);
            ids.extend_from_slice(&t[..n]);
            ids.extend(std::iter::repeat_n(pad_id, seq_len - n));
        }
        let valid_lens = pool_positions.iter().map(|p| p + 1).collect();
        let batch = TextBatch {
            ids,
            seq_len,
            pool_positions,
            valid_lens,
        };
        check::token_ids(&batch.ids, tower.vocab_size)?;
        Ok(batch)
    }

    /// A batch exactly as given: `ids` `[batch, seq_len]` with an attention mask (1 = real
    /// token), as the reference's tokenizer outputs it (SigLIP has no mask: pass all ones).
    /// Used by parity tests to run the full context and compare every hidden state row.
    pub fn full(ids: Vec<u32>, mask: &[u32], seq_len: usize, tower: &TextConfig) -> Result<Self> {
        if seq_len == 0
            || !ids.len().is_multiple_of(seq_len)
            || mask.len() != ids.len()
            || seq_len > tower.max_position_embeddings
        {
            return Err(ClipError::Input(
                "token ids and mask must both be [batch, seq_len <= context]".into(),
            ));
        }
        let pool_positions = ids
            .chunks(seq_len)
            .map(|t| tower_pool_position(t, seq_len, tower))
            .collect();
        let valid_lens = mask
            .chunks(seq_len)
            .map(|m| m.iter().filter(|&&v| v != 0).count().max(1))
            .collect();
        let batch = TextBatch {
            ids,
            seq_len,
            pool_positions,
            valid_lens,
        };
        check::token_ids(&batch.ids, tower.vocab_size)?;
        Ok(batch)
    }

    pub fn len(&self) -> usize {
        self.pool_positions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pool_positions.is_empty()
    }
}

/// The row a tower pools of a text padded to `padded_len`: CLIP's end token
/// ([`pool_position`]), SigLIP's last position.
fn tower_pool_position(ids: &[u32], padded_len: usize, tower: &TextConfig) -> usize {
    match tower.causal {
        true => pool_position(ids, tower.eos_token_id),
        false => padded_len - 1,
    }
}

/// The pooled position, as transformers picks it: with the legacy `eos_token_id == 2`
/// the argmax of the ids (the first `<|endoftext|>`, the highest id); otherwise the first
/// occurrence of `eos_token_id` (the last position when there is none).
pub fn pool_position(ids: &[u32], eos_token_id: u32) -> usize {
    if eos_token_id == 2 {
        let max = ids.iter().copied().max().unwrap_or(0);
        ids.iter().position(|&t| t == max).unwrap_or(0)
    } else {
        ids.iter()
            .position(|&t| t == eos_token_id)
            .unwrap_or(ids.len().saturating_sub(1))
    }
}

/// The text tower on a batch of token ids.
pub fn text_forward<B: Backend>(
    b: &mut B,
    tower: &TextTower<B::Weight>,
    batch: &TextBatch,
    keep_hidden_states: bool,
) -> Result<Forward<B::Act>> {
    let c = &tower.config;
    // The fields are public: a batch need not come from `from_tokens` or `full`. The ids,
    // `seq_len` and valid lengths are checked by the operations that use them.
    if batch.pool_positions.len() != batch.valid_lens.len()
        || batch.pool_positions.iter().any(|&p| p >= batch.seq_len)
    {
        return Err(ClipError::Input(format!(
            "text batch pools positions {:?} of {} sequences of {}",
            batch.pool_positions,
            batch.valid_lens.len(),
            batch.seq_len
        )));
    }
    let b = &mut Checked::new(b);
    let h = b.text_embed(
        &batch.ids,
        batch.seq_len,
        &tower.token_embedding,
        &tower.position_embedding,
    )?;
    let stack = Stack {
        seq_len: batch.seq_len,
        causal: c.causal,
        valid_lens: &batch.valid_lens,
        activation: c.hidden_act,
    };
    let mut hidden_states = Vec::new();
    let h = stack.run(
        b,
        &tower.layers,
        h,
        keep_hidden_states.then_some(&mut hidden_states),
    )?;
    let rows: Vec<usize> = batch
        .pool_positions
        .iter()
        .enumerate()
        .map(|(i, p)| i * batch.seq_len + p)
        .collect();
    let features = pool_norm_project(b, &h, &rows, &tower.final_layer_norm, &tower.projection)?;
    if keep_hidden_states {
        hidden_states.push(h);
    }
    Ok(Forward {
        features,
        hidden_states,
        normed_hidden_state: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patchify_orders_channel_then_rows() {
        // One 2-channel 4x4 image, patch 2: patch (gy=0, gx=1) channel 1 is rows 0..2, cols 2..4.
        let px: Vec<f32> = (0..32).map(|v| v as f32).collect();
        let p = patchify(&px, 1, 2, 4, 2);
        assert_eq!(p.len(), 4 * 8);
        assert_eq!(&p[8..16], &[2.0, 3.0, 6.0, 7.0, 18.0, 19.0, 22.0, 23.0]);
    }

    #[test]
    fn text_batch_stops_after_the_longest_end_token() {
        let cfg = crate::model::ClipConfig::preset("vit-b-32")
            .unwrap()
            .text_config;
        let b = TextBatch::from_tokens(&[vec![49406, 320, 49407], vec![49406, 49407]], &cfg, 49407)
            .unwrap();
        assert_eq!(b.seq_len, 3);
        assert_eq!(b.pool_positions, vec![2, 1]);
        assert_eq!(b.ids, vec![49406, 320, 49407, 49406, 49407, 49407]);
        assert!(TextBatch::from_tokens(&[vec![49406, 60000]], &cfg, 49407).is_err());
    }
}
