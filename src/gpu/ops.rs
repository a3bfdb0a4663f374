//! The graph's operations on the GPU: each `Backend` method fills its kernel's uniforms,
//! takes pooled buffers for its outputs and records one launch (two for a split-K
//! matmul). Shapes were checked by the graph (`graph::Checked`); what is left here are
//! the GPU's own limits (vec4 widths, the attention kernel's bounds, grid sizes).

use super::pipelines::{
    self, AttentionParams, GatherRowsParams, LayerNormParams, MatmulParams, TextEmbedParams,
    VisionEmbedParams,
};
use super::plan::MatmulPlan;
use super::record::Bind;
use super::{GpuAct, GpuBackend, GpuWeight};
use crate::error::{ClipError, Result};
use crate::graph::{AttentionShape, Backend};
use crate::model::{Activation, LayerNorm, Linear};
use std::future::Future;

fn activation_code(a: Option<Activation>) -> u32 {
    match a {
        None => 0,
        Some(Activation::QuickGelu) => 1,
        Some(Activation::Gelu) => 2,
        Some(Activation::GeluTanh) => 3,
    }
}

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| ClipError::Gpu(format!("{what} = {v} is too large for the GPU")))
}

/// Shapes are checked by the graph (`graph::Checked`); these methods check only the GPU's
/// own limits (vec4 rows, the attention kernel's bounds, u32 sizes, the launch grid), and
/// the shaders bounds-check every access, so unchecked shapes never read past a buffer.
impl Backend for GpuBackend {
    type Weight = GpuWeight;
    type Act = GpuAct;

    fn input(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        let out = self.alloc(rows, cols)?;
        self.upload(out.buffer(), bytemuck::cast_slice(data))?;
        Ok(out)
    }

