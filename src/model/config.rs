//! `config.json` as `transformers` writes it for the two families webclip runs:
//! `CLIPConfig` (`model_type: "clip"`) and `SiglipConfig` (`model_type: "siglip"`, which
//! also covers the fixed-resolution SigLIP 2 checkpoints). Absent fields take the defaults
//! of `transformers.CLIPTextConfig` / `CLIPVisionConfig` or `SiglipTextConfig` /
//! `SiglipVisionConfig`; presets give the real checkpoints' sizes (numbers from each
//! repository's `config.json` on the Hugging Face hub).

use crate::error::{ClipError, Result};
use serde::{Deserialize, Serialize};

/// Which model a checkpoint is: decides the graph (class token or attention-pooling head,
/// causal or bidirectional text attention), the tensor names and the scores (softmax over
/// labels or a sigmoid per label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `CLIPModel`: OpenAI CLIP, OpenCLIP/LAION checkpoints in the Hugging Face layout.
    Clip,
    /// `SiglipModel`: SigLIP and fixed-resolution SigLIP 2.
    Siglip,
}

impl Family {
    /// The `model_type` of `config.json` (and the JS `clip.family`): `clip` or `siglip`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Clip => "clip",
            Family::Siglip => "siglip",
        }
    }

    /// The family `transformers` would build from this `config.json`. `model_type` is what
    /// `AutoConfig` dispatches on, so it decides; files without one are recognised by
    /// `architectures`, then by the sub-configs' `model_type`; a file with none of these
    /// is a CLIP config (the defaults are CLIP's, as they always were here).
    fn detect(raw: &RawClip) -> Result<Family> {
        let subs = [
            raw.text_config
                .as_ref()
                .and_then(|t| t.model_type.as_deref()),
            raw.vision_config
                .as_ref()
                .and_then(|v| v.model_type.as_deref()),
        ];
        let family = if let Some(mt) = &raw.model_type {
            match mt.as_str() {
                "clip" => Family::Clip,
                "siglip" => Family::Siglip,
                other => return Err(unsupported_family(&format!("`model_type` \"{other}\""))),
            }
        } else if let Some(archs) = raw.architectures.as_deref().filter(|a| !a.is_empty()) {
            let known = archs.iter().find_map(|a| match a.as_str() {
                "CLIPModel" => Some(Family::Clip),
                "SiglipModel" => Some(Family::Siglip),
                _ => None,
            });
            match known {
                Some(f) => f,
                None => {
                    return Err(unsupported_family(&format!(
                        "`architectures` {archs:?} (and no `model_type`)"
                    )))
                }
            }
        } else {
            subs.iter()
                .find_map(|s| s.and_then(sub_model_type_family))
                .unwrap_or(Family::Clip)
        };
        // A sub-config of the other family is a file stitched together by hand: loading
        // it as either would pick the wrong graph for one tower.
        for (which, sub) in ["text_config", "vision_config"].iter().zip(subs) {
            if let Some(sub) = sub {
                if sub_model_type_family(sub).is_some_and(|f| f != family) {
                    return Err(ClipError::Config(format!(
                        "{which}.model_type is `{sub}` but the checkpoint is a {} one (model_type `{}`)",
                        family.display_name(),
                        family.as_str()
                    )));
                }
            }
        }
        Ok(family)
    }

    fn display_name(self) -> &'static str {
        match self {
            Family::Clip => "CLIP",
            Family::Siglip => "SigLIP",
        }
    }
}

fn sub_model_type_family(model_type: &str) -> Option<Family> {
    match model_type {
        "clip_text_model" | "clip_vision_model" => Some(Family::Clip),
        "siglip_text_model" | "siglip_vision_model" => Some(Family::Siglip),
        _ => None,
    }
}

fn unsupported_family(what: &str) -> ClipError {
    // `siglip2` is the NaFlex variant (variable resolution and aspect ratio, a different
    // patch embedding); its fixed-resolution siblings are plain `siglip` checkpoints.
    let hint = if what.contains("\"siglip2\"") || what.contains("Siglip2") {
        " (SigLIP 2 NaFlex, variable resolution, is not supported; the fixed-resolution SigLIP 2 \
         checkpoints such as google/siglip2-base-patch16-224 are `model_type` \"siglip\" and load)"
    } else {
        ""
    };
    ClipError::Unsupported(format!(
        "webclip runs CLIP and SigLIP checkpoints (CLIPModel, SiglipModel); this config.json is {what}{hint}"
    ))
}

