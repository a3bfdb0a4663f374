//! The wgpu device: adapter choice, limits, and error capture. wgpu's default handler
//! for errors outside an error scope panics, and a lost device would otherwise surface
//! as a hang or a panic later; both are recorded here and turned into `ClipError::Gpu`
//! (an operation failed) or `ClipError::DeviceLost` at the next operation. No adapter or
//! device at all is `ClipError::NoGpu`.

use super::buffer::{Ledger, Owned};
use crate::error::{ClipError, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

/// The out-of-memory error of one allocation, if any: in the browser it arrives
/// asynchronously (an error scope's promise), natively at once.
#[cfg(not(target_arch = "wasm32"))]
pub type AllocCheck = Pin<Box<dyn Future<Output = Option<wgpu::Error>> + Send>>;
#[cfg(target_arch = "wasm32")]
pub type AllocCheck = Pin<Box<dyn Future<Output = Option<wgpu::Error>>>>;

/// How to pick and set up the GPU.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Which wgpu backends to try; `None` = every backend compiled in (Vulkan, Metal,
    /// DX12 natively, the browser's WebGPU on wasm32).
    pub backends: Option<wgpu::Backends>,
    /// Prefer the integrated GPU (battery) over the discrete one.
    pub low_power: bool,
    /// Never use subgroup operations, even where the adapter offers them.
    pub disable_subgroups: bool,
    /// Never run the f16 matmul on tensor cores (cooperative matrices), even where the
    /// adapter offers them: to compare the two kernels on one device.
    pub disable_tensor_cores: bool,
    /// How to store the matrices of linear layers (f16: half the memory and bandwidth;
    /// arithmetic stays f32; features within cosine 0.9999 of f32 weights on the test
    /// models). Default `F32`, so library results match the CPU backend to 1e-3.
    pub weights: WeightPrecision,
    /// Cap the largest buffer below what the adapter allows (to test the limits check,
    /// or to keep a browser tab's footprint down). `None` = the adapter's limits.
    pub max_buffer_size: Option<u64>,
    /// Let `auto` measure a software adapter against the CPU as it measures hardware ones,
    /// instead of skipping it (tests only: software adapters prove correctness, not speed).
    pub measure_software: bool,
}

/// Storage precision of the linear layers' matrices on the GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightPrecision {
    /// f32 storage.
    #[default]
    F32,
    /// f16 storage, unpacked with `unpack2x16float`: needs no device feature.
    F16,
    /// f16 when the adapter offers `shader-f16` (a sign the hardware handles half
    /// precision natively), else f32.
    Auto,
}

impl WeightPrecision {
    /// Parse `"f32"`, `"f16"` or `"auto"` (the JS option and the CLI flag).
    pub fn parse(s: &str) -> Result<WeightPrecision> {
        match s {
            "f32" => Ok(WeightPrecision::F32),
            "f16" => Ok(WeightPrecision::F16),
            "auto" => Ok(WeightPrecision::Auto),
            other => Err(ClipError::Input(format!(
                "unknown GPU weight precision `{other}` (expected f32, f16 or auto)"
            ))),
        }
    }

    /// Whether matrices are stored as f16 on an adapter with `features`.
    pub fn resolve(self, features: wgpu::Features) -> bool {
        match self {
            WeightPrecision::F32 => false,
            WeightPrecision::F16 => true,
            WeightPrecision::Auto => features.contains(wgpu::Features::SHADER_F16),
        }
    }
}

/// Errors recorded by wgpu's callbacks, read by the backend before each operation.
#[derive(Default)]
pub struct ErrorSink {
    /// The device is gone: every later call fails until a new device is made.
    lost: Mutex<Option<String>>,
    /// The first error that escaped an error scope (validation, out of memory).
    uncaptured: Mutex<Option<String>>,
}

impl ErrorSink {
    /// `Err` when the device was lost or an operation failed since the last check.
    pub fn check(&self) -> Result<()> {
        if let Some(reason) = self.lost_reason() {
            return Err(ClipError::DeviceLost(reason));
        }
        if let Some(m) = self.uncaptured.lock().ok().and_then(|mut g| g.take()) {
            return Err(ClipError::Gpu(m));
        }
        Ok(())
    }

    pub fn is_lost(&self) -> bool {
        self.lost.lock().map_or(true, |g| g.is_some())
    }

    /// wgpu's reason for the loss (`Destroyed: ...`), once the device is lost.
    pub fn lost_reason(&self) -> Option<String> {
        match self.lost.lock() {
            Ok(g) => g.clone(),
            // A callback panicked while holding the lock: the device is unusable anyway.
            Err(_) => Some("the device-lost record is poisoned".into()),
        }
    }
}

