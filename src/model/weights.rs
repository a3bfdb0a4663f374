//! Weight structs mirroring `transformers.CLIPModel`'s module tree, generic over how an
//! engine stores a tensor (`W`): the CPU engine keeps f32 (matrices packed for its
//! kernel), the GPU engine keeps buffers. Loading goes tensor by tensor through the
//! engine's `make` function, so a weight is converted once and the f32 copy is dropped
//! right after (the GPU engine keeps no CPU copy at all).

use super::config::{ClipConfig, TextConfig, VisionConfig};
use super::safetensors::{SafeTensors, TensorBytes};
use crate::error::{ClipError, Result};

/// Which encoders to load. A tagger that precomputed its label embeddings needs only vision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Towers {
    #[default]
    Both,
    Vision,
    Text,
}

impl Towers {
    pub fn vision(self) -> bool {
        matches!(self, Towers::Both | Towers::Vision)
    }
    pub fn text(self) -> bool {
        matches!(self, Towers::Both | Towers::Text)
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "both" => Ok(Towers::Both),
            "vision" | "image" => Ok(Towers::Vision),
            "text" => Ok(Towers::Text),
            _ => Err(ClipError::Input(format!(
                "towers must be both, vision or text, not `{s}`"
            ))),
        }
    }
    /// Whether a tensor of the checkpoint belongs to a loaded tower.
    pub fn wants(self, tensor_name: &str) -> bool {
        if tensor_name.starts_with("vision_model.") || tensor_name.starts_with("visual_projection.")
        {
            self.vision()
        } else if tensor_name.starts_with("text_model.")
            || tensor_name.starts_with("text_projection.")
        {
            self.text()
        } else {
            true
        }
    }
}

/// How a tensor is used, so an engine can pick its storage layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightRole {
    /// `[out, in]` weight of a linear layer (`y = x W^T + b`); the patch conv is one too,
    /// flattened to `[hidden, channels * patch * patch]`.
    Matrix,
    /// A bias, LayerNorm scale/shift, or the class embedding: `[n]`.
    Vector,
    /// Rows looked up or added by position: token and position embeddings `[rows, dim]`.
    Table,
}

/// A weight as read from the file, converted to f32.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// The Hugging Face name, for errors.
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Debug)]
pub struct Linear<W> {
    pub weight: W,       // [out, in]
    pub bias: Option<W>, // [out]
    pub in_features: usize,
    pub out_features: usize,
}

#[derive(Debug)]
pub struct LayerNorm<W> {
    pub weight: W, // [dim]
    pub bias: W,   // [dim]
    pub eps: f32,
    pub dim: usize,
}

#[derive(Debug)]
pub struct Attention<W> {
    pub q_proj: Linear<W>,
    pub k_proj: Linear<W>,
    pub v_proj: Linear<W>,
    pub out_proj: Linear<W>,
    pub num_heads: usize,
}

#[derive(Debug)]
pub struct Mlp<W> {
    pub fc1: Linear<W>, // [intermediate, hidden]
    pub fc2: Linear<W>, // [hidden, intermediate]
}

#[derive(Debug)]
pub struct EncoderLayer<W> {
    pub layer_norm1: LayerNorm<W>,
    pub self_attn: Attention<W>,
    pub layer_norm2: LayerNorm<W>,
    pub mlp: Mlp<W>,
}

#[derive(Debug)]
pub struct VisionTower<W> {
    pub config: VisionConfig,
    /// The patch conv (stride = kernel = patch, no bias) as a matrix `[hidden, C*P*P]`.
    pub patch_embedding: Linear<W>,
    pub class_embedding: W,    // [hidden]
    pub position_embedding: W, // [grid*grid + 1, hidden]
    pub pre_layrnorm: LayerNorm<W>,
    pub layers: Vec<EncoderLayer<W>>,
    pub post_layernorm: LayerNorm<W>,
    pub visual_projection: Linear<W>, // [proj, hidden], no bias
}

