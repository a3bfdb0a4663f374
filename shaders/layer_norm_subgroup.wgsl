// LayerNorm over each row, one workgroup per row, as layer_norm.wgsl but with subgroup
// sums: one subgroupAdd per subgroup and one workgroup-memory round for the partials,
// instead of log2(WG) barrier rounds. Used when the device has the SUBGROUP feature.
// (In the browser the engine prefixes `enable subgroups;`, which naga does not parse.)

struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
    groups_x: u32, // workgroups along x of the launch grid
}

override WG: u32 = 256u; // threads per row, a power of two, at most 256

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // [rows, dim]
@group(0) @binding(2) var<storage, read> gamma: array<f32>;       // [dim]
@group(0) @binding(3) var<storage, read> beta: array<f32>;        // [dim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // [rows, dim]

var<workgroup> partial: array<f32, 256>; // one slot per subgroup (subgroups have >= 1 lane)

// Subgroups of a 1-D workgroup are runs of consecutive invocations on every
// implementation, so subgroup g holds invocations g * size .. (g + 1) * size.
fn workgroup_sum(tid: u32, lane: u32, size: u32, v: f32) -> f32 {
    let s = subgroupAdd(v);
    if (lane == 0u) {
        partial[tid / size] = s;
    }
    workgroupBarrier();
    var total = 0.0;
    let groups = (WG + size - 1u) / size;
    for (var g = 0u; g < groups; g++) {
        total += partial[g];
    }
    workgroupBarrier(); // everyone has read the partials before they are reused
    return total;
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) size: u32,
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
    let mean = workgroup_sum(tid, lane, size, s) / f32(p.dim);
    var sq = 0.0;
    for (var i = tid; i < p.dim; i += WG) {
        let d = x[base + i] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(workgroup_sum(tid, lane, size, sq) / f32(p.dim) + p.eps);
    for (var i = tid; i < p.dim; i += WG) {
        out[base + i] = (x[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
