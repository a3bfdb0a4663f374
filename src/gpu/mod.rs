//! The WebGPU engine: the graph's operations as WGSL compute shaders (`shaders/`), driven
//! by wgpu (the browser's WebGPU on wasm32, Vulkan/Metal/DX12 natively).
//!
//! Memory and command strategy (after wgpu's repeated-compute example and ratchet):
//! - weights are uploaded once, tensor by tensor, into their own storage buffers; no CPU
//!   copy is kept;
//! - every pipeline is compiled once per device ([`pipelines::Pipelines`]);
//! - activations come from a [`pool::Pool`] of reusable buffers and go back to it when
//!   their handle drops;
//! - a forward pass is recorded as compute passes into one command encoder, with every
//!   kernel's uniforms (and small index arrays) packed into one arena buffer, and is
//!   submitted only when a result is read back (one copy of the final rows).
//!
//! To add a kernel: write `shaders/NAME.wgsl` (a uniform `Params` struct at binding 0,
//! inputs next, the output last, workgroup size as an `override`, every thread
//! bounds-checked), add its pipeline and `Params` twin to `pipelines.rs`, call it through
//! `GpuBackend::launch` from the `Backend` method, and add a case comparing it with the
//! CPU engine to `tests/gpu_kernels.rs`.
//!
//! Shared state is `Arc`/`Mutex` so that natively, where wgpu handles are `Send`, the
//! engine (and a `Clip` on it) can move between threads; on wasm32 there is one thread.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

pub mod context;
pub mod pipelines;
pub mod pool;

pub use context::{GpuOptions, WeightPrecision};

use crate::error::{ClipError, Result};
use crate::graph::Backend;
use crate::model::{Activation, HostTensor, LayerNorm, Linear, WeightRole};
use context::Context;
use pipelines::{AttentionParams, LayerNormParams, MatmulParams, Params3, Pipelines};
use pool::{Pool, Pooled};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

/// A weight in GPU memory.
#[derive(Debug)]
pub struct GpuWeight {
    buffer: wgpu::Buffer,
    pub shape: Vec<usize>,
    /// Stored as f16 (a linear layer's matrix with `f16_weights`), else f32.
    pub f16: bool,
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

/// Uniforms and small index arrays of the commands being recorded, written to the GPU
/// in one `write_buffer` right before the commands are submitted.
struct Arena {
    buffer: wgpu::Buffer,
    data: Vec<u8>,
    /// Offsets of bindings must be multiples of this (256 on most adapters).
    align: usize,
}

const ARENA_BYTES: u64 = 1 << 20;

fn arena_buffer(device: &wgpu::Device, size: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("arena"),
        size,
        usage: wgpu::BufferUsages::UNIFORM
            | wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// What one binding of a kernel points at.
enum Bind<'a> {
    Buffer(&'a wgpu::Buffer),
    /// `(piece, size)`: a piece staged in the arena with the launch.
    Arena(u64, u64),
    /// A binding number the kernel's entry point does not use.
    Skip,
}

/// The WebGPU engine.
pub struct GpuBackend {
    ctx: Arc<Context>,
    pipelines: Pipelines,
    pool: Pool,
    encoder: Option<wgpu::CommandEncoder>,
    arena: Arena,
    /// Bound in place of an absent bias or residual.
    dummy: wgpu::Buffer,
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
            buffer: arena_buffer(&ctx.device, ARENA_BYTES),
            data: Vec::new(),
            align,
        };
        let dummy = ctx.device.create_buffer(&wgpu::BufferDescriptor {
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
            encoder: None,
            arena,
            dummy,
        })
    }

