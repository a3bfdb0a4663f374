//! The GPU backend: the graph's operations as WGSL compute shaders (`shaders/`), driven
//! by wgpu (the browser's WebGPU on wasm32, Vulkan/Metal/DX12 natively).
//!
//! Memory and command strategy (after wgpu's repeated-compute example and ratchet):
//! - weights are uploaded once, tensor by tensor, into their own storage buffers; no CPU
//!   copy is kept (this file: the device, weights, test hooks);
//! - every pipeline is compiled once per device, its WGSL composed from `shaders/` with the
//!   variant's pieces (`pipelines.rs`, `wgsl.rs`);
//! - activations come from a [`pool::Pool`] of reusable buffers and go back to it when
//!   their handle drops;
//! - a forward pass is recorded as compute passes into one command encoder, with every
//!   kernel's uniforms (and small index arrays) packed into one arena buffer (`record.rs`),
//!   and is submitted only when a result is read back, one copy of the final rows
//!   (`readback.rs`);
//! - the operations themselves (`ops.rs`) fill uniforms and launch; how a matmul is tiled
//!   and split along k is a pure function of its shape (`plan.rs`).
//!
//! To add a kernel: write `shaders/NAME.wgsl` (a uniform `Params` struct at binding 0,
//! inputs next, the output last, sizes as `override`s set from Rust, every thread
//! bounds-checked), add its pipeline and `Params` twin to `pipelines.rs`, call it through
//! `GpuBackend::launch` from its `Backend` method in `ops.rs`, and add a case comparing it
//! with the CPU backend to `tests/gpu_kernels.rs`.
//!
//! Shared state is `Arc`/`Mutex` so that natively, where wgpu handles are `Send`, the
//! backend (and a `Clip` on it) can move between threads; on wasm32 there is one thread.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod buffer;
pub mod context;
mod ops;
pub mod pipelines;
pub mod plan;
pub mod pool;
mod readback;
mod record;
mod wgsl;

pub use context::{GpuOptions, WeightPrecision};

use crate::error::{ClipError, Result};
use crate::graph::{Backend, Dims, Shape};
use crate::model::{HostTensor, WeightRole};
use buffer::Owned;
use context::{AllocCheck, Context};
use pipelines::Pipelines;
use pool::{Pool, Pooled};
use record::{arena_buffer, Arena, BindCache, ARENA_BYTES};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A weight in GPU memory.
#[derive(Debug)]
pub struct GpuWeight {
    buffer: Owned,
    /// A table larger than the device's largest buffer (SigLIP 2's 256,000-token
    /// embedding is 750 MiB in f32; WebGPU guarantees 128 MiB bindings) is kept in pages
    /// of `page_rows` rows: `buffer` holds the first, `more_pages` the rest. Only the
    /// token lookup (`text_embed`) reads a paged table.
    more_pages: Vec<Owned>,
    page_rows: usize,
    pub shape: Vec<usize>,
    /// Stored as f16 (a linear layer's matrix with `f16_weights`), else f32.
    pub f16: bool,
    /// Stored as int8 (four per u32): the scales `[rows, groups]` and the columns per
    /// scale.
    scales: Option<(Owned, usize)>,
}

impl GpuWeight {
    /// The one buffer of an unpaged weight; a paged table here is an error naming `what`.
    fn single(&self, what: &str) -> Result<&wgpu::Buffer> {
        if self.more_pages.is_empty() {
            Ok(&self.buffer)
        } else {
            Err(ClipError::Gpu(format!(
                "the {what} {:?} is larger than this device's largest buffer; only a token \
                 embedding may be split into pages",
                self.shape
            )))
        }
    }

    /// The scales buffer and columns per scale of an int8 weight.
    fn int8(&self) -> Option<(&wgpu::Buffer, usize)> {
        self.scales.as_ref().map(|(b, g)| (&**b, *g))
    }

    /// Bytes this weight holds on the device (scales included).
    pub fn bytes(&self) -> u64 {
        self.pages().map(|(_, b)| b.size()).sum::<u64>()
            + self.scales.as_ref().map_or(0, |(b, _)| b.size())
    }

    /// `(first row, buffer)` of each page.
    fn pages(&self) -> impl Iterator<Item = (usize, &wgpu::Buffer)> {
        std::iter::once(&self.buffer)
            .chain(&self.more_pages)
            .enumerate()
            .map(|(i, b)| (i * self.page_rows, &**b))
    }
}

/// An activation `[rows, cols]` f32 in a pooled GPU buffer.
#[derive(Clone)]
pub struct GpuAct {
    buf: Arc<Pooled>,
    pub rows: usize,
    pub cols: usize,
}

impl GpuAct {
    fn buffer(&self) -> &wgpu::Buffer {
        self.buf.buffer()
    }
}

impl Dims for GpuAct {
    fn dims(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }
}

impl Shape for GpuWeight {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
}

impl Drop for GpuBackend {
    fn drop(&mut self) {
        // Its pool, arena and staging go with it; the weights may drop after it.
        self.ctx.ledger.close();
    }
}

