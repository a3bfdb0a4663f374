//! The compute pipelines, one per WGSL file under `shaders/` (two for the matmul tile
//! shapes), created once per device, and the uniform struct of each kernel, laid out as
//! in its shader.

use super::context::Context;
use crate::error::{ClipError, Result};
use bytemuck::{Pod, Zeroable};

const MATMUL: &str = include_str!("../../shaders/matmul.wgsl");
const MATMUL_F16: &str = include_str!("../../shaders/matmul_f16.wgsl");
const LAYER_NORM: &str = include_str!("../../shaders/layer_norm.wgsl");
const LAYER_NORM_SUBGROUP: &str = include_str!("../../shaders/layer_norm_subgroup.wgsl");
const ATTENTION: &str = include_str!("../../shaders/attention.wgsl");
const ATTENTION_SUBGROUP: &str = include_str!("../../shaders/attention_subgroup.wgsl");
const VISION_EMBED: &str = include_str!("../../shaders/vision_embed.wgsl");
const TEXT_EMBED: &str = include_str!("../../shaders/text_embed.wgsl");
const GATHER_ROWS: &str = include_str!("../../shaders/gather_rows.wgsl");

/// Matmul tile of a launch: `(WG_X, WG_Y)` threads, each computing 4 x 4 outputs.
pub const MATMUL_LARGE: (u32, u32) = (16, 16); // 64 x 64 outputs per workgroup
pub const MATMUL_SMALL: (u32, u32) = (8, 8); // 32 x 32: few rows still fill the GPU
/// Depth of the matmul's staged slices: split-K chunks are multiples of it.
pub const MATMUL_BK: usize = 16;
/// Below this many workgroups a product's k range is split (a discrete GPU has ~100
/// compute units and wants a few workgroups each)...
pub const MATMUL_SPLIT_BELOW: usize = 128;
/// ...into chunks of at least this depth, at most this many.
pub const MATMUL_MIN_CHUNK: usize = 128;
pub const MATMUL_MAX_SPLITS: usize = 8;
/// Threads per LayerNorm row: dims are 64..1280, so 128 threads do 1..10 elements each.
pub const LAYER_NORM_WG: u32 = 128;
/// Threads per attention row: one per key while scoring; `head_dim / 4` column groups
/// times `64 / (head_dim / 4)` key partitions while summing `p v`.
pub const ATTENTION_WG: u32 = 64;
/// The attention kernel's workgroup arrays: longest sequence, widest head.
pub const ATTENTION_MAX_SEQ: usize = 1024;
pub const ATTENTION_MAX_HEAD_DIM: usize = 4 * ATTENTION_WG as usize;
/// Threads per workgroup of the element-wise kernels.
pub const ELEMENTWISE_WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub act: u32,
    pub has_bias: u32,
    pub has_residual: u32,
    pub k_chunk: u32,
    pub splits: u32,
    pub groups_x: u32,
    pub pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct LayerNormParams {
    pub rows: u32,
    pub dim: u32,
    pub eps: f32,
    pub groups_x: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct AttentionParams {
    pub seq_len: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub width: u32,
    pub causal: u32,
    pub scale: f32,
    pub pad: [u32; 2],
}

/// Shared by vision_embed (batch, patches, dim), text_embed (rows, seq_len, dim) and
/// gather_rows (rows, cols, unused): three sizes and the launch grid's width.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct Params3 {
    pub a: u32,
    pub b: u32,
    pub c: u32,
    pub groups_x: u32,
}

pub struct Pipelines {
    pub matmul_large: wgpu::ComputePipeline,
    pub matmul_small: wgpu::ComputePipeline,
    /// Split-K: sums the partial products, then the epilogue.
    pub matmul_reduce: wgpu::ComputePipeline,
    /// The same with f16 weights.
    pub matmul_f16_large: wgpu::ComputePipeline,
    pub matmul_f16_small: wgpu::ComputePipeline,
    pub layer_norm: wgpu::ComputePipeline,
    pub attention: wgpu::ComputePipeline,
    pub vision_embed: wgpu::ComputePipeline,
    pub text_embed: wgpu::ComputePipeline,
    pub gather_rows: wgpu::ComputePipeline,
}

fn pipeline(
    ctx: &Context,
    label: &str,
    source: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    pipeline_entry(ctx, label, source, "main", constants)
}

fn pipeline_entry(
    ctx: &Context,
    label: &str,
    source: &str,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let module = ctx
        .device
        .create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(label),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
    ctx.device
        .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(label),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        })
}

/// A kernel with a reduction: its subgroup variant where the device has subgroups, else
/// the workgroup-memory one.
fn reduction(
    ctx: &Context,
    label: &str,
    plain: &str,
    subgroup: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    if !ctx.subgroups {
        return pipeline(ctx, label, plain, constants);
    }
    // Browsers require the `enable` directive, which naga does not parse yet.
    #[cfg(target_arch = "wasm32")]
    let owned = format!("enable subgroups;\n{subgroup}");
    #[cfg(target_arch = "wasm32")]
    let subgroup = owned.as_str();
    pipeline(ctx, &format!("{label}_subgroup"), subgroup, constants)
}

impl Pipelines {
    /// Compile every kernel. Shader or pipeline errors come back as `ClipError::Gpu`
    /// through an error scope instead of wgpu's panicking default handler.
    pub async fn new(ctx: &Context) -> Result<Pipelines> {
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mm = |label, src, (x, y): (u32, u32)| {
            pipeline(ctx, label, src, &[("WG_X", x as f64), ("WG_Y", y as f64)])
        };
        let wg = |n: u32| [("WG", n as f64)];
        let ln_wg = wg(LAYER_NORM_WG);
        let att_wg = wg(ATTENTION_WG);
        let layer_norm = reduction(ctx, "layer_norm", LAYER_NORM, LAYER_NORM_SUBGROUP, &ln_wg);
        let attention = reduction(ctx, "attention", ATTENTION, ATTENTION_SUBGROUP, &att_wg);
        let pipelines = Pipelines {
            matmul_large: mm("matmul_large", MATMUL, MATMUL_LARGE),
            matmul_small: mm("matmul_small", MATMUL, MATMUL_SMALL),
            matmul_reduce: pipeline_entry(
                ctx,
                "matmul_reduce",
                MATMUL,
                "reduce",
                &[("REDUCE_WG", ELEMENTWISE_WG as f64)],
            ),
            matmul_f16_large: mm("matmul_f16_large", MATMUL_F16, MATMUL_LARGE),
            matmul_f16_small: mm("matmul_f16_small", MATMUL_F16, MATMUL_SMALL),
            layer_norm,
            attention,
            vision_embed: pipeline(ctx, "vision_embed", VISION_EMBED, &wg(ELEMENTWISE_WG)),
            text_embed: pipeline(ctx, "text_embed", TEXT_EMBED, &wg(ELEMENTWISE_WG)),
            gather_rows: pipeline(ctx, "gather_rows", GATHER_ROWS, &wg(ELEMENTWISE_WG)),
        };
        if let Some(e) = scope.pop().await {
            return Err(ClipError::Gpu(format!(
                "compiling the WGSL kernels failed on {}: {e}",
                ctx.info.name
            )));
        }
        Ok(pipelines)
    }
}
