//! Weight structs mirroring `transformers.CLIPModel`'s module tree, generic over how a
//! backend stores a tensor (`W`): the CPU backend keeps f32 (matrices packed for its
//! kernel), the GPU backend keeps buffers.
//!
//! The checkpoint layout (every Hugging Face tensor name, shape and role) is written once,
//! in [`describe`], over a [`TensorSource`]: the file source loads and checks each tensor
//! and hands it to the backend's `make` (tensor by tensor, so the f32 copy is dropped right
//! after and the GPU backend keeps no CPU copy at all); the recording source only lists
//! them, for the random-weight generator and for planning tower-only downloads.

use super::config::{ClipConfig, Family, TextConfig, VisionConfig};
use super::quantize::{self, Scheme, Q8};
use super::safetensors::{Dtype, SafeTensors, TensorBytes};
use crate::error::{ClipError, Result};

/// Which encoders to load. A tagger that precomputed its label embeddings needs only vision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Towers {
    #[default]
    Both,
    Vision,
    Text,
}

/// The encoder a tensor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tower {
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
    /// Whether a tensor of `tower` is loaded; `None` (a tensor of the whole model, such as
    /// `logit_scale`) always is.
    pub fn includes(self, tower: Option<Tower>) -> bool {
        match tower {
            Some(Tower::Vision) => self.vision(),
            Some(Tower::Text) => self.text(),
            None => true,
        }
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
    /// Whether a tensor of the checkpoint belongs to a loaded tower, by CLIP's name
    /// prefixes alone (for a header read before the config). With a config,
    /// [`tensor_specs`] lists exactly the tensors a set of towers loads.
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

/// How a tensor is used, so a backend can pick its storage layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightRole {
    /// `[out, in]` weight of a linear layer (`y = x W^T + b`); the patch conv is one too,
    /// stored 4-d and handed to the backend flattened to `[hidden, channels * patch * patch]`.
    Matrix,
    /// A bias, a LayerNorm shift, or the class embedding: `[n]`.
    Vector,
    /// A LayerNorm scale `[n]`: stored like a vector; trained values sit around 1.
    NormScale,
    /// Rows looked up or added by position: token and position embeddings `[rows, dim]`.
    Table,
}

/// A weight as read from the file: converted to f32, or (an int8 matrix or token table)
/// kept as int8 with its scales.
#[derive(Debug, Clone)]
pub struct HostTensor {
    /// The Hugging Face name, for errors.
    pub name: String,
    pub shape: Vec<usize>,
    /// The values; empty when `quant` holds them.
    pub data: Vec<f32>,
    /// An int8 matrix `[shape[0], rest]` (see `model::quantize`).
    pub quant: Option<Q8>,
}

impl HostTensor {
    /// A float tensor.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Self {
        HostTensor {
            name: name.into(),
            shape,
            data,
            quant: None,
        }
    }

    /// The values as f32 (int8 ones dequantised).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.quant {
            Some(q) => q.dequantize(),
            None => self.data.clone(),
        }
    }

    /// Quantise a float matrix in memory (the `weights: 'int8'` load option), with the
    /// converter's layout; a tensor the int8 format keeps as float is returned as it is.
    pub fn quantized(mut self, role: WeightRole, group: usize) -> Result<Self> {
        if self.quant.is_none() && quantize::quantizes(role, &self.name) {
            let (rows, cols) = quantize::matrix_dims(&self.shape);
            self.quant = Some(Q8::quantize(&self.data, rows, cols, group)?);
            self.data = Vec::new();
        }
        Ok(self)
    }
}

/// What a described tensor is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TensorKind {
    /// Handed to the backend, stored as the role says.
    Weight(WeightRole),
    /// A number the graph reads on the host (`logit_scale`), stored as `[]` (or `[1]`);
    /// `typical` is a trained checkpoint's value, which random weights take.
    Scalar { typical: f32 },
    /// A small tensor the graph keeps on the host and feeds in as an input (SigLIP's
    /// attention-pooling probe); random weights give it unit-ish values.
    Host,
}