    fn linear(
        &mut self,
        x: &GpuAct,
        linear: &Linear<GpuWeight>,
        activation: Option<Activation>,
        residual: Option<&GpuAct>,
    ) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        let (m, n, k) = (x.rows, linear.out_features, linear.in_features);
        if !k.is_multiple_of(4) {
            // The matmul reads rows as vec4 (`make_weight` refuses such matrices).
            return Err(ClipError::Gpu(format!(
                "the GPU backend needs in_features divisible by 4, not {k}"
            )));
        }
        let plan = MatmulPlan::new(
            m,
            n,
            k,
            self.ctx.limits.max_compute_workgroups_per_dimension,
        )?;
        let (gx, gy) = plan.groups;
        let (large, splits) = (plan.large, plan.splits);
        let out = self.alloc(m, n)?;
        let (rg_x, rg_y) = self.elementwise_grid(m * n)?;
        let params = MatmulParams {
            m: u32_of("rows", m)?,
            n: u32_of("out_features", n)?,
            k: u32_of("in_features", k)?,
            act: activation_code(activation),
            has_bias: linear.bias.is_some() as u32,
            has_residual: residual.is_some() as u32,
            k_chunk: u32_of("in_features", plan.k_chunk)?,
            splits: splits as u32,
            groups_x: rg_x,
            group: u32_of("group", linear.weight.int8().map_or(0, |(_, g)| g))?,
            pad: [0; 2],
        };
        let dummy = self.dummy.clone();
        let bias = match &linear.bias {
            Some(b) => b.single("bias")?,
            None => &dummy,
        };
        let weight = linear.weight.single("linear weight")?;
        let res = residual.map_or(&dummy, |r| r.buffer());
        // With split-K the tiles go to a [splits, m, n] scratch, reduced into `out`.
        let partial = if splits > 1 {
            Some(self.alloc(splits * m, n)?)
        } else {
            None
        };
        let dst = partial.as_ref().unwrap_or(&out);
        let scales = linear.weight.int8().map(|(b, _)| b);
        let mut binds = vec![
            Bind::Buffer(x.buffer()),
            Bind::Buffer(weight),
            Bind::Buffer(bias),
            Bind::Buffer(res),
            Bind::Buffer(dst.buffer()),
        ];
        binds.extend(scales.map(Bind::Buffer));
        let k = &self.pipelines;
        let tiles = match (scales.is_some(), linear.weight.f16) {
            (true, _) => k.i8.get().map(|i8| &i8.matmul),
            (false, true) => k.f16.as_ref(),
            (false, false) => Some(&k.matmul),
        }
        .ok_or_else(|| {
            ClipError::Internal("a weight's matmul kernels were not built on this device".into())
        })?;
        // Large f16 tiles go to tensor cores where the device has them: the same 64 x 64
        // tile and grid, never split along k.
        let coop = k
            .coop
            .as_ref()
            .filter(|_| linear.weight.f16 && scales.is_none() && large);
        let pipeline = match coop {
            Some(coop) => coop,
            None if large => &tiles.large,
            None => &tiles.small,
        }
        .clone();
        self.launch_pipeline(
            pipeline,
            bytemuck::bytes_of(&params),
            None,
            &binds,
            (gx, gy, splits as u32),
        );
        if let Some(partial) = &partial {
            self.launch(
                |k| &k.matmul_reduce,
                bytemuck::bytes_of(&params),
                None,
                &[
                    Bind::Buffer(partial.buffer()),
                    Bind::Skip,
                    Bind::Buffer(bias),
                    Bind::Buffer(res),
                    Bind::Buffer(out.buffer()),
                ],
                (rg_x, rg_y, 1),
            );
        }
        Ok(out)
    }

    fn layer_norm(&mut self, x: &GpuAct, ln: &LayerNorm<GpuWeight>) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        let out = self.alloc(x.rows, x.cols)?;
        let (gx, gy) = self.grid(x.rows)?;
        let params = LayerNormParams {
            rows: u32_of("rows", x.rows)?,
            dim: u32_of("dim", x.cols)?,
            eps: ln.eps,
            groups_x: gx,
        };
        self.launch(
            |k| &k.layer_norm,
            bytemuck::bytes_of(&params),
            None,
            &[
                Bind::Buffer(x.buffer()),
                Bind::Buffer(ln.weight.single("LayerNorm weight")?),
                Bind::Buffer(ln.bias.single("LayerNorm bias")?),
                Bind::Buffer(out.buffer()),
            ],
            (if x.rows == 0 { 0 } else { gx }, gy, 1),
        );
        Ok(out)
    }

    fn attention(
        &mut self,
        q: &GpuAct,
        k: &GpuAct,
        v: &GpuAct,
        shape: AttentionShape,
        valid_lens: &[usize],
    ) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        let (queries, keys, heads) = (shape.queries, shape.keys, shape.heads);
        let width = q.cols;
        let seqs = valid_lens.len();
        let head_dim = width / heads.max(1);
        if !head_dim.is_multiple_of(4)
            || head_dim > pipelines::ATTENTION_MAX_HEAD_DIM
            || keys > pipelines::ATTENTION_MAX_SEQ
        {
            return Err(ClipError::Gpu(format!(
                "the attention kernel handles head_dim a multiple of 4 up to {} and sequences \
                 up to {} tokens, not head_dim {head_dim} over {keys} tokens",
                pipelines::ATTENTION_MAX_HEAD_DIM,
                pipelines::ATTENTION_MAX_SEQ
            )));
        }
        let out = self.alloc(q.rows, width)?;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension as usize;
        if seqs > max || heads > max || queries > max {
            return Err(ClipError::Gpu(format!(
                "attention over {seqs} sequences of {heads} heads exceeds this device's grid"
            )));
        }
        let params = AttentionParams {
            queries: u32_of("queries", queries)?,
            keys: u32_of("keys", keys)?,
            heads: u32_of("heads", heads)?,
            head_dim: head_dim as u32,
            width: u32_of("width", width)?,
            causal: shape.causal as u32,
            scale: 1.0 / (head_dim as f32).sqrt(),
            pad: 0,
        };
        let lens = valid_lens
            .iter()
            .map(|&l| u32_of("valid length", l))
            .collect::<Result<Vec<u32>>>()?;
        self.launch(
            |k| &k.attention,
            bytemuck::bytes_of(&params),
            Some(bytemuck::cast_slice(&lens)),
            &[
                Bind::Buffer(q.buffer()),
                Bind::Buffer(k.buffer()),
                Bind::Buffer(v.buffer()),
                Bind::Arena(1, (lens.len() * 4) as u64),
                Bind::Buffer(out.buffer()),
            ],
            (queries as u32, heads as u32, seqs as u32),
        );
        Ok(out)
    }

    fn vision_embed(
        &mut self,
        patch_embeds: &GpuAct,
        class_embedding: Option<&GpuWeight>,
        position_embedding: &GpuWeight,
        batch: usize,
    ) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        // Without a class token the kernel never reads its binding; any buffer fills it.
        let dummy = self.dummy.clone();
        let class = match class_embedding {
            Some(c) => c.single("class embedding")?,
            None => &dummy,
        };
        let position = position_embedding.single("position embedding")?;
        let d = patch_embeds.cols;
        let tokens = position_embedding.shape.first().copied().unwrap_or(0);
        let class_token = usize::from(class_embedding.is_some());
        let patches = tokens.saturating_sub(class_token);
        let rows = batch * tokens;
        let out = self.alloc(rows, d)?;
        let (gx, gy) = self.elementwise_grid(rows * d)?;
        let params = VisionEmbedParams {
            batch: u32_of("batch", batch)?,
            patches: u32_of("patches", patches)?,
            dim: u32_of("dim", d)?,
            groups_x: gx,
            class_token: class_token as u32,
            pad: [0; 3],
        };
        u32_of("elements", rows * d)?;
        self.launch(
            |k| &k.vision_embed,
            bytemuck::bytes_of(&params),
            None,
            &[
                Bind::Buffer(patch_embeds.buffer()),
                Bind::Buffer(class),
                Bind::Buffer(position),
                Bind::Buffer(out.buffer()),
            ],
            (gx, gy, 1),
        );
        Ok(out)
    }

    fn text_embed(
        &mut self,
        ids: &[u32],
        seq_len: usize,
        token_embedding: &GpuWeight,
        position_embedding: &GpuWeight,
    ) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        let d = token_embedding.shape.get(1).copied().unwrap_or(0);
        let position = position_embedding.single("position embedding")?;
        let int8 = token_embedding.int8();
        let out = self.alloc(ids.len(), d)?;
        let (gx, gy) = self.elementwise_grid(ids.len() * d)?;
        u32_of("elements", ids.len() * d)?;
        // One launch per page of the token table: each writes the rows whose id it holds,
        // so every row is written once (the ids were checked against the vocabulary).
        for (first_id, page) in token_embedding.pages() {
            let params = TextEmbedParams {
                rows: u32_of("rows", ids.len())?,
                seq_len: u32_of("seq_len", seq_len)?,
                dim: u32_of("dim", d)?,
                groups_x: gx,
                first_id: u32_of("token id", first_id)?,
                page_rows: u32_of("rows per page", token_embedding.page_rows)?,
                group: u32_of("group", int8.map_or(0, |(_, g)| g))?,
                pad: 0,
            };
            let mut binds = vec![
                Bind::Arena(1, (ids.len() * 4) as u64),
                Bind::Buffer(page),
                Bind::Buffer(position),
                Bind::Buffer(out.buffer()),
            ];
            binds.extend(int8.map(|(b, _)| Bind::Buffer(b)));
            let pipeline = match int8 {
                Some(_) => self.pipelines.i8.get().map(|k| &k.text_embed),
                None => Some(&self.pipelines.text_embed),
            }
            .ok_or_else(|| {
                ClipError::Internal("the int8 token table's kernel was not built".into())
            })?
            .clone();
            self.launch_pipeline(
                pipeline,
                bytemuck::bytes_of(&params),
                Some(bytemuck::cast_slice(ids)),
                &binds,
                (gx, gy, 1),
            );
        }
        Ok(out)
    }

    fn gather_rows(&mut self, x: &GpuAct, rows: &[usize]) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        let idx = rows
            .iter()
            .map(|&r| u32_of("row", r))
            .collect::<Result<Vec<u32>>>()?;
        let out = self.alloc(rows.len(), x.cols)?;
        let (gx, gy) = self.elementwise_grid(rows.len() * x.cols)?;
        u32_of("elements", rows.len() * x.cols)?;
        let params = GatherRowsParams {
            rows: idx.len() as u32,
            cols: u32_of("cols", x.cols)?,
            pad: 0,
            groups_x: gx,
        };
        self.launch(
            |k| &k.gather_rows,
            bytemuck::bytes_of(&params),
            Some(bytemuck::cast_slice(&idx)),
            &[
                Bind::Buffer(x.buffer()),
                Bind::Arena(1, (idx.len() * 4) as u64),
                Bind::Buffer(out.buffer()),
            ],
            (if rows.is_empty() { 0 } else { gx }, gy, 1),
        );
        Ok(out)
    }

    fn read(&mut self, x: &GpuAct) -> impl Future<Output = Result<Vec<f32>>> {
        self.read_back(x)
    }

    fn abandon_pass(&mut self) {
        // Unsubmitted commands never run. Those submitted already (a full arena) may have
        // used buffers whose creation ran out of memory: none of the pass's buffers serve
        // again, and its out-of-memory checks do not wait for the next read-back.
        self.pass = None;
        self.encoder = None;
        self.arena.data.clear();
        self.alloc_checks.clear();
        self.pool.discard();
        self.binds.clear();
        self.ctx.ledger.collect();
    }
}
