// Fused multi-head attention, softmax(q k^T * scale + mask) v, one workgroup per
// (query row, head, sequence), as CLIPAttention with transformers' causal and padding
// masks. Query i of sequence s sees key j when j < valid_lens[s] and, if causal, j <= i
// (always at least key 0, as the CPU engine). The scores of the row stay in workgroup
// memory, so the whole product happens in one launch with no [seq, seq] buffer.
// Softmax is the max-subtracted form, exact in f32 for any score range.
// Same kernel as attention.wgsl, with the row max and sum reduced by subgroup operations
// (one subgroupMax/subgroupAdd plus one workgroup-memory round instead of log2(WG)
// barrier rounds). Used when the device has the SUBGROUP feature; in the browser the
// engine prefixes `enable subgroups;`, which naga does not parse.

struct Params {
    seq_len: u32,
    heads: u32,
    head_dim: u32, // a multiple of 4, at most 4 * WG
    width: u32,    // heads * head_dim: the row stride of q, k, v, out
    causal: u32,
    scale: f32,    // 1 / sqrt(head_dim)
    pad0: u32,
    pad1: u32,
}

override WG: u32 = 64u; // threads per row, a power of two, at most 256

const MAX_SEQ: u32 = 1024u; // longest sequence (ViT-L/14 at 336 px has 577 tokens)

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;          // [seqs * seq_len, width / 4]
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;          // same
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;          // same
@group(0) @binding(4) var<storage, read> valid_lens: array<u32>;       // [seqs]
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;  // same as q

var<workgroup> scores: array<f32, MAX_SEQ>;
var<workgroup> q_row: array<vec4<f32>, 64>;   // head_dim / 4 <= 64
var<workgroup> red: array<f32, 256>;    // one slot per subgroup
var<workgroup> partial: array<vec4<f32>, 256>; // per-thread partial sums of p * v

// Subgroups of a 1-D workgroup are runs of consecutive invocations on every
// implementation, so subgroup g holds invocations g * size .. (g + 1) * size.
fn workgroup_max(tid: u32, lane: u32, size: u32, x: f32) -> f32 {
    let m = subgroupMax(x);
    if (lane == 0u) {
        red[tid / size] = m;
    }
    workgroupBarrier();
    var r = red[0];
    for (var g = 1u; g < (WG + size - 1u) / size; g++) {
        r = max(r, red[g]);
    }
    workgroupBarrier();
    return r;
}

fn workgroup_sum(tid: u32, lane: u32, size: u32, x: f32) -> f32 {
    let s = subgroupAdd(x);
    if (lane == 0u) {
        red[tid / size] = s;
    }
    workgroupBarrier();
    var r = 0.0;
    for (var g = 0u; g < (WG + size - 1u) / size; g++) {
        r += red[g];
    }
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(WG, 1, 1)
fn main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) size: u32,
) {
    let i = wid.x; // query row within the sequence
    let h = wid.y; // head
    let s = wid.z; // sequence
    if (i >= p.seq_len || h >= p.heads || s >= arrayLength(&valid_lens)) {
        return;
    }
    let hd4 = p.head_dim / 4u;
    let w4 = p.width / 4u;
    let base = s * p.seq_len; // first row of the sequence
    let col = h * hd4;        // first vec4 of the head within a row

    for (var d = tid; d < hd4; d += WG) {
        q_row[d] = q[(base + i) * w4 + col + d];
    }
    workgroupBarrier();

    var keys = min(valid_lens[s], p.seq_len);
    if (p.causal != 0u) {
        keys = min(keys, i + 1u);
    }
    keys = max(keys, 1u);

    // Scores, one key per thread at a time.
    var m = -3.4028235e38;
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
    let row_max = workgroup_max(tid, lane, size, m);
    var l = 0.0;
    for (var j = tid; j < keys; j += WG) {
        let e = exp(scores[j] - row_max);
        scores[j] = e;
        l += e;
    }
    let denom = workgroup_sum(tid, lane, size, l); // its barriers also publish every scores[j]

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
        out[(base + i) * w4 + col + tid] = total / denom;
    }
}
