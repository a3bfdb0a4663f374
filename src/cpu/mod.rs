//! The CPU engine: the graph's operations on host memory, with SIMD kernels
//! (wasm `simd128` in the browser, AVX2/FMA or SSE2 natively, scalar elsewhere).
//!
//! `simd.rs` abstracts one vector register; `gemm.rs` (the blocked matmul with its fused
//! epilogue) and `ops.rs` (LayerNorm, attention, activations) are written once over it;
//! `reference.rs` keeps the plain scalar versions they are tested against. Weights of
//! linear layers are packed for the matmul once, at load time (`make_weight`).

pub mod gemm;
pub mod ops;
pub mod reference;
pub mod simd;

pub use gemm::{Epilogue, PackedMatrix};
pub use simd::Isa;

use crate::error::{ClipError, Result};
use crate::graph::Backend;
use crate::model::{Activation, HostTensor, LayerNorm, Linear, WeightRole};

/// A row-major activation matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>, // [rows, cols]
}

/// A weight as the CPU engine keeps it.
#[derive(Debug, Clone)]
pub struct CpuWeight {
    pub shape: Vec<usize>,
    /// Row-major values of vectors and tables; empty once a matrix is packed (one copy
    /// of each weight in memory, which matters in a browser tab).
    pub data: Vec<f32>,
    /// Matrices (`WeightRole::Matrix`, `[out, in]`), packed for the matmul.
    pub packed: Option<PackedMatrix>,
}

/// Turn a loaded tensor into CPU storage: matrices are packed for the matmul.
pub fn make_weight(role: WeightRole, t: HostTensor) -> Result<CpuWeight> {
    match (role, t.shape.as_slice()) {
        (WeightRole::Matrix, &[n, k]) => Ok(CpuWeight {
            packed: Some(PackedMatrix::pack(&t.data, n, k)?),
            shape: t.shape,
            data: Vec::new(),
        }),
        (WeightRole::Matrix, shape) => Err(ClipError::Input(format!(
            "tensor `{}` is used as a matrix but has shape {shape:?}",
            t.name
        ))),
        _ => Ok(CpuWeight {
            shape: t.shape,
            data: t.data,
            packed: None,
        }),
    }
}

#[derive(Debug, Default)]
pub struct CpuBackend;

impl Backend for CpuBackend {
    type Weight = CpuWeight;
    type Act = Tensor;

    fn input(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
        if data.len() != rows * cols {
            return Err(ClipError::Input(format!(
                "input has {} values, expected {rows} x {cols}",
                data.len()
            )));
        }
        Ok(Tensor {
            rows,
            cols,
            data: data.to_vec(),
        })
    }

    fn linear(
        &mut self,
        x: &Tensor,
        linear: &Linear<CpuWeight>,
        activation: Option<Activation>,
        residual: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (n, k) = (linear.out_features, linear.in_features);
        if x.cols != k {
            return Err(ClipError::Input(format!(
                "linear layer takes {k} features, got rows of {}",
                x.cols
            )));
        }
        // A matrix built by hand rather than by `make_weight` is packed here.
        let repacked;
        let w = match &linear.weight.packed {
            Some(p) => p,
            None => {
                repacked = PackedMatrix::pack(&linear.weight.data, n, k)?;
                &repacked
            }
        };
        if w.n() != n || w.k() != k {
            return Err(ClipError::Input(format!(
                "linear weight is {} x {}, expected {n} x {k}",
                w.n(),
                w.k()
            )));
        }
        let mut out = vec![0f32; x.rows * n]; // [rows, out]
        gemm::matmul(
            Isa::best(),
            &x.data,
            x.rows,
            w,
            &mut out,
            &Epilogue {
                bias: linear.bias.as_ref().map(|b| b.data.as_slice()),
                activation,
                residual: residual.map(|r| r.data.as_slice()),
            },
        )?;
        Ok(Tensor {
            rows: x.rows,
            cols: n,
            data: out,
        })
    }

