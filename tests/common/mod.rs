//! Shared by the integration tests: finding the reference fixtures and comparing numbers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use webclip::clip::{Clip, ClipOptions, ModelFolder};
use webclip::model::{ClipConfig, SafeTensors};

/// `$WEBCLIP_FIXTURES`, else `../shared/fixtures` beside the project root.
pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("WEBCLIP_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures"),
    }
}

/// Real test photos: `$WEBCLIP_FIXTURES/images` when it has them, else the shared ones.
pub fn image_path(name: &str) -> PathBuf {
    let own = fixtures_dir().join("images").join(name);
    if own.exists() {
        own
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/fixtures/images")
            .join(name)
    }
}

/// Every model folder with reference outputs (`config.json` + `golden.safetensors`).
pub fn model_dirs() -> Vec<PathBuf> {
    model_dirs_in(&fixtures_dir())
}

/// `$WEBCLIP_FIXTURES/siglip` when it exists, else the shared one.
pub fn siglip_fixtures_dir() -> PathBuf {
    let own = fixtures_dir().join("siglip");
    if own.exists() {
        own
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/siglip")
    }
}

/// Every SigLIP model folder with reference outputs.
pub fn siglip_dirs() -> Vec<PathBuf> {
    model_dirs_in(&siglip_fixtures_dir())
}

/// Every model folder of every family: the CLIP ones, then the SigLIP ones. The suites
/// that run a whole model take these, so a folder dropped into either place is tested.
pub fn every_model_dir() -> Vec<PathBuf> {
    let mut dirs = model_dirs();
    dirs.extend(siglip_dirs());
    dirs
}

/// The model folders directly under `dir` (the SigLIP ones sit one level down, in
/// `siglip/`, so that the CLIP-only suites (tokenizer, preprocessing) do not pick them up).
pub fn model_dirs_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read fixtures at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").exists() && p.join("golden.safetensors").exists())
        .collect();
    out.sort();
    assert!(
        !out.is_empty(),
        "no model fixtures found under {}",
        dir.display()
    );
    out
}

/// One model folder's reference: golden.json plus golden.safetensors.
pub struct Golden {
    pub dir: PathBuf,
    pub name: String,
    pub config: ClipConfig,
    pub images: Vec<String>,
    pub texts: Vec<String>,
    header: SafeTensors,
    bytes: Vec<u8>,
}

impl Golden {
    pub fn load(dir: &Path) -> Golden {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("golden.json")).unwrap()).unwrap();
        let list = |k: &str| -> Vec<String> {
            json[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
        let header = SafeTensors::parse(&bytes).unwrap();
        Golden {
            dir: dir.to_path_buf(),
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            config: ClipConfig::from_json(&std::fs::read(dir.join("config.json")).unwrap())
                .unwrap(),
            images: list("images"),
            texts: list("texts"),
            header,
            bytes,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.header.get(name).is_some()
    }

    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.header.info(name).unwrap().shape.clone()
    }

    pub fn f32(&self, name: &str) -> Vec<f32> {
        self.header.read_f32(self.bytes.as_slice(), name).unwrap()
    }

    pub fn ids(&self, name: &str) -> Vec<u32> {
        self.header
            .read_i64(self.bytes.as_slice(), name)
            .unwrap()
            .into_iter()
            .map(|v| v as u32)
            .collect()
    }

    /// Number of hidden-state tensors stored under `prefix` (`vision_hidden_states`).
    pub fn count(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|k| self.has(&format!("{prefix}.{k}")))
            .count()
    }

    /// The reference pixel values of every PNG/JPEG in order, concatenated.
    pub fn pixels(&self, image: &str) -> Vec<f32> {
        self.f32(&format!("pixel_values.{image}"))
    }

    pub fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap()
    }

    /// A file the folder may lack (`spiece.model` or `tokenizer.json`, say).
    pub fn optional_file(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(name)).ok()
    }

    /// The text tower's `max_position_embeddings`.
    pub fn context_length(&self) -> usize {
        self.config.text_config.max_position_embeddings
    }

    pub fn image_size(&self) -> usize {
        self.config.vision_config.image_size
    }

    /// `Clip::load` on this model folder, with `weights_file` as its weights.
    pub fn clip(&self, weights_file: &str, options: &ClipOptions) -> webclip::Result<Clip> {
        let folder = ModelFolder::read(&self.dir, Some(&self.dir.join(weights_file)))?;
        pollster::block_on(folder.load(options))
    }
}

/// Raw RGBA pixels of image `name` give exactly the `pixel_values` of the encoded file.
pub fn assert_rgba_matches_file(pre: &webclip::preprocess::Preprocessor, name: &str, what: &str) {
    use webclip::ImageInput;
    let bytes = std::fs::read(image_path(name)).unwrap();
    let rgba = image::load_from_memory(&bytes).unwrap().to_rgba8();
    let from_rgba = pre
        .pixel_values(&ImageInput::Rgba {
            width: rgba.width(),
            height: rgba.height(),
            data: rgba.as_raw(),
        })
        .unwrap();
    let from_file = pre.pixel_values(&ImageInput::Encoded(&bytes)).unwrap();
    assert_eq!(from_rgba, from_file, "{what} {name}");
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    (dot / (na * nb)) as f32
}
pub mod parity;
