//! The public API: load a checkpoint, embed images and texts, compare them. It ties the
//! tokenizer, the preprocessor and one backend (CPU or GPU) together.

use crate::cpu::{self, CpuBackend};
use crate::error::{ClipError, Result};
use crate::gpu::{GpuBackend, GpuOptions};
use crate::graph::{self, pool_position, Backend, TextBatch};
use crate::model::safetensors::TensorBytes;
use crate::model::{ClipConfig, ClipModel, Family, HostTensor, SafeTensors, Towers, WeightRole};
use crate::preprocess::{ImageInput, PreprocessConfig, Preprocessor};
use crate::tokenizer::{Tokenizer, TokenizerFiles};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// WebGPU when an adapter and device can be had and the adapter is real hardware
    /// (software rasterisers are ~100x slower than the CPU backend), else the CPU backend.
    #[default]
    Auto,
    Cpu,
    /// WebGPU only, on any adapter (software ones included): fails rather than falling
    /// back.
    Gpu,
}

impl BackendChoice {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "cpu" => Ok(BackendChoice::Cpu),
            "gpu" | "webgpu" => Ok(BackendChoice::Gpu),
            _ => Err(ClipError::Input(format!(
                "backend must be auto, cpu or webgpu, not `{s}`"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClipOptions {
    pub backend: BackendChoice,
    pub towers: Towers,
    /// Images or texts per forward pass (bounds activation memory). 0 = the backend's
    /// default: 8 on the CPU, 32 on the GPU (whose throughput grows with the batch).
    pub max_batch: usize,
    /// Adapter choice and limits for the WebGPU backend.
    pub gpu: GpuOptions,
    /// Threads of the CPU backend: 0 = every core natively (the JS layer passes its own
    /// count to the threaded wasm build; the single-threaded one always runs one).
    pub threads: usize,
    /// For `auto`: an earlier measurement's verdict for this model and device (`Cpu` or
    /// `Gpu`), so that a reload does not measure again. `None` (or `Auto`) measures.
    pub prefer: Option<BackendChoice>,
    /// Quantise a float checkpoint's matrices to int8 while loading (JS `weights: 'int8'`),
    /// with the converter's layout (`model::quantize`): for memory, not download. An int8
    /// checkpoint is int8 whatever this says.
    pub int8: bool,
}

/// The files of a Hugging Face CLIP or SigLIP repository, as bytes.
#[derive(Clone, Copy)]
pub struct ModelFiles<'a> {
    pub config: &'a [u8],
    /// `model.safetensors`: where its bytes come from (`Clip::load` reads the header).
    pub weights: &'a dyn TensorBytes,
    /// `tokenizer.json` (CLIP, SigLIP 2) or `spiece.model` (SigLIP), with
    /// `tokenizer_config.json` when there is one; required for `text_features`.
    pub tokenizer: TokenizerFiles<'a>,
    /// `preprocessor_config.json`; the family's defaults when absent.
    pub preprocessor: Option<&'a [u8]>,
}

/// A model folder in the Hugging Face layout, read from disk: `config.json`,
/// `model.safetensors` (or another weights file), and the tokenizer files
/// (`tokenizer.json`, `spiece.model`, `tokenizer_config.json`) and
/// `preprocessor_config.json` when they are there.
pub struct ModelFolder {
    pub config: Vec<u8>,
    pub weights: Vec<u8>,
    pub tokenizer: Option<Vec<u8>>,
    pub spiece_model: Option<Vec<u8>>,
    pub tokenizer_config: Option<Vec<u8>>,
    pub preprocessor: Option<Vec<u8>>,
    /// Where the weights were read from, for error messages.
    pub weights_path: PathBuf,
}

impl ModelFolder {
    /// Read `dir`; `weights` replaces `dir/model.safetensors` (a float16 copy, say).
    pub fn read(dir: &Path, weights: Option<&Path>) -> Result<ModelFolder> {
        let read =
            |path: &Path| std::fs::read(path).map_err(|e| ClipError::file("cannot read", path, e));
        let optional = |name: &str| {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ClipError::file("cannot read", &path, e)),
            }
        };
        let weights_path = weights.map_or_else(|| dir.join("model.safetensors"), Path::to_path_buf);
        Ok(ModelFolder {
            config: read(&dir.join("config.json"))?,
            weights: read(&weights_path)?,
            tokenizer: optional("tokenizer.json")?,
            spiece_model: optional("spiece.model")?,
            tokenizer_config: optional("tokenizer_config.json")?,
            preprocessor: optional("preprocessor_config.json")?,
            weights_path,
        })
    }

    pub fn files(&self) -> ModelFiles<'_> {
        ModelFiles {
            config: &self.config,
            weights: &self.weights,
            tokenizer: TokenizerFiles {
                tokenizer_json: self.tokenizer.as_deref(),
                spiece_model: self.spiece_model.as_deref(),
                tokenizer_config: self.tokenizer_config.as_deref(),
            },
            preprocessor: self.preprocessor.as_deref(),
        }
    }

