//! The whole pipeline on a mutated checkpoint: a small valid CLIP config and its random
//! weights (the project's generator, `model::random`), then the fuzzer's changes (config
//! sizes, weights generated for another config, bytes of the header and data overwritten,
//! the file truncated; or first converted to int8 (`model::quantize`: I8 tensors and their
//! scale tensors, which the edits then hit), or quantised at load), loaded on the CPU
//! backend and run on images and token ids. Every
//! outcome is a result or a typed error; with the weights untouched, every feature is
//! finite and of the configured width.
#![no_main]
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use webclip::model::quantize::{convert, Compact};
use webclip::model::{random::write_random_weights, Dtype, SafeTensors};
use webclip::{BackendChoice, Clip, ClipConfig, ClipOptions, ImageInput, ModelFiles, Towers};

/// A valid CLIP config small enough to load and run in a millisecond.
const BASE: &str = r#"{
  "model_type": "clip", "projection_dim": 8,
  "text_config": {"hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
    "num_hidden_layers": 1, "max_position_embeddings": 12, "vocab_size": 40,
    "bos_token_id": 38, "eos_token_id": 39, "pad_token_id": 39, "hidden_act": "quick_gelu"},
  "vision_config": {"hidden_size": 8, "intermediate_size": 16, "num_attention_heads": 2,
    "num_hidden_layers": 1, "image_size": 8, "patch_size": 4, "hidden_act": "gelu"}
}"#;

#[derive(Arbitrary, Debug)]
struct Sizes {
    hidden: u8,
    heads: u8,
    layers: u8,
    patch: u8,
    image: u8,
    context: u8,
    projection: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Change the config's sizes (else the base config).
    sizes: Option<Sizes>,
    /// Generate the weights for the base config even when the sizes changed: every tensor
    /// then has the wrong shape for the config that is loaded.
    weights_for_base: bool,
    dtype: u8,
    /// 0: float weights; 1: converted to an int8 file (group by `group`); 2: quantised at
    /// load (`ClipOptions::int8`).
    int8: u8,
    group: u8,
    seed: u8,
    towers: u8,
    max_batch: u8,
    /// (offset in the header, byte): the JSON header edited in place.
    header_edits: Vec<(u16, u8)>,
    /// (offset in the data, value): 4 bytes of tensor data overwritten (NaN, inf, huge).
    data_edits: Vec<(u32, u32)>,
    truncate_to: Option<u32>,
    /// RGBA images: (width, height, fill).
    images: Vec<(u8, u8, u8)>,
    /// Token id sequences, given to the model as they are.
    texts: Vec<Vec<u8>>,
}

fn config(sizes: &Option<Sizes>) -> ClipConfig {
    let mut cfg = ClipConfig::from_json(BASE.as_bytes()).expect("base config");
    if let Some(s) = sizes {
        let heads = 1 + s.heads as usize % 3;
        let hidden = heads * (1 + s.hidden as usize % 4);
        for (h, n) in [
            (
                &mut cfg.text_config.hidden_size,
                &mut cfg.text_config.num_attention_heads,
            ),
            (
                &mut cfg.vision_config.hidden_size,
                &mut cfg.vision_config.num_attention_heads,
            ),
        ] {
            *h = hidden;
            *n = heads;
        }
        cfg.text_config.num_hidden_layers = s.layers as usize % 3;
        cfg.vision_config.num_hidden_layers = s.layers as usize % 2;
        cfg.vision_config.patch_size = 1 + s.patch as usize % 5;
        cfg.vision_config.image_size = 1 + s.image as usize % 12;
        cfg.text_config.max_position_embeddings = 1 + s.context as usize % 16;
        cfg.projection_dim = s.projection as usize % 9;
    }
    cfg
}