/// Destroys a backend's device on demand: see [`GpuBackend::device_breaker`].
#[doc(hidden)]
#[derive(Clone)]
pub struct DeviceBreaker {
    device: wgpu::Device,
    armed: Arc<AtomicBool>,
}

impl DeviceBreaker {
    /// Destroy the device now.
    pub fn destroy(&self) {
        self.device.destroy();
        // wgpu-core reports the loss on the next maintenance pass.
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// Destroy it right after the backend's next submit: a loss while a call's work is
    /// on the GPU and the call waits for it.
    pub fn destroy_after_next_submit(&self) {
        self.armed.store(true, Ordering::Relaxed);
    }
}

/// The GPU backend.
pub struct GpuBackend {
    ctx: Arc<Context>,
    pipelines: Pipelines,
    pool: Pool,
    /// The compute pass launches are recorded into, open until something else needs the
    /// encoder (a copy, a submit): one pass per run of launches, not one per launch. Before
    /// `encoder`, so that it ends first when the backend is dropped.
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    arena: Arena,
    binds: BindCache,
    /// Kernel launches recorded since the backend was made (the benchmark's count per pass).
    dispatches: u64,
    /// Bound in place of an absent bias or residual.
    dummy: Owned,
    /// The out-of-memory checks of activations created since the last read-back.
    alloc_checks: Vec<AllocCheck>,
}

impl GpuBackend {
    /// Open a device and compile the kernels.
    pub async fn new(opts: &GpuOptions) -> Result<GpuBackend> {
        let ctx = Context::new(opts).await?;
        let pipelines = Pipelines::new(&ctx).await?;
        let align = ctx
            .limits
            .min_uniform_buffer_offset_alignment
            .max(ctx.limits.min_storage_buffer_offset_alignment) as usize;
        let arena = Arena {
            // Within the device's (or a caller's capped) largest buffer.
            buffer: arena_buffer(&ctx, ARENA_BYTES.min(ctx.max_buffer_bytes())),
            data: Vec::new(),
            align,
        };
        let dummy = ctx.buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        ctx.errors.check()?;
        Ok(GpuBackend {
            ctx: Arc::new(ctx),
            pipelines,
            pool: Pool::default(),
            pass: None,
            encoder: None,
            arena,
            binds: BindCache::default(),
            dispatches: 0,
            dummy,
            alloc_checks: Vec::new(),
        })
    }

    /// The adapter in use.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.ctx.info
    }

    /// Kernel launches recorded so far: the difference across a pass is its dispatch count.
    pub fn dispatches(&self) -> u64 {
        self.dispatches
    }

    /// Bind groups created so far (the rest of the launches reused a cached one).
    pub fn bind_groups_made(&self) -> u64 {
        self.binds.made
    }

    /// A software rasteriser (SwiftShader, llvmpipe/lavapipe, WARP): far slower than the
    /// CPU backend, so `auto` does not pick it.
    pub fn is_software(&self) -> bool {
        self.ctx.is_software()
    }

    /// Whether linear layers' matrices are stored as f16 (`GpuOptions::weights` resolved).
    pub fn f16_weights(&self) -> bool {
        self.ctx.f16_weights
    }

    /// Whether the adapter offers the `shader-f16` feature (what `WeightPrecision::Auto`
    /// follows).
    pub fn has_shader_f16(&self) -> bool {
        self.ctx.shader_f16
    }

    /// Whether the kernels use subgroup operations on this device.
    pub fn uses_subgroups(&self) -> bool {
        self.ctx.subgroups
    }

    /// `Ok` when the matmul of f16 weights runs on tensor cores (cooperative matrices),
    /// else why not.
    pub fn tensor_cores(&self) -> std::result::Result<(), &str> {
        self.ctx
            .tensor_cores
            .as_ref()
            .map(|_| ())
            .map_err(String::as_str)
    }

    /// The device was lost: every call fails until a new backend is made.
    pub fn is_lost(&self) -> bool {
        self.ctx.errors.is_lost()
    }

    /// wgpu's reason for the loss (`Destroyed: ...`), once the device is lost.
    pub fn lost_reason(&self) -> Option<String> {
        self.ctx.errors.lost_reason()
    }

    /// Destroy the device, as a driver reset or a browser reclaiming the GPU would: every
    /// later call fails with `ClipError::DeviceLost`. For exercising that path in tests.
    #[doc(hidden)]
    pub fn lose_device(&self) {
        self.device_breaker().destroy();
    }

    /// A handle that destroys this backend's device from outside, even while a call runs
    /// on it (tests of a loss in the middle of a batch).
    #[doc(hidden)]
    pub fn device_breaker(&self) -> DeviceBreaker {
        DeviceBreaker {
            device: self.ctx.device.clone(),
            armed: self.ctx.lose_after_submit.clone(),
        }
    }

