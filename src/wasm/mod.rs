//! The JavaScript-facing API (wasm-bindgen), kept thin: bytes in, `Float32Array` out,
//! every failure a JS `Error` with the `ClipError` message and its stable `code`
//! ([`ClipError::code`]). Fetching, caching, image decoding in the browser and the worker
//! live in the JS layer (`js/`), which is the public API; this module is its backend room.
//!
//! Memory: the weights stay in JS (`WeightBytes` holds `Uint8Array` handles, no copy) and
//! are copied into wasm one tensor at a time while the backend converts them, so a 600 MB
//! checkpoint never sits in wasm memory twice. Calls on one model are serialised by the JS
//! layer; the `RefCell` here turns a second concurrent call into an error, never a panic.

use crate::clip::{BackendChoice, Clip, ClipOptions, Embeddings, ModelFiles};
use crate::error::ClipError;
use crate::gpu::{GpuOptions, WeightPrecision};
use crate::model::plan;
use crate::model::safetensors::TensorBytes;
use crate::model::{SafeTensors, Towers};
use crate::preprocess::ImageInput;
use crate::tokenizer::TokenizerFiles;
use js_sys::{Float32Array, Promise, Uint8Array};
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

// The vector store behind js/clip-index.js.
mod index;

/// A JS `Error` with the message and `error.code` (`JsError` cannot carry properties).
fn js_err(e: ClipError) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
}

fn busy() -> JsValue {
    js_err(ClipError::Input(
        "the model is busy with another call; await it before the next".into(),
    ))
}

/// Panics are bugs, not input errors (the library returns `ClipError` for those); the
/// hook only makes one readable in the console before the module aborts.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// What this build of the module can do, as the JS layer reports it: `simd128`, then
/// `relaxed-simd` (fused multiply-add) and `threads` (shared memory) when built with them.
/// Whether relaxed SIMD's integer dot product may be used (js/wasm.js probes the runtime).
#[wasm_bindgen(js_name = setRelaxedDot)]
pub fn set_relaxed_dot(ok: bool) {
    crate::cpu::qdot::set_relaxed_dot(ok);
}

/// The instruction this build's int8 matmuls multiply with here, or undefined where they
/// dequantise the weights and multiply in f32.
#[wasm_bindgen(js_name = integerDot)]
pub fn integer_dot() -> Option<String> {
    let isa = crate::cpu::Isa::best();
    crate::cpu::qdot::instruction(isa, crate::model::quantize::DEFAULT_GROUP).map(String::from)
}

#[wasm_bindgen(js_name = buildFeatures)]
pub fn build_features() -> Vec<String> {
    let mut f = vec![];
    if cfg!(target_feature = "simd128") {
        f.push("simd128".to_string());
    }
    if cfg!(target_feature = "relaxed-simd") {
        f.push("relaxed-simd".to_string());
    }
    if cfg!(target_feature = "atomics") {
        f.push("threads".to_string());
    }
    f
}

/// A pool worker joins (js/pool-worker.js calls it in a Web Worker or a Node.js worker
/// thread that instantiated this module over the shared memory) before it says it is
/// ready: the worker's index for `poolWorkerServe`, or an error where the build has no
/// threads.
#[wasm_bindgen(js_name = poolWorkerJoin)]
pub fn pool_worker_join() -> Result<usize, JsValue> {
    crate::cpu::pool::worker_join().map_err(|e| js_err(ClipError::Unsupported(e.into())))
}

/// The rest of a pool worker's life: serve the CPU backend's parallel loops; never returns.
#[wasm_bindgen(js_name = poolWorkerServe)]
pub fn pool_worker_serve(index: usize) {
    crate::cpu::pool::worker_serve(index)
}

