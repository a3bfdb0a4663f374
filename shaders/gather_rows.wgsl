// out[r] = x[rows[r]]: pools the class token / end-of-text token of each sequence.
// One thread per output element. Row indices are checked on the host.

struct Params {
    rows: u32, // output rows
    cols: u32,
    pad0: u32,
    groups_x: u32, // workgroups along x of the launch grid
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // [in_rows, cols]
@group(0) @binding(2) var<storage, read> rows: array<u32>;       // [rows]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [rows, cols]

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.y * (p.groups_x * WG) + gid.x;
    if (idx >= p.rows * p.cols) {
        return;
    }
    let r = idx / p.cols;
    out[idx] = x[rows[r] * p.cols + idx % p.cols];
}
