//! Reading results back: the one copy of a forward pass's final rows into a mapped
//! staging buffer, and the one-value channel its `map_async` callback completes (no
//! executor dependency, and no blocking on wasm32, where the browser calls back from its
//! event loop).

use super::buffer::Owned;
use super::{GpuAct, GpuBackend};
use crate::error::{ClipError, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

impl GpuBackend {
    /// Bring `x` back as f32: submit everything recorded, copy `x` into a mapped staging
    /// buffer, and resolve once the map callback fires.
    pub(super) fn read_back(&mut self, x: &GpuAct) -> impl Future<Output = Result<Vec<f32>>> {
        let started = self.start_read(x);
        let checks = std::mem::take(&mut self.alloc_checks);
        let ctx = self.ctx.clone();
        let pool = self.pool.clone();
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
            for check in checks {
                let Some(e) = check.await else { continue };
                // The pass ran on invalid buffers: none of them may serve another pass,
                // and its follow-on errors (validation of those buffers) are this one.
                pool.discard();
                // Those follow-on errors escape as uncaptured errors, which a browser may
                // deliver later than the map: an empty scope's round trip comes back after
                // them, so that they are drained here and do not fail the next call.
                let _ = ctx
                    .device
                    .push_error_scope(wgpu::ErrorFilter::Validation)
                    .pop()
                    .await;
                if let Err(lost @ ClipError::DeviceLost(_)) = ctx.errors.check() {
                    return Err(lost);
                }
                return Err(ClipError::Gpu(format!(
                    "out of GPU memory for this batch ({e}); the model is still loaded, and \
                     smaller batches need less memory"
                )));
            }
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

    /// Copy `x` back to the host: submit everything recorded, then map a staging copy.
    fn start_read(&mut self, x: &GpuAct) -> Result<Option<(Owned, Receiver)>> {
        self.ctx.errors.check()?;
        let bytes = (x.rows * x.cols * 4) as u64;
        if bytes == 0 {
            self.submit();
            return Ok(None);
        }
        let staging = self.ctx.buffer(&wgpu::BufferDescriptor {
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
        self.binds.end_pass();
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
