//! Random weights in the exact Hugging Face layout for any config, so real shapes
//! (ViT-B/32, L/14, ...) can be timed without downloading a checkpoint. The tensors are
//! the ones `weights::describe` names, in its order. Timing does not depend on the values;
//! they are scaled like a trained model's (unit-ish activations) so that deep stacks stay
//! finite.

use super::config::ClipConfig;
use super::safetensors::{write_f32, Dtype};
use super::weights::{tensor_specs, TensorKind, Towers, WeightRole};
use crate::error::Result;
use std::io::Write;

/// SplitMix64: tiny, seedable, good enough for test weights.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn fill_uniform(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// Write `model.safetensors` for `config` with seeded random values.
pub fn write_random_weights<W: Write>(
    out: W,
    config: &ClipConfig,
    seed: u64,
    dtype: Dtype,
) -> Result<()> {
    let specs = tensor_specs(config, Towers::Both)?;
    let names: Vec<(String, Vec<usize>)> = specs
        .iter()
        .map(|s| (s.name.clone(), s.shape.clone()))
        .collect();
    let mut rng = Rng::new(seed);
    write_f32(out, &names, dtype, |i, buf| {
        let spec = &specs[i];
        let n: usize = spec.shape.iter().product();
        match spec.kind {
            TensorKind::Scalar { typical } => buf.push(typical),
            // Uniform(-a, a) has variance a^2/3: a = sqrt(3 / fan_in) keeps unit variance.
            TensorKind::Weight(WeightRole::Matrix) => {
                let fan_in: usize = spec.shape[1..].iter().product();
                buf.extend(rng.fill_uniform(n, (3.0 / fan_in as f32).sqrt()));
            }
            TensorKind::Weight(WeightRole::Table) | TensorKind::Host => {
                buf.extend(rng.fill_uniform(n, 0.5))
            }
            TensorKind::Weight(WeightRole::NormScale) => {
                buf.extend(rng.fill_uniform(n, 0.2).into_iter().map(|v| 1.0 + v));
            }
            TensorKind::Weight(WeightRole::Vector) => buf.extend(rng.fill_uniform(n, 0.05)),
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::weights::{ClipModel, HostTensor};
    use crate::model::SafeTensors;

    /// ViT-B/32's structure at toy widths.
    fn tiny() -> ClipConfig {
        let mut cfg = ClipConfig::preset("vit-b-32").unwrap();
        let (t, v) = (&mut cfg.text_config, &mut cfg.vision_config);
        (t.hidden_size, t.intermediate_size, t.num_attention_heads) = (8, 16, 2);
        (t.num_hidden_layers, t.vocab_size) = (2, 300);
        (v.hidden_size, v.intermediate_size, v.num_attention_heads) = (12, 24, 3);
        (v.num_hidden_layers, v.image_size, v.patch_size) = (2, 32, 16);
        cfg.projection_dim = 4;
        cfg
    }

    #[test]
    fn random_weights_are_the_description_and_load_back() {
        let cfg = tiny();
        let specs = tensor_specs(&cfg, Towers::Both).unwrap();
        let mut file = Vec::new();
        write_random_weights(&mut file, &cfg, 7, Dtype::F32).unwrap();
        let st = SafeTensors::parse(&file).unwrap();

        // The file holds exactly the described tensors, in the description's order.
        let mut stored: Vec<_> = st.tensors().collect();
        stored.sort_by_key(|t| t.start);
        let stored: Vec<_> = stored.iter().map(|t| (&t.name, &t.shape)).collect();
        let described: Vec<_> = specs.iter().map(|s| (&s.name, &s.shape)).collect();
        assert_eq!(stored, described);

        let mut made: Vec<(WeightRole, Vec<usize>)> = Vec::new();
        let model = ClipModel::load(&cfg, &st, file.as_slice(), Towers::Both, &mut |r, t| {
            made.push((r, t.shape.clone()));
            Ok::<HostTensor, _>(t)
        })
        .unwrap();
        // Every weight but the host-side scalar reaches the backend, matrices as 2-d.
        assert_eq!(made.len(), specs.len() - 1);
        assert!(made
            .iter()
            .all(|(r, s)| *r != WeightRole::Matrix || s.len() == 2));
        assert_eq!(model.logit_scale, 100f32.ln());

        let v = model.vision().unwrap();
        let patch = &v.patch_embedding;
        assert_eq!((patch.out_features, patch.in_features), (12, 3 * 16 * 16));
        assert_eq!(patch.weight.shape, [12, 3 * 16 * 16]);
        assert!(patch.bias.is_none());
        // LayerNorm scales sit around 1, their shifts around 0.
        let ln = &model.text().unwrap().final_layer_norm;
        assert!(ln.weight.data.iter().all(|x| (0.8..=1.2).contains(x)));
        assert!(ln.bias.data.iter().all(|x| x.abs() <= 0.05));
        assert!(ln.weight.data.iter().any(|x| *x != 1.0));
    }

    #[test]
    fn the_same_seed_writes_the_same_file() {
        let cfg = tiny();
        let write = |seed| {
            let mut file = Vec::new();
            write_random_weights(&mut file, &cfg, seed, Dtype::F16).unwrap();
            file
        };
        assert_eq!(write(3), write(3));
        assert_ne!(write(3), write(4));
    }
}