/// One tensor of a checkpoint, as [`describe`] names it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// The Hugging Face name.
    pub name: String,
    /// The shape stored in the file.
    pub shape: Vec<usize>,
    pub kind: TensorKind,
    /// `None` for a tensor of the whole model (`logit_scale`), loaded with either tower.
    pub tower: Option<Tower>,
}

/// Where [`describe`] gets each tensor it names.
pub trait TensorSource {
    /// A weight in the storage of the model being built.
    type W;
    /// The tensor `name` of file shape `shape`.
    fn weight(
        &mut self,
        name: &str,
        shape: &[usize],
        role: WeightRole,
        tower: Option<Tower>,
    ) -> Result<Self::W>;
    /// The scalar tensor `name`, see [`TensorKind::Scalar`].
    fn scalar(&mut self, name: &str, typical: f32, tower: Option<Tower>) -> Result<f32>;
    /// The tensor `name` as f32 on the host, see [`TensorKind::Host`].
    fn host(&mut self, name: &str, shape: &[usize], tower: Option<Tower>) -> Result<Vec<f32>>;
    /// The tensor `name` of file shape `shape`, cut along its first dimension into
    /// `parts` equal weights (PyTorch's `nn.MultiheadAttention` packs q, k and v into one
    /// `in_proj_weight` / `in_proj_bias`). Each part has the role's shape.
    fn split(
        &mut self,
        name: &str,
        shape: &[usize],
        parts: usize,
        role: WeightRole,
        tower: Option<Tower>,
    ) -> Result<Vec<Self::W>>;
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

/// SigLIP's `SiglipMultiheadAttentionPoolingHead`: one learned query attends over every
/// token (`nn.MultiheadAttention`, q/k/v unpacked from `in_proj`), then a LayerNorm'd MLP
/// with a residual; its output is the image embedding.
#[derive(Debug)]
pub struct PoolingHead<W> {
    /// `head.probe` `[1, 1, hidden]`, kept on the host: the single query.
    pub probe: Vec<f32>,
    pub attention: Attention<W>,
    pub layernorm: LayerNorm<W>,
    pub mlp: Mlp<W>,
}

/// How the vision tower pools its tokens into one embedding.
#[derive(Debug)]
pub enum VisionPooling<W> {
    /// CLIP: the class token, `post_layernorm`, then `visual_projection` `[proj, hidden]`
    /// (no bias).
    ClassToken { visual_projection: Linear<W> },
    /// SigLIP: `post_layernorm` over every token, then the attention-pooling head.
    Head(PoolingHead<W>),
}

#[derive(Debug)]
pub struct VisionTower<W> {
    pub config: VisionConfig,
    /// The patch conv (stride = kernel = patch; SigLIP's has a bias) as a matrix
    /// `[hidden, C*P*P]`.
    pub patch_embedding: Linear<W>,
    /// `[hidden]`; CLIP only.
    pub class_embedding: Option<W>,
    /// `[positions, hidden]`: the patches, after the class token when there is one.
    pub position_embedding: W,
    /// CLIP only.
    pub pre_layrnorm: Option<LayerNorm<W>>,
    pub layers: Vec<EncoderLayer<W>>,
    pub post_layernorm: LayerNorm<W>,
    pub pooling: VisionPooling<W>,
}

#[derive(Debug)]
pub struct TextTower<W> {
    pub config: TextConfig,
    pub token_embedding: W,    // [vocab, hidden]
    pub position_embedding: W, // [context, hidden]
    pub layers: Vec<EncoderLayer<W>>,
    pub final_layer_norm: LayerNorm<W>,
    /// `[proj, hidden]`: CLIP's `text_projection` (no bias), SigLIP's `text_model.head`.
    pub projection: Linear<W>,
}

#[derive(Debug)]
pub struct ClipModel<W> {
    pub config: ClipConfig,
    pub vision: Option<VisionTower<W>>,
    pub text: Option<TextTower<W>>,
    /// `exp(logit_scale)` multiplies cosine similarities into logits.
    pub logit_scale: f32,
    /// Added to every logit: SigLIP's `logit_bias`; 0 for CLIP, which has none.
    pub logit_bias: f32,
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

/// A source seen from inside one tower: the module-tree pieces every family shares
/// (linear, LayerNorm, pre-LN encoder layer), named under a prefix.
struct Scope<'s, S> {
    src: &'s mut S,
    tower: Option<Tower>,
}

impl<S: TensorSource> Scope<'_, S> {
    fn weight(&mut self, name: &str, shape: &[usize], role: WeightRole) -> Result<S::W> {
        self.src.weight(name, shape, role, self.tower)
    }

