// CLIPTextEmbeddings: row i is token_embedding[ids[i]] + position_embedding[i % seq_len].
// One thread per output element. Ids are checked against the vocabulary on the host.

struct Params {
    rows: u32,
    seq_len: u32,
    dim: u32,
    groups_x: u32, // workgroups along x of the launch grid
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;         // [rows]
@group(0) @binding(2) var<storage, read> token: array<f32>;       // [vocab, dim]
@group(0) @binding(3) var<storage, read> position: array<f32>;    // [context, dim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // [rows, dim]

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.y * (p.groups_x * WG) + gid.x;
    if (idx >= p.rows * p.dim) {
        return;
    }
    let row = idx / p.dim;
    let c = idx % p.dim;
    out[idx] = token[ids[row] * p.dim + c] + position[(row % p.seq_len) * p.dim + c];
}