/// The CPU kernels against this core's limit, for a benchmark page: the peak of this
/// build's multiply-add (`simd128 mul+add` or `simd128 relaxed FMA`) on `threads` threads
/// (at most the pool's) and every GEMM shape of the config preset `preset`, each timed
/// for `budget_ms`. JSON: `{ isa, mix, threads, peak_gflops, rows: [{ what, m, k, n,
/// best_ms, gflops, median_gflops }] }`.
#[wasm_bindgen(js_name = kernelBench)]
pub fn kernel_bench(preset: &str, threads: usize, budget_ms: u32) -> Result<String, JsValue> {
    use crate::bench::kernels::{gemm_against_peak, peak_mix};
    use crate::cpu::simd::Isa;
    let config = crate::model::ClipConfig::preset(preset).map_err(js_err)?;
    let isa = Isa::best();
    let threads = threads.clamp(1, crate::cpu::pool::available());
    let budget = std::time::Duration::from_millis(budget_ms.into());
    let (peak, rows) = gemm_against_peak(&config, isa, threads, budget).map_err(js_err)?;
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "what": r.shape.what, "m": r.shape.m, "k": r.shape.k, "n": r.shape.n,
                "best_ms": r.best_ms, "gflops": r.gflops, "median_gflops": r.median_gflops,
            })
        })
        .collect();
    Ok(serde_json::json!({
        "isa": isa.name(), "mix": peak_mix(isa), "threads": threads,
        "peak_gflops": peak, "rows": rows,
    })
    .to_string())
}

/// Where an image pass of the CPU engine spends its time in this build: the vision tower of
/// the config preset `preset` on random weights of its real shape, `batch` images, the
/// fastest of `passes` profiled passes on `threads` threads (at most the pool's). JSON:
/// `{ isa, threads, batch, total_ms, table }` (`table`: Markdown, slowest operation first).
#[wasm_bindgen(js_name = profileBench)]
pub fn profile_bench(
    preset: &str,
    batch: usize,
    threads: usize,
    passes: usize,
) -> Result<String, JsValue> {
    use crate::bench::profile::{fastest_vision_pass, table};
    use crate::cpu::{make_weight, CpuBackend};
    use crate::model::random::{write_random_weights, Rng};
    use crate::model::{ClipConfig, ClipModel, Dtype, SafeTensors, Towers};
    let config = ClipConfig::preset(preset).map_err(js_err)?;
    let batch = batch.clamp(1, 64);
    let mut file = Vec::new();
    write_random_weights(&mut file, &config, 1, Dtype::F16).map_err(js_err)?;
    let st = SafeTensors::parse(&file).map_err(js_err)?;
    let model = ClipModel::load(
        &config,
        &st,
        file.as_slice(),
        Towers::Vision,
        &mut make_weight,
    )
    .map_err(js_err)?;
    drop(file);
    let vision = model.vision().map_err(js_err)?;
    let mut backend = CpuBackend::with_threads(threads.clamp(1, crate::cpu::pool::available()));
    let size = config.vision_config.image_size;
    let px = Rng::new(2).fill_uniform(batch * 3 * size * size, 1.0);
    let (total, ops) = fastest_vision_pass(&mut backend, vision, &px, batch, passes.clamp(1, 20))
        .map_err(js_err)?;
    Ok(serde_json::json!({
        "isa": crate::cpu::simd::Isa::best().name(), "threads": backend.threads(), "batch": batch,
        "total_ms": total.as_secs_f64() * 1e3, "table": table(&ops, total),
    })
    .to_string())
}

/// `[loops offered to pool workers, tasks they ran]` in this module instance's memory
/// (the threaded builds; zeros elsewhere): the tests' proof that the threads work.
#[wasm_bindgen(js_name = poolStats)]
pub fn pool_stats() -> Vec<u32> {
    let (loops, tasks) = crate::cpu::pool::stats();
    vec![loops as u32, tasks as u32]
}

/// The bytes of `model.safetensors` that JS has: whole, or only the ranges a tower needs.
/// Segments are JS-owned `Uint8Array`s; `read_range` copies one tensor's slice into wasm.
#[wasm_bindgen]
#[derive(Default)]
pub struct WeightBytes {
    /// `(file offset, bytes)`, sorted by offset.
    segments: Vec<(usize, Uint8Array)>,
}

#[wasm_bindgen]
impl WeightBytes {
    #[wasm_bindgen(constructor)]
    pub fn new() -> WeightBytes {
        WeightBytes::default()
    }

    /// Bytes of the file starting at `offset` (the whole file: offset 0).
    pub fn add(&mut self, offset: f64, bytes: Uint8Array) -> Result<(), JsValue> {
        if !(offset >= 0.0 && offset <= usize::MAX as f64 && offset.fract() == 0.0) {
            return Err(js_err(ClipError::Input(format!(
                "invalid segment offset {offset}"
            ))));
        }
        let at = self
            .segments
            .partition_point(|(o, _)| *o <= offset as usize);
        self.segments.insert(at, (offset as usize, bytes));
        Ok(())
    }
}