    fn scalar(&mut self, name: &str, typical: f32) -> Result<f32> {
        self.src.scalar(name, typical, self.tower)
    }

    /// `{prefix}.weight` of shape `[out, in...]` (more than 2-d for a conv, flattened for
    /// the backend) and, if `bias`, `{prefix}.bias` `[out]`.
    fn linear(&mut self, prefix: &str, shape: &[usize], bias: bool) -> Result<Linear<S::W>> {
        let bias = bias.then(|| format!("{prefix}.bias"));
        self.linear_named(&format!("{prefix}.weight"), bias.as_deref(), shape)
    }

    /// A linear layer whose tensors are not named `.weight` / `.bias` (PyTorch's
    /// `nn.MultiheadAttention` packs q/k/v as `in_proj_weight` / `in_proj_bias`).
    fn linear_named(
        &mut self,
        weight: &str,
        bias: Option<&str>,
        shape: &[usize],
    ) -> Result<Linear<S::W>> {
        let out_features = shape.first().copied().unwrap_or(1);
        let in_features = shape.iter().skip(1).product();
        let weight = self.weight(weight, shape, WeightRole::Matrix)?;
        let bias = match bias {
            Some(name) => Some(self.weight(name, &[out_features], WeightRole::Vector)?),
            None => None,
        };
        Ok(Linear {
            weight,
            bias,
            in_features,
            out_features,
        })
    }

    fn layer_norm(&mut self, prefix: &str, dim: usize, eps: f32) -> Result<LayerNorm<S::W>> {
        Ok(LayerNorm {
            weight: self.weight(&format!("{prefix}.weight"), &[dim], WeightRole::NormScale)?,
            bias: self.weight(&format!("{prefix}.bias"), &[dim], WeightRole::Vector)?,
            eps,
            dim,
        })
    }

    fn mlp(&mut self, prefix: &str, hidden: usize, inter: usize) -> Result<Mlp<S::W>> {
        Ok(Mlp {
            fc1: self.linear(&format!("{prefix}.fc1"), &[inter, hidden], true)?,
            fc2: self.linear(&format!("{prefix}.fc2"), &[hidden, inter], true)?,
        })
    }