#[derive(Debug)]
pub struct TextTower<W> {
    pub config: TextConfig,
    pub token_embedding: W,    // [vocab, hidden]
    pub position_embedding: W, // [context, hidden]
    pub layers: Vec<EncoderLayer<W>>,
    pub final_layer_norm: LayerNorm<W>,
    pub text_projection: Linear<W>, // [proj, hidden], no bias
}

#[derive(Debug)]
pub struct ClipModel<W> {
    pub config: ClipConfig,
    pub vision: Option<VisionTower<W>>,
    pub text: Option<TextTower<W>>,
    /// `exp(logit_scale)` multiplies cosine similarities into logits.
    pub logit_scale: f32,
}

impl<W> ClipModel<W> {
    pub fn vision(&self) -> Result<&VisionTower<W>> {
        self.vision
            .as_ref()
            .ok_or(ClipError::TowerNotLoaded("vision"))
    }
    pub fn text(&self) -> Result<&TextTower<W>> {
        self.text.as_ref().ok_or(ClipError::TowerNotLoaded("text"))
    }
    pub fn towers(&self) -> Towers {
        match (self.vision.is_some(), self.text.is_some()) {
            (true, false) => Towers::Vision,
            (false, true) => Towers::Text,
            _ => Towers::Both,
        }
    }
}

/// Every tensor a CLIP checkpoint of this config holds, with its Hugging Face name, shape
/// and role, in module order. The loader and the random-weight generator both use it.
pub fn tensor_specs(config: &ClipConfig, towers: Towers) -> Vec<(String, Vec<usize>, WeightRole)> {
    let mut out = Vec::new();
    let layers = |prefix: &str, n: usize, hidden: usize, inter: usize, out: &mut Vec<_>| {
        for i in 0..n {
            let p = format!("{prefix}.encoder.layers.{i}");
            for ln in ["layer_norm1", "layer_norm2"] {
                out.push((format!("{p}.{ln}.weight"), vec![hidden], WeightRole::Vector));
                out.push((format!("{p}.{ln}.bias"), vec![hidden], WeightRole::Vector));
            }
            for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
                out.push((
                    format!("{p}.self_attn.{proj}.weight"),
                    vec![hidden, hidden],
                    WeightRole::Matrix,
                ));
                out.push((
                    format!("{p}.self_attn.{proj}.bias"),
                    vec![hidden],
                    WeightRole::Vector,
                ));
            }
            out.push((
                format!("{p}.mlp.fc1.weight"),
                vec![inter, hidden],
                WeightRole::Matrix,
            ));
            out.push((format!("{p}.mlp.fc1.bias"), vec![inter], WeightRole::Vector));
            out.push((
                format!("{p}.mlp.fc2.weight"),
                vec![hidden, inter],
                WeightRole::Matrix,
            ));
            out.push((
                format!("{p}.mlp.fc2.bias"),
                vec![hidden],
                WeightRole::Vector,
            ));
        }
    };
    let proj = config.projection_dim;
    if towers.text() {
        let t = &config.text_config;
        let h = t.hidden_size;
        out.push((
            "text_model.embeddings.token_embedding.weight".into(),
            vec![t.vocab_size, h],
            WeightRole::Table,
        ));
        out.push((
            "text_model.embeddings.position_embedding.weight".into(),
            vec![t.max_position_embeddings, h],
            WeightRole::Table,
        ));
        layers(
            "text_model",
            t.num_hidden_layers,
            h,
            t.intermediate_size,
            &mut out,
        );
        out.push((
            "text_model.final_layer_norm.weight".into(),
            vec![h],
            WeightRole::Vector,
        ));
        out.push((
            "text_model.final_layer_norm.bias".into(),
            vec![h],
            WeightRole::Vector,
        ));
        out.push((
            "text_projection.weight".into(),
            vec![proj, h],
            WeightRole::Matrix,
        ));
    }
    if towers.vision() {
        let v = &config.vision_config;
        let h = v.hidden_size;
        out.push((
            "vision_model.embeddings.class_embedding".into(),
            vec![h],
            WeightRole::Vector,
        ));
        out.push((
            "vision_model.embeddings.patch_embedding.weight".into(),
            vec![h, v.num_channels, v.patch_size, v.patch_size],
            WeightRole::Matrix,
        ));
        out.push((
            "vision_model.embeddings.position_embedding.weight".into(),
            vec![v.num_positions(), h],
            WeightRole::Table,
        ));
        out.push((
            "vision_model.pre_layrnorm.weight".into(),
            vec![h],
            WeightRole::Vector,
        ));
        out.push((
            "vision_model.pre_layrnorm.bias".into(),
            vec![h],
            WeightRole::Vector,
        ));
        layers(
            "vision_model",
            v.num_hidden_layers,
            h,
            v.intermediate_size,
            &mut out,
        );
        out.push((
            "vision_model.post_layernorm.weight".into(),
            vec![h],
            WeightRole::Vector,
        ));
        out.push((
            "vision_model.post_layernorm.bias".into(),
            vec![h],
            WeightRole::Vector,
        ));
        out.push((
            "visual_projection.weight".into(),
            vec![proj, h],
            WeightRole::Matrix,
        ));
    }
    out.push(("logit_scale".into(), vec![], WeightRole::Vector));
    out
}