/// wgpu panics when the JS global is neither a window nor a worker (Node, a shared or
/// service worker): check first, the same way it does, and fail with an error instead.
#[cfg(target_arch = "wasm32")]
fn browser_gpu_reachable() -> Result<()> {
    let global = js_sys::global();
    let defined =
        |name: &str| js_sys::Reflect::get(&global, &name.into()).is_ok_and(|v| !v.is_undefined());
    if defined("Window") || defined("WorkerGlobalScope") {
        Ok(())
    } else {
        Err(ClipError::NoGpu(
            "WebGPU is reachable only from a window or a dedicated worker".into(),
        ))
    }
}

/// What the tensor-core matmul needs of the device: f16 in shaders and wgpu's (experimental,
/// native-only) cooperative matrices.
const TENSOR_CORE_FEATURES: wgpu::Features =
    wgpu::Features::SHADER_F16.union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);

/// `Ok` when `matmul_coop.wgsl` can run on this adapter, else why not: f16 weights, the
/// features, subgroups exactly `COOP_SUBGROUP` wide (the kernel's four subgroups each own
/// a quarter of its tile) and a 16 x 16 x 16 f16 -> f32 tile among the adapter's
/// cooperative-matrix configurations.
fn tensor_core_support(
    adapter: &wgpu::Adapter,
    info: &wgpu::AdapterInfo,
    opts: &GpuOptions,
    subgroups: bool,
    f16_weights: bool,
) -> std::result::Result<(), String> {
    use super::pipelines::COOP_SUBGROUP;
    use wgpu::CooperativeScalarType as Ty;
    if cfg!(target_arch = "wasm32") {
        return Err("WebGPU has no cooperative matrices yet".into());
    }
    if opts.disable_tensor_cores {
        return Err("turned off".into());
    }
    if !f16_weights {
        return Err("weights are stored as f32 (tensor cores take f16)".into());
    }
    let features = adapter.features();
    if !features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Err("the adapter offers no cooperative matrices".into());
    }
    if !features.contains(wgpu::Features::SHADER_F16) {
        return Err("the adapter has no shader-f16".into());
    }
    if !subgroups {
        return Err("subgroups are off or missing".into());
    }
    if (info.subgroup_min_size, info.subgroup_max_size) != (COOP_SUBGROUP, COOP_SUBGROUP) {
        return Err(format!(
            "its subgroups are {}..{} wide, the kernel is written for {COOP_SUBGROUP}",
            info.subgroup_min_size, info.subgroup_max_size
        ));
    }
    let offered = adapter.cooperative_matrix_properties();
    let fits = |c: &wgpu::CooperativeMatrixProperties| {
        (c.m_size, c.n_size, c.k_size, c.ab_type, c.cr_type) == (16, 16, 16, Ty::F16, Ty::F32)
    };
    if !offered.iter().any(fits) {
        let list: Vec<String> = offered
            .iter()
            .map(|c| {
                let (m, n, k) = (c.m_size, c.n_size, c.k_size);
                format!("{m}x{n}x{k} {:?}->{:?}", c.ab_type, c.cr_type)
            })
            .collect();
        return Err(format!(
            "no 16x16x16 F16->F32 tile among its cooperative matrices ({})",
            list.join(", ")
        ));
    }
    Ok(())
}

/// An open device with the facts the backend needs about it.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub subgroups: bool,
    /// `GpuOptions::weights` resolved against the adapter.
    pub f16_weights: bool,
    /// The adapter offers `shader-f16` (requested only for tensor cores: the other
    /// shaders unpack f16 by hand).
    pub shader_f16: bool,
    /// `Ok` when the matmul of f16 weights runs on tensor cores (`matmul_coop.wgsl`),
    /// else why not, in words.
    pub tensor_cores: std::result::Result<(), String>,
    pub errors: Arc<ErrorSink>,
    /// Every buffer the backend holds on this device.
    pub ledger: Arc<Ledger>,
    /// Set by [`super::DeviceBreaker::destroy_after_next_submit`] (tests).
    pub lose_after_submit: Arc<std::sync::atomic::AtomicBool>,
}

impl Context {
    pub async fn new(opts: &GpuOptions) -> Result<Context> {
        #[cfg(target_arch = "wasm32")]
        browser_gpu_reachable()?;
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        if let Some(b) = opts.backends {
            desc.backends = b;
        }
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: if opts.low_power {
                    wgpu::PowerPreference::LowPower
                } else {
                    wgpu::PowerPreference::HighPerformance
                },
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| ClipError::NoGpu(format!("no WebGPU adapter: {e}")))?;
        let info = adapter.get_info();