    /// `{prefix}` = `SiglipMultiheadAttentionPoolingHead`: `probe`, `attention` (an
    /// `nn.MultiheadAttention`: `in_proj_weight` `[3 hidden, hidden]` packs q, k, v),
    /// `layernorm`, `mlp`.
    fn pooling_head(
        &mut self,
        prefix: &str,
        hidden: usize,
        inter: usize,
        heads: usize,
        eps: f32,
    ) -> Result<PoolingHead<S::W>> {
        let probe = self
            .src
            .host(&format!("{prefix}.probe"), &[1, 1, hidden], self.tower)?;
        let a = format!("{prefix}.attention");
        let weights = self.src.split(
            &format!("{a}.in_proj_weight"),
            &[3 * hidden, hidden],
            3,
            WeightRole::Matrix,
            self.tower,
        )?;
        let biases = self.src.split(
            &format!("{a}.in_proj_bias"),
            &[3 * hidden],
            3,
            WeightRole::Vector,
            self.tower,
        )?;
        let mut packed = weights
            .into_iter()
            .zip(biases)
            .map(|(weight, bias)| Linear {
                weight,
                bias: Some(bias),
                in_features: hidden,
                out_features: hidden,
            });
        let mut next = || {
            packed.next().ok_or_else(|| {
                ClipError::Internal(format!("{a}.in_proj_weight did not split into q, k, v"))
            })
        };
        let (q_proj, k_proj, v_proj) = (next()?, next()?, next()?);
        let attention = Attention {
            q_proj,
            k_proj,
            v_proj,
            out_proj: self.linear(&format!("{a}.out_proj"), &[hidden, hidden], true)?,
            num_heads: heads,
        };
        Ok(PoolingHead {
            probe,
            attention,
            layernorm: self.layer_norm(&format!("{prefix}.layernorm"), hidden, eps)?,
            mlp: self.mlp(&format!("{prefix}.mlp"), hidden, inter)?,
        })
    }

    /// `{prefix}.encoder.layers.{i}` for `i < n` (`CLIPEncoderLayer`, shared by SigLIP).
    #[allow(clippy::too_many_arguments)]
    fn encoder(
        &mut self,
        prefix: &str,
        n: usize,
        hidden: usize,
        inter: usize,
        heads: usize,
        eps: f32,
    ) -> Result<Vec<EncoderLayer<S::W>>> {
        (0..n)
            .map(|i| {
                let p = format!("{prefix}.encoder.layers.{i}");
                // Both LayerNorms first: the visiting order is a generated file's tensor
                // order, kept so that `gen-weights` files stay byte-identical.
                let layer_norm1 = self.layer_norm(&format!("{p}.layer_norm1"), hidden, eps)?;
                let layer_norm2 = self.layer_norm(&format!("{p}.layer_norm2"), hidden, eps)?;
                let mut proj = |name: &str| {
                    self.linear(&format!("{p}.self_attn.{name}"), &[hidden, hidden], true)
                };
                let self_attn = Attention {
                    q_proj: proj("q_proj")?,
                    k_proj: proj("k_proj")?,
                    v_proj: proj("v_proj")?,
                    out_proj: proj("out_proj")?,
                    num_heads: heads,
                };
                let mlp = self.mlp(&format!("{p}.mlp"), hidden, inter)?;
                Ok(EncoderLayer {
                    layer_norm1,
                    self_attn,
                    layer_norm2,
                    mlp,
                })
            })
            .collect()
    }
}

