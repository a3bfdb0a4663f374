// Fused multi-head attention, softmax(q k^T * scale + mask) v, one workgroup per
// (query row, head, sequence), as CLIPAttention with transformers' causal and padding
// masks, and as SigLIP's pooling head (one query per sequence over all its keys). Query i
// of sequence s sees key j when j < valid_lens[s] and, if causal (then queries == keys),
// j <= i (always at least key 0, as the CPU backend). The scores of the row stay in workgroup
// memory, so the whole product happens in one launch with no [seq, seq] buffer.
// Softmax is the max-subtracted form, exact in f32 for any score range. The row max and
// sum are workgroup_reduce.wgsl's, with subgroups where the device has them.

struct Params { // AttentionParams in src/gpu/pipelines.rs
    queries: u32,  // query rows per sequence
    keys: u32,     // key / value rows per sequence, at most MAX_SEQ
    heads: u32,
    head_dim: u32, // a multiple of 4, at most 4 * WG
    width: u32,    // heads * head_dim: the row stride of q, k, v, out
    causal: u32,
    scale: f32,    // 1 / sqrt(head_dim)
    pad: u32,
}

override WG: u32;      // threads per row, a power of two
override MAX_SEQ: u32; // most keys per sequence (So400m/14 at 384 px has 729 tokens)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;          // [seqs * queries, width / 4]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;          // [seqs * keys, width / 4]
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;          // same as k
@group(0) @binding(4) var<storage, read> valid_lens: array<u32>;       // [seqs]
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;  // same as q

var<workgroup> scores: array<f32, MAX_SEQ>;
var<workgroup> q_row: array<vec4<f32>, WG>;   // head_dim / 4 <= WG
var<workgroup> partial: array<vec4<f32>, WG>; // per-thread partial sums of p * v

//#include "workgroup_reduce.wgsl"

const LOWEST: f32 = -3.4028234e38; // rounds to the most negative finite f32

@compute @workgroup_size(WG, 1, 1)
fn main(inv: Invocation, @builtin(workgroup_id) wid: vec3<u32>) {
    let tid = inv.tid;
    let i = wid.x; // query row within the sequence
    let h = wid.y; // head
    let s = wid.z; // sequence
    if (i >= p.queries || h >= p.heads || s >= arrayLength(&valid_lens)) {
        return;
    }
    let hd4 = p.head_dim / 4u;
    let w4 = p.width / 4u;
    let q_base = s * p.queries; // first query row of the sequence
    let base = s * p.keys;      // first key / value row of the sequence
    let col = h * hd4;          // first vec4 of the head within a row

    for (var d = tid; d < hd4; d += WG) {
        q_row[d] = q[(q_base + i) * w4 + col + d];
    }
    workgroupBarrier();

    var keys = min(min(valid_lens[s], p.keys), MAX_SEQ);
    if (p.causal != 0u) {
        keys = min(keys, i + 1u);
    }
    keys = max(keys, 1u);

    // Scores, one key per thread at a time.
    var m = LOWEST;
    for (var j = tid; j < keys; j += WG) {
        let kr = (base + j) * w4 + col;
        var dot4 = vec4<f32>(0.0);
        for (var d = 0u; d < hd4; d++) {
            dot4 += q_row[d] * k[kr + d];
        }
        let sc = (dot4.x + dot4.y + dot4.z + dot4.w) * p.scale;
        scores[j] = sc;
        m = max(m, sc);
    }
    let row_max = workgroup_max(inv, m);
    var l = 0.0;
    for (var j = tid; j < keys; j += WG) {
        let e = exp(scores[j] - row_max);
        scores[j] = e;
        l += e;
    }
    let denom = workgroup_sum(inv, l); // its barriers also publish every scores[j]

    // p v: thread (part, d) sums keys part, part + parts, ... for vec4 column d.
    let parts = WG / hd4;
    let d = tid % hd4;
    let part = tid / hd4;
    var acc = vec4<f32>(0.0);
    if (part < parts) {
        for (var j = part; j < keys; j += parts) {
            acc += scores[j] * v[(base + j) * w4 + col + d];
        }
    }
    partial[tid] = acc;
    workgroupBarrier();
    if (tid < hd4) {
        var total = vec4<f32>(0.0);
        for (var g = 0u; g < parts; g++) {
            total += partial[g * hd4 + tid];
        }
        out[(q_base + i) * w4 + col + tid] = total / denom;
    }
}