    /// `Clip::load` on these files; a broken weights file is named in the error.
    pub async fn load(&self, options: &ClipOptions) -> Result<Clip> {
        Clip::load(self.files(), options)
            .await
            .map_err(|e| match e {
                ClipError::SafeTensors(m) => {
                    ClipError::SafeTensors(format!("{}: {m}", self.weights_path.display()))
                }
                e => e,
            })
    }
}

/// Which backend is active, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendInfo {
    /// `"cpu"` or `"webgpu"`.
    pub kind: &'static str,
    /// The GPU adapter's name, when on the GPU.
    pub adapter: Option<String>,
    /// Why this backend was chosen (for `auto`: why the GPU was not taken).
    pub reason: String,
    /// How the engine holds the matrices: `"int8"` (an int8 checkpoint, or
    /// `ClipOptions::int8`), else `"f16"` or `"f32"` (the CPU backend always expands float
    /// weights to f32; the GPU follows `GpuOptions::weights`). Always `Some`.
    pub weights: Option<&'static str>,
    /// Threads the CPU backend runs on; `None` on the GPU.
    pub threads: Option<usize>,
    /// What `auto` measured when both engines could run the model: one warm forward pass
    /// on each, in milliseconds (`None` when nothing was measured).
    pub measured: Option<Measured>,
}

/// One warm forward pass of the same input on each engine, timed by `auto` at load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// `"image"` (one image) or `"text"` (one short text): the first tower loaded.
    pub what: &'static str,
    pub cpu_ms: f64,
    pub gpu_ms: f64,
}

/// Row-major `[rows, dim]` f32 results.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Embeddings {
    pub rows: usize,
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Embeddings {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..][..self.dim]
    }

    pub fn iter(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks(self.dim.max(1)).take(self.rows)
    }

    /// Each row divided by its L2 norm.
    pub fn normalized(&self) -> Embeddings {
        let mut out = self.clone();
        for row in out.data.chunks_mut(self.dim.max(1)) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|v| *v /= norm);
        }
        out
    }

    fn extend(&mut self, other: Embeddings) {
        self.dim = other.dim;
        self.rows += other.rows;
        self.data.extend(other.data);
    }
}

/// Image-text scores `[images, texts]`, row-major: `exp(logit_scale) * cos(image, text)
/// + logit_bias` (the bias is SigLIP's; 0 for CLIP).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Logits {
    pub images: usize,
    pub texts: usize,
    /// `[images, texts]`.
    pub data: Vec<f32>,
}

impl Logits {
    /// The scores of image `i` against every text.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.texts..][..self.texts]
    }
}

/// `exp(logit_scale) * cos(image, text) + logit_bias` for every pair.
pub fn logits(
    image_features: &Embeddings,
    text_features: &Embeddings,
    logit_scale: f32,
    logit_bias: f32,
) -> Logits {
    let (a, b) = (image_features.normalized(), text_features.normalized());
    let scale = logit_scale.exp();
    let mut data = Vec::with_capacity(a.rows * b.rows);
    for i in a.iter() {
        for t in b.iter() {
            data.push(scale * i.iter().zip(t).map(|(x, y)| x * y).sum::<f32>() + logit_bias);
        }
    }
    Logits {
        images: a.rows,
        texts: b.rows,
        data,
    }
}

