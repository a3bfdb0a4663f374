//! Shared by the SigLIP suites: the model folders under `fixtures/siglip/` and their
//! reference outputs. `config.json` is read as JSON here (not as a `ClipConfig`), so these
//! suites need nothing but the files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use webclip::model::SafeTensors;
use webclip::tokenizer::TokenizerFiles;

/// `$WEBCLIP_FIXTURES/siglip` when it exists, else the shared one.
pub fn siglip_fixtures_dir() -> PathBuf {
    let own = crate::common::fixtures_dir().join("siglip");
    if own.exists() {
        own
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/siglip")
    }
}

/// Every SigLIP model folder with reference outputs (`config.json` + `golden.safetensors`).
pub fn siglip_dirs() -> Vec<PathBuf> {
    let dir = siglip_fixtures_dir();
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read fixtures at {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("config.json").exists() && p.join("golden.safetensors").exists())
        .collect();
    out.sort();
    assert!(
        !out.is_empty(),
        "no SigLIP fixtures found under {}",
        dir.display()
    );
    out
}

pub struct SiglipGolden {
    pub dir: PathBuf,
    pub name: String,
    pub config: serde_json::Value,
    pub images: Vec<String>,
    pub texts: Vec<String>,
    header: SafeTensors,
    bytes: Vec<u8>,
}

impl SiglipGolden {
    pub fn load(dir: &Path) -> SiglipGolden {
        let read_json = |name: &str| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
        };
        let json = read_json("golden.json");
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
        SiglipGolden {
            dir: dir.to_path_buf(),
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            config: read_json("config.json"),
            images: list("images"),
            texts: list("texts"),
            header,
            bytes,
        }
    }

    fn config_usize(&self, tower: &str, key: &str) -> usize {
        self.config[tower][key]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: config.json has no {tower}.{key}", self.name))
            as usize
    }

    /// The text tower's `max_position_embeddings`.
    pub fn context_length(&self) -> usize {
        self.config_usize("text_config", "max_position_embeddings")
    }

    pub fn image_size(&self) -> usize {
        self.config_usize("vision_config", "image_size")
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

    pub fn pixels(&self, image: &str) -> Vec<f32> {
        self.f32(&format!("pixel_values.{image}"))
    }

    pub fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap()
    }

    pub fn optional_file(&self, name: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(name)).ok()
    }
}

/// The tokenizer files of a folder, as `Tokenizer::from_files` takes them.
pub struct OwnedTokenizerFiles {
    pub tokenizer_json: Option<Vec<u8>>,
    pub spiece_model: Option<Vec<u8>>,
    pub tokenizer_config: Option<Vec<u8>>,
}

impl OwnedTokenizerFiles {
    pub fn of(g: &SiglipGolden) -> Self {
        OwnedTokenizerFiles {
            tokenizer_json: g.optional_file("tokenizer.json"),
            spiece_model: g.optional_file("spiece.model"),
            tokenizer_config: g.optional_file("tokenizer_config.json"),
        }
    }

    pub fn files(&self) -> TokenizerFiles<'_> {
        TokenizerFiles {
            tokenizer_json: self.tokenizer_json.as_deref(),
            spiece_model: self.spiece_model.as_deref(),
            tokenizer_config: self.tokenizer_config.as_deref(),
        }
    }
}