/// MLP activation (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// `x * sigmoid(1.702 x)`: the OpenAI checkpoints.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// Exact erf GELU: most LAION / OpenCLIP checkpoints.
    #[serde(rename = "gelu")]
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation (every SigLIP checkpoint).
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

    /// The name SigLIP configs use: `gelu_pytorch_tanh` for the tanh approximation.
    fn siglip_name(self) -> &'static str {
        match self {
            Activation::QuickGelu => "quick_gelu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    /// Context length: 77 for every CLIP checkpoint, 64 for SigLIP (16 for
    /// siglip-so400m-patch14-224), where every text is padded to it.
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f32,
    pub bos_token_id: u32,
    /// CLIP: 2 in old configs; then `transformers` pools at `argmax(input_ids)`, which is
    /// the first `<|endoftext|>` (the highest id) all the same. SigLIP pools at the last
    /// position and never reads it (its default, 49407, is not even in the vocabulary).
    pub eos_token_id: u32,
    pub pad_token_id: u32,
    /// CLIP: causal attention, pooled at the end token (so a batch may stop right after
    /// it). SigLIP: bidirectional attention over the whole padded context (the padding is
    /// part of the input), pooled at the last position. Set from the family.
    #[serde(skip)]
    pub causal: bool,
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
    /// CLIP prepends a class token (and has a pre-LayerNorm) and pools at it; SigLIP has
    /// neither and pools all patches with its attention head. Set from the family.
    #[serde(skip)]
    pub class_token: bool,
}

/// One config type for both families: the sizes read the same everywhere; [`Family`]
/// says which graph they describe.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub family: Family,
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    /// The embedding width. CLIP: the top-level value (the sub-configs often carry a stale
    /// 512). SigLIP: the vision hidden size, which the text head (`projection_size`) must
    /// match; SigLIP configs have no top-level `projection_dim`.
    pub projection_dim: usize,
    /// The `logit_scale` random weights start from. CLIP: from `config.json`; SigLIP:
    /// ln 10, its training initialisation (`SiglipConfig` has no such field).
    pub logit_scale_init_value: f32,
    /// The `logit_bias` random weights start from: -10 for SigLIP, 0 for CLIP (which has
    /// no bias).
    pub logit_bias_init_value: f32,
}

impl VisionConfig {
    /// Patches per side: the patch conv has stride = kernel = patch_size, so it floors.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
    /// Encoder sequence length: the patches, plus the class token for CLIP.
    pub fn num_positions(&self) -> usize {
        self.num_patches() + usize::from(self.class_token)
    }
    /// Inner size of one flattened patch, in the conv weight's order (channel, y, x).
    pub fn patch_dim(&self) -> usize {
        self.num_channels * self.patch_size * self.patch_size
    }
}

// Raw shapes for serde: every field optional, so absent ones take transformers' defaults.
// Unknown keys (dropout rates, initialiser ranges, `torch_dtype`, ...) are ignored.
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
    /// SigLIP: the text head's output width (default: the text hidden size).
    projection_size: Option<usize>,
    model_type: Option<String>,
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
    /// SigLIP: whether the vision tower has its attention-pooling head (default true).
    vision_use_head: Option<bool>,
    model_type: Option<String>,
}

#[derive(Deserialize)]
struct RawClip {
    text_config: Option<RawText>,
    vision_config: Option<RawVision>,
    projection_dim: Option<usize>,
    logit_scale_init_value: Option<f32>,
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
}

/// `transformers`' defaults for the fields a family's config may omit.
struct Defaults {
    text: TextConfig,
    vision: VisionConfig,
}

impl Defaults {
    fn of(family: Family) -> Defaults {
        match family {
            // transformers CLIPTextConfig / CLIPVisionConfig
            Family::Clip => Defaults {
                text: TextConfig {
                    hidden_size: 512,
                    intermediate_size: 2048,
                    num_attention_heads: 8,
                    num_hidden_layers: 12,
                    max_position_embeddings: 77,
                    vocab_size: 49408,
                    hidden_act: Activation::QuickGelu,
                    layer_norm_eps: 1e-5,
                    bos_token_id: 49406,
                    eos_token_id: 49407,
                    pad_token_id: 1,
                    causal: true,
                },
                vision: VisionConfig {
                    hidden_size: 768,
                    intermediate_size: 3072,
                    num_attention_heads: 12,
                    num_hidden_layers: 12,
                    image_size: 224,
                    patch_size: 32,
                    num_channels: 3,
                    hidden_act: Activation::QuickGelu,
                    layer_norm_eps: 1e-5,
                    class_token: true,
                },
            },
            // transformers SiglipTextConfig / SiglipVisionConfig (google/siglip-base-patch16-224)
            Family::Siglip => Defaults {
                text: TextConfig {
                    hidden_size: 768,
                    intermediate_size: 3072,
                    num_attention_heads: 12,
                    num_hidden_layers: 12,
                    max_position_embeddings: 64,
                    vocab_size: 32000,
                    hidden_act: Activation::GeluTanh,
                    layer_norm_eps: 1e-6,
                    bos_token_id: 49406,
                    eos_token_id: 49407,
                    pad_token_id: 1,
                    causal: false,
                },
                vision: VisionConfig {
                    hidden_size: 768,
                    intermediate_size: 3072,
                    num_attention_heads: 12,
                    num_hidden_layers: 12,
                    image_size: 224,
                    patch_size: 16,
                    num_channels: 3,
                    hidden_act: Activation::GeluTanh,
                    layer_norm_eps: 1e-6,
                    class_token: false,
                },
            },
        }
    }
}

