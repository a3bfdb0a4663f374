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
    /// loaded again. Holds wgpu's reason (`Destroyed: ...`).
    #[error("GPU: the GPU device was lost ({0}); load the model again to get a new device")]
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

impl ClipError {
    /// A failed file operation, `NotFound` or `Io` by its kind, naming the file:
    /// `ClipError::file("cannot read", path, e)`.
    pub fn file(action: &str, path: &std::path::Path, e: std::io::Error) -> ClipError {
        let msg = format!("{action} {}: {e}", path.display());
        match e.kind() {
            std::io::ErrorKind::NotFound => ClipError::NotFound(msg),
            _ => ClipError::Io(msg),
        }
    }
}

impl From<std::io::Error> for ClipError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => ClipError::NotFound(e.to_string()),
            _ => ClipError::Io(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each variant: adding a variant without a code here fails to compile below.
    fn every_kind() -> Vec<ClipError> {
        let s = || "x".to_string();
        let all = vec![
            ClipError::Config(s()),
            ClipError::SafeTensors(s()),
            ClipError::MissingTensor { name: s() },
            ClipError::TensorShape {
                name: s(),
                expected: vec![],
                found: vec![],
            },
            ClipError::UnsupportedDtype {
                name: s(),
                dtype: s(),
            },
            ClipError::Tokenizer(s()),
            ClipError::Image(s()),
            ClipError::Input(s()),
            ClipError::TowerNotLoaded("text"),
            ClipError::Gpu(s()),
            ClipError::DeviceLost(s()),
            ClipError::NoGpu(s()),
            ClipError::NotFound(s()),
            ClipError::Io(s()),
            ClipError::Unsupported(s()),
            ClipError::Internal(s()),
        ];
        for e in &all {
            // Exhaustive: a new variant must be added to the list above.
            match e {
                ClipError::Config(_)
                | ClipError::SafeTensors(_)
                | ClipError::MissingTensor { .. }
                | ClipError::TensorShape { .. }
                | ClipError::UnsupportedDtype { .. }
                | ClipError::Tokenizer(_)
                | ClipError::Image(_)
                | ClipError::Input(_)
                | ClipError::TowerNotLoaded(_)
                | ClipError::Gpu(_)
                | ClipError::DeviceLost(_)
                | ClipError::NoGpu(_)
                | ClipError::NotFound(_)
                | ClipError::Io(_)
                | ClipError::Unsupported(_)
                | ClipError::Internal(_) => {}
            }
        }
        all
    }

    /// The JS layer's list of codes (js/errors.js), the typed union (js/index.d.ts) and the
    /// documented table (js/README.md) name every code Rust produces.
    #[test]
    fn every_code_is_known_to_the_js_layer() {
        let sources = [
            ("js/errors.js", include_str!("../js/errors.js")),
            ("js/index.d.ts", include_str!("../js/index.d.ts")),
            ("js/README.md", include_str!("../js/README.md")),
        ];
        for e in every_kind() {
            let code = e.code();
            for (file, text) in sources {
                let quoted = [format!("'{code}'"), format!("`{code}`")];
                assert!(
                    quoted.iter().any(|q| text.contains(q.as_str())),
                    "{file} does not list the code `{code}`"
                );
            }
        }
    }

    #[test]
    fn io_errors_keep_not_found_apart() {
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = ClipError::file(
            "cannot read",
            std::path::Path::new("m/config.json"),
            missing,
        );
        assert_eq!(e.code(), "not-found");
        assert!(e.to_string().contains("m/config.json"), "{e}");
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(ClipError::from(denied).code(), "io");
    }
}