impl TensorBytes for WeightBytes {
    fn read_range(&self, start: usize, end: usize) -> crate::Result<Cow<'_, [u8]>> {
        if start == end {
            return Ok(Cow::Borrowed(&[]));
        }
        // The last segment starting at or before `start` is the only one that can hold it.
        let at = self.segments.partition_point(|(o, _)| *o <= start);
        let seg = at.checked_sub(1).map(|i| &self.segments[i]);
        match seg {
            Some((offset, bytes)) if end <= offset + bytes.length() as usize => {
                let (a, b) = (start - offset, end - offset);
                Ok(Cow::Owned(bytes.subarray(a as u32, b as u32).to_vec()))
            }
            _ => Err(ClipError::SafeTensors(format!(
                "file is truncated or was not fully downloaded: bytes [{start}, {end}) are missing"
            ))),
        }
    }
}

/// What a download of `model.safetensors` needs, from the start of the file
/// ([`plan::WeightPlan`]).
#[wasm_bindgen]
pub struct WeightPlan(plan::WeightPlan);

#[wasm_bindgen]
impl WeightPlan {
    /// How many bytes the header occupies (8 + JSON), from the file's first 8 bytes.
    #[wasm_bindgen(js_name = headerLength)]
    pub fn header_length(first8: &[u8]) -> Result<f64, JsValue> {
        Ok(SafeTensors::header_len(first8).map_err(js_err)? as f64)
    }

    /// Parse the header (the file's first `headerLength` bytes) and list the byte ranges
    /// of the tensors the requested towers use, adjacent ones merged.
    pub fn parse(header: &[u8], towers: &str) -> Result<WeightPlan, JsValue> {
        let towers = Towers::parse(towers).map_err(js_err)?;
        let st = SafeTensors::parse_header(header).map_err(js_err)?;
        Ok(WeightPlan(plan::WeightPlan::new(&st, towers)))
    }

    #[wasm_bindgen(getter, js_name = headerLen)]
    pub fn header_len(&self) -> f64 {
        self.0.header_len as f64
    }

    /// The least number of bytes a complete file holds.
    #[wasm_bindgen(getter, js_name = dataEnd)]
    pub fn data_end(&self) -> f64 {
        self.0.data_end as f64
    }

    /// Bytes the plan reads: the header and every range.
    #[wasm_bindgen(getter, js_name = totalBytes)]
    pub fn total_bytes(&self) -> f64 {
        self.0.total_bytes() as f64
    }

    /// `[start0, end0, start1, end1, ...]`, end exclusive.
    #[wasm_bindgen(getter)]
    pub fn ranges(&self) -> Vec<f64> {
        self.0
            .ranges
            .iter()
            .flat_map(|&(s, e)| [s as f64, e as f64])
            .collect()
    }
}

/// Images for one call: encoded files (decoded in Rust) or raw RGBA pixels.
#[wasm_bindgen]
#[derive(Default)]
pub struct ImageBatch {
    items: Vec<Item>,
}

enum Item {
    Encoded(Vec<u8>),
    Rgba {
        width: u32,
        height: u32,
        data: Vec<u8>,
    },
}

#[wasm_bindgen]
impl ImageBatch {
    #[wasm_bindgen(constructor)]
    pub fn new() -> ImageBatch {
        ImageBatch::default()
    }

    /// PNG, JPEG, WebP or GIF bytes.
    #[wasm_bindgen(js_name = pushEncoded)]
    pub fn push_encoded(&mut self, bytes: Vec<u8>) {
        self.items.push(Item::Encoded(bytes));
    }

    /// `width * height * 4` bytes of RGBA8, row-major (an `ImageData`'s `data`).
    #[wasm_bindgen(js_name = pushRgba)]
    pub fn push_rgba(&mut self, width: u32, height: u32, data: Vec<u8>) -> Result<(), JsValue> {
        let expected = width as u64 * height as u64 * 4;
        if data.len() as u64 != expected {
            return Err(js_err(ClipError::Input(format!(
                "RGBA data of a {width}x{height} image must hold {expected} bytes, not {}",
                data.len()
            ))));
        }
        self.items.push(Item::Rgba {
            width,
            height,
            data,
        });
        Ok(())
    }

    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.items.len()
    }
}

