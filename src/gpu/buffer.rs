//! GPU buffers the backend owns: counted while they live, destroyed once dropped. In the
//! browser a dropped wgpu buffer keeps its GPU memory until JavaScript's garbage collector
//! gets to it (wgpu's WebGPU backend does not destroy on drop); destroying it frees the
//! memory now. A dropped buffer may still be named by commands recorded but not yet
//! submitted, so it waits in the ledger until the next submit (WebGPU and wgpu-core
//! both hold a destroyed buffer's memory until the submitted work using it is done).
//! The count lets a benchmark or a test check that GPU memory stays flat under load and
//! that `dispose` frees everything.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Live buffers of one device, and their bytes.
#[derive(Default)]
pub struct Ledger {
    live: AtomicU64,
    bytes: AtomicU64,
    /// Dropped, to be destroyed after the next submit.
    dropped: Mutex<Vec<wgpu::Buffer>>,
    /// The backend is gone: nothing records commands any more, so a dropped buffer is
    /// destroyed at once.
    closed: AtomicBool,
}

impl Ledger {
    /// `(buffers, bytes)` alive now (dropped ones count until destroyed).
    pub fn live(&self) -> (u64, u64) {
        (
            self.live.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// The backend is dropped: destroy what waits, and from now on each buffer as it
    /// drops (weights may outlive the backend; in the browser the device does too).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.collect();
    }

    /// Destroy the dropped buffers: call right after a submit.
    pub fn collect(&self) {
        let dropped = match self.dropped.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => return,
        };
        for b in dropped {
            b.destroy();
            self.live.fetch_sub(1, Ordering::Relaxed);
            self.bytes.fetch_sub(b.size(), Ordering::Relaxed);
        }
    }
}

impl Drop for Ledger {
    /// Every buffer is gone (each holds the ledger), so no command can name one any more.
    fn drop(&mut self) {
        self.collect();
    }
}

/// A buffer of the backend's, destroyed when dropped.
pub struct Owned {
    buffer: wgpu::Buffer,
    ledger: Arc<Ledger>,
}

impl Owned {
    pub(super) fn create(
        device: &wgpu::Device,
        ledger: &Arc<Ledger>,
        desc: &wgpu::BufferDescriptor<'_>,
    ) -> Owned {
        let buffer = device.create_buffer(desc);
        ledger.live.fetch_add(1, Ordering::Relaxed);
        ledger.bytes.fetch_add(buffer.size(), Ordering::Relaxed);
        Owned {
            buffer,
            ledger: ledger.clone(),
        }
    }
}

impl std::fmt::Debug for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Owned({} bytes)", self.buffer.size())
    }
}

impl Deref for Owned {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Ok(mut d) = self.ledger.dropped.lock() {
            // `wgpu::Buffer` is a shared handle: the clone is the same buffer.
            d.push(self.buffer.clone());
        }
        if self.ledger.closed.load(Ordering::Relaxed) {
            self.ledger.collect();
        }
    }
}