/// The checkpoint layout: the module tree of `transformers.CLIPModel` or `SiglipModel`
/// (by the config's family) for `config`, the requested towers only, every tensor taken
/// from `src` under its Hugging Face name and file shape. Both families share the encoder
/// layers (`Scope::encoder`); they differ in the embeddings and the pooling. The loader,
/// the generator and [`tensor_specs`] follow this description unchanged.
pub fn describe<S: TensorSource>(
    config: &ClipConfig,
    towers: Towers,
    src: &mut S,
) -> Result<ClipModel<S::W>> {
    let siglip = config.family == Family::Siglip;
    let proj = config.projection_dim;
    let text = if towers.text() {
        let t = &config.text_config;
        let h = t.hidden_size;
        let mut s = Scope {
            src: &mut *src,
            tower: Some(Tower::Text),
        };
        let e = "text_model.embeddings";
        Some(TextTower {
            config: t.clone(),
            token_embedding: s.weight(
                &format!("{e}.token_embedding.weight"),
                &[t.vocab_size, h],
                WeightRole::Table,
            )?,
            position_embedding: s.weight(
                &format!("{e}.position_embedding.weight"),
                &[t.max_position_embeddings, h],
                WeightRole::Table,
            )?,
            layers: s.encoder(
                "text_model",
                t.num_hidden_layers,
                h,
                t.intermediate_size,
                t.num_attention_heads,
                t.layer_norm_eps,
            )?,
            final_layer_norm: s.layer_norm("text_model.final_layer_norm", h, t.layer_norm_eps)?,
            projection: if siglip {
                s.linear("text_model.head", &[proj, h], true)?
            } else {
                s.linear("text_projection", &[proj, h], false)?
            },
        })
    } else {
        None
    };

    let vision = if towers.vision() {
        let v = &config.vision_config;
        let h = v.hidden_size;
        let eps = v.layer_norm_eps;
        let mut s = Scope {
            src: &mut *src,
            tower: Some(Tower::Vision),
        };
        let e = "vision_model.embeddings";
        let class_embedding = match v.class_token {
            true => Some(s.weight(&format!("{e}.class_embedding"), &[h], WeightRole::Vector)?),
            false => None,
        };
        let conv = [h, v.num_channels, v.patch_size, v.patch_size];
        let patch_embedding = s.linear(&format!("{e}.patch_embedding"), &conv, siglip)?;
        let position_embedding = s.weight(
            &format!("{e}.position_embedding.weight"),
            &[v.num_positions(), h],
            WeightRole::Table,
        )?;
        let pre_layrnorm = match siglip {
            false => Some(s.layer_norm("vision_model.pre_layrnorm", h, eps)?),
            true => None,
        };
        let layers = s.encoder(
            "vision_model",
            v.num_hidden_layers,
            h,
            v.intermediate_size,
            v.num_attention_heads,
            eps,
        )?;
        let post_layernorm = s.layer_norm("vision_model.post_layernorm", h, eps)?;
        let pooling = if siglip {
            VisionPooling::Head(s.pooling_head(
                "vision_model.head",
                h,
                v.intermediate_size,
                v.num_attention_heads,
                eps,
            )?)
        } else {
            VisionPooling::ClassToken {
                visual_projection: s.linear("visual_projection", &[proj, h], false)?,
            }
        };
        Some(VisionTower {
            config: v.clone(),
            patch_embedding,
            class_embedding,
            position_embedding,
            pre_layrnorm,
            layers,
            post_layernorm,
            pooling,
        })
    } else {
        None
    };

    let mut s = Scope { src, tower: None };
    // A trained CLIP's: exp(logit_scale) = 100, the clamp training ends at. SigLIP's
    // trained values differ per checkpoint; random weights take its initial ones.
    let (logit_scale, logit_bias) = if siglip {
        (
            s.scalar("logit_scale", config.logit_scale_init_value)?,
            s.scalar("logit_bias", config.logit_bias_init_value)?,
        )
    } else {
        (s.scalar("logit_scale", 100f32.ln())?, 0.0)
    };
    Ok(ClipModel {
        config: config.clone(),
        vision,
        text,
        logit_scale,
        logit_bias,
    })
}

/// Every tensor a checkpoint of this config holds for `towers`, with its Hugging Face
/// name, file shape, kind and tower, in [`describe`]'s order. The random-weight generator
/// writes these; a download of some towers needs exactly these.
pub fn tensor_specs(config: &ClipConfig, towers: Towers) -> Result<Vec<TensorSpec>> {
    let mut rec = Recorder::default();
    describe(config, towers, &mut rec)?;
    Ok(rec.specs)
}

/// The source that only lists what the description names.
#[derive(Default)]
struct Recorder {
    specs: Vec<TensorSpec>,
}

