//! Benchmarks behind `webclip bench`: the CPU backend's kernels and forward passes next to
//! the core's measured peak, and the GPU backend on whatever adapter wgpu finds. They sit
//! above the backends (they time whole models through `clip::BackendModel`), so nothing
//! under `cpu/` or `gpu/` depends on them.

pub mod cpu;
pub mod gpu;
