//! Random weights in the exact Hugging Face layout for any config, so real shapes
//! (ViT-B/32, L/14, ...) can be timed without downloading a checkpoint. Timing does not
//! depend on the values; they are scaled like a trained model's (unit-ish activations)
//! so that deep stacks stay finite.

use super::config::ClipConfig;
use super::safetensors::{write_f32, Dtype};
use super::weights::{tensor_specs, Towers, WeightRole};
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
    let specs = tensor_specs(config, Towers::Both);
    let names: Vec<(String, Vec<usize>)> = specs
        .iter()
        .map(|(n, s, _)| (n.clone(), s.clone()))
        .collect();
    let mut rng = Rng::new(seed);
    write_f32(out, &names, dtype, |i, buf| {
        let (name, shape, role) = &specs[i];
        let n: usize = shape.iter().product();
        if name == "logit_scale" {
            buf.push(100f32.ln());
            return Ok(());
        }
        match role {
            // Uniform(-a, a) has variance a^2/3: a = sqrt(3 / fan_in) keeps unit variance.
            WeightRole::Matrix => {
                let fan_in: usize = shape[1..].iter().product();
                buf.extend(rng.fill_uniform(n, (3.0 / fan_in as f32).sqrt()));
            }
            WeightRole::Table => buf.extend(rng.fill_uniform(n, 0.5)),
            WeightRole::Vector
                if name.ends_with("norm1.weight")
                    || name.ends_with("norm2.weight")
                    || name.ends_with("layrnorm.weight")
                    || name.ends_with("layernorm.weight")
                    || name.ends_with("layer_norm.weight") =>
            {
                buf.extend(rng.fill_uniform(n, 0.2).into_iter().map(|v| 1.0 + v));
            }
            WeightRole::Vector => buf.extend(rng.fill_uniform(n, 0.05)),
        }
        Ok(())
    })
}