/// A loaded model. Methods return promises of flat `Float32Array`s `[n * dim]`.
#[wasm_bindgen]
pub struct WasmClip {
    inner: Rc<RefCell<Clip>>,
    // Fixed at load, so the getters never need to borrow the (maybe busy) model.
    dim: usize,
    image_size: usize,
    logit_scale: f32,
    logit_bias: f32,
    family: &'static str,
    towers: Towers,
    backend_kind: String,
    backend_adapter: Option<String>,
    backend_reason: String,
    backend_weights: Option<String>,
    backend_threads: Option<usize>,
    /// `[cpu ms, gpu ms]` of `auto`'s measurement, and what was run.
    backend_measured: Option<(f64, f64, &'static str)>,
    /// Outside `inner`, so that a test can destroy the device while a call holds the model.
    device_breaker: Option<crate::gpu::DeviceBreaker>,
}

/// `WasmClip.load`'s options, as js/engine.js passes them: the small files as bytes and
/// the choices; absent choices take the JS API's defaults.
#[derive(serde::Deserialize)]
// No `deny_unknown_fields`: serde-wasm-bindgen reads a struct's fields by name and never
// sees the others.
#[serde(rename_all = "camelCase")]
struct LoadOptions {
    /// `config.json`
    config: Bytes,
    /// `tokenizer.json` (CLIP, SigLIP 2); it or `spiece` is needed for `textFeatures`.
    #[serde(default)]
    tokenizer: Option<Bytes>,
    /// `spiece.model` (SigLIP).
    #[serde(default)]
    spiece: Option<Bytes>,
    /// `tokenizer_config.json`, when the model has one.
    #[serde(default)]
    tokenizer_config: Option<Bytes>,
    /// `preprocessor_config.json`; the family's defaults when absent.
    #[serde(default)]
    preprocessor: Option<Bytes>,
    /// `auto` | `cpu` | `webgpu`
    #[serde(default = "auto")]
    backend: String,
    /// `both` | `vision` | `text`
    #[serde(default = "both")]
    towers: String,
    /// Images or texts per forward pass; 0: the backend's default.
    #[serde(default)]
    max_batch: usize,
    /// `auto` | `f16` | `f32`: how the GPU backend stores matrices (the CPU ignores it).
    #[serde(default = "auto")]
    gpu_weights: String,
    /// Threads of the CPU backend: the JS layer has started `threads - 1` pool workers
    /// (the threaded build); a loop uses those that have joined.
    #[serde(default = "one")]
    threads: usize,
    /// For `auto`: `cpu` or `webgpu`, what an earlier load measured faster for this model
    /// on this device (js/engine.js caches it); absent: measure.
    #[serde(default)]
    prefer: Option<String>,
    /// `auto` (as the checkpoint is) | `int8`: quantise a float checkpoint's matrices at
    /// load, for memory.
    #[serde(default = "auto")]
    weights: String,
}

fn one() -> usize {
    1
}

fn auto() -> String {
    "auto".into()
}

fn both() -> String {
    "both".into()
}

/// A `Uint8Array` (or `ArrayBuffer`) copied in one go; serde's `Vec<u8>` would read it
/// element by element.
struct Bytes(Vec<u8>);

impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Uint8Array")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visit)
    }
}

impl LoadOptions {
    fn clip_options(&self) -> crate::Result<ClipOptions> {
        Ok(ClipOptions {
            backend: BackendChoice::parse(&self.backend)?,
            towers: Towers::parse(&self.towers)?,
            max_batch: self.max_batch,
            gpu: GpuOptions {
                weights: WeightPrecision::parse(&self.gpu_weights)?,
                ..GpuOptions::default()
            },
            threads: self.threads.max(1),
            prefer: self
                .prefer
                .as_deref()
                .map(BackendChoice::parse)
                .transpose()?,
            int8: match self.weights.as_str() {
                "auto" => false,
                "int8" => true,
                w => {
                    return Err(ClipError::Input(format!(
                        "weights must be 'auto' or 'int8', not '{w}'"
                    )))
                }
            },
        })
    }
}

/// A JS result of features: L2-normalised rows when `normalize`.
fn features(emb: crate::Result<Embeddings>, normalize: bool) -> Result<JsValue, JsValue> {
    let emb = emb.map_err(js_err)?;
    let emb = if normalize { emb.normalized() } else { emb };
    Ok(Float32Array::from(emb.data.as_slice()).into())
}

