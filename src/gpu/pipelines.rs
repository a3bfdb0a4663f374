//! The compute pipelines, created once per device, and the uniform struct of each
//! kernel, laid out as its shader's `Params`.
//!
//! Each kernel is one file under `shaders/`. Its variants (subgroup or workgroup-memory
//! reductions, f32 or f16 weights) are `//#if` blocks and shared pieces `//#include`d,
//! composed by [`super::wgsl`] once the device is known. Every size the WGSL depends on
//! (workgroup sizes, the matmul slice depth, the attention kernel's longest sequence) is
//! an `override` without a default, set from the constants below: they are its only
//! statement.

use super::context::Context;
use super::wgsl;
use crate::error::{ClipError, Result};
use bytemuck::{Pod, Zeroable};
use std::sync::OnceLock;

/// Matmul tile of a launch: `(WG_X, WG_Y)` threads, each computing 4 x 4 outputs.
pub const MATMUL_LARGE: (u32, u32) = (16, 16); // 64 x 64 outputs per workgroup
pub const MATMUL_SMALL: (u32, u32) = (8, 8); // 32 x 32: few rows still fill the GPU
/// Depth of the matmul's staged slices (a multiple of 4): split-K chunks are multiples
/// of it.
pub const MATMUL_BK: usize = 16;
/// (How a product is split along k is `plan::MatmulPlan`'s choice.)
/// Threads per LayerNorm row: dims are 64..1280, so 128 threads do 1..10 elements each.
pub const LAYER_NORM_WG: u32 = 128;
/// Threads per attention row: one per key while scoring; `head_dim / 4` column groups
/// times `64 / (head_dim / 4)` key partitions while summing `p v`.
pub const ATTENTION_WG: u32 = 64;
/// The attention kernel's workgroup arrays: longest sequence, widest head (a vec4 of the
/// query row per thread).
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
    /// int8 weights: input features per scale.
    pub group: u32,
    pub pad: [u32; 2],
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
    /// Query rows per sequence.
    pub queries: u32,
    /// Key and value rows per sequence.
    pub keys: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub width: u32,
    pub causal: u32,
    pub scale: f32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct VisionEmbedParams {
    pub batch: u32,
    /// Patches per image.
    pub patches: u32,
    pub dim: u32,
    pub groups_x: u32,
    /// 1 when a class token leads each image's tokens (CLIP), 0 without one (SigLIP).
    pub class_token: u32,
    pub pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct TextEmbedParams {
    /// Token ids, all sequences together.
    pub rows: u32,
    pub seq_len: u32,
    pub dim: u32,
    pub groups_x: u32,
    /// The page of the token table bound: ids `first_id .. first_id + page_rows`.
    pub first_id: u32,
    pub page_rows: u32,
    /// An int8 table: columns per scale.
    pub group: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub struct GatherRowsParams {
    /// Output rows.
    pub rows: u32,
    pub cols: u32,
    pub pad: u32,
    pub groups_x: u32,
}

pub struct Pipelines {
    pub matmul: MatmulPair,
    /// Split-K: sums the partial products, then the epilogue (of every weight storage).
    pub matmul_reduce: wgpu::ComputePipeline,
    pub layer_norm: wgpu::ComputePipeline,
    pub attention: wgpu::ComputePipeline,
    pub vision_embed: wgpu::ComputePipeline,
    pub text_embed: wgpu::ComputePipeline,
    pub gather_rows: wgpu::ComputePipeline,
    /// The matmul on f16 weights: built only on a device that stores matrices as f16
    /// (a model never mixes the two), so an f32 model compiles none of it.
    pub f16: Option<MatmulPair>,
    /// The matmul and token lookup on int8 weights and their scales: built when the first
    /// int8 weight is made (an int8 checkpoint), never for a float one.
    pub i8: OnceLock<Int8Kernels>,
    /// The f16 matmul on tensor cores (`matmul_coop.wgsl`), for large-tile plans: built
    /// where the device offers them (`Context::tensor_cores`) and stores f16.
    pub coop: Option<wgpu::ComputePipeline>,
}

/// A matmul's two tiles.
pub struct MatmulPair {
    pub large: wgpu::ComputePipeline,
    pub small: wgpu::ComputePipeline,
}

/// The kernels of int8 weights: matmul tiles (scales at binding 6) and the token table
/// (scales at binding 5).
pub struct Int8Kernels {
    pub matmul: MatmulPair,
    pub text_embed: wgpu::ComputePipeline,
}

/// A kernel file.
struct Kernel {
    file: &'static str,
    source: &'static str,
    /// Whether its reductions have a subgroup variant (`//#if SUBGROUPS`).
    reduces: bool,
}

/// A kernel file of `shaders/`, compiled in.
macro_rules! kernel {
    ($file:literal, reduces: $reduces:literal) => {
        Kernel {
            file: $file,
            source: include_str!(concat!("../../shaders/", $file)),
            reduces: $reduces,
        }
    };
}

const MATMUL: Kernel = kernel!("matmul.wgsl", reduces: false);
const MATMUL_COOP: Kernel = kernel!("matmul_coop.wgsl", reduces: false);
const LAYER_NORM: Kernel = kernel!("layer_norm.wgsl", reduces: true);
const ATTENTION: Kernel = kernel!("attention.wgsl", reduces: true);
const VISION_EMBED: Kernel = kernel!("vision_embed.wgsl", reduces: false);
const TEXT_EMBED: Kernel = kernel!("text_embed.wgsl", reduces: false);
const GATHER_ROWS: Kernel = kernel!("gather_rows.wgsl", reduces: false);

/// One pipeline: an entry point of a kernel's variant and its override constants.
struct Spec {
    label: &'static str,
    kernel: &'static Kernel,
    /// The `F16_WEIGHTS` / `I8_WEIGHTS` flags: how the weights are stored.
    weights: Stored,
    entry: &'static str,
    constants: &'static [(&'static str, f64)],
}