    fn layer_norm(&mut self, x: &Tensor, ln: &LayerNorm<CpuWeight>) -> Result<Tensor> {
        let mut out = vec![0f32; x.data.len()];
        ops::layer_norm(
            Isa::best(),
            &x.data,
            &ln.weight.data,
            &ln.bias.data,
            ln.eps,
            x.cols,
            &mut out,
        )?;
        Ok(Tensor {
            rows: x.rows,
            cols: x.cols,
            data: out,
        })
    }

    fn attention(
        &mut self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        seq_len: usize,
        heads: usize,
        causal: bool,
        valid_lens: &[usize],
    ) -> Result<Tensor> {
        let mut out = vec![0f32; q.data.len()];
        ops::attention(
            Isa::best(),
            &q.data,
            &k.data,
            &v.data,
            &mut out,
            q.cols,
            seq_len,
            heads,
            causal,
            valid_lens,
        )?;
        Ok(Tensor {
            rows: q.rows,
            cols: q.cols,
            data: out,
        })
    }

    fn vision_embed(
        &mut self,
        patch_embeds: &Tensor,
        class_embedding: &CpuWeight,
        position_embedding: &CpuWeight,
        batch: usize,
    ) -> Result<Tensor> {
        let d = patch_embeds.cols;
        let patches = patch_embeds.rows / batch.max(1);
        let tokens = patches + 1;
        let pos = &position_embedding.data;
        if patches * batch != patch_embeds.rows
            || class_embedding.data.len() != d
            || pos.len() < tokens * d
        {
            return Err(ClipError::Input(format!(
                "vision embeddings: {} patch rows of {d} for {batch} images do not match the \
                 class ({}) and position ({}) embeddings",
                patch_embeds.rows,
                class_embedding.data.len(),
                pos.len()
            )));
        }
        let mut out = Vec::with_capacity(batch * tokens * d);
        for b in 0..batch {
            out.extend(
                class_embedding
                    .data
                    .iter()
                    .zip(&pos[..d])
                    .map(|(c, p)| c + p),
            );
            for p in 0..patches {
                let row = &patch_embeds.data[(b * patches + p) * d..][..d];
                out.extend(row.iter().zip(&pos[(p + 1) * d..][..d]).map(|(x, p)| x + p));
            }
        }
        Ok(Tensor {
            rows: batch * tokens,
            cols: d,
            data: out,
        })
    }

    fn text_embed(
        &mut self,
        ids: &[u32],
        seq_len: usize,
        token_embedding: &CpuWeight,
        position_embedding: &CpuWeight,
    ) -> Result<Tensor> {
        let d = token_embedding.shape.get(1).copied().unwrap_or(0);
        let vocab = token_embedding.data.len() / d.max(1);
        if seq_len == 0
            || !ids.len().is_multiple_of(seq_len)
            || position_embedding.data.len() < seq_len * d
            || ids.iter().any(|&id| id as usize >= vocab)
        {
            return Err(ClipError::Input(format!(
                "text embeddings: {} ids in sequences of {seq_len} do not fit a vocabulary of \
                 {vocab} and {} positions",
                ids.len(),
                position_embedding.data.len() / d.max(1)
            )));
        }
        let mut out = Vec::with_capacity(ids.len() * d);
        for (i, &id) in ids.iter().enumerate() {
            let tok = &token_embedding.data[id as usize * d..][..d];
            let pos = &position_embedding.data[(i % seq_len) * d..][..d];
            out.extend(tok.iter().zip(pos).map(|(t, p)| t + p));
        }
        Ok(Tensor {
            rows: ids.len(),
            cols: d,
            data: out,
        })
    }

    fn gather_rows(&mut self, x: &Tensor, rows: &[usize]) -> Result<Tensor> {
        if let Some(&r) = rows.iter().find(|&&r| r >= x.rows) {
            return Err(ClipError::Input(format!(
                "row {r} requested from an activation of {} rows",
                x.rows
            )));
        }
        let mut out = Vec::with_capacity(rows.len() * x.cols);
        for &r in rows {
            out.extend_from_slice(&x.data[r * x.cols..][..x.cols]);
        }
        Ok(Tensor {
            rows: rows.len(),
            cols: x.cols,
            data: out,
        })
    }

    fn read(&mut self, x: &Tensor) -> impl std::future::Future<Output = Result<Vec<f32>>> {
        std::future::ready(Ok(x.data.clone()))
    }
}
