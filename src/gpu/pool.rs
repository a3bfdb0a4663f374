//! Reusable activation buffers. Creating a GPU buffer is expensive (an allocation and,
//! on first bind, residency work), and a forward pass makes hundreds of activations of a
//! handful of sizes, so buffers are recycled: an [`Act`](super::GpuAct) takes one from
//! the pool and gives it back when its last handle drops. Within one command encoder
//! that is safe: the GPU runs the recorded passes in order, and wgpu puts a barrier
//! between a pass that reads a buffer and a later one that writes it.

use super::buffer::Owned;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Buffer sizes are rounded up to this, so that nearby sizes share buffers.
const GRANULE: u64 = 256;

#[derive(Default)]
struct Free {
    by_size: HashMap<u64, Vec<Owned>>,
    /// Sizes asked for since the last [`Pool::trim`].
    used: HashSet<u64>,
    /// Bumped by [`Pool::discard`]: buffers lent before come back to be destroyed.
    generation: u64,
}

/// Free buffers by size.
#[derive(Clone, Default)]
pub struct Pool {
    free: Arc<Mutex<Free>>,
}

/// A buffer on loan from the pool; returned when dropped.
pub struct Pooled {
    /// `None` only while dropping.
    buffer: Option<Owned>,
    pool: Pool,
    generation: u64,
}

impl Pooled {
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer
            .as_deref()
            .expect("a lent buffer is present until dropped")
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(b) = self.buffer.take() else { return };
        if let Ok(mut free) = self.pool.free.lock() {
            if free.generation == self.generation {
                free.by_size.entry(b.size()).or_default().push(b);
            }
        }
    }
}

impl Pool {
    /// The rounded size a request of `bytes` gets.
    pub fn class(bytes: u64) -> u64 {
        bytes.max(16).div_ceil(GRANULE) * GRANULE
    }

    /// A free buffer of `class(bytes)` bytes, or `None` when one must be created.
    pub fn take(&self, bytes: u64) -> Option<Owned> {
        let size = Self::class(bytes);
        let mut free = self.free.lock().ok()?;
        free.used.insert(size);
        free.by_size.get_mut(&size).and_then(Vec::pop)
    }

    /// Lend `buffer` (new or taken) out until the returned handle drops.
    pub fn lend(&self, buffer: Owned) -> Pooled {
        let generation = self.free.lock().map_or(u64::MAX, |f| f.generation);
        Pooled {
            buffer: Some(buffer),
            pool: self.clone(),
            generation,
        }
    }

    /// Destroy every free buffer, and every lent one when it comes back: after a pass that
    /// failed (out of memory), whose buffers may be invalid.
    pub fn discard(&self) {
        if let Ok(mut free) = self.free.lock() {
            free.by_size.clear();
            free.generation += 1;
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
            f.by_size
                .values()
                .flatten()
                .map(|b| (**b).clone())
                .collect()
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