    /// The adapter in use.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.ctx.info
    }

    /// A software rasteriser (SwiftShader, llvmpipe/lavapipe, WARP): far slower than the
    /// CPU engine, so `auto` does not pick it.
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
        self.ctx.device.destroy();
        // wgpu-core reports the loss on the next maintenance pass.
        #[cfg(not(target_arch = "wasm32"))]
        let _ = self.ctx.device.poll(wgpu::PollType::Poll);
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

    /// Upload one weight; the host copy is dropped by the caller right after. This is the
    /// GPU engine's `make` function for [`crate::model::ClipModel::load`].
    pub fn make_weight(&self, role: WeightRole, t: HostTensor) -> Result<GpuWeight> {
        self.ctx.errors.check()?;
        if role == WeightRole::Matrix && t.shape.get(1).is_some_and(|k| !k.is_multiple_of(4)) {
            // The matmul reads rows as vec4; every CLIP checkpoint has such widths.
            return Err(ClipError::Gpu(format!(
                "`{}` has shape {:?}: the GPU engine needs in_features divisible by 4",
                t.name, t.shape
            )));
        }
        let f16 = self.ctx.f16_weights && role == WeightRole::Matrix;
        let halves: Vec<u16>;
        let bytes: &[u8] = if f16 {
            halves = t
                .data
                .iter()
                .map(|&v| half::f16::from_f32(v).to_bits())
                .collect();
            bytemuck::cast_slice(&halves)
        } else {
            bytemuck::cast_slice(&t.data)
        };
        self.ctx
            .check_size(&format!("`{}`", t.name), bytes.len() as u64)?;
        let size = (bytes.len() as u64).max(16).div_ceil(16) * 16;
        let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&t.name),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        // Natively a failed allocation (out of memory) is reported right here.
        self.ctx.errors.check().map_err(|e| match e {
            ClipError::Gpu(m) => ClipError::Gpu(format!("uploading `{}`: {m}", t.name)),
            e => e,
        })?;
        {
            let mut view = buffer
                .get_mapped_range_mut(..)
                .map_err(|e| ClipError::Gpu(format!("cannot map `{}`: {e}", t.name)))?;
            if !bytes.is_empty() {
                view.slice(..bytes.len()).copy_from_slice(bytes);
            }
        }
        buffer.unmap();
        Ok(GpuWeight {
            buffer,
            shape: t.shape,
            f16,
        })
    }

    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        let device = &self.ctx.device;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("forward"),
            })
        })
    }

    /// Submit what was recorded, after the arena it reads.
    fn submit(&mut self) {
        if !self.arena.data.is_empty() {
            self.ctx
                .queue
                .write_buffer(&self.arena.buffer, 0, &self.arena.data);
            self.arena.data.clear();
        }
        if let Some(enc) = self.encoder.take() {
            self.ctx.queue.submit([enc.finish()]);
        }
    }

    /// Place `pieces` in the arena; returns their offsets. Submits the recorded commands
    /// first when the arena is full, and grows it when one pass needs more.
    fn stage(&mut self, pieces: &[&[u8]]) -> Vec<u64> {
        let align = self.arena.align;
        let need: usize = pieces.iter().map(|p| p.len().div_ceil(align) * align).sum();
        let cap = self.arena.buffer.size() as usize;
        if self.arena.data.len().div_ceil(align) * align + need > cap {
            self.submit();
            if need > cap {
                let size = (need.max(2 * cap) as u64).div_ceil(16) * 16;
                self.arena.buffer = arena_buffer(&self.ctx.device, size);
            }
        }
        pieces
            .iter()
            .map(|p| {
                let off = self.arena.data.len().div_ceil(align) * align;
                self.arena.data.resize(off, 0);
                self.arena.data.extend_from_slice(p);
                // Pad to 16: a binding's size must be a multiple of its element stride.
                let end = self.arena.data.len().div_ceil(16) * 16;
                self.arena.data.resize(end, 0);
                off as u64
            })
            .collect()
    }

    /// A pooled buffer for `[rows, cols]` f32.
    fn alloc(&mut self, rows: usize, cols: usize) -> Result<GpuAct> {
        let bytes = (rows * cols * 4) as u64;
        self.ctx.check_size("an activation", bytes)?;
        let buffer = match self.pool.take(bytes) {
            Some(b) => b,
            None => self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("activation"),
                size: Pool::class(bytes),
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        Ok(GpuAct {
            buf: Arc::new(self.pool.lend(buffer)),
            rows,
            cols,
        })
    }

    /// A launch grid of `n` workgroups: `(x, y)` with `x * y >= n`, both within the
    /// per-dimension limit. Pipelines rebuild the flat index from `groups_x`.
    fn grid(&self, n: usize) -> Result<(u32, u32)> {
        let max = self.ctx.limits.max_compute_workgroups_per_dimension.max(1) as usize;
        let x = n.clamp(1, max);
        let y = n.div_ceil(x);
        if y > max {
            return Err(ClipError::Gpu(format!(
                "a launch of {n} workgroups exceeds this device's grid"
            )));
        }
        Ok((x as u32, y as u32))
    }

    /// Record one kernel launch: binding 0 is `params` (a uniform in the arena), then
    /// `binds` in order, then `out` last.
    fn launch(
        &mut self,
        which: fn(&Pipelines) -> &wgpu::ComputePipeline,
        params: &[u8],
        aux: Option<&[u8]>,
        binds: &[Bind<'_>],
        groups: (u32, u32, u32),
    ) {
        let mut pieces = vec![params];
        pieces.extend(aux);
        let offsets = self.stage(&pieces);
        let pipeline = which(&self.pipelines).clone();
        let layout = pipeline.get_bind_group_layout(0);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.arena.buffer,
                offset: offsets[0],
                size: wgpu::BufferSize::new(params.len().div_ceil(16) as u64 * 16),
            }),
        }];
        for (i, b) in binds.iter().enumerate() {
            let resource = match *b {
                Bind::Buffer(buf) => buf.as_entire_binding(),
                Bind::Arena(off, size) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &self.arena.buffer,
                    offset: offsets[off as usize],
                    size: wgpu::BufferSize::new(size.max(4).div_ceil(16) * 16),
                }),
                Bind::Skip => continue,
            };
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource,
            });
        }
        let group = self
            .ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &layout,
                entries: &entries,
            });
        if groups.0 == 0 || groups.1 == 0 || groups.2 == 0 {
            return;
        }
        let mut pass = self
            .encoder()
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
    }

    /// Stage host data in a mapped buffer and copy it into `dst` inside the encoder,
    /// so that it lands in order with the passes already recorded (a pooled `dst` may
    /// still be read by one of them).
    fn upload(&mut self, dst: &wgpu::Buffer, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let size = (data.len() as u64).div_ceil(4) * 4;
        let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("upload"),
            size,
            usage: wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        {
            let mut view = staging
                .get_mapped_range_mut(..)
                .map_err(|e| ClipError::Gpu(format!("cannot map an upload buffer: {e}")))?;
            view.slice(..data.len()).copy_from_slice(data);
        }
        staging.unmap();
        self.encoder()
            .copy_buffer_to_buffer(&staging, 0, dst, 0, size);
        Ok(())
    }

    /// Elementwise launch grid for `n` outputs.
    fn elementwise_grid(&self, n: usize) -> Result<(u32, u32)> {
        self.grid(n.div_ceil(pipelines::ELEMENTWISE_WG as usize))
    }

    /// Copy `x` back to the host: submit everything recorded, then map a staging copy.
    fn start_read(&mut self, x: &GpuAct) -> Result<Option<(wgpu::Buffer, Receiver)>> {
        self.ctx.errors.check()?;
        let bytes = (x.rows * x.cols * 4) as u64;
        if bytes == 0 {
            self.submit();
            return Ok(None);
        }
        let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let src = x.buffer().clone();
        self.encoder()
            .copy_buffer_to_buffer(&src, 0, &staging, 0, bytes);
        self.submit();
        self.pool.trim();
        let (tx, rx) = oneshot();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            tx.send(r.map_err(|e| e.to_string()))
        });
        Ok(Some((staging, rx)))
    }
}

