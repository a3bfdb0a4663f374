// out[r] = x[rows[r]]: pools the class token / end-of-text token of each sequence.
// One thread per output element. Row indices are checked on the host.

struct Params { // GatherRowsParams in src/gpu/pipelines.rs
    rows: u32, // output rows
    cols: u32,
    pad: u32,
    groups_x: u32, // workgroups along x of the launch grid
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // [in_rows, cols]
@group(0) @binding(2) var<storage, read> rows: array<u32>;       // [rows]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [rows, cols]

//#include "elementwise.wgsl"

fn elements() -> u32 {
    return p.rows * p.cols;
}

fn element(idx: u32) {
    out[idx] = x[rows[idx / p.cols] * p.cols + idx % p.cols];
}