    /// Fill every idle pooled buffer with `value`, so that a test can tell the bytes a
    /// kernel wrote past its output (see [`GpuBackend::read_whole_buffer`]).
    #[doc(hidden)]
    pub fn fill_free_buffers(&mut self, value: f32) -> Result<()> {
        for b in self.pool.free_buffers() {
            let fill = vec![value; (b.size() / 4) as usize];
            self.upload(&b, bytemuck::cast_slice(&fill))?;
        }
        Ok(())
    }

    /// The whole pooled buffer behind `x`, its rounding slack included: `rows * cols`
    /// values, then what lies past them.
    #[doc(hidden)]
    pub async fn read_whole_buffer(&mut self, x: &GpuAct) -> Result<Vec<f32>> {
        let whole = GpuAct {
            buf: x.buf.clone(),
            rows: 1,
            cols: (x.buffer().size() / 4) as usize,
        };
        self.read(&whole).await
    }

    /// Bytes held by idle pooled activation buffers.
    pub fn pooled_bytes(&self) -> u64 {
        self.pool.free_bytes()
    }

    /// `(buffers, bytes)` the backend holds on the device now: weights, idle and lent
    /// activations, the uniform arena, staging buffers in flight.
    pub fn live_buffers(&self) -> (u64, u64) {
        self.ctx.ledger.live()
    }

    /// Upload one weight; the host copy is dropped by the caller right after. This is the
    /// GPU backend's `make` function for [`crate::model::ClipModel::load`].
    pub fn make_weight(&self, role: WeightRole, t: HostTensor) -> Result<GpuWeight> {
        self.ctx.errors.check()?;
        if role == WeightRole::Matrix && t.shape.get(1).is_some_and(|k| !k.is_multiple_of(4)) {
            // The matmul reads rows as vec4; every CLIP checkpoint has such widths.
            return Err(ClipError::Gpu(format!(
                "`{}` has shape {:?}: the GPU backend needs in_features divisible by 4",
                t.name, t.shape
            )));
        }
        let scales = match &t.quant {
            Some(q) => {
                self.pipelines.need_int8(&self.ctx)?;
                // Four values per u32, all under one scale.
                if !q.cols.is_multiple_of(4) || !q.group.is_multiple_of(4) {
                    return Err(ClipError::Gpu(format!(
                        "int8 `{}` is {} x {} in groups of {}: the GPU backend needs \
                         multiples of 4",
                        t.name, q.rows, q.cols, q.group
                    )));
                }
                let name = format!("{}_scale", t.name);
                Some((
                    self.upload_weight(&name, bytemuck::cast_slice(&q.scales))?,
                    q.group,
                ))
            }
            None => None,
        };
        let f16 = self.ctx.f16_weights && role == WeightRole::Matrix && t.quant.is_none();
        let halves: Vec<u16>;
        let bytes: &[u8] = if let Some(q) = &t.quant {
            bytemuck::cast_slice(&q.values)
        } else if f16 {
            halves = t
                .data
                .iter()
                .map(|&v| half::f16::from_f32(v).to_bits())
                .collect();
            bytemuck::cast_slice(&halves)
        } else {
            bytemuck::cast_slice(&t.data)
        };
        let rows = t.shape.first().copied().unwrap_or(1);
        let row_bytes = bytes.len() / rows.max(1);
        let max = self.ctx.max_buffer_bytes() as usize;
        // A table too large for one buffer is split by rows (a row always fits: the check
        // below names the tensor otherwise).
        let page_rows = match role {
            WeightRole::Table if bytes.len() > max && row_bytes > 0 && row_bytes <= max => {
                max / row_bytes
            }
            _ => rows.max(1),
        };
        let mut pages = bytes
            .chunks((page_rows * row_bytes).max(1))
            .map(|page| self.upload_weight(&t.name, page));
        let buffer = match pages.next() {
            Some(first) => first?,
            None => self.upload_weight(&t.name, &[])?,
        };
        let more_pages = pages.collect::<Result<Vec<_>>>()?;
        Ok(GpuWeight {
            buffer,
            more_pages,
            page_rows,
            shape: t.shape,
            f16,
            scales,
        })
    }

    /// One buffer holding `bytes` (a weight or a page of one).
    fn upload_weight(&self, name: &str, bytes: &[u8]) -> Result<Owned> {
        self.ctx
            .check_size(&format!("`{name}`"), bytes.len() as u64)?;
        let size = (bytes.len() as u64).max(16).div_ceil(16) * 16;
        let buffer = self.ctx.buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        // Natively a failed allocation (out of memory) is reported right here.
        self.ctx.errors.check().map_err(|e| match e {
            ClipError::Gpu(m) => ClipError::Gpu(format!("uploading `{name}`: {m}")),
            e => e,
        })?;
        {
            let mut view = buffer
                .get_mapped_range_mut(..)
                .map_err(|e| ClipError::Gpu(format!("cannot map `{name}`: {e}")))?;
            if !bytes.is_empty() {
                view.slice(..bytes.len()).copy_from_slice(bytes);
            }
        }
        buffer.unmap();
        Ok(buffer)
    }
}
