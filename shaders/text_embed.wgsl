// CLIPTextEmbeddings: row i is token_embedding[ids[i]] + position_embedding[i % seq_len].
// One thread per output element. Ids are checked against the vocabulary on the host. A
// token table larger than one buffer is bound a page at a time (one launch per page):
// each launch writes only the rows whose id falls in its page. With I8_WEIGHTS the table
// is int8, four values per u32 (`dim` is a multiple of 4), times the scale of their group
// of `p.group` columns; the scales of every page are one buffer, indexed by id.

struct Params { // TextEmbedParams in src/gpu/pipelines.rs
    rows: u32,
    seq_len: u32,
    dim: u32,
    groups_x: u32,  // workgroups along x of the launch grid
    first_id: u32,  // the page holds ids first_id .. first_id + page_rows
    page_rows: u32,
    group: u32,     // I8_WEIGHTS: columns per scale
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;         // [rows]
//#if I8_WEIGHTS
@group(0) @binding(2) var<storage, read> token: array<u32>;       // [page_rows, dim / 4] x 4 i8
@group(0) @binding(5) var<storage, read> token_scale: array<f32>; // [vocab, ceil(dim / group)]
//#else
@group(0) @binding(2) var<storage, read> token: array<f32>;       // [page_rows, dim] of [vocab, dim]
//#endif
@group(0) @binding(3) var<storage, read> position: array<f32>;    // [context, dim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // [rows, dim]

//#include "elementwise.wgsl"

fn elements() -> u32 {
    return p.rows * p.dim;
}

fn element(idx: u32) {
    let row = idx / p.dim;
    let c = idx % p.dim;
    let id = ids[row];
    if (id < p.first_id || id - p.first_id >= p.page_rows) {
        return; // another page's row
    }
//#if I8_WEIGHTS
    let at = (id - p.first_id) * p.dim + c;
    let q = bitcast<i32>(token[at / 4u] << (24u - 8u * (at % 4u))) >> 24u;
    let groups = (p.dim + p.group - 1u) / p.group;
    let t = f32(q) * token_scale[id * groups + c / p.group];
//#else
    let t = token[(id - p.first_id) * p.dim + c];
//#endif
    out[idx] = t + position[(row % p.seq_len) * p.dim + c];
}