impl TensorSource for Recorder {
    type W = ();
    fn weight(
        &mut self,
        name: &str,
        shape: &[usize],
        role: WeightRole,
        tower: Option<Tower>,
    ) -> Result<()> {
        self.specs.push(TensorSpec {
            name: name.into(),
            shape: shape.to_vec(),
            kind: TensorKind::Weight(role),
            tower,
        });
        Ok(())
    }
    fn scalar(&mut self, name: &str, typical: f32, tower: Option<Tower>) -> Result<f32> {
        self.specs.push(TensorSpec {
            name: name.into(),
            shape: Vec::new(),
            kind: TensorKind::Scalar { typical },
            tower,
        });
        Ok(typical)
    }
    fn host(&mut self, name: &str, shape: &[usize], tower: Option<Tower>) -> Result<Vec<f32>> {
        self.specs.push(TensorSpec {
            name: name.into(),
            shape: shape.to_vec(),
            kind: TensorKind::Host,
            tower,
        });
        Ok(vec![0.0; shape.iter().product()])
    }
    fn split(
        &mut self,
        name: &str,
        shape: &[usize],
        parts: usize,
        role: WeightRole,
        tower: Option<Tower>,
    ) -> Result<Vec<()>> {
        self.weight(name, shape, role, tower)?;
        Ok(vec![(); parts])
    }
}

/// The source that reads tensors by name from a parsed safetensors header, checks their
/// shapes and values, and hands them to the backend's `make`.
struct FileSource<'a, B: TensorBytes + ?Sized, W> {
    st: &'a SafeTensors,
    bytes: &'a B,
    make: &'a mut dyn FnMut(WeightRole, HostTensor) -> Result<W>,
    /// The int8 layout the header's metadata declares, if any.
    scheme: Option<Scheme>,
}

impl<B: TensorBytes + ?Sized, W> FileSource<'_, B, W> {
    /// A weight of `role`: int8 (with its scales) where the file stores it so and the
    /// format allows it, else f32.
    fn read_weight(&self, name: &str, expected: &[usize], role: WeightRole) -> Result<HostTensor> {
        let info = self.st.info(name)?;
        if info.dtype != Dtype::I8 {
            return self.read(name, expected);
        }
        if !quantize::quantizes(role, name) {
            return Err(ClipError::SafeTensors(format!(
                "tensor `{name}` is I8, but only matrices and the token table may be int8"
            )));
        }
        let Some(scheme) = self.scheme else {
            return Err(ClipError::SafeTensors(format!(
                "tensor `{name}` is I8, but `__metadata__` names no int8 scheme (`{}`)",
                quantize::SCHEME_KEY
            )));
        };
        if info.shape != expected {
            return Err(ClipError::TensorShape {
                name: name.into(),
                expected: expected.to_vec(),
                found: info.shape.clone(),
            });
        }
        let (rows, cols) = quantize::matrix_dims(&info.shape);
        let group = if scheme.group == 0 {
            cols.max(1)
        } else {
            scheme.group
        };
        let scale = quantize::scale_name(name);
        let s_info = self.st.info(&scale)?;
        let s_shape = vec![rows, cols.div_ceil(group)];
        if s_info.shape != s_shape {
            return Err(ClipError::TensorShape {
                name: scale,
                expected: s_shape,
                found: s_info.shape.clone(),
            });
        }
        let scales = self.st.read_f32(self.bytes, &scale)?;
        quantize::check_scales(name, &scales)?;
        let bytes = self.bytes.read_range(info.start, info.end)?;
        Ok(HostTensor {
            name: name.into(),
            shape: info.shape.clone(),
            data: Vec::new(),
            quant: Some(Q8 {
                rows,
                cols,
                group,
                values: bytes.iter().map(|&b| b as i8).collect(),
                scales,
            }),
        })
    }

    fn read(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let info = self.st.info(name)?;
        if info.dtype == Dtype::I8 {
            return Err(ClipError::SafeTensors(format!(
                "tensor `{name}` is I8, but only matrices and the token table may be int8"
            )));
        }
        // A scalar may be stored as [] or [1].
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
        let data = self.st.read_f32(self.bytes, name)?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(ClipError::SafeTensors(format!(
                "tensor `{name}` holds a non-finite value ({}) at index {i}: corrupt weights",
                data[i]
            )));
        }
        Ok(HostTensor::new(name, info.shape.clone(), data))
    }
}