/// SigLIP's initial `logit_scale` (ln 10) and `logit_bias` (-10), from its paper and
/// big_vision; the fixtures use the same.
const SIGLIP_LOGIT_SCALE_INIT: f32 = std::f32::consts::LN_10;
const SIGLIP_LOGIT_BIAS_INIT: f32 = -10.0;
const CLIP_LOGIT_SCALE_INIT: f32 = 2.6592;

// Sizes above these are not real checkpoints but typos or hostile files; refusing them
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

fn act(name: Option<&str>, default: Activation) -> Result<Activation> {
    name.map_or(Ok(default), Activation::parse)
}

// What `to_json` writes, field for field in transformers' names (a struct rather than a
// `serde_json::Value`, so the order stays readable and floats print as written).
#[derive(Serialize)]
struct ClipJson<'a> {
    text_config: &'a TextConfig,
    vision_config: &'a VisionConfig,
    projection_dim: usize,
    logit_scale_init_value: f32,
    model_type: &'static str,
}

#[derive(Serialize)]
struct SiglipTextJson<'a> {
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    max_position_embeddings: usize,
    vocab_size: usize,
    hidden_act: &'a str,
    layer_norm_eps: f32,
    bos_token_id: u32,
    eos_token_id: u32,
    pad_token_id: u32,
    projection_size: usize,
    model_type: &'static str,
}

#[derive(Serialize)]
struct SiglipVisionJson<'a> {
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    image_size: usize,
    patch_size: usize,
    num_channels: usize,
    hidden_act: &'a str,
    layer_norm_eps: f32,
    vision_use_head: bool,
    model_type: &'static str,
}

#[derive(Serialize)]
struct SiglipJson<'a> {
    architectures: [&'static str; 1],
    model_type: &'static str,
    text_config: SiglipTextJson<'a>,
    vision_config: SiglipVisionJson<'a>,
}

/// A SigLIP preset: both towers share one shape (B, L, So400m), as in every released
/// SigLIP / SigLIP 2 checkpoint below the giant.
struct SiglipShape {
    width: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    patch: usize,
    image: usize,
    vocab: usize,
}

