// LayerNorm over each row (torch.nn.LayerNorm, biased variance), one workgroup per row.
// Two passes over the row (mean, then the mean of squared deviations) rather than
// E[x^2] - E[x]^2, which loses digits when the mean is large against the spread.
// The sums are workgroup_reduce.wgsl's, with subgroups where the device has them.

struct Params { // LayerNormParams in src/gpu/pipelines.rs
    rows: u32,
    dim: u32,
    eps: f32,
    groups_x: u32, // workgroups along x of the launch grid (rows may exceed one dimension)
}

override WG: u32; // threads per row, a power of two

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // [rows, dim]
@group(0) @binding(2) var<storage, read> gamma: array<f32>;       // [dim]
@group(0) @binding(3) var<storage, read> beta: array<f32>;        // [dim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // [rows, dim]

//#include "workgroup_reduce.wgsl"

@compute @workgroup_size(WG, 1, 1)
fn main(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = inv.tid;
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.dim;
    var s = 0.0;
    for (var i = tid; i < p.dim; i += WG) {
        s += x[base + i];
    }
    let mean = workgroup_sum(inv, s) / f32(p.dim);
    var sq = 0.0;
    for (var i = tid; i < p.dim; i += WG) {
        let d = x[base + i] - mean;
        sq += d * d;
    }
    let inv_std = inverseSqrt(workgroup_sum(inv, sq) / f32(p.dim) + p.eps);
    for (var i = tid; i < p.dim; i += WG) {
        out[base + i] = (x[base + i] - mean) * inv_std * gamma[i] + beta[i];
    }
}