/// A one-value channel for the `map_async` callback: no executor dependency, and no
/// blocking on wasm32, where the browser calls back from its event loop.
struct Slot {
    value: Option<std::result::Result<(), String>>,
    waker: Option<Waker>,
}

struct Sender(Arc<Mutex<Slot>>);
struct Receiver(Arc<Mutex<Slot>>);

fn oneshot() -> (Sender, Receiver) {
    let slot = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (Sender(slot.clone()), Receiver(slot))
}

impl Sender {
    fn send(self, v: std::result::Result<(), String>) {
        if let Ok(mut s) = self.0.lock() {
            s.value = Some(v);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
    }
}

impl Future for Receiver {
    type Output = std::result::Result<(), String>;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.0.lock() {
            Ok(mut s) => match s.value.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    s.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            },
            Err(_) => Poll::Ready(Err("readback state poisoned".into())),
        }
    }
}

fn activation_code(a: Option<Activation>) -> u32 {
    match a {
        None => 0,
        Some(Activation::QuickGelu) => 1,
        Some(Activation::Gelu) => 2,
        Some(Activation::GeluTanh) => 3,
    }
}

fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| ClipError::Gpu(format!("{what} = {v} is too large for the GPU")))
}

impl Backend for GpuBackend {
    type Weight = GpuWeight;
    type Act = GpuAct;

