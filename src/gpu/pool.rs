//! Reusable activation buffers. Creating a GPU buffer is expensive (an allocation and,
//! on first bind, residency work), and a forward pass makes hundreds of activations of a
//! handful of sizes, so buffers are recycled: an [`Act`](super::GpuAct) takes one from
//! the pool and gives it back when its last handle drops. Within one command encoder
//! that is safe: the GPU runs the recorded passes in order, and wgpu puts a barrier
//! between a pass that reads a buffer and a later one that writes it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Buffer sizes are rounded up to this, so that nearby sizes share buffers.
const GRANULE: u64 = 256;

#[derive(Default)]
struct Free {
    by_size: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Sizes asked for since the last [`Pool::trim`].
    used: HashSet<u64>,
}

/// Free buffers by size.
#[derive(Clone, Default)]
pub struct Pool {
    free: Arc<Mutex<Free>>,
}

/// A buffer on loan from the pool; returned when dropped.
pub struct Pooled {
    buffer: wgpu::Buffer,
    pool: Pool,
}

impl Pooled {
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // `wgpu::Buffer` is a shared handle: the clone is the same buffer.
        if let Ok(mut free) = self.pool.free.lock() {
            let b = self.buffer.clone();
            free.by_size.entry(b.size()).or_default().push(b);
        }
    }
}

impl Pool {
    /// The rounded size a request of `bytes` gets.
    pub fn class(bytes: u64) -> u64 {
        bytes.max(16).div_ceil(GRANULE) * GRANULE
    }

    /// A free buffer of `class(bytes)` bytes, or `None` when one must be created.
    pub fn take(&self, bytes: u64) -> Option<wgpu::Buffer> {
        let size = Self::class(bytes);
        let mut free = self.free.lock().ok()?;
        free.used.insert(size);
        free.by_size.get_mut(&size).and_then(Vec::pop)
    }

    /// Lend `buffer` (new or taken) out until the returned handle drops.
    pub fn lend(&self, buffer: wgpu::Buffer) -> Pooled {
        Pooled {
            buffer,
            pool: self.clone(),
        }
    }

    /// Drop free buffers of sizes nobody asked for since the last trim (a previous batch
    /// size, say), so that memory follows the current workload.
    pub fn trim(&self) {
        if let Ok(mut free) = self.free.lock() {
            let used = std::mem::take(&mut free.used);
            free.by_size.retain(|size, _| used.contains(size));
        }
    }

    /// Handles to every free buffer (for tests that fill them with guard values).
    pub fn free_buffers(&self) -> Vec<wgpu::Buffer> {
        self.free.lock().map_or(Vec::new(), |f| {
            f.by_size.values().flatten().cloned().collect()
        })
    }

    /// Bytes held by free buffers.
    pub fn free_bytes(&self) -> u64 {
        self.free.lock().map_or(0, |f| {
            f.by_size
                .iter()
                .map(|(size, v)| size * v.len() as u64)
                .sum()
        })
    }
}