/// Reads tensors by name from a parsed safetensors header, checks their shapes against
/// the config, and hands them to the engine's `make`.
struct Reader<'a, S: TensorBytes + ?Sized, W> {
    st: &'a SafeTensors,
    src: &'a S,
    make: &'a mut dyn FnMut(WeightRole, HostTensor) -> Result<W>,
}

impl<S: TensorBytes + ?Sized, W> Reader<'_, S, W> {
    fn host(&mut self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let info = self.st.info(name)?;
        // A scalar may be stored as [] or [1]; the patch conv as 4-d. Compare element
        // counts only where the layouts are interchangeable.
        let same = info.shape == expected
            || (expected.is_empty() && info.shape == [1])
            || (expected == [1] && info.shape.is_empty());
        if !same {
            return Err(ClipError::TensorShape {
                name: name.into(),
                expected: expected.to_vec(),
                found: info.shape.clone(),
            });
        }
        let data = self.st.read_f32(self.src, name)?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(ClipError::SafeTensors(format!(
                "tensor `{name}` holds a non-finite value ({}) at index {i}: corrupt weights",
                data[i]
            )));
        }
        Ok(HostTensor {
            name: name.into(),
            shape: info.shape.clone(),
            data,
        })
    }

    fn tensor(&mut self, name: &str, expected: &[usize], role: WeightRole) -> Result<W> {
        let t = self.host(name, expected)?;
        (self.make)(role, t)
    }

    fn linear(&mut self, prefix: &str, out_f: usize, in_f: usize, bias: bool) -> Result<Linear<W>> {
        Ok(Linear {
            weight: self.tensor(
                &format!("{prefix}.weight"),
                &[out_f, in_f],
                WeightRole::Matrix,
            )?,
            bias: if bias {
                Some(self.tensor(&format!("{prefix}.bias"), &[out_f], WeightRole::Vector)?)
            } else {
                None
            },
            in_features: in_f,
            out_features: out_f,
        })
    }

    fn layer_norm(&mut self, prefix: &str, dim: usize, eps: f32) -> Result<LayerNorm<W>> {
        Ok(LayerNorm {
            weight: self.tensor(&format!("{prefix}.weight"), &[dim], WeightRole::Vector)?,
            bias: self.tensor(&format!("{prefix}.bias"), &[dim], WeightRole::Vector)?,
            eps,
            dim,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn layers(
        &mut self,
        prefix: &str,
        n: usize,
        hidden: usize,
        inter: usize,
        heads: usize,
        eps: f32,
    ) -> Result<Vec<EncoderLayer<W>>> {
        (0..n)
            .map(|i| {
                let p = format!("{prefix}.encoder.layers.{i}");
                Ok(EncoderLayer {
                    layer_norm1: self.layer_norm(&format!("{p}.layer_norm1"), hidden, eps)?,
                    self_attn: Attention {
                        q_proj: self.linear(
                            &format!("{p}.self_attn.q_proj"),
                            hidden,
                            hidden,
                            true,
                        )?,
                        k_proj: self.linear(
                            &format!("{p}.self_attn.k_proj"),
                            hidden,
                            hidden,
                            true,
                        )?,
                        v_proj: self.linear(
                            &format!("{p}.self_attn.v_proj"),
                            hidden,
                            hidden,
                            true,
                        )?,
                        out_proj: self.linear(
                            &format!("{p}.self_attn.out_proj"),
                            hidden,
                            hidden,
                            true,
                        )?,
                        num_heads: heads,
                    },
                    layer_norm2: self.layer_norm(&format!("{p}.layer_norm2"), hidden, eps)?,
                    mlp: Mlp {
                        fc1: self.linear(&format!("{p}.mlp.fc1"), inter, hidden, true)?,
                        fc2: self.linear(&format!("{p}.mlp.fc2"), hidden, inter, true)?,
                    },
                })
            })
            .collect()
    }
}

impl<W> ClipModel<W> {
    /// Load the requested towers from a safetensors file whose header is `st` and whose
    /// bytes `src` provides. `make` turns each f32 tensor into the engine's storage.
    pub fn load<S: TensorBytes + ?Sized>(
        config: &ClipConfig,
        st: &SafeTensors,
        src: &S,
        towers: Towers,
        make: &mut dyn FnMut(WeightRole, HostTensor) -> Result<W>,
    ) -> Result<Self> {
        config.validate()?;
        let mut r = Reader { st, src, make };
        let proj = config.projection_dim;
        let logit_scale = r.host("logit_scale", &[])?.data[0];

        let text = if towers.text() {
            let t = &config.text_config;
            let h = t.hidden_size;
            Some(TextTower {
                config: t.clone(),
                token_embedding: r.tensor(
                    "text_model.embeddings.token_embedding.weight",
                    &[t.vocab_size, h],
                    WeightRole::Table,
                )?,
                position_embedding: r.tensor(
                    "text_model.embeddings.position_embedding.weight",
                    &[t.max_position_embeddings, h],
                    WeightRole::Table,
                )?,
                layers: r.layers(
                    "text_model",
                    t.num_hidden_layers,
                    h,
                    t.intermediate_size,
                    t.num_attention_heads,
                    t.layer_norm_eps,
                )?,
                final_layer_norm: r.layer_norm(
                    "text_model.final_layer_norm",
                    h,
                    t.layer_norm_eps,
                )?,
                text_projection: r.linear("text_projection", proj, h, false)?,
            })
        } else {
            None
        };

        let vision = if towers.vision() {
            let v = &config.vision_config;
            let h = v.hidden_size;
            let conv_name = "vision_model.embeddings.patch_embedding.weight";
            let mut conv = r.host(conv_name, &[h, v.num_channels, v.patch_size, v.patch_size])?;
            conv.shape = vec![h, v.patch_dim()];
            let patch_weight = (r.make)(WeightRole::Matrix, conv)?;
            Some(VisionTower {
                config: v.clone(),
                patch_embedding: Linear {
                    weight: patch_weight,
                    bias: None,
                    in_features: v.patch_dim(),
                    out_features: h,
                },
                class_embedding: r.tensor(
                    "vision_model.embeddings.class_embedding",
                    &[h],
                    WeightRole::Vector,
                )?,
                position_embedding: r.tensor(
                    "vision_model.embeddings.position_embedding.weight",
                    &[v.num_positions(), h],
                    WeightRole::Table,
                )?,
                pre_layrnorm: r.layer_norm("vision_model.pre_layrnorm", h, v.layer_norm_eps)?,
                layers: r.layers(
                    "vision_model",
                    v.num_hidden_layers,
                    h,
                    v.intermediate_size,
                    v.num_attention_heads,
                    v.layer_norm_eps,
                )?,
                post_layernorm: r.layer_norm("vision_model.post_layernorm", h, v.layer_norm_eps)?,
                visual_projection: r.linear("visual_projection", proj, h, false)?,
            })
        } else {
            None
        };

        Ok(ClipModel {
            config: config.clone(),
            vision,
            text,
            logit_scale,
        })
    }
}
