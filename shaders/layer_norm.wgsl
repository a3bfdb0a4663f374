// LayerNorm over each row (torch.nn.LayerNorm, biased variance), one workgroup per row.
// Two passes over the row (mean, then the mean of squared deviations) rather than
// E[x^2] - E[x]^2, which loses digits when the mean is large against the spread.
// Reductions go through workgroup memory; layer_norm_subgroup.wgsl is the same kernel
// with subgroup sums, for adapters that offer them.

struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
    groups_x: u32, // workgroups along x of the launch grid (rows may exceed one dimension)
}

override WG: u32 = 256u; // threads per row, a power of two, at most 256

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // [rows, dim]
@group(0) @binding(2) var<storage, read> gamma: array<f32>;       // [dim]
@group(0) @binding(3) var<storage, read> beta: array<f32>;        // [dim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // [rows, dim]

var<workgroup> red: array<f32, 256>;

fn workgroup_sum(tid: u32, v: f32) -> f32 {
    red[tid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (tid < s) {
            red[tid] += red[tid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier(); // everyone has read red[0] before it is reused
    return total;
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.dim;
    var s = 0.0;
    for (var i = tid; i < p.dim; i += WG) {
        s += x[base + i];
    }
    let mean = workgroup_sum(tid, s) / f32(p.dim);
    var sq = 0.0;
    for (var i = tid; i < p.dim; i += WG) {
        let d = x[base + i] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(workgroup_sum(tid, sq) / f32(p.dim) + p.eps);
    for (var i = tid; i < p.dim; i += WG) {
        out[base + i] = (x[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
