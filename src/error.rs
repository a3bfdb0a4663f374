//! One error type for the whole crate. Every variant names what went wrong in
//! words a user can act on; on wasm32 it becomes a rejected promise (`JsError`).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClipError {
    /// `config.json` / `preprocessor_config.json` could not be parsed or is inconsistent.
    #[error("invalid config: {0}")]
    Config(String),

    /// The safetensors container itself is broken (truncated, bad header, lying offsets).
    #[error("invalid safetensors file: {0}")]
    SafeTensors(String),

    #[error("missing tensor `{name}` in the weights file")]
    MissingTensor { name: String },

    #[error("tensor `{name}` has shape {found:?}, expected {expected:?} from config.json")]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error("tensor `{name}` has unsupported dtype {dtype} (supported: F32, F16, BF16)")]
    UnsupportedDtype { name: String, dtype: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// Bytes that are not a decodable image, or an image we refuse to decode.
    #[error("image: {0}")]
    Image(String),

    /// Wrong input to an encoder call (pixel buffer size, token ids out of vocabulary, ...).
    #[error("invalid input: {0}")]
    Input(String),

    /// The requested tower was not loaded (`towers: 'vision'` then asking for text, ...).
    #[error("the {0} tower is not loaded; load the model with towers = both or {0}")]
    TowerNotLoaded(&'static str),

    /// WebGPU / wgpu failures: no adapter, limits too small, device lost, out of memory.
    #[error("GPU: {0}")]
    Gpu(String),

    #[error("I/O: {0}")]
    Io(String),
}

pub type Result<T, E = ClipError> = std::result::Result<T, E>;

impl From<std::io::Error> for ClipError {
    fn from(e: std::io::Error) -> Self {
        ClipError::Io(e.to_string())
    }
}