/// How a kernel's weight operand is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stored {
    F32,
    F16,
    I8,
}

/// Override constants of the matmul tiles and of the element-wise kernels.
const LARGE_TILE: &[(&str, f64)] = &[
    ("WG_X", MATMUL_LARGE.0 as f64),
    ("WG_Y", MATMUL_LARGE.1 as f64),
    ("BK", MATMUL_BK as f64),
];
const SMALL_TILE: &[(&str, f64)] = &[
    ("WG_X", MATMUL_SMALL.0 as f64),
    ("WG_Y", MATMUL_SMALL.1 as f64),
    ("BK", MATMUL_BK as f64),
];
const ELEMENTWISE: &[(&str, f64)] = &[("WG", ELEMENTWISE_WG as f64)];

const fn main_of(
    label: &'static str,
    kernel: &'static Kernel,
    weights: Stored,
    constants: &'static [(&'static str, f64)],
) -> Spec {
    Spec {
        label,
        kernel,
        weights,
        entry: "main",
        constants,
    }
}

const MATMUL_LARGE_F32: Spec = main_of("matmul_large", &MATMUL, Stored::F32, LARGE_TILE);
const MATMUL_SMALL_F32: Spec = main_of("matmul_small", &MATMUL, Stored::F32, SMALL_TILE);
const MATMUL_LARGE_F16: Spec = main_of("matmul_f16_large", &MATMUL, Stored::F16, LARGE_TILE);
const MATMUL_SMALL_F16: Spec = main_of("matmul_f16_small", &MATMUL, Stored::F16, SMALL_TILE);
const MATMUL_LARGE_I8: Spec = main_of("matmul_i8_large", &MATMUL, Stored::I8, LARGE_TILE);
const MATMUL_SMALL_I8: Spec = main_of("matmul_i8_small", &MATMUL, Stored::I8, SMALL_TILE);
/// The cooperative-matrix kernel's subgroup width: the one it is written for (NVIDIA's;
/// `Context` checks the device's subgroups are exactly this wide).
pub const COOP_SUBGROUP: u32 = 32;
const MATMUL_COOP_F16: Spec = main_of(
    "matmul_coop_f16",
    &MATMUL_COOP,
    Stored::F16,
    &[("SG", COOP_SUBGROUP as f64)],
);
const MATMUL_REDUCE: Spec = Spec {
    label: "matmul_reduce",
    kernel: &MATMUL,
    weights: Stored::F32,
    entry: "reduce",
    constants: &[("REDUCE_WG", ELEMENTWISE_WG as f64)],
};
const LAYER_NORM_MAIN: Spec = main_of(
    "layer_norm",
    &LAYER_NORM,
    Stored::F32,
    &[("WG", LAYER_NORM_WG as f64)],
);
const ATTENTION_MAIN: Spec = main_of(
    "attention",
    &ATTENTION,
    Stored::F32,
    &[
        ("WG", ATTENTION_WG as f64),
        ("MAX_SEQ", ATTENTION_MAX_SEQ as f64),
    ],
);
const VISION_EMBED_MAIN: Spec = main_of("vision_embed", &VISION_EMBED, Stored::F32, ELEMENTWISE);
const TEXT_EMBED_MAIN: Spec = main_of("text_embed", &TEXT_EMBED, Stored::F32, ELEMENTWISE);
const TEXT_EMBED_I8: Spec = main_of("text_embed_i8", &TEXT_EMBED, Stored::I8, ELEMENTWISE);
const GATHER_ROWS_MAIN: Spec = main_of("gather_rows", &GATHER_ROWS, Stored::F32, ELEMENTWISE);

