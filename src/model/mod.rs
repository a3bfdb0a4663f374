//! The checkpoint: `config.json`, `model.safetensors` in the Hugging Face layout,
//! and the weight structs that mirror the module tree of `transformers.CLIPModel`.

pub mod config;
pub mod plan;
pub mod random;
pub mod safetensors;
pub mod weights;

pub use config::{Activation, ClipConfig, TextConfig, VisionConfig};
pub use safetensors::{Dtype, SafeTensors, TensorInfo};
pub use weights::{
    Attention, ClipModel, EncoderLayer, HostTensor, LayerNorm, Linear, Mlp, TextTower, Towers,
    VisionTower, WeightRole,
};
