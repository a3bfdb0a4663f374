//! One error type for the whole crate. Every variant names what went wrong in words a user
//! can act on, and has a stable [`ClipError::code`] that programs match instead of the
//! words; on wasm32 it becomes a rejected promise whose `Error` carries that `code`.

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

    /// WebGPU / wgpu failures on a working device: limits too small, validation, out of
    /// memory.
    #[error("GPU: {0}")]
    Gpu(String),

    /// The GPU device was lost (driver reset, the browser reclaimed it); the model must be
    /// loaded again.
    #[error("GPU: {0}")]
    DeviceLost(String),

    /// No WebGPU adapter or device can be had (no `navigator.gpu`, no adapter, refused).
    #[error("GPU: {0}")]
    NoGpu(String),

    /// A file that does not exist (a local path, or an optional file of a model folder).
    #[error("not found: {0}")]
    NotFound(String),

    #[error("I/O: {0}")]
    Io(String),

    /// Valid input that this build or machine cannot run (a model family, an ISA, a
    /// feature the adapter lacks).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A broken internal invariant: a bug in webclip, not a problem with the input.
    #[error("internal error (a bug in webclip, please report it): {0}")]
    Internal(String),
}

impl ClipError {
    /// A stable, machine-readable name for the kind of failure (the JS `Error.code`). The
    /// list is documented in `js/README.md` and typed in `js/index.d.ts`; never rename one.
    pub fn code(&self) -> &'static str {
        match self {
            ClipError::Config(_) => "bad-config",
            ClipError::SafeTensors(_)
            | ClipError::MissingTensor { .. }
            | ClipError::TensorShape { .. }
            | ClipError::UnsupportedDtype { .. } => "bad-weights",
            ClipError::Tokenizer(_) => "bad-tokenizer",
            ClipError::Image(_) => "bad-image",
            ClipError::Input(_) => "bad-input",
            ClipError::TowerNotLoaded(_) => "tower-not-loaded",
            ClipError::Gpu(_) => "gpu",
            ClipError::DeviceLost(_) => "device-lost",
            ClipError::NoGpu(_) => "no-webgpu",
            ClipError::NotFound(_) => "not-found",
            ClipError::Io(_) => "io",
            ClipError::Unsupported(_) => "unsupported",
            ClipError::Internal(_) => "internal",
        }
    }
}

pub type Result<T, E = ClipError> = std::result::Result<T, E>;

impl From<std::io::Error> for ClipError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => ClipError::NotFound(e.to_string()),
            _ => ClipError::Io(e.to_string()),
        }
    }
}
