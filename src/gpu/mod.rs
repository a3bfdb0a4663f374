//! The WebGPU engine: the graph's operations as WGSL compute shaders (`shaders/`), driven
//! by wgpu (the browser's WebGPU on wasm32, Vulkan/Metal/DX12 natively).
