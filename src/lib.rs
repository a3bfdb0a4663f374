//! webclip: CLIP inference for the browser and the server.
//!
//! Bytes to embeddings: `model/` reads the checkpoint, `tokenizer/` and `preprocess/` turn
//! text and images into model inputs, `graph` is the CLIP forward pass written once over a
//! few operations, which `cpu/` (SIMD) and `gpu/` (WGSL on WebGPU) implement; `clip` ties
//! them into the public API, and `wasm/` exposes that API to JavaScript.

// The threaded wasm build (nightly, `build.sh`): the pool's workers sleep on `memory.atomic.wait32`.
#![cfg_attr(
    all(target_arch = "wasm32", target_feature = "atomics"),
    feature(stdarch_wasm_atomic_wait)
)]

pub mod bench;
pub mod clip;
pub mod cpu;
pub mod error;
pub mod gpu;
pub mod graph;
pub mod index;
pub mod limits;
pub mod model;
pub mod preprocess;
pub mod tokenizer;

#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use clip::{BackendChoice, Clip, ClipOptions, Embeddings, Logits, ModelFiles};
pub use error::{ClipError, Result};
pub use model::{ClipConfig, Towers};
pub use preprocess::ImageInput;
