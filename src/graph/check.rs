//! The shapes of every operation, checked once, before a backend runs it. The graph calls
//! its backend only through [`Checked`], so a backend's [`Backend`] methods may take these
//! checks as given and test only their own limits (the GPU's vec4 widths, head-dim,
//! sequence and grid bounds). A failed check is `ClipError::Input`: the operation was
//! handed shapes that do not fit together, and both backends say so in the same words.

use super::{AttentionShape, Backend, Dims, Shape};
use crate::error::{ClipError, Result};
use crate::model::{Activation, LayerNorm, Linear, VisionConfig};

fn ensure(ok: bool, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(ClipError::Input(message()))
    }
}

fn shape_is(what: &str, w: &impl Shape, want: &[usize]) -> Result<()> {
    let got = w.shape();
    ensure(got == want, || {
        format!("{what} has shape {got:?}, expected {want:?}")
    })
}

/// A preprocessed pixel buffer holds `batch` images `[C, S, S]`.
pub fn pixels(config: &VisionConfig, len: usize, batch: usize) -> Result<()> {
    let (c, s) = (config.num_channels, config.image_size);
    ensure(Some(len) == batch.checked_mul(c * s * s), || {
        format!("pixel buffer holds {len} values, expected {batch} x {c} x {s} x {s}")
    })
}

/// Every token id is below the vocabulary size.
pub fn token_ids(ids: &[u32], vocab: usize) -> Result<()> {
    match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(id) => Err(ClipError::Input(format!(
            "token id {id} is outside the vocabulary of {vocab}"
        ))),
        None => Ok(()),
    }
}

/// A backend whose operations check their shapes first: the same operations as
/// [`Backend`], and the way the graph (and any other caller) should run them.
pub struct Checked<'b, B: Backend> {
    b: &'b mut B,
}

impl<'b, B: Backend> Checked<'b, B> {
    pub fn new(backend: &'b mut B) -> Self {
        Checked { b: backend }
    }