    fn input(&mut self, data: &[f32], rows: usize, cols: usize) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        if data.len() != rows * cols {
            return Err(ClipError::Input(format!(
                "input has {} values, expected {rows} x {cols}",
                data.len()
            )));
        }
        let out = self.alloc(rows, cols)?;
        self.upload(out.buffer(), bytemuck::cast_slice(data))?;
        Ok(out)
    }

    fn linear(
        &mut self,
        x: &GpuAct,
        linear: &Linear<GpuWeight>,
        activation: Option<Activation>,
        residual: Option<&GpuAct>,
    ) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        let (m, n, k) = (x.rows, linear.out_features, linear.in_features);
        if x.cols != k || !k.is_multiple_of(4) {
            return Err(ClipError::Input(format!(
                "linear layer [{n}, {k}] applied to a [{m}, {}] activation",
                x.cols
            )));
        }
        if let Some(r) = residual {
            if (r.rows, r.cols) != (m, n) {
                return Err(ClipError::Input(format!(
                    "residual is [{}, {}], expected [{m}, {n}]",
                    r.rows, r.cols
                )));
            }
        }
        let out = self.alloc(m, n)?;
        // Large tiles unless that leaves too few workgroups to occupy a discrete GPU
        // (about 100 compute units); small tiles then give 4x as many, and split-K more.
        let tiles =
            |(wx, wy): (u32, u32)| m.div_ceil(4 * wy as usize) * n.div_ceil(4 * wx as usize);
        let large = tiles(pipelines::MATMUL_LARGE) >= pipelines::MATMUL_SPLIT_BELOW;
        let (wx, wy) = if large {
            pipelines::MATMUL_LARGE
        } else {
            pipelines::MATMUL_SMALL
        };
        let groups = tiles((wx, wy));
        let bk = pipelines::MATMUL_BK;
        let splits = if large || groups == 0 {
            1
        } else {
            pipelines::MATMUL_SPLIT_BELOW
                .div_ceil(groups)
                .min(k / pipelines::MATMUL_MIN_CHUNK)
                .clamp(1, pipelines::MATMUL_MAX_SPLITS)
        };
        let k_chunk = k.div_ceil(splits).div_ceil(bk).max(1) * bk;
        let splits = k.div_ceil(k_chunk).max(1);
        let gx = u32_of("matmul grid", n.div_ceil(4 * wx as usize))?;
        let gy = u32_of("matmul grid", m.div_ceil(4 * wy as usize))?;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        if gx > max || gy > max {
            return Err(ClipError::Gpu(format!(
                "a [{m}, {k}] x [{k}, {n}] product is too large for one launch"
            )));
        }
        let (rg_x, rg_y) = self.elementwise_grid(m * n)?;
        let params = MatmulParams {
            m: u32_of("rows", m)?,
            n: u32_of("out_features", n)?,
            k: u32_of("in_features", k)?,
            act: activation_code(activation),
            has_bias: linear.bias.is_some() as u32,
            has_residual: residual.is_some() as u32,
            k_chunk: u32_of("in_features", k_chunk)?,
            splits: splits as u32,
            groups_x: rg_x,
            pad: [0; 3],
        };
        let dummy = self.dummy.clone();
        let bias = linear.bias.as_ref().map_or(&dummy, |b| &b.buffer);
        let res = residual.map_or(&dummy, |r| r.buffer());
        // With split-K the tiles go to a [splits, m, n] scratch, reduced into `out`.
        let partial = if splits > 1 {
            Some(self.alloc(splits * m, n)?)
        } else {
            None
        };
        let dst = partial.as_ref().unwrap_or(&out);
        self.launch(
            match (linear.weight.f16, large) {
                (false, true) => |k| &k.matmul_large,
                (false, false) => |k| &k.matmul_small,
                (true, true) => |k| &k.matmul_f16_large,
                (true, false) => |k| &k.matmul_f16_small,
            },
            bytemuck::bytes_of(&params),
            None,
            &[
                Bind::Buffer(x.buffer()),
                Bind::Buffer(&linear.weight.buffer),
                Bind::Buffer(bias),
                Bind::Buffer(res),
                Bind::Buffer(dst.buffer()),
            ],
            (gx, gy, splits as u32),
        );
        if let Some(partial) = &partial {
            self.launch(
                |k| &k.matmul_reduce,
                bytemuck::bytes_of(&params),
                None,
                &[
                    Bind::Buffer(partial.buffer()),
                    Bind::Skip,
                    Bind::Buffer(bias),
                    Bind::Buffer(res),
                    Bind::Buffer(out.buffer()),
                ],
                (rg_x, rg_y, 1),
            );
        }
        Ok(out)
    }

    fn layer_norm(&mut self, x: &GpuAct, ln: &LayerNorm<GpuWeight>) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        if x.cols != ln.dim {
            return Err(ClipError::Input(format!(
                "LayerNorm over {} applied to rows of {}",
                ln.dim, x.cols
            )));
        }
        let out = self.alloc(x.rows, x.cols)?;
        let (gx, gy) = self.grid(x.rows)?;
        let params = LayerNormParams {
            rows: u32_of("rows", x.rows)?,
            dim: u32_of("dim", x.cols)?,
            eps: ln.eps,
            groups_x: gx,
        };
        self.launch(
            |k| &k.layer_norm,
            bytemuck::bytes_of(&params),
            None,
            &[
                Bind::Buffer(x.buffer()),
                Bind::Buffer(&ln.weight.buffer),
                Bind::Buffer(&ln.bias.buffer),
                Bind::Buffer(out.buffer()),
            ],
            (if x.rows == 0 { 0 } else { gx }, gy, 1),
        );
        Ok(out)
    }

    fn attention(
        &mut self,
        q: &GpuAct,
        k: &GpuAct,
        v: &GpuAct,
        seq_len: usize,
        heads: usize,
        causal: bool,
        valid_lens: &[usize],
    ) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        let width = q.cols;
        let seqs = valid_lens.len();
        let same = |a: &GpuAct| a.rows == q.rows && a.cols == width;
        if !same(k)
            || !same(v)
            || heads == 0
            || !width.is_multiple_of(heads)
            || q.rows != seqs * seq_len
        {
            return Err(ClipError::Input(format!(
                "attention over [{}, {width}] with {seqs} sequences of {seq_len} and {heads} heads",
                q.rows
            )));
        }
        let head_dim = width / heads;
        if !head_dim.is_multiple_of(4)
            || head_dim > pipelines::ATTENTION_MAX_HEAD_DIM
            || seq_len > pipelines::ATTENTION_MAX_SEQ
        {
            return Err(ClipError::Gpu(format!(
                "the attention kernel handles head_dim a multiple of 4 up to {} and sequences \
                 up to {} tokens, not head_dim {head_dim} over {seq_len} tokens",
                pipelines::ATTENTION_MAX_HEAD_DIM,
                pipelines::ATTENTION_MAX_SEQ
            )));
        }
        let out = self.alloc(q.rows, width)?;
        let max = self.ctx.limits.max_compute_workgroups_per_dimension as usize;
        if seqs > max || heads > max {
            return Err(ClipError::Gpu(format!(
                "attention over {seqs} sequences of {heads} heads exceeds this device's grid"
            )));
        }
        let params = AttentionParams {
            seq_len: u32_of("seq_len", seq_len)?,
            heads: u32_of("heads", heads)?,
            head_dim: head_dim as u32,
            width: u32_of("width", width)?,
            causal: causal as u32,
            scale: 1.0 / (head_dim as f32).sqrt(),
            pad: [0; 2],
        };
        let lens = valid_lens
            .iter()
            .map(|&l| u32_of("valid length", l))
            .collect::<Result<Vec<u32>>>()?;
        self.launch(
            |k| &k.attention,
            bytemuck::bytes_of(&params),
            Some(bytemuck::cast_slice(&lens)),
            &[
                Bind::Buffer(q.buffer()),
                Bind::Buffer(k.buffer()),
                Bind::Buffer(v.buffer()),
                Bind::Arena(1, (lens.len() * 4) as u64),
                Bind::Buffer(out.buffer()),
            ],
            (seq_len as u32, heads as u32, seqs as u32),
        );
        Ok(out)
    }

    fn vision_embed(
        &mut self,
        patch_embeds: &GpuAct,
        class_embedding: &GpuWeight,
        position_embedding: &GpuWeight,
        batch: usize,
    ) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        let d = patch_embeds.cols;
        if batch == 0 || !patch_embeds.rows.is_multiple_of(batch) {
            return Err(ClipError::Input(format!(
                "{} patch rows do not split into {batch} images",
                patch_embeds.rows
            )));
        }
        let patches = patch_embeds.rows / batch;
        if class_embedding.shape != [d] || position_embedding.shape != [patches + 1, d] {
            return Err(ClipError::Input(format!(
                "class embedding {:?} / position embedding {:?} do not fit {patches} patches of {d}",
                class_embedding.shape, position_embedding.shape
            )));
        }
        let rows = batch * (patches + 1);
        let out = self.alloc(rows, d)?;
        let (gx, gy) = self.elementwise_grid(rows * d)?;
        let params = Params3 {
            a: u32_of("batch", batch)?,
            b: u32_of("patches", patches)?,
            c: u32_of("dim", d)?,
            groups_x: gx,
        };
        u32_of("elements", rows * d)?;
        self.launch(
            |k| &k.vision_embed,
            bytemuck::bytes_of(&params),
            None,
            &[
                Bind::Buffer(patch_embeds.buffer()),
                Bind::Buffer(&class_embedding.buffer),
                Bind::Buffer(&position_embedding.buffer),
                Bind::Buffer(out.buffer()),
            ],
            (gx, gy, 1),
        );
        Ok(out)
    }

    fn text_embed(
        &mut self,
        ids: &[u32],
        seq_len: usize,
        token_embedding: &GpuWeight,
        position_embedding: &GpuWeight,
    ) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        let (vocab, d) = match token_embedding.shape[..] {
            [v, d] => (v, d),
            _ => return Err(ClipError::Input("token embedding must be 2-d".into())),
        };
        if seq_len == 0
            || !ids.len().is_multiple_of(seq_len)
            || position_embedding.shape[..] != [position_embedding.shape[0], d]
            || position_embedding.shape[0] < seq_len
        {
            return Err(ClipError::Input(format!(
                "{} token ids in sequences of {seq_len} with position embedding {:?}",
                ids.len(),
                position_embedding.shape
            )));
        }
        if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ClipError::Input(format!(
                "token id {id} is outside the vocabulary of {vocab}"
            )));
        }
        let out = self.alloc(ids.len(), d)?;
        let (gx, gy) = self.elementwise_grid(ids.len() * d)?;
        u32_of("elements", ids.len() * d)?;
        let params = Params3 {
            a: u32_of("rows", ids.len())?,
            b: u32_of("seq_len", seq_len)?,
            c: u32_of("dim", d)?,
            groups_x: gx,
        };
        self.launch(
            |k| &k.text_embed,
            bytemuck::bytes_of(&params),
            Some(bytemuck::cast_slice(ids)),
            &[
                Bind::Arena(1, (ids.len() * 4) as u64),
                Bind::Buffer(&token_embedding.buffer),
                Bind::Buffer(&position_embedding.buffer),
                Bind::Buffer(out.buffer()),
            ],
            (gx, gy, 1),
        );
        Ok(out)
    }

    fn gather_rows(&mut self, x: &GpuAct, rows: &[usize]) -> Result<GpuAct> {
        self.ctx.errors.check()?;
        if let Some(r) = rows.iter().find(|&&r| r >= x.rows) {
            return Err(ClipError::Input(format!(
                "row {r} is outside an activation of {} rows",
                x.rows
            )));
        }
        let idx = rows
            .iter()
            .map(|&r| u32_of("row", r))
            .collect::<Result<Vec<u32>>>()?;
        let out = self.alloc(rows.len(), x.cols)?;
        let (gx, gy) = self.elementwise_grid(rows.len() * x.cols)?;
        u32_of("elements", rows.len() * x.cols)?;
        let params = Params3 {
            a: idx.len() as u32,
            b: u32_of("cols", x.cols)?,
            c: 0,
            groups_x: gx,
        };
        self.launch(
            |k| &k.gather_rows,
            bytemuck::bytes_of(&params),
            Some(bytemuck::cast_slice(&idx)),
            &[
                Bind::Buffer(x.buffer()),
                Bind::Arena(1, (idx.len() * 4) as u64),
                Bind::Buffer(out.buffer()),
            ],
            (if rows.is_empty() { 0 } else { gx }, gy, 1),
        );
        Ok(out)
    }

    fn read(&mut self, x: &GpuAct) -> impl Future<Output = Result<Vec<f32>>> {
        let started = self.start_read(x);
        let ctx = self.ctx.clone();
        async move {
            let Some((staging, rx)) = started? else {
                return Ok(Vec::new());
            };
            // Natively nothing drives the device but us: wait for the copy here. In the
            // browser the event loop does, and we only await the callback.
            #[cfg(not(target_arch = "wasm32"))]
            if let Err(e) = ctx.device.poll(wgpu::PollType::wait_indefinitely()) {
                // A lost device explains itself better than the failed wait.
                ctx.errors.check()?;
                return Err(ClipError::Gpu(format!("waiting for the GPU failed: {e}")));
            }
            let mapped = rx.await;
            ctx.errors.check()?;
            mapped.map_err(|e| ClipError::Gpu(format!("reading results back failed: {e}")))?;
            let data = {
                let view = staging
                    .get_mapped_range(..)
                    .map_err(|e| ClipError::Gpu(format!("reading results back failed: {e}")))?;
                // The mapping need not be 4-byte aligned for Rust: decode, do not cast.
                view.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect::<Vec<f32>>()
            };
            staging.unmap();
            Ok(data)
        }
    }
}