#[wasm_bindgen]
impl WasmClip {
    /// Load a model from `weights` and `options`: `{ config, tokenizer?, spiece?,
    /// tokenizerConfig?, preprocessor? }` as `Uint8Array`s, and `backend` (auto | cpu |
    /// webgpu), `towers` (both | vision | text), `maxBatch` (0: default), `gpuWeights`
    /// (auto | f16 | f32).
    pub async fn load(weights: WeightBytes, options: JsValue) -> Result<WasmClip, JsValue> {
        let options: LoadOptions = serde_wasm_bindgen::from_value(options)
            .map_err(|e| js_err(ClipError::Input(format!("WasmClip.load options: {e}"))))?;
        let files = ModelFiles {
            config: &options.config.0,
            weights: &weights,
            tokenizer: TokenizerFiles {
                tokenizer_json: options.tokenizer.as_ref().map(|b| b.0.as_slice()),
                spiece_model: options.spiece.as_ref().map(|b| b.0.as_slice()),
                tokenizer_config: options.tokenizer_config.as_ref().map(|b| b.0.as_slice()),
            },
            preprocessor: options.preprocessor.as_ref().map(|b| b.0.as_slice()),
        };
        let clip_options = options.clip_options().map_err(js_err)?;
        let clip = Clip::load(files, &clip_options).await.map_err(js_err)?;
        let info = clip.backend().clone();
        Ok(WasmClip {
            dim: clip.config.projection_dim,
            image_size: clip.config.vision_config.image_size,
            logit_scale: clip.logit_scale(),
            logit_bias: clip.logit_bias(),
            family: clip.config.family.as_str(),
            towers: clip.towers(),
            backend_kind: info.kind.to_string(),
            backend_adapter: info.adapter,
            backend_reason: info.reason,
            backend_weights: info.weights.map(str::to_string),
            backend_threads: info.threads,
            backend_measured: info.measured.map(|m| (m.cpu_ms, m.gpu_ms, m.what)),
            device_breaker: clip.device_breaker(),
            inner: Rc::new(RefCell::new(clip)),
        })
    }