/// A model on one backend: the weights in that backend's storage, and the backend.
pub struct BackendModel<B: Backend> {
    pub model: ClipModel<B::Weight>,
    pub backend: B,
}

/// How a backend turns a loaded f32 tensor into its weight storage.
pub type MakeWeight<'a, B> =
    dyn FnMut(&B, WeightRole, HostTensor) -> Result<<B as Backend>::Weight> + 'a;

impl<B: Backend> BackendModel<B> {
    /// Load the requested towers from a safetensors file (its parsed `header` and where its
    /// bytes are) onto `backend`, each tensor converted by `make`.
    pub fn load<S: TensorBytes + ?Sized>(
        config: &ClipConfig,
        header: &SafeTensors,
        weights: &S,
        towers: Towers,
        backend: B,
        make: &mut MakeWeight<'_, B>,
    ) -> Result<Self> {
        let model = ClipModel::load(config, header, weights, towers, &mut |role, t| {
            make(&backend, role, t)
        })?;
        Ok(BackendModel { model, backend })
    }

    /// Projected image features for `n` preprocessed images `[n, 3, S, S]`.
    pub async fn pixel_features(&mut self, pixels: &[f32], n: usize) -> Result<Embeddings> {
        let tower = self.model.vision()?;
        let out = graph::vision_forward(&mut self.backend, tower, pixels, n, false)
            .inspect_err(|_| self.backend.abandon_pass())?;
        let data = self.backend.read(&out.features).await?;
        Ok(Embeddings {
            rows: n,
            dim: self.model.config.projection_dim,
            data,
        })
    }

    /// Projected text features for a batch of token ids.
    pub async fn token_features(&mut self, batch: &TextBatch) -> Result<Embeddings> {
        let tower = self.model.text()?;
        let out = graph::text_forward(&mut self.backend, tower, batch, false)
            .inspect_err(|_| self.backend.abandon_pass())?;
        let data = self.backend.read(&out.features).await?;
        Ok(Embeddings {
            rows: batch.len(),
            dim: self.model.config.projection_dim,
            data,
        })
    }
}

/// The loaded model on whichever backend was chosen.
pub(crate) enum Loaded {
    // Boxed: the model struct (configs, layer vectors) is large; a Clip moves cheaply.
    Cpu(Box<BackendModel<CpuBackend>>),
    Gpu(Box<BackendModel<GpuBackend>>),
}

/// The model's config and its weights file, with the header read once.
struct Checkpoint<'a> {
    config: &'a ClipConfig,
    header: &'a SafeTensors,
    weights: &'a dyn TensorBytes,
    towers: Towers,
    /// Quantise float matrices at load (`ClipOptions::int8`).
    int8: bool,
}

impl Checkpoint<'_> {
    /// Whether the engine will hold int8 matrices.
    fn is_int8(&self) -> bool {
        self.int8 || crate::model::quantize::weights_dtype(self.header) == "int8"
    }

    /// `t`, quantised when the option asks for it.
    fn prepare(&self, role: WeightRole, t: HostTensor) -> Result<HostTensor> {
        match self.int8 {
            true => t.quantized(role, crate::model::quantize::DEFAULT_GROUP),
            false => Ok(t),
        }
    }

    fn on<B: Backend>(&self, backend: B, make: &mut MakeWeight<'_, B>) -> Result<BackendModel<B>> {
        BackendModel::load(
            self.config,
            self.header,
            self.weights,
            self.towers,
            backend,
            make,
        )
    }

    fn cpu(&self, threads: usize) -> Result<Box<BackendModel<CpuBackend>>> {
        let backend = CpuBackend::with_threads(threads);
        let model = self.on(backend, &mut |_, role, t| {
            cpu::make_weight(role, self.prepare(role, t)?)
        })?;
        Ok(Box::new(model))
    }

    fn gpu(&self, gpu: GpuBackend) -> Result<Box<BackendModel<GpuBackend>>> {
        let model = self.on(gpu, &mut |g, role, t| {
            g.make_weight(role, self.prepare(role, t)?)
        })?;
        Ok(Box::new(model))
    }
}