    /// [`Backend::input`]: `data` holds `rows x cols` values.
    pub fn input(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<B::Act> {
        ensure(Some(data.len()) == rows.checked_mul(cols), || {
            format!("input has {} values, expected {rows} x {cols}", data.len())
        })?;
        self.b.input(data, rows, cols)
    }

    /// [`Backend::linear`]: rows of `in_features`, a weight `[out, in]`, a bias `[out]`,
    /// a residual of the output's shape.
    pub fn linear(
        &mut self,
        x: &B::Act,
        linear: &Linear<B::Weight>,
        activation: Option<Activation>,
        residual: Option<&B::Act>,
    ) -> Result<B::Act> {
        let (n, k) = (linear.out_features, linear.in_features);
        let (m, cols) = x.dims();
        shape_is("linear weight", &linear.weight, &[n, k])?;
        if let Some(bias) = &linear.bias {
            shape_is("linear bias", bias, &[n])?;
        }
        ensure(cols == k, || {
            format!("linear layer [{n}, {k}] applied to a [{m}, {cols}] activation")
        })?;
        if let Some(r) = residual {
            let (rr, rc) = r.dims();
            ensure((rr, rc) == (m, n), || {
                format!("residual is [{rr}, {rc}], expected [{m}, {n}]")
            })?;
        }
        self.b.linear(x, linear, activation, residual)
    }

    /// [`Backend::layer_norm`]: rows of `dim`, a scale and a shift of `dim`.
    pub fn layer_norm(&mut self, x: &B::Act, ln: &LayerNorm<B::Weight>) -> Result<B::Act> {
        let (_, cols) = x.dims();
        ensure(cols == ln.dim, || {
            format!("LayerNorm over {} applied to rows of {cols}", ln.dim)
        })?;
        shape_is("LayerNorm weight", &ln.weight, &[ln.dim])?;
        shape_is("LayerNorm bias", &ln.bias, &[ln.dim])?;
        self.b.layer_norm(x, ln)
    }

    /// [`Backend::attention`]: `q` of `sequences * queries` rows, `k` and `v` of one shape
    /// with `sequences * keys` rows and `q`'s width, a width the heads divide, every valid
    /// length in `1..=keys`, and `queries == keys` when causal.
    pub fn attention(
        &mut self,
        q: &B::Act,
        k: &B::Act,
        v: &B::Act,
        shape: AttentionShape,
        valid_lens: &[usize],
    ) -> Result<B::Act> {
        let (queries, keys, heads) = (shape.queries, shape.keys, shape.heads);
        let (rows, width) = q.dims();
        let seqs = valid_lens.len();
        ensure(Some(rows) == seqs.checked_mul(queries), || {
            format!("attention queries: {rows} rows are not {seqs} sequences of {queries}")
        })?;
        let kv_rows = seqs.checked_mul(keys);
        for (what, a) in [("keys", k), ("values", v)] {
            let (r, c) = a.dims();
            ensure(Some(r) == kv_rows && c == width, || {
                format!(
                    "attention {what} are [{r}, {c}], expected {seqs} sequences of {keys} rows \
                     of {width}"
                )
            })?;
        }
        ensure(!shape.causal || queries == keys, || {
            format!("causal attention needs as many queries as keys, not {queries} and {keys}")
        })?;
        ensure(heads > 0 && width.is_multiple_of(heads), || {
            format!("attention width {width} does not split into {heads} heads")
        })?;
        if let Some(bad) = valid_lens.iter().find(|&&l| l == 0 || l > keys) {
            return Err(ClipError::Input(format!(
                "attention valid length {bad} is outside 1..={keys}"
            )));
        }
        self.b.attention(q, k, v, shape, valid_lens)
    }

    /// [`Backend::vision_embed`]: `batch * patches` patch rows of `dim`, a position
    /// embedding `[patches (+ 1 with a class embedding), dim]`, a class embedding `[dim]`.
    pub fn vision_embed(
        &mut self,
        patch_embeds: &B::Act,
        class_embedding: Option<&B::Weight>,
        position_embedding: &B::Weight,
        batch: usize,
    ) -> Result<B::Act> {
        let (rows, d) = patch_embeds.dims();
        let class = class_embedding.map(|c| c.shape());
        let pos = position_embedding.shape();
        let extra = usize::from(class.is_some());
        let patches = match *pos {
            [tokens, pd] if pd == d && tokens > extra => Some(tokens - extra),
            _ => None,
        };
        ensure(
            class.is_none_or(|c| c == [d])
                && patches.is_some_and(|p| batch.checked_mul(p) == Some(rows)),
            || {
                format!(
                    "vision embeddings: {rows} patch rows of {d} for {batch} images do not \
                     match the class {class:?} and position {pos:?} embeddings"
                )
            },
        )?;
        self.b
            .vision_embed(patch_embeds, class_embedding, position_embedding, batch)
    }

    /// [`Backend::text_embed`]: sequences of `seq_len` ids, each below the vocabulary
    /// (the token embedding's rows), and a position embedding of at least `seq_len` rows
    /// of the same width.
    pub fn text_embed(
        &mut self,
        ids: &[u32],
        seq_len: usize,
        token_embedding: &B::Weight,
        position_embedding: &B::Weight,
    ) -> Result<B::Act> {
        let tok = token_embedding.shape();
        let pos = position_embedding.shape();
        let (vocab, d) = match *tok {
            [vocab, d] => (vocab, d),
            _ => {
                return Err(ClipError::Input(format!(
                    "token embedding has shape {tok:?}, expected [vocab, dim]"
                )))
            }
        };
        ensure(
            matches!(*pos, [context, pd] if pd == d && context >= seq_len),
            || {
                format!(
                    "position embedding {pos:?} does not cover sequences of {seq_len} tokens of \
                     width {d}"
                )
            },
        )?;
        ensure(seq_len > 0 && ids.len().is_multiple_of(seq_len), || {
            format!(
                "{} token ids do not split into sequences of {seq_len}",
                ids.len()
            )
        })?;
        token_ids(ids, vocab)?;
        self.b
            .text_embed(ids, seq_len, token_embedding, position_embedding)
    }

    /// [`Backend::gather_rows`]: every row index inside `x`.
    pub fn gather_rows(&mut self, x: &B::Act, rows: &[usize]) -> Result<B::Act> {
        let (n, _) = x.dims();
        if let Some(r) = rows.iter().find(|&&r| r >= n) {
            return Err(ClipError::Input(format!(
                "row {r} is outside an activation of {n} rows"
            )));
        }
        self.b.gather_rows(x, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_counts_and_ids_are_checked_without_overflow() {
        let c = crate::model::ClipConfig::preset("vit-b-32")
            .unwrap()
            .vision_config;
        let per_image = 3 * 224 * 224;
        assert!(pixels(&c, 2 * per_image, 2).is_ok());
        assert!(pixels(&c, 0, 0).is_ok());
        let err = pixels(&c, per_image, 2).unwrap_err().to_string();
        assert!(err.contains("expected 2 x 3 x 224 x 224"), "{err}");
        assert!(pixels(&c, 0, usize::MAX).is_err());
        assert!(token_ids(&[0, 9], 10).is_ok());
        let err = token_ids(&[0, 10], 10).unwrap_err();
        assert_eq!(err.code(), "bad-input");
        assert!(err.to_string().contains("token id 10"), "{err}");
    }
}