    /// Projected image features `[n * dim]`, L2-normalised when `normalize`.
    #[wasm_bindgen(js_name = imageFeatures)]
    // The borrow spans the forward pass on purpose (here and below): a concurrent call
    // fails to borrow and gets an error, instead of two passes sharing the backend's buffers.
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn image_features(&self, images: ImageBatch, normalize: bool) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut clip = borrow(&inner)?;
            let inputs: Vec<ImageInput> = images
                .items
                .iter()
                .map(|it| match it {
                    Item::Encoded(b) => ImageInput::Encoded(b),
                    Item::Rgba {
                        width,
                        height,
                        data,
                    } => ImageInput::Rgba {
                        width: *width,
                        height: *height,
                        data,
                    },
                })
                .collect();
            features(clip.image_features(&inputs).await, normalize)
        })
    }

    /// Projected text features `[n * dim]`, L2-normalised when `normalize`.
    #[wasm_bindgen(js_name = textFeatures)]
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn text_features(&self, texts: Vec<String>, normalize: bool) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut clip = borrow(&inner)?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            features(clip.text_features(&refs).await, normalize)
        })
    }

    /// Projected features for already preprocessed images: `pixels` is `[n, 3, S, S]`
    /// (what `CLIPImageProcessor` returns), for callers with their own preprocessing and
    /// for benchmarks that feed the exact reference tensor.
    #[wasm_bindgen(js_name = pixelFeatures)]
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn pixel_features(&self, pixels: Vec<f32>, n: usize, normalize: bool) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut clip = borrow(&inner)?;
            features(clip.pixel_features(&pixels, n).await, normalize)
        })
    }

    /// Projected features for token ids `[n, len]` as the model's tokenizer pads them
    /// (CLIP: `<|startoftext|> ... <|endoftext|>` padded after the end token; SigLIP: the
    /// full context): `Clip::padded_token_features`.
    #[wasm_bindgen(js_name = tokenFeatures)]
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn token_features(&self, ids: Vec<u32>, n: usize, normalize: bool) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut clip = borrow(&inner)?;
            features(clip.padded_token_features(&ids, n).await, normalize)
        })
    }

    /// Length of one embedding (`projection_dim`).
    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Side of the square model input, in pixels.
    #[wasm_bindgen(getter, js_name = imageSize)]
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// `exp(logit_scale)`: the factor from cosine similarity to logits (100 for OpenAI CLIP).
    #[wasm_bindgen(getter, js_name = logitScale)]
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale.exp()
    }

    /// SigLIP's `logit_bias`, added to every logit (0 for CLIP).
    #[wasm_bindgen(getter, js_name = logitBias)]
    pub fn logit_bias(&self) -> f32 {
        self.logit_bias
    }

    /// `clip` or `siglip`: whether scores are a softmax over labels or a sigmoid per label.
    #[wasm_bindgen(getter)]
    pub fn family(&self) -> String {
        self.family.into()
    }

    /// `both`, `vision` or `text`.
    #[wasm_bindgen(getter)]
    pub fn towers(&self) -> String {
        match self.towers {
            Towers::Both => "both",
            Towers::Vision => "vision",
            Towers::Text => "text",
        }
        .into()
    }

    /// `cpu` or `webgpu`.
    #[wasm_bindgen(getter, js_name = backendKind)]
    pub fn backend_kind(&self) -> String {
        self.backend_kind.clone()
    }

    #[wasm_bindgen(getter, js_name = backendAdapter)]
    pub fn backend_adapter(&self) -> Option<String> {
        self.backend_adapter.clone()
    }

    #[wasm_bindgen(getter, js_name = backendReason)]
    pub fn backend_reason(&self) -> String {
        self.backend_reason.clone()
    }

    /// `f16` or `f32`: how the GPU backend stores matrices; `undefined` on the CPU backend.
    #[wasm_bindgen(getter, js_name = backendWeights)]
    pub fn backend_weights(&self) -> Option<String> {
        self.backend_weights.clone()
    }

    /// What `auto` measured at load, `{ what, cpuMs, gpuMs }`; `undefined` when it did not
    /// measure (one engine only, or an earlier verdict was passed as `prefer`).
    #[wasm_bindgen(getter, js_name = backendMeasured)]
    pub fn backend_measured(&self) -> JsValue {
        let Some((cpu, gpu, what)) = self.backend_measured else {
            return JsValue::UNDEFINED;
        };
        let o = js_sys::Object::new();
        for (k, v) in [
            ("what", JsValue::from_str(what)),
            ("cpuMs", cpu.into()),
            ("gpuMs", gpu.into()),
        ] {
            let _ = js_sys::Reflect::set(&o, &JsValue::from_str(k), &v);
        }
        o.into()
    }

    /// Threads the CPU backend runs on; `undefined` on the GPU backend.
    #[wasm_bindgen(getter, js_name = backendThreads)]
    pub fn backend_threads(&self) -> Option<usize> {
        self.backend_threads
    }

    /// The GPU device was lost (read between calls: `false` while a call holds the model).
    /// The JS layer checks it after a failed call to decide whether to reload.
    #[wasm_bindgen(getter, js_name = deviceLost)]
    pub fn device_lost(&self) -> bool {
        self.inner.try_borrow().is_ok_and(|c| c.is_device_lost())
    }

    /// Why the GPU device was lost (`Destroyed: ...`), once it is; `undefined` before, on
    /// the CPU backend, and while a call holds the model.
    #[wasm_bindgen(getter, js_name = deviceLostReason)]
    pub fn device_lost_reason(&self) -> Option<String> {
        self.inner.try_borrow().ok()?.device_lost_reason()
    }

    /// Destroy the GPU device (`GPUDevice.destroy()`), so that the browser reports it lost
    /// with reason `destroyed` as it would after a driver reset: for tests of the recovery
    /// path. With `during_next_call`, right after the next call submits its first work
    /// (a loss in the middle of a batch, while the call waits for the GPU). Does nothing
    /// on the CPU backend.
    #[wasm_bindgen(js_name = loseDeviceForTesting)]
    pub fn lose_device_for_testing(&self, during_next_call: bool) {
        match &self.device_breaker {
            Some(b) if during_next_call => b.destroy_after_next_submit(),
            Some(b) => b.destroy(),
            None => {}
        }
    }

    /// `[buffers, bytes]` the GPU backend holds on its device, or `undefined` on the CPU
    /// backend (tests and benchmarks: GPU memory stays flat under load).
    #[wasm_bindgen(js_name = gpuBuffers)]
    pub fn gpu_buffers(&self) -> Result<Option<Vec<f64>>, JsValue> {
        let clip = self.inner.try_borrow().map_err(|_| busy())?;
        Ok(clip.gpu_buffers().map(|(n, b)| vec![n as f64, b as f64]))
    }
}

fn borrow(inner: &Rc<RefCell<Clip>>) -> Result<std::cell::RefMut<'_, Clip>, JsValue> {
    inner.try_borrow_mut().map_err(|_| busy())
}
