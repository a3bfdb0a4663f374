//! The CPU backend: the graph's operations on host memory, with SIMD kernels
//! (wasm `simd128` in the browser, AVX2/FMA or SSE2 natively, scalar elsewhere).
//!
//! `simd.rs` abstracts one vector register; `gemm.rs` (the blocked matmul with its fused
//! epilogue) and `ops.rs` (LayerNorm, attention, activations) are written once over it;
//! `reference.rs` keeps the plain scalar versions they are tested against. Weights of
//! linear layers are packed for the matmul once, at load time (`make_weight`).
//!
//! The shapes of every operation are checked by the graph (`graph::Checked`); the CPU has
//! no limits of its own. What it is handed unchecked is still never read out of bounds:
//! the kernels check lengths before their unsafe loops and rows are sliced with `get`,
//! and a mismatch there is a `ClipError::Internal`.

pub mod gemm;
pub mod ops;
pub mod pool;
pub mod qdot;
pub mod quant;
pub mod reference;
pub mod simd;

pub use gemm::{Epilogue, PackedMatrix};
pub use simd::Isa;

use crate::error::{ClipError, Result};
use crate::graph::{AttentionShape, Backend, Dims, Shape};
use crate::model::quantize::Q8;
use crate::model::{Activation, HostTensor, LayerNorm, Linear, WeightRole};

/// A row-major activation matrix. Its buffer goes back to this thread's [`recycled`]
/// buffers when it is dropped, so a forward pass after the first allocates nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>, // [rows, cols]
}

impl Drop for Tensor {
    fn drop(&mut self) {
        recycled::give(std::mem::take(&mut self.data));
    }
}

/// Activation buffers kept between operations and calls: a forward pass frees and asks
/// for the same few sizes again and again (natively, large blocks would otherwise go back
/// to the OS and fault in again; in wasm, memory would fragment).
mod recycled {
    use std::cell::RefCell;

    /// Buffers kept per thread; a pass holds about a handful alive at once.
    const KEEP: usize = 16;

    thread_local! {
        static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }

    /// A zeroed buffer of `len` values: the smallest kept one that fits, or a new one.
    pub(super) fn zeroed(len: usize) -> Vec<f32> {
        let mut v = with_capacity(len);
        v.resize(len, 0.0);
        v
    }

    /// A buffer of `len` values for a kernel that writes every one of them (a matmul's
    /// output): a kept buffer's old values, zeroed only where it has to grow. Zeroing a
    /// 5 MB output first would be a serial pass on the calling thread before every
    /// threaded matmul.
    pub(super) fn overwritten(len: usize) -> Vec<f32> {
        let mut v = kept(len);
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, 0.0);
        }
        v
    }

    /// An empty buffer with room for `len` values.
    pub(super) fn with_capacity(len: usize) -> Vec<f32> {
        let mut v = kept(len);
        v.clear();
        v
    }

    /// The smallest kept buffer with room for `len` values, as it was given back, or a new
    /// empty one.
    fn kept(len: usize) -> Vec<f32> {
        let found = FREE.with(|f| {
            let mut free = f.borrow_mut();
            let best = (0..free.len())
                .filter(|&i| free[i].capacity() >= len)
                .min_by_key(|&i| free[i].capacity());
            best.map(|i| free.swap_remove(i))
        });
        found.unwrap_or_else(|| Vec::with_capacity(len))
    }

    pub(super) fn give(v: Vec<f32>) {
        if v.capacity() == 0 {
            return;
        }
        // `try_with`: a tensor dropped while the thread exits is simply freed.
        let _ = FREE.try_with(|f| {
            let mut free = f.borrow_mut();
            if free.len() == KEEP {
                // Keep the larger buffers: they are the expensive ones to get back.
                let smallest = (0..free.len()).min_by_key(|&i| free[i].capacity());
                match smallest {
                    Some(i) if free[i].capacity() < v.capacity() => {
                        free.swap_remove(i);
                    }
                    _ => return,
                }
            }
            free.push(v);
        });
    }
}

