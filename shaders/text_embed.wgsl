// CLIPTextEmbeddings: row i is token_embedding[ids[i]] + position_embedding[i % seq_len].
// One thread per output element. Ids are checked against the vocabulary on the host. A
// token table larger than one buffer is bound a page at a time (one launch per page):
// each launch writes only the rows whose id falls in its page.

struct Params { // TextEmbedParams in src/gpu/pipelines.rs
    rows: u32,
    seq_len: u32,
    dim: u32,
    groups_x: u32,  // workgroups along x of the launch grid
    first_id: u32,  // the page holds ids first_id .. first_id + page_rows
    page_rows: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;         // [rows]
@group(0) @binding(2) var<storage, read> token: array<f32>;       // [page_rows, dim] of [vocab, dim]
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
    out[idx] = token[(id - p.first_id) * p.dim + c] + position[(row % p.seq_len) * p.dim + c];
}
