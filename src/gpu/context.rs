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

/// An open device with the facts the backend needs about it.
pub struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub subgroups: bool,
    /// `GpuOptions::weights` resolved against the adapter.
    pub f16_weights: bool,
    /// The adapter offers `shader-f16` (not requested: the shaders unpack f16 by hand).
    pub shader_f16: bool,
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
        let features = if subgroups {
            wgpu::Features::SUBGROUP
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("webclip"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::default(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
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
            f16_weights: opts.weights.resolve(adapter.features()),
            shader_f16,
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
