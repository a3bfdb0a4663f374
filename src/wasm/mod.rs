//! The JavaScript-facing API (wasm-bindgen).