impl ClipConfig {
    /// Parse `config.json` bytes (a `CLIPConfig` or a `SiglipConfig`).
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let raw: RawClip = serde_json::from_slice(bytes)
            .map_err(|e| ClipError::Config(format!("config.json is not valid JSON: {e}")))?;
        let family = Family::detect(&raw)?;
        let d = Defaults::of(family);
        let t = raw.text_config.unwrap_or_default();
        let v = raw.vision_config.unwrap_or_default();
        let text = TextConfig {
            hidden_size: t.hidden_size.unwrap_or(d.text.hidden_size),
            intermediate_size: t.intermediate_size.unwrap_or(d.text.intermediate_size),
            num_attention_heads: t.num_attention_heads.unwrap_or(d.text.num_attention_heads),
            num_hidden_layers: t.num_hidden_layers.unwrap_or(d.text.num_hidden_layers),
            max_position_embeddings: t
                .max_position_embeddings
                .unwrap_or(d.text.max_position_embeddings),
            vocab_size: t.vocab_size.unwrap_or(d.text.vocab_size),
            hidden_act: act(t.hidden_act.as_deref(), d.text.hidden_act)?,
            layer_norm_eps: t.layer_norm_eps.unwrap_or(d.text.layer_norm_eps),
            bos_token_id: t.bos_token_id.unwrap_or(d.text.bos_token_id),
            eos_token_id: t.eos_token_id.unwrap_or(d.text.eos_token_id),
            pad_token_id: t.pad_token_id.unwrap_or(d.text.pad_token_id),
            causal: d.text.causal,
        };
        let vision = VisionConfig {
            hidden_size: v.hidden_size.unwrap_or(d.vision.hidden_size),
            intermediate_size: v.intermediate_size.unwrap_or(d.vision.intermediate_size),
            num_attention_heads: v
                .num_attention_heads
                .unwrap_or(d.vision.num_attention_heads),
            num_hidden_layers: v.num_hidden_layers.unwrap_or(d.vision.num_hidden_layers),
            image_size: v.image_size.unwrap_or(d.vision.image_size),
            patch_size: v.patch_size.unwrap_or(d.vision.patch_size),
            num_channels: v.num_channels.unwrap_or(d.vision.num_channels),
            hidden_act: act(v.hidden_act.as_deref(), d.vision.hidden_act)?,
            layer_norm_eps: v.layer_norm_eps.unwrap_or(d.vision.layer_norm_eps),
            class_token: d.vision.class_token,
        };
        let cfg = match family {
            Family::Clip => ClipConfig {
                family,
                projection_dim: raw.projection_dim.unwrap_or(512),
                logit_scale_init_value: raw.logit_scale_init_value.unwrap_or(CLIP_LOGIT_SCALE_INIT),
                logit_bias_init_value: 0.0,
                text_config: text,
                vision_config: vision,
            },
            Family::Siglip => {
                // transformers builds no head then, and `get_image_features` returns
                // nothing comparable with the text embedding.
                if v.vision_use_head == Some(false) {
                    return Err(ClipError::Unsupported(
                        "vision_config.vision_use_head is false: without its attention-pooling \
                         head a SigLIP vision tower has no image embedding to compare with texts"
                            .into(),
                    ));
                }
                // A top-level `projection_dim` (pre-release SiglipConfig) is ignored, as
                // transformers ignores it: the text head's width is `projection_size`.
                ClipConfig {
                    family,
                    projection_dim: t.projection_size.unwrap_or(text.hidden_size),
                    logit_scale_init_value: SIGLIP_LOGIT_SCALE_INIT,
                    logit_bias_init_value: SIGLIP_LOGIT_BIAS_INIT,
                    text_config: text,
                    vision_config: vision,
                }
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// `config.json` as `transformers` reads it back (a `CLIPConfig` or a `SiglipConfig`).
    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        match self.family {
            Family::Clip => serde_json::to_string_pretty(&ClipJson {
                text_config: &self.text_config,
                vision_config: &self.vision_config,
                projection_dim: self.projection_dim,
                logit_scale_init_value: self.logit_scale_init_value,
                model_type: Family::Clip.as_str(),
            }),
            Family::Siglip => {
                let t = &self.text_config;
                let v = &self.vision_config;
                serde_json::to_string_pretty(&SiglipJson {
                    architectures: ["SiglipModel"],
                    model_type: Family::Siglip.as_str(),
                    text_config: SiglipTextJson {
                        hidden_size: t.hidden_size,
                        intermediate_size: t.intermediate_size,
                        num_attention_heads: t.num_attention_heads,
                        num_hidden_layers: t.num_hidden_layers,
                        max_position_embeddings: t.max_position_embeddings,
                        vocab_size: t.vocab_size,
                        hidden_act: t.hidden_act.siglip_name(),
                        layer_norm_eps: t.layer_norm_eps,
                        bos_token_id: t.bos_token_id,
                        eos_token_id: t.eos_token_id,
                        pad_token_id: t.pad_token_id,
                        projection_size: self.projection_dim,
                        model_type: "siglip_text_model",
                    },
                    vision_config: SiglipVisionJson {
                        hidden_size: v.hidden_size,
                        intermediate_size: v.intermediate_size,
                        num_attention_heads: v.num_attention_heads,
                        num_hidden_layers: v.num_hidden_layers,
                        image_size: v.image_size,
                        patch_size: v.patch_size,
                        num_channels: v.num_channels,
                        hidden_act: v.hidden_act.siglip_name(),
                        layer_norm_eps: v.layer_norm_eps,
                        vision_use_head: true,
                        model_type: "siglip_vision_model",
                    },
                })
            }
        }
        .unwrap_or_default()
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
        if !(self.logit_scale_init_value.is_finite() && self.logit_bias_init_value.is_finite()) {
            return Err(ClipError::Config(
                "logit_scale_init_value and logit_bias_init_value must be finite".into(),
            ));
        }
        let class_token = self.family == Family::Clip;
        if v.class_token != class_token {
            return Err(ClipError::Config(format!(
                "a {} vision tower {} a class token (vision_config.class_token is {})",
                self.family.display_name(),
                if class_token { "has" } else { "has no" },
                v.class_token
            )));
        }
        if t.causal != class_token {
            return Err(ClipError::Config(format!(
                "a {} text tower attends {} (text_config.causal is {})",
                self.family.display_name(),
                if class_token { "causally" } else { "both ways" },
                t.causal
            )));
        }
        // SigLIP compares the text head's output with the pooled image embedding directly
        // (no projection on the vision side), so the two widths must agree.
        if self.family == Family::Siglip && self.projection_dim != v.hidden_size {
            return Err(ClipError::Config(format!(
                "text_config.projection_size is {} (it defaults to text_config.hidden_size) but \
                 vision_config.hidden_size is {}: a SigLIP text head must map to the image \
                 embedding width",
                self.projection_dim, v.hidden_size
            )));
        }
        Ok(())
    }

    /// Named presets for the real checkpoints, for the weight generator and benchmarks.
    /// A full Hugging Face name (`openai/clip-vit-base-patch32`, `google/siglip2-...`) is
    /// accepted as well.
    pub fn preset(name: &str) -> Result<Self> {
        if let Some(shape) = Self::siglip_preset(name) {
            return Ok(Self::siglip_from_shape(&shape));
        }
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
            family: Family::Clip,
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
                causal: true,
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
                class_token: true,
            },
            projection_dim: proj,
            logit_scale_init_value: CLIP_LOGIT_SCALE_INIT,
            logit_bias_init_value: 0.0,
        })
    }

    /// The SigLIP checkpoints' shapes. Their `config.json` files give only the sizes
    /// below (everything else is the `SiglipTextConfig` / `SiglipVisionConfig` default:
    /// text length 64, gelu_pytorch_tanh, eps 1e-6, ids pad 1 / bos 49406 / eos 49407);
    /// transformers' `convert_siglip_to_hf.py` wrote them from the same table (base
    /// 768/3072/12 layers/12 heads, large 1024/4096/24/16, so400m 1152/4304/27/16;
    /// vocabulary 32000 for SigLIP, 256000 (Gemma's) for SigLIP 2).
    fn siglip_preset(name: &str) -> Option<SiglipShape> {
        const B: (usize, usize, usize, usize) = (768, 3072, 12, 12);
        const L: (usize, usize, usize, usize) = (1024, 4096, 24, 16);
        const SO400M: (usize, usize, usize, usize) = (1152, 4304, 27, 16);
        const SIGLIP: usize = 32_000;
        const SIGLIP2: usize = 256_000;
        let (size, patch, image, vocab) = match name {
            // google/siglip-base-patch16-224/config.json
            "siglip-b16-224" | "google/siglip-base-patch16-224" => (B, 16, 224, SIGLIP),
            // google/siglip-so400m-patch14-384/config.json
            "siglip-so400m-p14-384" | "google/siglip-so400m-patch14-384" => {
                (SO400M, 14, 384, SIGLIP)
            }
            // google/siglip2-base-patch16-224/config.json
            "siglip2-b16-224" | "google/siglip2-base-patch16-224" => (B, 16, 224, SIGLIP2),
            // google/siglip2-base-patch16-256/config.json
            "siglip2-b16-256" | "google/siglip2-base-patch16-256" => (B, 16, 256, SIGLIP2),
            // google/siglip2-base-patch32-256/config.json
            "siglip2-b32-256" | "google/siglip2-base-patch32-256" => (B, 32, 256, SIGLIP2),
            // google/siglip2-large-patch16-256/config.json
            "siglip2-l16-256" | "google/siglip2-large-patch16-256" => (L, 16, 256, SIGLIP2),
            // google/siglip2-so400m-patch14-384/config.json
            "siglip2-so400m-p14-384" | "google/siglip2-so400m-patch14-384" => {
                (SO400M, 14, 384, SIGLIP2)
            }
            // google/siglip2-so400m-patch16-256/config.json
            "siglip2-so400m-p16-256" | "google/siglip2-so400m-patch16-256" => {
                (SO400M, 16, 256, SIGLIP2)
            }
            // google/siglip2-so400m-patch16-384/config.json
            "siglip2-so400m-p16-384" | "google/siglip2-so400m-patch16-384" => {
                (SO400M, 16, 384, SIGLIP2)
            }
            // google/siglip2-so400m-patch16-512/config.json
            "siglip2-so400m-p16-512" | "google/siglip2-so400m-patch16-512" => {
                (SO400M, 16, 512, SIGLIP2)
            }
            _ => return None,
        };
        let (width, intermediate, layers, heads) = size;
        Some(SiglipShape {
            width,
            intermediate,
            layers,
            heads,
            patch,
            image,
            vocab,
        })
    }

    fn siglip_from_shape(s: &SiglipShape) -> ClipConfig {
        let d = Defaults::of(Family::Siglip);
        ClipConfig {
            family: Family::Siglip,
            text_config: TextConfig {
                hidden_size: s.width,
                intermediate_size: s.intermediate,
                num_attention_heads: s.heads,
                num_hidden_layers: s.layers,
                vocab_size: s.vocab,
                ..d.text
            },
            vision_config: VisionConfig {
                hidden_size: s.width,
                intermediate_size: s.intermediate,
                num_attention_heads: s.heads,
                num_hidden_layers: s.layers,
                image_size: s.image,
                patch_size: s.patch,
                ..d.vision
            },
            projection_dim: s.width,
            logit_scale_init_value: SIGLIP_LOGIT_SCALE_INIT,
            logit_bias_init_value: SIGLIP_LOGIT_BIAS_INIT,
        }
    }

    pub const PRESETS: &'static [&'static str] = &[
        "vit-b-32",
        "vit-b-16",
        "vit-l-14",
        "vit-l-14-336",
        "siglip-b16-224",
        "siglip-so400m-p14-384",
        "siglip2-b16-224",
        "siglip2-b16-256",
        "siglip2-b32-256",
        "siglip2-l16-256",
        "siglip2-so400m-p14-384",
        "siglip2-so400m-p16-256",
        "siglip2-so400m-p16-384",
        "siglip2-so400m-p16-512",
    ];
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    /// `$WEBCLIP_FIXTURES`, else `../shared/fixtures` beside the project root (as the
    /// integration tests find them).
    fn fixtures() -> PathBuf {
        match std::env::var_os("WEBCLIP_FIXTURES") {
            Some(p) => PathBuf::from(p),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
        }
    }

    /// Every model folder (one with a `config.json`) directly under `dir`.
    fn model_dirs(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read fixtures at {}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("config.json").exists())
            .collect();
        out.sort();
        out
    }

    fn err(json: &str) -> ClipError {
        ClipConfig::from_json(json.as_bytes()).unwrap_err()
    }

    /// Every size the file states is the parsed one (absent ones are defaults).
    fn assert_matches_file(cfg: &ClipConfig, json: &serde_json::Value, dir: &Path) {
        let t = &cfg.text_config;
        let v = &cfg.vision_config;
        let text = [
            ("hidden_size", t.hidden_size as u64),
            ("intermediate_size", t.intermediate_size as u64),
            ("num_attention_heads", t.num_attention_heads as u64),
            ("num_hidden_layers", t.num_hidden_layers as u64),
            ("max_position_embeddings", t.max_position_embeddings as u64),
            ("vocab_size", t.vocab_size as u64),
            ("bos_token_id", t.bos_token_id as u64),
            ("eos_token_id", t.eos_token_id as u64),
            ("pad_token_id", t.pad_token_id as u64),
        ];
        let vision = [
            ("hidden_size", v.hidden_size as u64),
            ("intermediate_size", v.intermediate_size as u64),
            ("num_attention_heads", v.num_attention_heads as u64),
            ("num_hidden_layers", v.num_hidden_layers as u64),
            ("image_size", v.image_size as u64),
            ("patch_size", v.patch_size as u64),
            ("num_channels", v.num_channels as u64),
        ];
        for (sub, fields) in [("text_config", &text[..]), ("vision_config", &vision[..])] {
            for (k, got) in fields {
                if let Some(want) = json[sub][k].as_u64() {
                    assert_eq!(*got, want, "{}: {sub}.{k}", dir.display());
                }
            }
        }
        for (sub, eps) in [
            ("text_config", t.layer_norm_eps),
            ("vision_config", v.layer_norm_eps),
        ] {
            let want = json[sub]["layer_norm_eps"].as_f64().unwrap() as f32;
            assert_eq!(eps, want, "{}: {sub}.layer_norm_eps", dir.display());
        }
    }

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
            cfg.validate().unwrap();
            let json = cfg.to_json();
            assert_eq!(
                ClipConfig::from_json(json.as_bytes()).unwrap(),
                cfg,
                "{name}: {json}"
            );
        }
    }

    #[test]
    fn family_comes_from_model_type_then_architectures_then_sub_configs() {
        for (json, family) in [
            (r#"{}"#, Family::Clip),
            (r#"{"model_type": "clip"}"#, Family::Clip),
            (r#"{"model_type": "siglip"}"#, Family::Siglip),
            (r#"{"architectures": ["CLIPModel"]}"#, Family::Clip),
            (r#"{"architectures": ["SiglipModel"]}"#, Family::Siglip),
            (
                r#"{"text_config": {"model_type": "siglip_text_model"}}"#,
                Family::Siglip,
            ),
            (
                r#"{"vision_config": {"model_type": "clip_vision_model"}}"#,
                Family::Clip,
            ),
            // model_type decides even when a stale architectures entry disagrees.
            (
                r#"{"model_type": "siglip", "architectures": ["CLIPModel"]}"#,
                Family::Siglip,
            ),
        ] {
            let cfg = ClipConfig::from_json(json.as_bytes()).unwrap();
            assert_eq!(cfg.family, family, "{json}");
            assert_eq!(cfg.vision_config.class_token, family == Family::Clip);
        }
    }

    #[test]
    fn siglip_defaults_are_transformers_defaults() {
        let cfg = ClipConfig::from_json(br#"{"model_type": "siglip"}"#).unwrap();
        let (t, v) = (&cfg.text_config, &cfg.vision_config);
        assert_eq!(t.max_position_embeddings, 64);
        assert_eq!(t.vocab_size, 32000);
        assert_eq!(
            (t.hidden_act, v.hidden_act),
            (Activation::GeluTanh, Activation::GeluTanh)
        );
        assert_eq!((t.layer_norm_eps, v.layer_norm_eps), (1e-6, 1e-6));
        assert_eq!(
            (t.pad_token_id, t.bos_token_id, t.eos_token_id),
            (1, 49406, 49407)
        );
        assert_eq!((v.image_size, v.patch_size), (224, 16));
        // projection_size defaults to the text hidden size, here equal to the vision one.
        assert_eq!(cfg.projection_dim, 768);
        assert_eq!(v.num_positions(), 196);
        assert_eq!(cfg.logit_scale_init_value, std::f32::consts::LN_10);
        assert_eq!(cfg.logit_bias_init_value, -10.0);
        // A CLIP ViT-B/32 at the CLIP defaults keeps its class token.
        let clip = ClipConfig::from_json(b"{}").unwrap();
        assert_eq!(clip.vision_config.num_positions(), 7 * 7 + 1);
    }

    #[test]
    fn families_webclip_does_not_run_are_unsupported_and_named() {
        for (json, needle) in [
            (r#"{"model_type": "blip"}"#, r#"`model_type` "blip""#),
            (r#"{"model_type": "chinese_clip"}"#, r#""chinese_clip""#),
            (r#"{"model_type": "align"}"#, r#""align""#),
            (r#"{"model_type": "siglip2"}"#, "NaFlex"),
            (r#"{"architectures": ["BlipModel"]}"#, "BlipModel"),
            (r#"{"architectures": ["Siglip2Model"]}"#, "NaFlex"),
        ] {
            let e = err(json);
            assert!(matches!(e, ClipError::Unsupported(_)), "{json}: {e:?}");
            let msg = e.to_string();
            assert!(
                msg.contains("webclip runs CLIP and SigLIP checkpoints") && msg.contains(needle),
                "{json}: {msg}"
            );
        }
        let e = err(r#"{"model_type": "siglip2"}"#);
        assert!(e.to_string().contains(r#""siglip2""#), "{e}");
    }

    #[test]
    fn sub_configs_of_the_other_family_are_rejected() {
        let e =
            err(r#"{"model_type": "clip", "text_config": {"model_type": "siglip_text_model"}}"#);
        assert!(matches!(e, ClipError::Config(_)), "{e:?}");
        assert!(e.to_string().contains("siglip_text_model"), "{e}");
    }

    #[test]
    fn siglip_without_its_head_is_unsupported_naming_the_field() {
        let e = err(r#"{"model_type": "siglip", "vision_config": {"vision_use_head": false}}"#);
        assert!(matches!(e, ClipError::Unsupported(_)), "{e:?}");
        assert!(e.to_string().contains("vision_use_head"), "{e}");
        // true, or absent, is the head every checkpoint has.
        let ok = r#"{"model_type": "siglip", "vision_config": {"vision_use_head": true}}"#;
        ClipConfig::from_json(ok.as_bytes()).unwrap();
    }

    #[test]
    fn siglip_projection_size_must_be_the_vision_width() {
        let e = err(
            r#"{"model_type": "siglip", "text_config": {"projection_size": 512},
                "vision_config": {"hidden_size": 768}}"#,
        );
        assert!(matches!(e, ClipError::Config(_)), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("projection_size") && msg.contains("512") && msg.contains("768"),
            "{msg}"
        );
        // Absent, it is the text width: a narrower text tower then needs it stated.
        let e = err(
            r#"{"model_type": "siglip", "text_config": {"hidden_size": 96, "num_attention_heads": 6},
                "vision_config": {"hidden_size": 128, "num_attention_heads": 8}}"#,
        );
        assert!(
            e.to_string().contains("96") && e.to_string().contains("128"),
            "{e}"
        );
        let cfg = ClipConfig::from_json(
            br#"{"model_type": "siglip",
                 "text_config": {"hidden_size": 96, "num_attention_heads": 6, "projection_size": 128},
                 "vision_config": {"hidden_size": 128, "num_attention_heads": 8}}"#,
        )
        .unwrap();
        assert_eq!(cfg.projection_dim, 128);
        // A hand-made config is held to the same rule.
        let mut bad = ClipConfig::preset("siglip2-b16-224").unwrap();
        bad.projection_dim = 512;
        let msg = bad.validate().unwrap_err().to_string();
        assert!(msg.contains("512") && msg.contains("768"), "{msg}");
        bad.projection_dim = 768;
        bad.vision_config.class_token = true;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("class token"));
    }

    #[test]
    fn siglip_presets_have_the_real_shapes() {
        let p = |n: &str| ClipConfig::preset(n).unwrap();
        let b16 = p("siglip2-b16-224");
        assert_eq!(b16, p("google/siglip2-base-patch16-224"));
        assert_eq!(b16.family, Family::Siglip);
        assert_eq!(b16.text_config.vocab_size, 256_000);
        assert_eq!(b16.text_config.max_position_embeddings, 64);
        assert_eq!(b16.vision_config.num_positions(), 196);
        assert_eq!(b16.projection_dim, 768);
        assert_eq!(p("siglip-b16-224").text_config.vocab_size, 32_000);
        assert_eq!(p("siglip2-b32-256").vision_config.num_positions(), 64);
        assert_eq!(p("siglip2-l16-256").vision_config.num_positions(), 256);
        assert_eq!(p("siglip2-l16-256").projection_dim, 1024);
        for name in ["siglip-so400m-p14-384", "siglip2-so400m-p14-384"] {
            let c = p(name);
            assert_eq!(c.vision_config.num_positions(), 729, "{name}");
            assert_eq!(
                (
                    c.vision_config.hidden_size,
                    c.vision_config.intermediate_size
                ),
                (1152, 4304)
            );
            assert_eq!(c.vision_config.num_hidden_layers, 27);
            assert_eq!(c.text_config.num_hidden_layers, 27);
        }
        assert_eq!(
            p("siglip2-so400m-p16-384").vision_config.num_positions(),
            576
        );
        // The CLIP presets keep their class token.
        assert_eq!(p("vit-b-16").vision_config.num_positions(), 197);
        let e = ClipConfig::preset("siglip3").unwrap_err().to_string();
        assert!(e.contains("siglip2-b16-224"), "{e}");
    }

    #[test]
    fn siglip_json_is_a_siglip_config() {
        let json: serde_json::Value =
            serde_json::from_str(&ClipConfig::preset("siglip2-b16-224").unwrap().to_json())
                .unwrap();
        assert_eq!(json["model_type"], "siglip");
        assert_eq!(json["architectures"][0], "SiglipModel");
        assert!(json.get("projection_dim").is_none());
        assert_eq!(json["text_config"]["projection_size"], 768);
        assert_eq!(json["text_config"]["hidden_act"], "gelu_pytorch_tanh");
        assert_eq!(json["vision_config"]["vision_use_head"], true);
        assert!(json["vision_config"].get("class_token").is_none());
        let clip: serde_json::Value =
            serde_json::from_str(&ClipConfig::preset("vit-b-32").unwrap().to_json()).unwrap();
        assert_eq!(clip["model_type"], "clip");
        assert_eq!(clip["projection_dim"], 512);
        assert!(clip["vision_config"].get("class_token").is_none());
    }

    #[test]
    fn siglip_fixtures_parse_with_their_family_and_sizes() {
        let dirs = model_dirs(&fixtures().join("siglip"));
        assert!(dirs.len() >= 2, "SigLIP fixtures missing: {dirs:?}");
        for dir in &dirs {
            let bytes = std::fs::read(dir.join("config.json")).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let cfg = ClipConfig::from_json(&bytes).unwrap();
            assert_eq!(cfg.family, Family::Siglip, "{}", dir.display());
            assert_matches_file(&cfg, &json, dir);
            let v = &cfg.vision_config;
            assert_eq!(cfg.projection_dim, v.hidden_size);
            assert_eq!(
                cfg.projection_dim as u64,
                json["text_config"]["projection_size"].as_u64().unwrap()
            );
            assert_eq!(v.num_positions(), v.grid() * v.grid());
            assert_eq!(cfg.text_config.hidden_act, Activation::GeluTanh);
            assert_eq!(
                ClipConfig::from_json(cfg.to_json().as_bytes()).unwrap(),
                cfg
            );
        }
        let by_name = |n: &str| {
            let d = dirs.iter().find(|d| d.ends_with(n)).unwrap();
            ClipConfig::from_json(&std::fs::read(d.join("config.json")).unwrap()).unwrap()
        };
        let spm = by_name("siglip-spm");
        assert_eq!(spm.vision_config.num_positions(), 196);
        assert_eq!((spm.text_config.vocab_size, spm.projection_dim), (1500, 64));
        let gemma = by_name("siglip2-gemma");
        assert_eq!(gemma.vision_config.num_positions(), 64);
        assert_eq!(gemma.text_config.hidden_size, 96);
        assert_eq!(gemma.projection_dim, 128);
        assert_eq!(gemma.text_config.pad_token_id, 0);
    }

    #[test]
    fn clip_fixtures_parse_as_clip() {
        let dirs = model_dirs(&fixtures());
        assert!(dirs.len() >= 2, "CLIP fixtures missing: {dirs:?}");
        for dir in &dirs {
            let bytes = std::fs::read(dir.join("config.json")).unwrap();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let cfg = ClipConfig::from_json(&bytes).unwrap();
            assert_eq!(cfg.family, Family::Clip, "{}", dir.display());
            assert_matches_file(&cfg, &json, dir);
            assert_eq!(
                cfg.projection_dim as u64,
                json["projection_dim"].as_u64().unwrap()
            );
            assert_eq!(
                cfg.logit_scale_init_value,
                json["logit_scale_init_value"].as_f64().unwrap() as f32
            );
            let v = &cfg.vision_config;
            assert_eq!(v.num_positions(), v.grid() * v.grid() + 1);
            assert_eq!(
                ClipConfig::from_json(cfg.to_json().as_bytes()).unwrap(),
                cfg
            );
        }
        let tiny = dirs.iter().find(|d| d.ends_with("tiny-quickgelu")).unwrap();
        let cfg = ClipConfig::from_json(&std::fs::read(tiny.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg.text_config.hidden_act, Activation::QuickGelu);
        assert_eq!(cfg.vision_config.num_positions(), 7 * 7 + 1);
    }
}
