//! `CLIPConfig` as `transformers` writes it in `config.json`, with the defaults of
//! `transformers.CLIPTextConfig` / `CLIPVisionConfig` for absent fields, and presets
//! for the real OpenAI checkpoints (numbers from each repository's `config.json` on the
//! Hugging Face hub).

use crate::error::{ClipError, Result};
use serde::{Deserialize, Serialize};

/// MLP activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`: the OpenAI checkpoints.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact erf GELU: most LAION / OpenCLIP checkpoints.
    #[serde(rename = "gelu")]
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
}

impl Activation {
    fn parse(name: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
            ClipError::Config(format!(
                "unknown hidden_act `{name}` (supported: quick_gelu, gelu, gelu_new, gelu_pytorch_tanh)"
            ))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    /// Context length (77 for every CLIP checkpoint).
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f32,
    pub bos_token_id: u32,
    /// 2 in old configs: then `transformers` pools at `argmax(input_ids)`, which is the
    /// first `<|endoftext|>` (the highest id) all the same.
    pub eos_token_id: u32,
    pub pad_token_id: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClipConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    /// The top-level value counts; the sub-configs often carry a stale 512.
    pub projection_dim: usize,
    pub logit_scale_init_value: f32,
    pub model_type: String,
}

impl VisionConfig {
    /// Patches per side: the patch conv has stride = kernel = patch_size, so it floors.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Class token + patches.
    pub fn num_positions(&self) -> usize {
        self.grid() * self.grid() + 1
    }
    /// Inner size of one flattened patch, in the conv weight's order (channel, y, x).
    pub fn patch_dim(&self) -> usize {
        self.num_channels * self.patch_size * self.patch_size
    }
}

// Raw shapes for serde: every field optional, so absent ones take transformers' defaults.
#[derive(Deserialize, Default)]
struct RawText {
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_attention_heads: Option<usize>,
    num_hidden_layers: Option<usize>,
    max_position_embeddings: Option<usize>,
    vocab_size: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f32>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<u32>,
    pad_token_id: Option<u32>,
}

#[derive(Deserialize, Default)]
struct RawVision {
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_attention_heads: Option<usize>,
    num_hidden_layers: Option<usize>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    num_channels: Option<usize>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f32>,
}

#[derive(Deserialize)]
struct RawClip {
    text_config: Option<RawText>,
    vision_config: Option<RawVision>,
    projection_dim: Option<usize>,
    logit_scale_init_value: Option<f32>,
    model_type: Option<String>,
}

// Sizes above these are not CLIP checkpoints but typos or hostile files; refusing them
// keeps a bad config from asking for gigabytes before a single weight is read.
const MAX_WIDTH: usize = 16_384;
const MAX_LAYERS: usize = 256;
const MAX_VOCAB: usize = 1 << 20;
const MAX_CONTEXT: usize = 4096;
const MAX_IMAGE: usize = 2048;

fn check_range(what: &str, v: usize, max: usize) -> Result<()> {
    if v == 0 || v > max {
        return Err(ClipError::Config(format!(
            "{what} = {v} is out of range (1..={max})"
        )));
    }
    Ok(())
}

impl ClipConfig {
    /// Parse `config.json` bytes (a `CLIPConfig`).
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let raw: RawClip = serde_json::from_slice(bytes)
            .map_err(|e| ClipError::Config(format!("config.json is not valid JSON: {e}")))?;
        if let Some(mt) = &raw.model_type {
            if mt != "clip" {
                return Err(ClipError::Config(format!(
                    "model_type is `{mt}`, expected `clip` (a CLIPModel checkpoint)"
                )));
            }
        }
        let t = raw.text_config.unwrap_or_default();
        let v = raw.vision_config.unwrap_or_default();
        let text = TextConfig {
            hidden_size: t.hidden_size.unwrap_or(512),
            intermediate_size: t.intermediate_size.unwrap_or(2048),
            num_attention_heads: t.num_attention_heads.unwrap_or(8),
            num_hidden_layers: t.num_hidden_layers.unwrap_or(12),
            max_position_embeddings: t.max_position_embeddings.unwrap_or(77),
            vocab_size: t.vocab_size.unwrap_or(49408),
            hidden_act: Activation::parse(t.hidden_act.as_deref().unwrap_or("quick_gelu"))?,
            layer_norm_eps: t.layer_norm_eps.unwrap_or(1e-5),
            bos_token_id: t.bos_token_id.unwrap_or(49406),
            eos_token_id: t.eos_token_id.unwrap_or(49407),
            pad_token_id: t.pad_token_id.unwrap_or(1),
        };
        let vision = VisionConfig {
            hidden_size: v.hidden_size.unwrap_or(768),
            intermediate_size: v.intermediate_size.unwrap_or(3072),
            num_attention_heads: v.num_attention_heads.unwrap_or(12),
            num_hidden_layers: v.num_hidden_layers.unwrap_or(12),
            image_size: v.image_size.unwrap_or(224),
            patch_size: v.patch_size.unwrap_or(32),
            num_channels: v.num_channels.unwrap_or(3),
            hidden_act: Activation::parse(v.hidden_act.as_deref().unwrap_or("quick_gelu"))?,
            layer_norm_eps: v.layer_norm_eps.unwrap_or(1e-5),
        };
        let cfg = ClipConfig {
            text_config: text,
            vision_config: vision,
            projection_dim: raw.projection_dim.unwrap_or(512),
            logit_scale_init_value: raw.logit_scale_init_value.unwrap_or(2.6592),
            model_type: "clip".into(),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<()> {
        let t = &self.text_config;
        let v = &self.vision_config;
        check_range("projection_dim", self.projection_dim, MAX_WIDTH)?;
        check_range("text_config.hidden_size", t.hidden_size, MAX_WIDTH)?;
        check_range(
            "text_config.intermediate_size",
            t.intermediate_size,
            4 * MAX_WIDTH,
        )?;
        check_range(
            "text_config.num_attention_heads",
            t.num_attention_heads,
            MAX_WIDTH,
        )?;
        check_range(
            "text_config.num_hidden_layers",
            t.num_hidden_layers,
            MAX_LAYERS,
        )?;
        check_range(
            "text_config.max_position_embeddings",
            t.max_position_embeddings,
            MAX_CONTEXT,
        )?;
        check_range("text_config.vocab_size", t.vocab_size, MAX_VOCAB)?;
        check_range("vision_config.hidden_size", v.hidden_size, MAX_WIDTH)?;
        check_range(
            "vision_config.intermediate_size",
            v.intermediate_size,
            4 * MAX_WIDTH,
        )?;
        check_range(
            "vision_config.num_attention_heads",
            v.num_attention_heads,
            MAX_WIDTH,
        )?;
        check_range(
            "vision_config.num_hidden_layers",
            v.num_hidden_layers,
            MAX_LAYERS,
        )?;
        check_range("vision_config.image_size", v.image_size, MAX_IMAGE)?;
        check_range("vision_config.patch_size", v.patch_size, v.image_size)?;
        check_range("vision_config.num_channels", v.num_channels, 4)?;
        if !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err(ClipError::Config(format!(
                "text_config.hidden_size {} is not divisible by num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            )));
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err(ClipError::Config(format!(
                "vision_config.hidden_size {} is not divisible by num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            )));
        }
        if !(t.layer_norm_eps.is_finite() && v.layer_norm_eps.is_finite()) {
            return Err(ClipError::Config("layer_norm_eps must be finite".into()));
        }
        Ok(())
    }

    /// Named presets for the real checkpoints, for the weight generator and benchmarks.
    pub fn preset(name: &str) -> Result<Self> {
        let (text_w, text_heads, vis_w, vis_layers, vis_heads, patch, image, proj) = match name {
            // openai/clip-vit-base-patch32/config.json
            "vit-b-32" | "openai/clip-vit-base-patch32" => (512, 8, 768, 12, 12, 32, 224, 512),
            // openai/clip-vit-base-patch16/config.json
            "vit-b-16" | "openai/clip-vit-base-patch16" => (512, 8, 768, 12, 12, 16, 224, 512),
            // openai/clip-vit-large-patch14/config.json
            "vit-l-14" | "openai/clip-vit-large-patch14" => (768, 12, 1024, 24, 16, 14, 224, 768),
            // openai/clip-vit-large-patch14-336/config.json
            "vit-l-14-336" | "openai/clip-vit-large-patch14-336" => {
                (768, 12, 1024, 24, 16, 14, 336, 768)
            }
            _ => {
                return Err(ClipError::Config(format!(
                    "unknown preset `{name}` (known: {})",
                    Self::PRESETS.join(", ")
                )))
            }
        };
        Ok(ClipConfig {
            text_config: TextConfig {
                hidden_size: text_w,
                intermediate_size: 4 * text_w,
                num_attention_heads: text_heads,
                num_hidden_layers: 12,
                max_position_embeddings: 77,
                vocab_size: 49408,
                hidden_act: Activation::QuickGelu,
                layer_norm_eps: 1e-5,
                bos_token_id: 49406,
                eos_token_id: 2,
                pad_token_id: 1,
            },
            vision_config: VisionConfig {
                hidden_size: vis_w,
                intermediate_size: 4 * vis_w,
                num_attention_heads: vis_heads,
                num_hidden_layers: vis_layers,
                image_size: image,
                patch_size: patch,
                num_channels: 3,
                hidden_act: Activation::QuickGelu,
                layer_norm_eps: 1e-5,
            },
            projection_dim: proj,
            logit_scale_init_value: 2.6592,
            model_type: "clip".into(),
        })
    }

    pub const PRESETS: &'static [&'static str] =
        &["vit-b-32", "vit-b-16", "vit-l-14", "vit-l-14-336"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_projection_dim_wins() {
        let cfg = ClipConfig::from_json(
            br#"{"projection_dim": 32, "text_config": {"projection_dim": 512}, "vision_config": {"projection_dim": 512}}"#,
        )
        .unwrap();
        assert_eq!(cfg.projection_dim, 32);
    }

    #[test]
    fn unknown_activation_is_an_error() {
        let err =
            ClipConfig::from_json(br#"{"vision_config": {"hidden_act": "swish"}}"#).unwrap_err();
        assert!(err.to_string().contains("swish"), "{err}");
    }

    #[test]
    fn presets_roundtrip_through_json() {
        for name in ClipConfig::PRESETS {
            let cfg = ClipConfig::preset(name).unwrap();
            assert_eq!(
                ClipConfig::from_json(cfg.to_json().as_bytes()).unwrap(),
                cfg
            );
        }
    }
}