fuzz_target!(|input: Input| {
    let cfg = config(&input.sizes);
    // Sizes that no config.json may hold (a zero width, a patch larger than the image)
    // are refused by the config's own check, which the `config` target fuzzes.
    if let Err(e) = cfg.validate() {
        return webclip_fuzz::check_error(&e);
    }
    let json = cfg.to_json();
    let dtype = [Dtype::F32, Dtype::F16, Dtype::BF16][input.dtype as usize % 3];
    let gen_cfg = if input.weights_for_base {
        config(&None)
    } else {
        cfg.clone()
    };
    let mut weights = Vec::new();
    if let Err(e) = write_random_weights(&mut weights, &gen_cfg, input.seed as u64, dtype) {
        // Sizes the layout cannot describe (a patch larger than the image, say).
        return webclip_fuzz::check_error(&e);
    }
    if input.int8 % 3 == 1 {
        let group = [0, 4, 8, 64][input.group as usize % 4];
        let st = SafeTensors::parse(&weights).expect("a generated header");
        let mut out = Vec::new();
        if let Err(e) = convert(
            &gen_cfg,
            &st,
            weights.as_slice(),
            Compact::Int8,
            Towers::Both,
            group,
            &mut out,
        ) {
            return webclip_fuzz::check_error(&e);
        }
        weights = out;
    }
    let header_end = 8 + u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    for &(at, b) in &input.header_edits {
        let i = 8 + at as usize % (header_end - 8);
        weights[i] = b;
    }
    let data_len = weights.len() - header_end;
    for &(at, v) in &input.data_edits {
        if data_len >= 4 {
            let i = header_end + (at as usize % (data_len / 4)) * 4;
            weights[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    if let Some(n) = input.truncate_to {
        weights.truncate(n as usize % (weights.len() + 1));
    }
    let pristine = input.header_edits.is_empty()
        && input.data_edits.is_empty()
        && input.truncate_to.is_none()
        && !(input.weights_for_base && input.sizes.is_some());

    let towers = [Towers::Both, Towers::Vision, Towers::Text][input.towers as usize % 3];
    let options = ClipOptions {
        backend: BackendChoice::Cpu,
        towers,
        max_batch: input.max_batch as usize % 4,
        int8: input.int8 % 3 == 2,
        ..ClipOptions::default()
    };
    let files = ModelFiles {
        config: json.as_bytes(),
        weights: &weights,
        tokenizer: Default::default(),
        preprocessor: None,
    };
    let mut clip = match pollster::block_on(Clip::load(files, &options)) {
        Ok(c) => c,
        Err(e) => {
            assert!(!pristine, "a generated checkpoint does not load: {e}");
            return webclip_fuzz::check_error(&e);
        }
    };
    let dim = cfg.projection_dim;

    let pixels: Vec<Vec<u8>> = input
        .images
        .iter()
        .take(6)
        .map(|&(w, h, fill)| vec![fill; (w as usize % 20) * (h as usize % 20) * 4])
        .collect();
    let images: Vec<ImageInput> = input
        .images
        .iter()
        .zip(&pixels)
        .map(|(&(w, h, _), data)| ImageInput::Rgba {
            width: (w % 20) as u32,
            height: (h % 20) as u32,
            data,
        })
        .collect();
    match pollster::block_on(clip.image_features(&images)) {
        Ok(e) => {
            assert_eq!((e.rows, e.dim), (images.len(), dim));
            if pristine {
                assert!(
                    e.data.iter().all(|v| v.is_finite()),
                    "non-finite image features"
                );
            }
        }
        Err(e) => webclip_fuzz::check_error(&e),
    }

    let texts: Vec<Vec<u32>> = input
        .texts
        .iter()
        .take(6)
        .map(|t| t.iter().map(|&b| b as u32).collect())
        .collect();
    match pollster::block_on(clip.token_features(&texts)) {
        Ok(e) => {
            assert_eq!((e.rows, e.dim), (texts.len(), dim));
            if pristine {
                assert!(
                    e.data.iter().all(|v| v.is_finite()),
                    "non-finite text features"
                );
            }
        }
        Err(e) => webclip_fuzz::check_error(&e),
    }
});