        // Ask for everything the adapter has: the defaults (128 MiB bindings, 256 MiB
        // buffers) are too small for the token embedding of the larger checkpoints.
        let mut limits = adapter.limits();
        if let Some(cap) = opts.max_buffer_size {
            limits.max_buffer_size = limits.max_buffer_size.min(cap);
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        let subgroups =
            !opts.disable_subgroups && adapter.features().contains(wgpu::Features::SUBGROUP);
        let shader_f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        let mut features = if subgroups {
            wgpu::Features::SUBGROUP
        } else {
            wgpu::Features::empty()
        };
        let f16_weights = opts.weights.resolve(adapter.features());
        let mut tensor_cores = tensor_core_support(&adapter, &info, opts, subgroups, f16_weights);
        if tensor_cores.is_ok() {
            features |= TENSOR_CORE_FEATURES;
        }
        let open = |features: wgpu::Features| {
            adapter.request_device(&wgpu::DeviceDescriptor {
                label: Some("webclip"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: if features.contains(TENSOR_CORE_FEATURES) {
                    // SAFETY: wgpu asks for this acknowledgement before any experimental
                    // feature; the one requested, cooperative matrices, is used by
                    // matmul_coop.wgsl alone, whose loads and stores stay inside its
                    // workgroup arrays, and which has a tested fallback.
                    unsafe { wgpu::ExperimentalFeatures::enabled() }
                } else {
                    wgpu::ExperimentalFeatures::default()
                },
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
        };
        let opened = match open(features).await {
            Err(e) if tensor_cores.is_ok() => {
                // A driver that lists the extension but refuses it: the plain kernel then.
                tensor_cores = Err(format!("the device refused cooperative matrices ({e})"));
                open(features - TENSOR_CORE_FEATURES).await
            }
            other => other,
        };
        let (device, queue) = opened
            .map_err(|e| ClipError::NoGpu(format!("cannot open a device on {}: {e}", info.name)))?;

        let errors = Arc::new(ErrorSink::default());
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let msg = match &e {
                wgpu::Error::OutOfMemory { .. } => "out of GPU memory".to_string(),
                other => format!("GPU operation failed: {other}"),
            };
            if let Ok(mut g) = sink.uncaptured.lock() {
                g.get_or_insert(msg);
            }
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut g) = sink.lost.lock() {
                g.get_or_insert(format!("{reason:?}: {msg}"));
            }
        });
        Ok(Context {
            device,
            queue,
            info,
            limits,
            subgroups,
            f16_weights,
            shader_f16,
            tensor_cores,
            errors,
            ledger: Arc::default(),
            lose_after_submit: Arc::default(),
        })
    }

    /// Software rasterisers (SwiftShader, llvmpipe/lavapipe, WARP) run compute at a
    /// hundredth of the CPU backend's speed: `auto` skips them.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// A new buffer of the backend's, counted in `ledger` and destroyed when dropped.
    pub fn buffer(&self, desc: &wgpu::BufferDescriptor<'_>) -> Owned {
        Owned::create(&self.device, &self.ledger, desc)
    }

    /// [`Context::buffer`] with its out-of-memory error captured in an error scope
    /// instead of escaping to the uncaptured handler: for the allocations a batch's size
    /// decides, so that a batch too large for the GPU's memory fails as such.
    pub fn buffer_checked(&self, desc: &wgpu::BufferDescriptor<'_>) -> (Owned, AllocCheck) {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.buffer(desc);
        (buffer, Box::pin(scope.pop()))
    }

    /// The largest buffer a kernel can bind on this device.
    pub fn max_buffer_bytes(&self) -> u64 {
        self.limits
            .max_buffer_size
            .min(self.limits.max_storage_buffer_binding_size)
    }

    /// Fail with a clear message when one buffer of `bytes` cannot exist on this device.
    pub fn check_size(&self, what: &str, bytes: u64) -> Result<()> {
        let max = self.max_buffer_bytes();
        if bytes > max {
            return Err(ClipError::Gpu(format!(
                "{what} needs a {:.1} MiB buffer, but {} allows at most {:.1} MiB per buffer",
                bytes as f64 / (1 << 20) as f64,
                self.info.name,
                max as f64 / (1 << 20) as f64
            )));
        }
        Ok(())
    }
}