fn gpu_info(gpu: &GpuBackend, reason: String, int8: bool) -> BackendInfo {
    let weights = match (int8, gpu.f16_weights()) {
        (true, _) => "int8",
        (false, true) => "f16",
        (false, false) => "f32",
    };
    BackendInfo {
        kind: "webgpu",
        adapter: Some(gpu.adapter_info().name.clone()),
        reason,
        weights: Some(weights),
        threads: None,
        measured: None,
    }
}

/// Milliseconds on a monotonic-enough clock (`Instant` does not exist in the browser).
fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs_f64()
            * 1e3
    }
}

/// One warm forward pass of the model's first tower, in ms (after one untimed pass, which
/// compiles pipelines and fills caches): one image of zeros, or one two-token text.
async fn time_pass<B: Backend>(m: &mut BackendModel<B>) -> Result<(&'static str, f64)> {
    if let Ok(vision) = m.model.vision() {
        let s = vision.config.image_size;
        let px = vec![0f32; 3 * s * s];
        m.pixel_features(&px, 1).await?;
        let start = now_ms();
        m.pixel_features(&px, 1).await?;
        return Ok(("image", now_ms() - start));
    }
    let t = &m.model.text()?.config;
    let batch = TextBatch::from_tokens(&[vec![t.bos_token_id, t.eos_token_id]], t, t.pad_token_id)?;
    m.token_features(&batch).await?;
    let start = now_ms();
    m.token_features(&batch).await?;
    Ok(("text", now_ms() - start))
}

/// What runs `model`, loaded on the CPU backend.
fn cpu_info(
    checkpoint: &Checkpoint<'_>,
    model: &BackendModel<CpuBackend>,
    reason: String,
) -> BackendInfo {
    BackendInfo {
        kind: "cpu",
        adapter: None,
        reason,
        weights: Some(if checkpoint.is_int8() { "int8" } else { "f32" }),
        threads: Some(model.backend.threads()),
        measured: None,
    }
}

/// The model on the CPU backend, and what runs it.
fn cpu_loaded(
    checkpoint: &Checkpoint<'_>,
    options: &ClipOptions,
    reason: String,
) -> Result<(Loaded, BackendInfo)> {
    let model = checkpoint.cpu(options.threads)?;
    let info = cpu_info(checkpoint, &model, reason);
    Ok((Loaded::Cpu(model), info))
}

/// `auto` with a usable adapter: load the model on both engines, time one warm pass on
/// each, keep the faster (the other is dropped at once). `prefer` is an earlier
/// measurement's verdict for this model and device (the JS layer caches it), which skips
/// the measuring.
async fn measure_and_choose(
    checkpoint: &Checkpoint<'_>,
    options: &ClipOptions,
    gpu: GpuBackend,
) -> Result<(Loaded, BackendInfo)> {
    let name = gpu.adapter_info().name.clone();
    match options.prefer {
        Some(BackendChoice::Cpu) => {
            let why = format!(
                "auto: the CPU backend measured faster than `{name}` for this model earlier"
            );
            return cpu_loaded(checkpoint, options, why);
        }
        Some(BackendChoice::Gpu) => {
            let info = gpu_info(&gpu, format!("auto: WebGPU adapter `{name}` measured faster than the CPU for this model earlier"), checkpoint.is_int8());
            return Ok((Loaded::Gpu(checkpoint.gpu(gpu)?), info));
        }
        _ => {}
    }
    let mut info = gpu_info(&gpu, String::new(), checkpoint.is_int8());
    let mut on_gpu = checkpoint.gpu(gpu)?;
    let (what, gpu_ms) = time_pass(&mut on_gpu).await?;
    let mut on_cpu = checkpoint.cpu(options.threads)?;
    let (_, cpu_ms) = time_pass(&mut on_cpu).await?;
    let measured = Some(Measured {
        what,
        cpu_ms,
        gpu_ms,
    });
    let figures = format!("one {what}: CPU {cpu_ms:.1} ms, WebGPU `{name}` {gpu_ms:.1} ms");
    if gpu_ms <= cpu_ms {
        drop(on_cpu);
        info.reason = format!("auto: WebGPU measured faster ({figures})");
        info.measured = measured;
        Ok((Loaded::Gpu(on_gpu), info))
    } else {
        drop(on_gpu);
        let reason = format!("auto: the CPU backend measured faster ({figures})");
        let info = BackendInfo {
            measured,
            ..cpu_info(checkpoint, &on_cpu, reason)
        };
        Ok((Loaded::Cpu(on_cpu), info))
    }
}

