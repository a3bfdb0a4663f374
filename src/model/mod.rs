//! The checkpoint: `config.json`, `model.safetensors` in the Hugging Face layout,
//! and the weight structs that mirror the module tree of `transformers.CLIPModel` and
//! `SiglipModel` ([`Family`]), described once in `weights::describe` for loading and for
//! random weights.

pub mod config;
pub mod plan;
pub mod quantize;
pub mod random;
pub mod safetensors;
pub mod weights;

pub use config::{Activation, ClipConfig, Family, TextConfig, VisionConfig};
pub use safetensors::{Dtype, SafeTensors, TensorInfo};
pub use weights::{
    describe, tensor_specs, Attention, ClipModel, EncoderLayer, HostTensor, LayerNorm, Linear, Mlp,
    PoolingHead, TensorKind, TensorSource, TensorSpec, TextTower, Tower, Towers, VisionPooling,
    VisionTower, WeightRole,
};
