//! Recording a forward pass: kernel launches go into one command encoder, their uniforms
//! and small index arrays into one arena buffer written just before the submit, and
//! activations into pooled buffers.

use super::buffer::Owned;
use super::context::Context;
use super::pipelines::{self, Pipelines};
use super::pool::Pool;
use super::{GpuAct, GpuBackend};
use crate::error::{ClipError, Result};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Uniforms and small index arrays of the commands being recorded, written to the GPU
/// in one `write_buffer` right before the commands are submitted.
pub(super) struct Arena {
    pub(super) buffer: Owned,
    pub(super) data: Vec<u8>,
    /// Offsets of bindings must be multiples of this (256 on most adapters).
    pub(super) align: usize,
}

pub(super) const ARENA_BYTES: u64 = 1 << 20;

pub(super) fn arena_buffer(ctx: &Context, size: u64) -> Owned {
    ctx.buffer(&wgpu::BufferDescriptor {
        label: Some("arena"),
        size,
        usage: wgpu::BufferUsages::UNIFORM
            | wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// One binding of a bind group as the cache compares it: number, buffer (by identity),
/// offset and size (0 for the whole buffer).
type BindEntry = (u32, wgpu::Buffer, u64, u64);

/// Bind groups made for earlier launches, by pipeline and bindings. A forward pass of one
/// shape makes the same launches on the same pooled buffers and arena offsets every time,
/// so from its second run it makes no bind group at all (creating one is most of a
/// launch's CPU cost). The keys hold buffer handles, not `Owned` ones: a buffer the
/// backend drops is still destroyed then, and its entries are evicted once unused.
#[derive(Default)]
pub(super) struct BindCache {
    groups: HashMap<(wgpu::ComputePipeline, Vec<BindEntry>), (wgpu::BindGroup, u64)>,
    /// Passes read back so far: an entry's second field is the last one that used it.
    pass: u64,
    /// Bind groups created since the backend was made (the benchmark's count per pass).
    pub(super) made: u64,
}

impl BindCache {
    /// Entries at most this many, counting those of recent passes only.
    const MAX: usize = 4096;
    /// A pass evicts what the last this many passes did not use, once over `MAX`.
    const KEEP_PASSES: u64 = 8;

    /// The end of a pass: evict stale entries if there are too many.
    pub(super) fn end_pass(&mut self) {
        self.pass += 1;
        if self.groups.len() > Self::MAX {
            let keep_from = self.pass.saturating_sub(Self::KEEP_PASSES);
            self.groups.retain(|_, (_, used)| *used >= keep_from);
            if self.groups.len() > Self::MAX {
                self.groups.clear();
            }
        }
    }

    /// Forget every entry (a pass was abandoned: its buffers serve no more).
    pub(super) fn clear(&mut self) {
        self.groups.clear();
    }
}

/// What one binding of a kernel points at.
pub(super) enum Bind<'a> {
    Buffer(&'a wgpu::Buffer),
    /// `(piece, size)`: a piece staged in the arena with the launch.
    Arena(u64, u64),
    /// A binding number the kernel's entry point does not use.
    Skip,
}

impl GpuBackend {
    /// The command encoder, for commands outside a compute pass (copies): the open pass,
    /// if any, ends first, so everything stays in recording order.
    pub(super) fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        let device = &self.ctx.device;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("forward"),
            })
        })
    }

    /// Submit what was recorded, after the arena it reads.
    pub(super) fn submit(&mut self) {
        self.pass = None;
        if !self.arena.data.is_empty() {
            self.ctx
                .queue
                .write_buffer(&self.arena.buffer, 0, &self.arena.data);
            self.arena.data.clear();
        }
        if let Some(enc) = self.encoder.take() {
            self.ctx.queue.submit([enc.finish()]);
            if self.ctx.lose_after_submit.swap(false, Ordering::Relaxed) {
                self.device_breaker().destroy();
            }
        }
        // Buffers dropped while recording are no longer named by unsubmitted commands.
        self.ctx.ledger.collect();
    }

    /// Place `pieces` in the arena; returns their offsets. Submits the recorded commands
    /// first when the arena is full, and grows it when one pass needs more.
    pub(super) fn stage(&mut self, pieces: &[&[u8]]) -> Vec<u64> {
        let align = self.arena.align;
        let need: usize = pieces.iter().map(|p| p.len().div_ceil(align) * align).sum();
        let cap = self.arena.buffer.size() as usize;
        if self.arena.data.len().div_ceil(align) * align + need > cap {
            self.submit();
            if need > cap {
                // Doubled, within the largest buffer (one pass needing more than that
                // fails validation, which the error scope reports).
                let max = self.ctx.max_buffer_bytes().max(need as u64);
                let size = ((need.max(2 * cap) as u64).min(max)).div_ceil(16) * 16;
                self.arena.buffer = arena_buffer(&self.ctx, size);
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
    pub(super) fn alloc(&mut self, rows: usize, cols: usize) -> Result<GpuAct> {
        let bytes = (rows * cols * 4) as u64;
        self.ctx.check_size("an activation", bytes)?;
        let buffer = match self.pool.take(bytes) {
            Some(b) => b,
            None => {
                // A batch's size decides these: their out-of-memory errors are checked
                // when the pass is read back (`read_back`).
                let (b, check) = self.ctx.buffer_checked(&wgpu::BufferDescriptor {
                    label: Some("activation"),
                    size: Pool::class(bytes),
                    usage: wgpu::BufferUsages::STORAGE
                        | wgpu::BufferUsages::COPY_SRC
                        | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                self.alloc_checks.push(check);
                b
            }
        };
        Ok(GpuAct {
            buf: Arc::new(self.pool.lend(buffer)),
            rows,
            cols,
        })
    }

    /// A launch grid of `n` workgroups: `(x, y)` with `x * y >= n`, both within the
    /// per-dimension limit. Pipelines rebuild the flat index from `groups_x`.
    pub(super) fn grid(&self, n: usize) -> Result<(u32, u32)> {
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
    pub(super) fn launch(
        &mut self,
        which: fn(&Pipelines) -> &wgpu::ComputePipeline,
        params: &[u8],
        aux: Option<&[u8]>,
        binds: &[Bind<'_>],
        groups: (u32, u32, u32),
    ) {
        let pipeline = which(&self.pipelines).clone();
        self.launch_pipeline(pipeline, params, aux, binds, groups);
    }

    /// [`launch`](Self::launch) with the pipeline in hand (one of a variant built on
    /// demand, which the caller looks up).
    pub(super) fn launch_pipeline(
        &mut self,
        pipeline: wgpu::ComputePipeline,
        params: &[u8],
        aux: Option<&[u8]>,
        binds: &[Bind<'_>],
        groups: (u32, u32, u32),
    ) {
        let mut pieces = vec![params];
        pieces.extend(aux);
        let offsets = self.stage(&pieces);
        let arena = &*self.arena.buffer;
        let mut entries: Vec<BindEntry> = Vec::with_capacity(binds.len() + 1);
        entries.push((
            0,
            arena.clone(),
            offsets[0],
            params.len().div_ceil(16) as u64 * 16,
        ));
        for (i, b) in binds.iter().enumerate() {
            let binding = i as u32 + 1;
            entries.push(match *b {
                Bind::Buffer(buf) => (binding, buf.clone(), 0, 0),
                Bind::Arena(piece, size) => (
                    binding,
                    arena.clone(),
                    offsets[piece as usize],
                    size.max(4).div_ceil(16) * 16,
                ),
                Bind::Skip => continue,
            });
        }
        let key = (pipeline, entries);
        let pass = self.binds.pass;
        let group = match self.binds.groups.get_mut(&key) {
            Some((group, used)) => {
                *used = pass;
                group.clone()
            }
            None => {
                let layout = key.0.get_bind_group_layout(0);
                let resources: Vec<wgpu::BindGroupEntry<'_>> = key
                    .1
                    .iter()
                    .map(|(binding, buffer, offset, size)| wgpu::BindGroupEntry {
                        binding: *binding,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer,
                            offset: *offset,
                            size: wgpu::BufferSize::new(*size),
                        }),
                    })
                    .collect();
                let group = self
                    .ctx
                    .device
                    .create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &layout,
                        entries: &resources,
                    });
                self.binds.made += 1;
                self.binds.groups.insert(key.clone(), (group.clone(), pass));
                group
            }
        };
        let pipeline = key.0;
        if groups.0 == 0 || groups.1 == 0 || groups.2 == 0 {
            return;
        }
        self.dispatches += 1;
        // WebGPU orders the dispatches of one pass and makes each one's writes visible to
        // the next (wgpu places the barriers), as separate passes would.
        let pass = match self.pass.take() {
            Some(open) => open,
            None => self
                .encoder()
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                })
                .forget_lifetime(),
        };
        let pass = self.pass.insert(pass);
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
    }

    /// Stage host data in a mapped buffer and copy it into `dst` inside the encoder,
    /// so that it lands in order with the passes already recorded (a pooled `dst` may
    /// still be read by one of them).
    pub(super) fn upload(&mut self, dst: &wgpu::Buffer, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let size = (data.len() as u64).div_ceil(4) * 4;
        let staging = self.ctx.buffer(&wgpu::BufferDescriptor {
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
    pub(super) fn elementwise_grid(&self, n: usize) -> Result<(u32, u32)> {
        self.grid(n.div_ceil(pipelines::ELEMENTWISE_WG as usize))
    }
}
