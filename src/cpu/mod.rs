//! The CPU engine: the graph's operations on host memory, with SIMD kernels
//! (wasm `simd128` in the browser, AVX2/FMA or SSE natively).

pub mod kernels;

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
    pub data: Vec<f32>,
}

/// Turn a loaded tensor into CPU storage.
pub fn make_weight(_role: WeightRole, t: HostTensor) -> Result<CpuWeight> {
    Ok(CpuWeight {
        shape: t.shape,
        data: t.data,
    })
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
        let mut out = vec![0f32; x.rows * n];
        kernels::matmul_nt(&x.data, &linear.weight.data, &mut out, x.rows, k, n);
        kernels::epilogue(
            &mut out,
            n,
            linear.bias.as_ref().map(|b| b.data.as_slice()),
            activation,
            residual.map(|r| r.data.as_slice()),
        );
        Ok(Tensor {
            rows: x.rows,
            cols: n,
            data: out,
        })
    }

    fn layer_norm(&mut self, x: &Tensor, ln: &LayerNorm<CpuWeight>) -> Result<Tensor> {
        let mut out = vec![0f32; x.data.len()];
        kernels::layer_norm(
            &x.data,
            &ln.weight.data,
            &ln.bias.data,
            ln.eps,
            x.cols,
            &mut out,
        );
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
        kernels::attention(
            &q.data, &k.data, &v.data, &mut out, q.cols, seq_len, heads, causal, valid_lens,
        );
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
        let d = token_embedding.shape[1];
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