impl<B: TensorBytes + ?Sized, W> TensorSource for FileSource<'_, B, W> {
    type W = W;
    fn weight(
        &mut self,
        name: &str,
        shape: &[usize],
        role: WeightRole,
        _tower: Option<Tower>,
    ) -> Result<W> {
        let mut t = self.read_weight(name, shape, role)?;
        t.shape = role_shape(role, &t.shape);
        (self.make)(role, t)
    }
    fn scalar(&mut self, name: &str, _typical: f32, _tower: Option<Tower>) -> Result<f32> {
        let t = self.read(name, &[])?;
        t.data.first().copied().ok_or_else(|| {
            ClipError::Internal(format!("scalar `{name}` read as {} values", t.data.len()))
        })
    }
    fn host(&mut self, name: &str, shape: &[usize], _tower: Option<Tower>) -> Result<Vec<f32>> {
        Ok(self.read(name, shape)?.data)
    }
    fn split(
        &mut self,
        name: &str,
        shape: &[usize],
        parts: usize,
        role: WeightRole,
        _tower: Option<Tower>,
    ) -> Result<Vec<W>> {
        let t = self.read_weight(name, shape, role)?;
        let rows = shape.first().copied().unwrap_or(0);
        if parts == 0 || !rows.is_multiple_of(parts) {
            return Err(ClipError::Internal(format!(
                "`{name}` {shape:?} does not split into {parts} parts"
            )));
        }
        let mut part_shape = shape.to_vec();
        part_shape[0] = rows / parts;
        let part_shape = role_shape(role, &part_shape);
        if let Some(q) = t.quant {
            return q
                .split_rows(parts)
                .into_iter()
                .enumerate()
                .map(|(i, q)| {
                    let part = HostTensor {
                        name: format!("{name}[part {i} of {parts}]"),
                        shape: part_shape.clone(),
                        data: Vec::new(),
                        quant: Some(q),
                    };
                    (self.make)(role, part)
                })
                .collect();
        }
        let len = t.data.len() / parts;
        t.data
            .chunks(len.max(1))
            .take(parts)
            .enumerate()
            .map(|(i, data)| {
                let part = HostTensor::new(
                    format!("{name}[part {i} of {parts}]"),
                    part_shape.clone(),
                    data.to_vec(),
                );
                (self.make)(role, part)
            })
            .collect()
    }
}

/// The shape a backend gets for a tensor of file shape `shape`; the bytes are the same.
/// The patch conv `[out, C, P, P]` is the matrix `[out, C*P*P]`.
fn role_shape(role: WeightRole, shape: &[usize]) -> Vec<usize> {
    match role {
        WeightRole::Matrix if shape.len() > 2 => vec![shape[0], shape[1..].iter().product()],
        WeightRole::Vector | WeightRole::NormScale if shape.len() > 1 => {
            vec![shape.iter().product()]
        }
        _ => shape.to_vec(),
    }
}