impl Dims for Tensor {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

/// A weight as the CPU backend keeps it.
#[derive(Debug, Clone)]
pub struct CpuWeight {
    pub shape: Vec<usize>,
    /// Row-major values of vectors and tables; empty once a matrix is packed (one copy
    /// of each weight in memory, which matters in a browser tab).
    pub data: Vec<f32>,
    /// Matrices (`WeightRole::Matrix`, `[out, in]`), packed for the matmul (f32 or int8).
    pub packed: Option<PackedMatrix>,
    /// An int8 token table `[vocab, hidden]`, rows dequantised as they are looked up.
    pub rows_i8: Option<Q8>,
}

impl CpuWeight {
    /// Bytes this weight holds.
    pub fn bytes(&self) -> usize {
        4 * self.data.len()
            + self.packed.as_ref().map_or(0, PackedMatrix::bytes)
            + self.rows_i8.as_ref().map_or(0, Q8::bytes)
    }
}

impl Shape for CpuWeight {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

/// Turn a loaded tensor into CPU storage: matrices are packed for the matmul.
pub fn make_weight(role: WeightRole, t: HostTensor) -> Result<CpuWeight> {
    if let Some(q) = t.quant {
        let dims = [q.rows, q.cols];
        return match role {
            WeightRole::Matrix | WeightRole::Table if t.shape == dims => Ok(CpuWeight {
                packed: match role {
                    WeightRole::Matrix => Some(PackedMatrix::pack_i8(&q)?),
                    _ => None,
                },
                rows_i8: (role == WeightRole::Table).then_some(q),
                shape: t.shape,
                data: Vec::new(),
            }),
            _ => Err(ClipError::Internal(format!(
                "tensor `{}` of shape {:?} is int8 {dims:?} as a {role:?}",
                t.name, t.shape
            ))),
        };
    }
    match (role, t.shape.as_slice()) {
        (WeightRole::Matrix, &[n, k]) => Ok(CpuWeight {
            packed: Some(PackedMatrix::pack(&t.data, n, k)?),
            shape: t.shape,
            data: Vec::new(),
            rows_i8: None,
        }),
        (WeightRole::Matrix, shape) => Err(ClipError::Internal(format!(
            "tensor `{}` is used as a matrix but has shape {shape:?}",
            t.name
        ))),
        _ => Ok(CpuWeight {
            shape: t.shape,
            data: t.data,
            packed: None,
            rows_i8: None,
        }),
    }
}

/// Row `r` of a row-major matrix of `cols` columns.
fn row(data: &[f32], cols: usize, r: usize) -> Result<&[f32]> {
    r.checked_mul(cols)
        .and_then(|start| data.get(start..start.checked_add(cols)?))
        .ok_or_else(|| {
            ClipError::Internal(format!(
                "row {r} of {cols} read past {} values: shapes not checked by the graph",
                data.len()
            ))
        })
}

/// The CPU backend, running its matmuls and attention on up to `threads` threads
/// (`pool.rs`; 1 runs everything on the calling thread).
#[derive(Debug)]
pub struct CpuBackend {
    threads: usize,
}

impl Default for CpuBackend {
    /// One thread: what the single-threaded wasm build always has.
    fn default() -> Self {
        CpuBackend { threads: 1 }
    }
}

impl CpuBackend {
    /// A backend on `threads` threads, 0 for every core (capped at [`pool::MAX_THREADS`]).
    /// Natively the pool's OS threads are started here; in wasm the JS layer starts its
    /// workers, and a loop uses as many as have joined.
    pub fn with_threads(threads: usize) -> Self {
        let threads = match threads {
            0 => pool::cores(),
            n => n,
        }
        .clamp(1, pool::MAX_THREADS);
        pool::ensure_workers(threads);
        CpuBackend { threads }
    }

    /// Threads this backend's loops may use (the workers that exist now, at most).
    pub fn threads(&self) -> usize {
        self.threads.min(pool::available())
    }
}

impl Backend for CpuBackend {
    type Weight = CpuWeight;
    type Act = Tensor;

    fn input(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<Tensor> {
        let mut buf = recycled::with_capacity(data.len());
        buf.extend_from_slice(data);
        Ok(Tensor {
            rows,
            cols,
            data: buf,
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
            return Err(ClipError::Internal(format!(
                "packed linear weight is {} x {}, expected {n} x {k}",
                w.n(),
                w.k()
            )));
        }
        // [rows, out]; the matmul writes every value (the first K slice overwrites).
        let mut out = recycled::overwritten(x.rows * n);
        gemm::matmul_threads(
            Isa::best(),
            self.threads,
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
        let mut out = recycled::overwritten(x.data.len()); // every row is written
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
        shape: AttentionShape,
        valid_lens: &[usize],
    ) -> Result<Tensor> {
        let mut out = recycled::zeroed(q.data.len());
        ops::attention_threads(
            Isa::best(),
            self.threads,
            &q.data,
            &k.data,
            &v.data,
            &mut out,
            q.cols,
            shape,
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
        class_embedding: Option<&CpuWeight>,
        position_embedding: &CpuWeight,
        batch: usize,
    ) -> Result<Tensor> {
        let d = patch_embeds.cols;
        let pos = &position_embedding.data;
        let tokens = pos.len() / d.max(1);
        let first = usize::from(class_embedding.is_some()); // the first patch's position
        let patches = tokens.saturating_sub(first);
        let mut out = recycled::with_capacity(batch * tokens * d);
        for b in 0..batch {
            if let Some(class) = class_embedding {
                out.extend(class.data.iter().zip(row(pos, d, 0)?).map(|(c, p)| c + p));
            }
            for p in 0..patches {
                let x = row(&patch_embeds.data, d, b * patches + p)?;
                out.extend(x.iter().zip(row(pos, d, first + p)?).map(|(x, p)| x + p));
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
        let mut out = recycled::with_capacity(ids.len() * d);
        let mut deq = vec![0f32; d];
        for (i, &id) in ids.iter().enumerate() {
            let tok = match &token_embedding.rows_i8 {
                Some(q) if (id as usize) < q.rows && q.cols == d => {
                    q.dequantize_row(id as usize, &mut deq);
                    &deq[..]
                }
                Some(q) => {
                    return Err(ClipError::Internal(format!(
                        "token {id} of an int8 table {} x {}, width {d}",
                        q.rows, q.cols
                    )))
                }
                None => row(&token_embedding.data, d, id as usize)?,
            };
            let pos = row(&position_embedding.data, d, i % seq_len.max(1))?;
            out.extend(tok.iter().zip(pos).map(|(t, p)| t + p));
        }
        Ok(Tensor {
            rows: ids.len(),
            cols: d,
            data: out,
        })
    }

    fn gather_rows(&mut self, x: &Tensor, rows: &[usize]) -> Result<Tensor> {
        let mut out = recycled::with_capacity(rows.len() * x.cols);
        for &r in rows {
            out.extend_from_slice(row(&x.data, x.cols, r)?);
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