/// Pick and load the backend as `choice` asks: `Gpu` never falls back; `Auto` takes a
/// hardware WebGPU adapter when one can hold the model, else the CPU backend, and says
/// why.
async fn load_backend(
    checkpoint: &Checkpoint<'_>,
    options: &ClipOptions,
) -> Result<(Loaded, BackendInfo)> {
    let int8 = checkpoint.is_int8();
    match options.backend {
        BackendChoice::Cpu => {
            cpu_loaded(checkpoint, options, "the CPU backend was requested".into())
        }
        BackendChoice::Gpu => {
            let gpu = GpuBackend::new(&options.gpu).await?;
            let info = gpu_info(&gpu, "the WebGPU backend was requested".into(), int8);
            Ok((Loaded::Gpu(checkpoint.gpu(gpu)?), info))
        }
        BackendChoice::Auto => {
            let reason = match GpuBackend::new(&options.gpu).await {
                Ok(gpu) if gpu.is_software() && !options.gpu.measure_software => format!(
                    "the WebGPU adapter `{}` is a software rasteriser, slower than the CPU backend",
                    gpu.adapter_info().name
                ),
                Ok(gpu) => {
                    let name = gpu.adapter_info().name.clone();
                    match measure_and_choose(checkpoint, options, gpu).await {
                        Ok(chosen) => return Ok(chosen),
                        // A bad checkpoint fails the same way on the CPU: report it as is.
                        Err(e @ (ClipError::Gpu(_) | ClipError::DeviceLost(_))) => {
                            format!("the WebGPU adapter `{name}` cannot hold the model: {e}")
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => format!("WebGPU is unavailable: {e}"),
            };
            cpu_loaded(checkpoint, options, reason)
        }
    }
}

// Natively a model (and the GPU backend under it) can move to another thread (a server's
// worker pool).
#[cfg(not(target_arch = "wasm32"))]
const _: () = {
    const fn send<T: Send>() {}
    send::<GpuBackend>();
    send::<Clip>();
};

/// A loaded CLIP model.
pub struct Clip {
    pub config: ClipConfig,
    loaded: Loaded,
    tokenizer: Option<Tokenizer>,
    preprocessor: Preprocessor,
    backend_info: BackendInfo,
    max_batch: usize,
}

impl Clip {
    pub async fn load(files: ModelFiles<'_>, options: &ClipOptions) -> Result<Clip> {
        // The limits are checked here, for every caller (the wasm layer included).
        crate::limits::check_max_batch(options.max_batch)?;
        let config = ClipConfig::from_json(files.config)?;
        let image_size = config.vision_config.image_size;
        let preprocessor = Preprocessor::new(match (files.preprocessor, config.family) {
            (Some(bytes), _) => PreprocessConfig::from_json(bytes, image_size)?,
            (None, Family::Clip) => PreprocessConfig::clip_default(image_size),
            (None, Family::Siglip) => PreprocessConfig::siglip_default(image_size),
        });
        let t = &files.tokenizer;
        let has_tokenizer = t.tokenizer_json.is_some() || t.spiece_model.is_some();
        let tokenizer = match options.towers.text() && has_tokenizer {
            true => Some(Tokenizer::from_files(
                t,
                config.text_config.max_position_embeddings,
            )?),
            false => None,
        };
        let header = SafeTensors::read(files.weights)?;
        let checkpoint = Checkpoint {
            config: &config,
            header: &header,
            weights: files.weights,
            towers: options.towers,
            int8: options.int8,
        };
        let (loaded, backend_info) = load_backend(&checkpoint, options).await?;
        let max_batch = match (options.max_batch, &loaded) {
            (0, Loaded::Gpu(_)) => 32,
            (0, Loaded::Cpu(_)) => 8,
            (n, _) => n,
        };
        Ok(Clip {
            config,
            loaded,
            tokenizer,
            preprocessor,
            backend_info,
            max_batch,
        })
    }

    pub fn backend(&self) -> &BackendInfo {
        &self.backend_info
    }

    /// The GPU device was lost (driver reset, the browser reclaimed it): every call now
    /// fails with `ClipError::DeviceLost`; load the model again (a new device, or the CPU
    /// backend with `BackendChoice::Cpu`) to continue.
    pub fn is_device_lost(&self) -> bool {
        matches!(&self.loaded, Loaded::Gpu(e) if e.backend.is_lost())
    }

    /// wgpu's reason for the loss (`Destroyed: ...`), once the GPU device is lost.
    pub fn device_lost_reason(&self) -> Option<String> {
        match &self.loaded {
            Loaded::Gpu(e) => e.backend.lost_reason(),
            Loaded::Cpu(_) => None,
        }
    }

    /// Destroy the GPU device, as a driver reset or the browser reclaiming it would (the
    /// device-lost callback fires with reason `Destroyed`); does nothing on the CPU backend.
    /// For exercising the recovery path in tests.
    #[doc(hidden)]
    pub fn lose_device_for_testing(&self) {
        if let Loaded::Gpu(e) = &self.loaded {
            e.backend.lose_device();
        }
    }

    /// A handle that destroys the GPU device even while a call runs (tests of a loss in
    /// the middle of a batch); `None` on the CPU backend.
    #[doc(hidden)]
    pub fn device_breaker(&self) -> Option<crate::gpu::DeviceBreaker> {
        match &self.loaded {
            Loaded::Gpu(e) => Some(e.backend.device_breaker()),
            Loaded::Cpu(_) => None,
        }
    }

    /// `(buffers, bytes)` the GPU backend holds on its device (weights, activations,
    /// staging); `None` on the CPU backend. Flat across calls of the same shapes.
    pub fn gpu_buffers(&self) -> Option<(u64, u64)> {
        match &self.loaded {
            Loaded::Gpu(e) => Some(e.backend.live_buffers()),
            Loaded::Cpu(_) => None,
        }
    }

    pub fn towers(&self) -> Towers {
        match &self.loaded {
            Loaded::Cpu(e) => e.model.towers(),
            Loaded::Gpu(e) => e.model.towers(),
        }
    }

    /// The checkpoint's `logit_scale` (its `exp` multiplies cosines into logits).
    pub fn logit_scale(&self) -> f32 {
        match &self.loaded {
            Loaded::Cpu(e) => e.model.logit_scale,
            Loaded::Gpu(e) => e.model.logit_scale,
        }
    }

    /// SigLIP's `logit_bias`, added to every logit; 0 for CLIP.
    pub fn logit_bias(&self) -> f32 {
        match &self.loaded {
            Loaded::Cpu(e) => e.model.logit_bias,
            Loaded::Gpu(e) => e.model.logit_bias,
        }
    }

    /// Turn logits into scores: CLIP's softmax over the texts of each image, SigLIP's
    /// sigmoid of each logit (the labels are independent; a row need not sum to 1).
    pub fn probabilities(&self, logits: &Logits) -> Vec<f32> {
        probabilities(self.config.family, logits)
    }

    pub fn preprocessor(&self) -> &Preprocessor {
        &self.preprocessor
    }

    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            if self.towers().text() {
                ClipError::Tokenizer(
                    "no tokenizer (tokenizer.json or spiece.model) was given with the model".into(),
                )
            } else {
                ClipError::TowerNotLoaded("text")
            }
        })
    }

    /// Projected features for preprocessed images `[n, 3, S, S]`.
    pub async fn pixel_features(&mut self, pixels: &[f32], n: usize) -> Result<Embeddings> {
        let vision = &self.config.vision_config;
        let per_image = vision.num_channels * vision.image_size.pow(2);
        let mut out = Embeddings {
            rows: 0,
            dim: self.config.projection_dim,
            data: Vec::new(),
        };
        if n == 0 {
            return Ok(out);
        }
        // The graph's check, on the whole buffer before it is cut into batches.
        graph::check::pixels(vision, pixels.len(), n)?;
        for chunk in pixels.chunks(self.max_batch * per_image) {
            let rows = chunk.len() / per_image;
            out.extend(match &mut self.loaded {
                Loaded::Cpu(e) => e.pixel_features(chunk, rows).await?,
                Loaded::Gpu(e) => e.pixel_features(chunk, rows).await?,
            });
        }
        Ok(out)
    }

    /// Projected features (before normalisation) for images, in order.
    pub async fn image_features(&mut self, images: &[ImageInput<'_>]) -> Result<Embeddings> {
        let bytes = images.iter().map(ImageInput::len).sum();
        crate::limits::check_images(images.len(), bytes)?;
        let mut out = Embeddings {
            rows: 0,
            dim: self.config.projection_dim,
            data: Vec::new(),
        };
        let threads = self.preprocess_threads();
        for chunk in images.chunks(self.max_batch) {
            // Each image is decoded and preprocessed on its own thread (on the CPU engine
            // the model's threads are idle while a batch is prepared), unless the images
            // together declare more pixels than one image may have: then one at a time, so
            // the decoded pixels held at once stay within that one image's bound.
            let threads = if self.preprocessor.fits_at_once(chunk) {
                threads
            } else {
                1
            };
            let slots: Vec<Mutex<Option<Result<Vec<f32>>>>> =
                chunk.iter().map(|_| Mutex::new(None)).collect();
            crate::cpu::pool::parallel_for(threads, chunk.len(), &|i| {
                let px = self.preprocessor.pixel_values(&chunk[i]);
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(px);
            });
            let mut pixels = Vec::new();
            for (i, slot) in slots.into_iter().enumerate() {
                let px = slot.into_inner().unwrap_or_else(|e| e.into_inner());
                let px = px.ok_or_else(|| {
                    ClipError::Internal(format!("image {} was not preprocessed", out.rows + i))
                })?;
                pixels.extend(px.map_err(|e| match e {
                    ClipError::Image(m) if chunk.len() > 1 || images.len() > 1 => {
                        ClipError::Image(format!("image {}: {m}", out.rows + i))
                    }
                    e => e,
                })?);
            }
            out.extend(self.pixel_features(&pixels, chunk.len()).await?);
        }
        Ok(out)
    }

    /// Threads that decode and preprocess a batch's images: the CPU engine's own (what the
    /// caller allowed it), or on the GPU engine the pool's workers that exist.
    fn preprocess_threads(&self) -> usize {
        match &self.loaded {
            Loaded::Cpu(e) => e.backend.threads(),
            Loaded::Gpu(_) => crate::cpu::pool::available(),
        }
    }

    /// Projected features for token id sequences (`<|startoftext|> ... <|endoftext|>`).
    pub async fn token_features(&mut self, texts: &[Vec<u32>]) -> Result<Embeddings> {
        let mut out = Embeddings {
            rows: 0,
            dim: self.config.projection_dim,
            data: Vec::new(),
        };
        // Without a tokenizer: CLIP pads after the end token with it; SigLIP with its pad.
        let text = &self.config.text_config;
        let default_pad = match text.causal {
            true => text.eos_token_id,
            false => text.pad_token_id,
        };
        let pad = self.tokenizer.as_ref().map_or(default_pad, |t| t.pad_id());
        for chunk in texts.chunks(self.max_batch) {
            let batch = TextBatch::from_tokens(chunk, &self.config.text_config, pad)?;
            out.extend(match &mut self.loaded {
                Loaded::Cpu(e) => e.token_features(&batch).await?,
                Loaded::Gpu(e) => e.token_features(&batch).await?,
            });
        }
        Ok(out)
    }

    /// Projected features for `rows` token id sequences of equal length laid end to end
    /// (`[rows, len]`, padded as the model's tokenizer pads). CLIP: each row is cut after
    /// its end token, which gives the same features; SigLIP: the rows are taken whole.
    pub async fn padded_token_features(&mut self, ids: &[u32], rows: usize) -> Result<Embeddings> {
        let text = &self.config.text_config;
        let texts = unpad_rows(ids, rows, text.causal.then_some(text.eos_token_id))?;
        self.token_features(&texts).await
    }

    /// Projected features (before normalisation) for texts, in order.
    pub async fn text_features(&mut self, texts: &[&str]) -> Result<Embeddings> {
        crate::limits::check_texts(texts)?;
        if texts.is_empty() {
            return Ok(Embeddings {
                rows: 0,
                dim: self.config.projection_dim,
                data: Vec::new(),
            });
        }
        let tok = self.tokenizer()?;
        let ids = texts
            .iter()
            .map(|t| tok.encode(t))
            .collect::<Result<Vec<_>>>()?;
        self.token_features(&ids).await
    }

    /// `exp(logit_scale) * cosine + logit_bias`: `[images, texts]`.
    pub fn logits(&self, image_features: &Embeddings, text_features: &Embeddings) -> Logits {
        logits(
            image_features,
            text_features,
            self.logit_scale(),
            self.logit_bias(),
        )
    }
}

/// Scores from logits `[images, texts]`, row-major: for CLIP the softmax over each image's
/// texts, for SigLIP the sigmoid of each logit.
pub fn probabilities(family: Family, logits: &Logits) -> Vec<f32> {
    match family {
        Family::Siglip => logits
            .data
            .iter()
            .map(|&l| 1.0 / (1.0 + (-l).exp()))
            .collect(),
        Family::Clip => {
            let mut out = Vec::with_capacity(logits.data.len());
            for row in logits.data.chunks(logits.texts.max(1)) {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let exp: Vec<f32> = row.iter().map(|&l| (l - max).exp()).collect();
                let sum: f32 = exp.iter().sum();
                out.extend(exp.iter().map(|e| e / sum));
            }
            out
        }
    }
}

/// Split `[rows, len]` padded token ids into rows, each cut after its end token when
/// `eos_token_id` is given (see [`graph::pool_position`]). No ids and no rows is an empty
/// batch.
fn unpad_rows(ids: &[u32], rows: usize, eos_token_id: Option<u32>) -> Result<Vec<Vec<u32>>> {
    if rows == 0 && ids.is_empty() {
        return Ok(Vec::new());
    }
    // Rows of at least one id, all of one length.
    if rows == 0 || ids.len() < rows || !ids.len().is_multiple_of(rows) {
        return Err(ClipError::Input(format!(
            "{} token ids do not split into {rows} equal rows",
            ids.len()
        )));
    }
    Ok(ids
        .chunks(ids.len() / rows)
        .map(|row| match eos_token_id {
            Some(eos) => row[..=pool_position(row, eos)].to_vec(),
            None => row.to_vec(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EOS: u32 = 49407;

    #[test]
    fn padded_rows_are_cut_after_their_end_token() {
        // Padded with the end token (CLIP's pad) and with zeros (OpenCLIP's).
        let ids = [49406, 320, EOS, EOS, EOS, 49406, 320, 1929, EOS, 0];
        let rows = unpad_rows(&ids, 2, Some(EOS)).unwrap();
        assert_eq!(
            rows,
            vec![vec![49406, 320, EOS], vec![49406, 320, 1929, EOS]]
        );
        // A row without an end token is kept whole (pooled at its last position).
        assert_eq!(
            unpad_rows(&[1, 2, 3], 1, Some(EOS)).unwrap(),
            vec![vec![1, 2, 3]]
        );
        // eos_token_id 2 (old configs): pooled at the largest id, as transformers does.
        assert_eq!(
            unpad_rows(&[5, 9, 7, 0], 1, Some(2)).unwrap(),
            vec![vec![5, 9]]
        );
        assert!(unpad_rows(&[], 0, Some(EOS)).unwrap().is_empty());
        // SigLIP: rows whole, the padding included.
        assert_eq!(
            unpad_rows(&[7, 1, 1, 8, 9, 1], 2, None).unwrap(),
            vec![vec![7, 1, 1], vec![8, 9, 1]]
        );
    }

    #[test]
    fn ids_that_do_not_split_into_rows_are_input_errors() {
        for (n, rows) in [(0, 3), (10, 3), (2, 3), (4, 0)] {
            let err = unpad_rows(&vec![EOS; n], rows, Some(EOS)).unwrap_err();
            assert!(
                matches!(err, ClipError::Input(_)),
                "{n} ids, {rows} rows: {err}"
            );
            assert!(err.to_string().contains("equal rows"), "{err}");
        }
    }
}
