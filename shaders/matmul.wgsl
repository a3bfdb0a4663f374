// Tiled matrix product with a fused epilogue, for every linear layer of CLIP:
//   out[m, n] = act(sum_k a[m, k] * w[n, k] + bias[n]) + residual[m, n]
// `w` is the PyTorch `[out, in]` weight, so both operands are read along k (x W^T).
//
// Each workgroup computes a (4 * WG_Y) x (4 * WG_X) tile of `out`; each thread a 4 x 4
// block held in four named vec4 registers (acc0..acc3, one per row): naga turns local
// arrays into memory, which runs an order of magnitude slower. The k loop stages
// BK-deep slices of both operands in workgroup memory, transposed so that one vec4 read
// gives a thread its 4 rows (or 4 columns) at one depth.
// The backend picks WG_X / WG_Y per matrix shape: 16 x 16 (64 x 64 tiles) for large
// products, 8 x 8 (32 x 32 tiles) when the rows are few (50 rows for ViT-B/32 batch 1)
// so that the launch still spreads over every compute unit. When even that leaves too
// few workgroups, the k range is split over `splits` workgroups along z (split-K): each
// writes its raw partial tile to out[z] and the `reduce` entry point sums the partials
// and applies the epilogue.
//
// With F16_WEIGHTS the weight is stored as f16 (half the memory and the bandwidth, which
// bound the small-batch products): four halves per vec2<u32>, widened with
// unpack2x16float (core WGSL, so no shader-f16 feature is needed); all arithmetic stays
// f32. Split-K partials are f32 either way, reduced by the f32 variant's `reduce`.
//
// With I8_WEIGHTS the weight is int8 (`model::quantize`): four values per u32, sign-
// extended with shifts (core WGSL; `unpack4xI8` needs a language extension), times the
// scale of their group of `p.group` input features (a multiple of 4, so the four share
// one). A quarter of the f32 bandwidth; the arithmetic stays f32.

//#include "matmul_common.wgsl"

override WG_X: u32;      // threads along n (tile width 4 * WG_X)
override WG_Y: u32;      // threads along m (tile height 4 * WG_Y)
override BK: u32;        // depth of one staged slice, a multiple of 4
override REDUCE_WG: u32; // threads per workgroup of `reduce`

@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;       // [m, k / 4]; reduce: partials
//#if I8_WEIGHTS
@group(0) @binding(2) var<storage, read> w: array<u32>;             // [n, k / 4] x 4 i8
@group(0) @binding(6) var<storage, read> w_scale: array<f32>;       // [n, ceil(k / group)]
//#else
//#if F16_WEIGHTS
@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>;       // [n, k / 4] x 4 f16
//#else
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;       // [n, k / 4]
//#endif
//#endif

// The staged slices of a, then of w, each [BK][tile / 4]: element (kk, i) of a slice
// holds rows (or columns) 4i..4i+3 at depth kk.
var<workgroup> tiles: array<vec4<f32>, BK * (WG_Y + WG_X)>;

// a[row, 4 k4 .. 4 k4 + 3] and w[col, 4 k4 .. 4 k4 + 3], zero outside the matrices.
fn load_a(row: u32, k4: u32) -> vec4<f32> {
    if (row >= p.m || k4 >= p.k / 4u) {
        return vec4<f32>(0.0);
    }
    return a[row * (p.k / 4u) + k4];
}

fn load_w(col: u32, k4: u32) -> vec4<f32> {
    if (col >= p.n || k4 >= p.k / 4u) {
        return vec4<f32>(0.0);
    }
    let i = col * (p.k / 4u) + k4;
//#if I8_WEIGHTS
    let word = w[i];
    let q = vec4<i32>(bitcast<i32>(word << 24u), bitcast<i32>(word << 16u),
                      bitcast<i32>(word << 8u), bitcast<i32>(word)) >> vec4<u32>(24u);
    let groups = (p.k + p.group - 1u) / p.group;
    return vec4<f32>(q) * w_scale[col * groups + (4u * k4) / p.group];
//#else
//#if F16_WEIGHTS
    let h = w[i];
    return vec4<f32>(unpack2x16float(h.x), unpack2x16float(h.y));
//#else
    return w[i];
//#endif
//#endif
}

// Transposes `v`, row r of a tile at depths 4 c4 .. 4 c4 + 3, into the slice at `first`
// whose rows come in `quads` vec4s per depth.
fn stage(first: u32, quads: u32, r: u32, c4: u32, v: vec4<f32>) {
    let base = first + c4 * 4u * quads + r / 4u;
    let comp = r % 4u;
    tiles[base][comp] = v.x;
    tiles[base + quads][comp] = v.y;
    tiles[base + 2u * quads][comp] = v.z;
    tiles[base + 3u * quads][comp] = v.w;
}

fn store_row(z: u32, row: u32, col0: u32, v: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let col = col0 + j;
        if (col < p.n) {
            if (p.splits > 1u) {
                out[(z * p.m + row) * p.n + col] = v[j];
            } else {
                out[row * p.n + col] = epilogue(v[j], row, col);
            }
        }
    }
}

@compute @workgroup_size(WG_X, WG_Y, 1)
fn main(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
) {
    let bm = 4u * WG_Y;
    let bn = 4u * WG_X;
    let row0 = wid.y * bm;
    let col0 = wid.x * bn;
    let tid = lid.y * WG_X + lid.x;
    let threads = WG_X * WG_Y;
    // This workgroup's share of k. Chunks are BK multiples, so only the last one ends
    // inside a tile, at k itself, which the loads below check.
    let k_begin = wid.z * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    let w_first = BK * WG_Y; // the w slice follows the a slice in `tiles`
    for (var kt = k_begin; kt < k_end; kt += BK) {
        // Stage a[row0 .. row0 + bm, kt .. kt + BK] and w[col0 .. col0 + bn, kt .. kt + BK].
        for (var i = tid; i < bm * (BK / 4u); i += threads) {
            let r = i / (BK / 4u);
            let c4 = i % (BK / 4u);
            stage(0u, bm / 4u, r, c4, load_a(row0 + r, kt / 4u + c4));
        }
        for (var i = tid; i < bn * (BK / 4u); i += threads) {
            let r = i / (BK / 4u);
            let c4 = i % (BK / 4u);
            stage(w_first, bn / 4u, r, c4, load_w(col0 + r, kt / 4u + c4));
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let av = tiles[kk * (bm / 4u) + lid.y];           // rows 4 lid.y .. + 3
            let wv = tiles[w_first + kk * (bn / 4u) + lid.x]; // columns 4 lid.x .. + 3
            acc0 += av.x * wv;
            acc1 += av.y * wv;
            acc2 += av.z * wv;
            acc3 += av.w * wv;
        }
        workgroupBarrier();
    }

    let r = row0 + 4u * lid.y;
    let c = col0 + 4u * lid.x;
    store_row(wid.z, r, c, acc0);
    store_row(wid.z, r + 1u, c, acc1);
    store_row(wid.z, r + 2u, c, acc2);
    store_row(wid.z, r + 3u, c, acc3);
}

// Split-K second pass: out[i] = epilogue(sum over z of partial[z, i]), one thread per
// output; `a` holds the partials [splits, m, n].
@compute @workgroup_size(REDUCE_WG, 1, 1)
fn reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.y * (p.groups_x * REDUCE_WG) + gid.x;
    let mn = p.m * p.n;
    if (idx >= mn) {
        return;
    }
    var acc = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        let i = z * mn + idx;
        acc += a[i / 4u][i % 4u];
    }
    out[idx] = epilogue(acc, idx / p.n, idx % p.n);
}