impl<W> ClipModel<W> {
    /// Load the requested towers from a safetensors file whose header is `st` and whose
    /// bytes `src` provides. `make` turns each f32 tensor into the backend's storage.
    pub fn load<S: TensorBytes + ?Sized>(
        config: &ClipConfig,
        st: &SafeTensors,
        src: &S,
        towers: Towers,
        make: &mut dyn FnMut(WeightRole, HostTensor) -> Result<W>,
    ) -> Result<Self> {
        config.validate()?;
        describe(
            config,
            towers,
            &mut FileSource {
                st,
                bytes: src,
                make,
                scheme: Scheme::of(st)?,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tower_lists_its_own_tensors_once() {
        for name in ClipConfig::PRESETS {
            let cfg = ClipConfig::preset(name).unwrap();
            let both = tensor_specs(&cfg, Towers::Both).unwrap();
            let mut names: Vec<&str> = both.iter().map(|s| s.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), both.len(), "{name}: a tensor named twice");
            for towers in [Towers::Vision, Towers::Text] {
                let part = tensor_specs(&cfg, towers).unwrap();
                let expected: Vec<TensorSpec> = both
                    .iter()
                    .filter(|s| towers.includes(s.tower))
                    .cloned()
                    .collect();
                assert_eq!(part, expected, "{name} {towers:?}");
                // The name prefixes of a header-only download plan agree with the description.
                for s in &both {
                    assert_eq!(
                        towers.wants(&s.name),
                        towers.includes(s.tower),
                        "{}",
                        s.name
                    );
                }
            }
        }
    }

    #[test]
    fn siglip_has_a_pooling_head_and_no_class_token() {
        let cfg = ClipConfig::preset("siglip2-b16-224").unwrap();
        let specs = tensor_specs(&cfg, Towers::Both).unwrap();
        let spec = |name: &str| specs.iter().find(|s| s.name == name);
        assert!(spec("vision_model.embeddings.class_embedding").is_none());
        assert!(spec("vision_model.pre_layrnorm.weight").is_none());
        assert!(spec("visual_projection.weight").is_none());
        assert!(spec("text_projection.weight").is_none());
        let probe = spec("vision_model.head.probe").unwrap();
        assert_eq!(
            (probe.kind, &probe.shape[..]),
            (TensorKind::Host, &[1, 1, 768][..])
        );
        // The packed q/k/v of the head is one tensor of the file, listed once.
        let packed = spec("vision_model.head.attention.in_proj_weight").unwrap();
        assert_eq!(packed.shape, [3 * 768, 768]);
        assert_eq!(packed.kind, TensorKind::Weight(WeightRole::Matrix));
        assert_eq!(
            spec("vision_model.head.attention.in_proj_bias")
                .unwrap()
                .shape,
            [3 * 768]
        );
        assert!(spec("vision_model.embeddings.patch_embedding.bias").is_some());
        assert_eq!(spec("text_model.head.weight").unwrap().shape, [768, 768]);
        assert!(spec("text_model.head.bias").is_some());
        assert_eq!(
            spec("vision_model.embeddings.position_embedding.weight")
                .unwrap()
                .shape,
            [196, 768]
        );
        for name in ["logit_scale", "logit_bias"] {
            let s = spec(name).unwrap();
            assert!(matches!(s.kind, TensorKind::Scalar { .. }), "{name}");
            assert_eq!(s.tower, None, "{name}");
        }
    }

    #[test]
    fn layer_norm_scales_have_their_own_role() {
        let cfg = ClipConfig::preset("vit-b-16").unwrap();
        let (t, v) = (&cfg.text_config, &cfg.vision_config);
        let specs = tensor_specs(&cfg, Towers::Both).unwrap();
        let role = |name: &str| {
            specs
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.kind)
                .unwrap()
        };
        let scales: Vec<&str> = specs
            .iter()
            .filter(|s| s.kind == TensorKind::Weight(WeightRole::NormScale))
            .map(|s| s.name.as_str())
            .collect();
        // Two per layer, the text tower's final one, the vision tower's pre and post.
        let expected = 2 * t.num_hidden_layers + 1 + 2 * v.num_hidden_layers + 2;
        assert_eq!(scales.len(), expected, "{scales:?}");
        for name in scales {
            let bias = name.replace(".weight", ".bias");
            assert_eq!(
                role(&bias),
                TensorKind::Weight(WeightRole::Vector),
                "{bias}"
            );
            assert_eq!(
                specs.iter().find(|s| s.name == name).unwrap().shape.len(),
                1
            );
        }
        assert_eq!(
            role("vision_model.embeddings.class_embedding"),
            TensorKind::Weight(WeightRole::Vector)
        );
        assert_eq!(
            role("vision_model.embeddings.patch_embedding.weight"),
            TensorKind::Weight(WeightRole::Matrix)
        );
        assert!(matches!(role("logit_scale"), TensorKind::Scalar { .. }));
    }
}
