//! Benchmarks behind `webclip bench`: the CPU backend's kernels and forward passes next to
//! the core's measured peak, and the GPU backend on whatever adapter wgpu finds. They sit
//! above the backends (they time whole models through `clip::BackendModel`), so nothing
//! under `cpu/` or `gpu/` depends on them. Each returns the encoder latencies it measured
//! ([`Latencies`]), so that several presets can be printed side by side.

#[cfg(not(target_arch = "wasm32"))]
pub mod cpu;
#[cfg(not(target_arch = "wasm32"))]
pub mod fidelity;
#[cfg(not(target_arch = "wasm32"))]
pub mod gpu;
pub mod kernels;
pub mod profile;

use crate::model::random::Rng;
use crate::model::TextConfig;

/// One encoder measurement: what was run (`image batch 8`, `text 77 tokens`) and its time.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    pub what: String,
    pub ms: f64,
}

/// The encoder latencies of one preset.
#[derive(Debug, Clone, PartialEq)]
pub struct Latencies {
    pub preset: String,
    pub rows: Vec<Latency>,
}

/// A text of `len` random token ids this tower accepts: CLIP's
/// `<|startoftext|> words <|endoftext|>`, SigLIP's words and its end token (its tokenizer
/// then pads to the full context, which the batch does too).
pub fn sample_tokens(t: &TextConfig, len: usize, rng: &mut Rng) -> Vec<u32> {
    let vocab = t.vocab_size as u64;
    let len = len.clamp(2, t.max_position_embeddings.max(2));
    let word = |rng: &mut Rng| (256 + rng.next_u64() % vocab.saturating_sub(512).max(1)) as u32;
    let mut ids = Vec::with_capacity(len);
    if t.causal {
        ids.push(t.bos_token_id.min(t.vocab_size as u32 - 1));
        ids.extend((2..len).map(|_| word(rng)));
        ids.push(t.vocab_size as u32 - 1); // the highest id: where CLIP pools
    } else {
        ids.extend((1..len).map(|_| word(rng)));
        ids.push(t.pad_token_id.min(t.vocab_size as u32 - 1));
    }
    ids
}

/// The rows of several presets side by side: `| encoder | preset A ms | preset B ms |`,
/// with the ratio to the first preset.
pub fn side_by_side(all: &[Latencies]) -> String {
    let Some(first) = all.first() else {
        return String::new();
    };
    let mut out = String::from("| encoder |");
    for l in all {
        out += &format!(" {} ms |", l.preset);
    }
    for l in &all[1..] {
        out += &format!(" {} / {} |", l.preset, first.preset);
    }
    out += "\n|---|";
    out += &"---:|".repeat(2 * all.len() - 1);
    out += "\n";
    for (i, row) in first.rows.iter().enumerate() {
        out += &format!("| {} |", row.what);
        let cells: Vec<Option<f64>> = all
            .iter()
            .map(|l| l.rows.get(i).filter(|r| r.what == row.what).map(|r| r.ms))
            .collect();
        for c in &cells {
            out += &c.map_or(" - |".into(), |ms| format!(" {ms:.1} |"));
        }
        for c in &cells[1..] {
            out += &c.map_or(" - |".into(), |ms| format!(" {:.2}x |", ms / row.ms));
        }
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ClipConfig;

    #[test]
    fn sample_texts_fit_each_vocabulary() {
        let mut rng = Rng::new(1);
        for preset in ["vit-b-16", "siglip-b16-224", "siglip2-b16-224"] {
            let t = ClipConfig::preset(preset).unwrap().text_config;
            for len in [1, 10, t.max_position_embeddings, 500] {
                let ids = sample_tokens(&t, len, &mut rng);
                assert!(ids.len() <= t.max_position_embeddings, "{preset}");
                assert!(ids.iter().all(|&i| (i as usize) < t.vocab_size), "{preset}");
            }
        }
    }

    #[test]
    fn presets_are_printed_side_by_side() {
        let l = |preset: &str, ms: [f64; 2]| Latencies {
            preset: preset.into(),
            rows: vec![
                Latency {
                    what: "image batch 1".into(),
                    ms: ms[0],
                },
                Latency {
                    what: "text".into(),
                    ms: ms[1],
                },
            ],
        };
        let table = side_by_side(&[l("a", [10.0, 4.0]), l("b", [12.0, 2.0])]);
        assert!(
            table.contains("| image batch 1 | 10.0 | 12.0 | 1.20x |"),
            "{table}"
        );
        assert!(table.contains("| text | 4.0 | 2.0 | 0.50x |"), "{table}");
    }
}