/// Browsers require `enable subgroups;` ahead of a shader that uses subgroups, and
/// naga, wgpu's native shader compiler, does not parse the directive yet.
const ENABLE_SUBGROUPS: bool = cfg!(target_arch = "wasm32");

impl Spec {
    /// The WGSL of this pipeline on a device with (or without) `subgroups`, and its
    /// label; `enable` says whether to write `enable subgroups;` where they are used.
    fn wgsl(&self, subgroups: bool, enable: bool) -> Result<(String, String)> {
        let subgroups = subgroups && self.kernel.reduces;
        let body = wgsl::compose(
            self.kernel.file,
            self.kernel.source,
            &[
                ("SUBGROUPS", subgroups),
                ("F16_WEIGHTS", self.weights == Stored::F16),
                ("I8_WEIGHTS", self.weights == Stored::I8),
            ],
        )?;
        if !subgroups {
            return Ok((self.label.to_string(), body));
        }
        let body = if enable {
            format!("enable subgroups;\n{body}")
        } else {
            body
        };
        Ok((format!("{}_subgroup", self.label), body))
    }

    fn build(&self, ctx: &Context) -> Result<wgpu::ComputePipeline> {
        let (label, source) = self.wgsl(ctx.subgroups, ENABLE_SUBGROUPS)?;
        let module = ctx
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        Ok(ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(self.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: self.constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            }))
    }
}

impl Pipelines {
    /// Compile the kernels every model uses, and the f16 matmul on a device storing f16.
    /// Shader or pipeline errors come back as `ClipError::Gpu` through an error scope
    /// instead of wgpu's panicking default handler.
    pub async fn new(ctx: &Context) -> Result<Pipelines> {
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let built = (|| {
            Ok(Pipelines {
                matmul: MatmulPair {
                    large: MATMUL_LARGE_F32.build(ctx)?,
                    small: MATMUL_SMALL_F32.build(ctx)?,
                },
                matmul_reduce: MATMUL_REDUCE.build(ctx)?,
                layer_norm: LAYER_NORM_MAIN.build(ctx)?,
                attention: ATTENTION_MAIN.build(ctx)?,
                vision_embed: VISION_EMBED_MAIN.build(ctx)?,
                text_embed: TEXT_EMBED_MAIN.build(ctx)?,
                gather_rows: GATHER_ROWS_MAIN.build(ctx)?,
                f16: match ctx.f16_weights {
                    true => Some(MatmulPair {
                        large: MATMUL_LARGE_F16.build(ctx)?,
                        small: MATMUL_SMALL_F16.build(ctx)?,
                    }),
                    false => None,
                },
                i8: OnceLock::new(),
                coop: match ctx.tensor_cores.is_ok() && ctx.f16_weights {
                    true => Some(MATMUL_COOP_F16.build(ctx)?),
                    false => None,
                },
            })
        })();
        if let Some(e) = scope.pop().await {
            return Err(ClipError::Gpu(format!(
                "compiling the WGSL kernels failed on {}: {e}",
                ctx.info.name
            )));
        }
        built
    }

    /// Compile the int8 kernels unless done: called as an int8 weight is made. Loading is
    /// synchronous there, so a pipeline error is not scoped: it is reported as the
    /// device's error by the next operation.
    pub fn need_int8(&self, ctx: &Context) -> Result<()> {
        if self.i8.get().is_none() {
            let kernels = Int8Kernels {
                matmul: MatmulPair {
                    large: MATMUL_LARGE_I8.build(ctx)?,
                    small: MATMUL_SMALL_I8.build(ctx)?,
                },
                text_embed: TEXT_EMBED_I8.build(ctx)?,
            };
            let _ = self.i8.set(kernels);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&Spec; 14] = [
        &MATMUL_LARGE_F32,
        &MATMUL_SMALL_F32,
        &MATMUL_REDUCE,
        &MATMUL_LARGE_F16,
        &MATMUL_SMALL_F16,
        &MATMUL_LARGE_I8,
        &MATMUL_SMALL_I8,
        &TEXT_EMBED_I8,
        &LAYER_NORM_MAIN,
        &ATTENTION_MAIN,
        &VISION_EMBED_MAIN,
        &TEXT_EMBED_MAIN,
        &GATHER_ROWS_MAIN,
        &MATMUL_COOP_F16,
    ];

    /// Each kernel's uniform, as laid out on the Rust side.
    fn params_size(kernel: &Kernel) -> usize {
        match kernel.file {
            "matmul.wgsl" | "matmul_coop.wgsl" => size_of::<MatmulParams>(),
            "layer_norm.wgsl" => size_of::<LayerNormParams>(),
            "attention.wgsl" => size_of::<AttentionParams>(),
            "vision_embed.wgsl" => size_of::<VisionEmbedParams>(),
            "text_embed.wgsl" => size_of::<TextEmbedParams>(),
            "gather_rows.wgsl" => size_of::<GatherRowsParams>(),
            other => panic!("no params struct for {other}"),
        }
    }

    #[test]
    fn every_pipeline_is_listed_once() {
        // Eight always, two f16 (behind an Option), three int8 (behind a OnceLock), the
        // tensor-core one (behind an Option).
        let pipeline = size_of::<wgpu::ComputePipeline>();
        assert_eq!(size_of::<MatmulPair>(), 2 * pipeline);
        assert_eq!(size_of::<Int8Kernels>(), 3 * pipeline);
        assert_eq!(8 + 2 + 3 + 1, ALL.len());
        let optional = size_of::<Option<MatmulPair>>()
            + size_of::<OnceLock<Int8Kernels>>()
            + size_of::<Option<wgpu::ComputePipeline>>();
        assert_eq!(size_of::<Pipelines>(), 8 * pipeline + optional);
        let mut labels: Vec<_> = ALL.iter().map(|s| s.label).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), ALL.len());
    }

    #[test]
    fn variants_compose_to_plain_wgsl() {
        for spec in ALL {
            let (plain_label, plain) = spec.wgsl(false, true).unwrap();
            let (label, native) = spec.wgsl(true, false).unwrap();
            let (_, browser) = spec.wgsl(true, true).unwrap();
            for src in [&plain, &native, &browser] {
                assert!(!src.contains("//#"), "{label}: a directive is left");
                assert!(!src.contains("#include"), "{label}");
            }
            assert_eq!(plain_label, spec.label);
            let uses_subgroups = |src: &str| src.contains("@builtin(subgroup_size)");
            assert!(!uses_subgroups(&plain) && !plain.contains("enable subgroups"));
            // `reduces` says exactly which kernels have a subgroup variant...
            assert_eq!(spec.kernel.reduces, plain != native, "{label}");
            if spec.kernel.reduces {
                assert_eq!(label, format!("{}_subgroup", spec.label));
                assert!(uses_subgroups(&native) && !native.contains("enable"));
                // ...which the browser gets behind the `enable` it requires.
                assert_eq!(browser, format!("enable subgroups;\n{native}"));
            } else {
                assert_eq!((&label, &browser), (&plain_label, &plain));
            }
            let f16 = plain.contains("var<storage, read> w: array<vec2<u32>>");
            assert_eq!(f16, spec.weights == Stored::F16, "{label}");
            let i8 = plain.contains("w: array<u32>") || plain.contains("token: array<u32>");
            assert_eq!(i8, spec.weights == Stored::I8, "{label}");
        }
    }

    /// The shader capabilities wgpu grants `spec`'s device: subgroups with the SUBGROUP
    /// feature, f16 unpacking on every device that is not downlevel, and for the
    /// tensor-core kernel alone f16 and cooperative matrices (`TENSOR_CORE_FEATURES`).
    #[cfg(not(target_arch = "wasm32"))]
    fn capabilities(spec: &Spec) -> wgpu::naga::valid::Capabilities {
        use wgpu::naga::valid::Capabilities as C;
        let base = C::SUBGROUP | C::SHADER_FLOAT16_IN_FLOAT32;
        match spec.kernel.file == MATMUL_COOP.file {
            true => base | C::SHADER_FLOAT16 | C::COOPERATIVE_MATRIX,
            false => base,
        }
    }

    /// The tensor-core kernel lowers to SPIR-V as wgpu's Vulkan backend does it (no
    /// adapter here may offer cooperative matrices, so this is where its translation is
    /// checked), and its tile is the large plan's, whose grid it is launched on.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn the_tensor_core_kernel_lowers_to_spirv() {
        use wgpu::naga;
        let (label, src) = MATMUL_COOP_F16.wgsl(true, false).unwrap();
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(&src)));
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            capabilities(&MATMUL_COOP_F16),
        )
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(&src)));
        let constants = [("SG".to_string(), COOP_SUBGROUP as f64)]
            .into_iter()
            .collect();
        let entry = Some((naga::ShaderStage::Compute, "main"));
        let (module, info) =
            naga::back::pipeline_constants::process_overrides(&module, &info, entry, &constants)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
        let options = naga::back::spv::Options {
            lang_version: (1, 3),
            ..Default::default()
        };
        let pipeline = naga::back::spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: "main".into(),
        };
        let words = naga::back::spv::write_vec(&module, &info, &options, Some(&pipeline))
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        // OpCooperativeMatrixMulAddKHR (4459): the product really is the hardware's.
        let mul_adds = words.iter().filter(|&&w| w & 0xffff == 4459).count();
        assert!(
            mul_adds >= 4,
            "{label}: {mul_adds} cooperative multiply-adds"
        );
        let tile = src.split("const TILE: u32 = ").nth(1).unwrap();
        assert!(tile.starts_with(&format!("{}u;", 4 * MATMUL_LARGE.0)));
        assert_eq!(MATMUL_LARGE.0, MATMUL_LARGE.1);
    }

    /// Parse and validate every variant with naga (wgpu's shader compiler) without a GPU,
    /// then resolve its overrides with this module's constants, as pipeline creation does.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn every_variant_compiles_with_its_constants() {
        use wgpu::naga;
        for spec in ALL {
            for subgroups in [false, true] {
                let (label, src) = spec.wgsl(subgroups, false).unwrap();
                let module = naga::front::wgsl::parse_str(&src)
                    .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(&src)));
                let info = naga::valid::Validator::new(
                    naga::valid::ValidationFlags::all(),
                    capabilities(spec),
                )
                .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
                .subgroup_operations(naga::valid::SubgroupOperationSet::all())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{label}: {}", e.emit_to_string(&src)));

                // Every size comes from Rust: no named override has a default of its own.
                for (_, o) in module.overrides.iter() {
                    if let Some(name) = &o.name {
                        assert!(o.init.is_none(), "{label}: override {name} has a default");
                    }
                }
                // The uniform at binding 0 is laid out as its Rust twin.
                let (_, uniform) = module
                    .global_variables
                    .iter()
                    .find(|(_, g)| g.space == naga::AddressSpace::Uniform)
                    .unwrap();
                assert_eq!(
                    uniform.binding,
                    Some(naga::ResourceBinding {
                        group: 0,
                        binding: 0
                    })
                );
                let size = module.types[uniform.ty].inner.size(module.to_ctx());
                assert_eq!(size as usize, params_size(spec.kernel), "{label}");

                let mut constants = naga::back::PipelineConstants::default();
                for &(k, v) in spec.constants {
                    constants.insert(k.to_string(), v);
                }
                let entry = Some((naga::ShaderStage::Compute, spec.entry));
                naga::back::pipeline_constants::process_overrides(
                    &module, &info, entry, &constants,
                )
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            }
        }
    }
}
