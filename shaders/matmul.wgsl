// Tiled matrix product with a fused epilogue, for every linear layer of CLIP:
//   out[m, n] = act(sum_k a[m, k] * w[n, k] + bias[n]) + residual[m, n]
// `w` is the PyTorch `[out, in]` weight, so both operands are read along k (x W^T).
//
// Each workgroup computes a (4 * WG_Y) x (4 * WG_X) tile of `out`; each thread a 4 x 4
// block held in four named vec4 registers (acc0..acc3, one per row): naga turns local
// arrays into memory, which runs an order of magnitude slower. The k loop stages
// BK-deep slices of both operands in workgroup memory, transposed so that one vec4 read
// gives a thread its 4 rows (or 4 columns) at one depth.
// The engine picks WG_X / WG_Y per matrix shape: 16 x 16 (64 x 64 tiles) for large
// products, 8 x 8 (32 x 32 tiles) when the rows are few (50 rows for ViT-B/32 batch 1)
// so that the launch still spreads over every compute unit. When even that leaves too
// few workgroups, the k range is split over `splits` workgroups along z (split-K): each
// writes its raw partial tile to out[z] and the `reduce` entry point sums the partials
// and applies the epilogue.

struct Params {
    m: u32,            // rows of a and out
    n: u32,            // rows of w = columns of out
    k: u32,            // inner dimension, a multiple of 4
    act: u32,          // 0 none, 1 quick_gelu, 2 gelu (erf), 3 gelu (tanh)
    has_bias: u32,
    has_residual: u32,
    k_chunk: u32,      // k range per split, a multiple of BK (>= k when not split)
    splits: u32,       // 1, or the number of partial products to reduce
    groups_x: u32,     // reduce: workgroups along x of the launch grid
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

override WG_X: u32 = 16u; // threads along n (tile width 4 * WG_X), at most 16
override WG_Y: u32 = 16u; // threads along m (tile height 4 * WG_Y), at most 16
override REDUCE_WG: u32 = 256u; // threads per workgroup of `reduce`

const BK: u32 = 16u;       // depth of one staged slice
const MAX_TILE: u32 = 64u; // 4 * the largest WG_X / WG_Y

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;       // [m, k / 4]; reduce: partials
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;       // [n, k / 4]
@group(0) @binding(3) var<storage, read> bias: array<f32>;          // [n] (unused if !has_bias)
@group(0) @binding(4) var<storage, read> residual: array<f32>;      // [m, n] (unused if !has_residual)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;     // [m, n], or [splits, m, n]

// [BK][tile / 4]: element (kk, i) holds rows (or columns) 4i..4i+3 at depth kk.
var<workgroup> a_tile: array<vec4<f32>, 256>; // BK * MAX_TILE / 4
var<workgroup> w_tile: array<vec4<f32>, 256>;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

// erf(x) with |error| < 1.2e-7: Numerical Recipes' erfc (Chebyshev fit), the same
// formula as the CPU engine. WGSL has no erf.
fn erf(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(poly);
    return select(r - 1.0, 1.0 - r, x >= 0.0);
}

fn activate(x: f32) -> f32 {
    switch p.act {
        case 1u: { return x / (1.0 + exp(-1.702 * x)); }
        case 2u: { return 0.5 * x * (1.0 + erf(x * 0.7071067811865476)); }
        case 3u: {
            // tanh saturates long before |u| = 15; clamping keeps exp-based tanh finite.
            let u = clamp(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x), -15.0, 15.0);
            return 0.5 * x * (1.0 + tanh(u));
        }
        default: { return x; }
    }
}

fn epilogue(acc: f32, row: u32, col: u32) -> f32 {
    var x = acc;
    if (p.has_bias != 0u) {
        x += bias[col];
    }
    x = activate(x);
    if (p.has_residual != 0u) {
        x += residual[row * p.n + col];
    }
    return x;
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
    let k4 = p.k / 4u;
    // This workgroup's share of k. Chunks are BK multiples, so only the last one ends
    // inside a tile, at k itself, which the loads below check.
    let k_begin = wid.z * p.k_chunk;
    let k_end = min(p.k, k_begin + p.k_chunk);

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var kt = k_begin; kt < k_end; kt += BK) {
        // Stage a[row0 .. row0 + bm, kt .. kt + BK], zero outside the matrix.
        for (var i = tid; i < bm * (BK / 4u); i += threads) {
            let r = i / (BK / 4u);
            let c4 = i % (BK / 4u);
            let gr = row0 + r;
            let gk = kt / 4u + c4;
            var v = vec4<f32>(0.0);
            if (gr < p.m && gk < k4) {
                v = a[gr * k4 + gk];
            }
            let base = c4 * 4u * (bm / 4u) + r / 4u;
            let comp = r % 4u;
            a_tile[base][comp] = v.x;
            a_tile[base + bm / 4u][comp] = v.y;
            a_tile[base + 2u * (bm / 4u)][comp] = v.z;
            a_tile[base + 3u * (bm / 4u)][comp] = v.w;
        }
        // Stage w[col0 .. col0 + bn, kt .. kt + BK] the same way.
        for (var i = tid; i < bn * (BK / 4u); i += threads) {
            let r = i / (BK / 4u);
            let c4 = i % (BK / 4u);
            let gr = col0 + r;
            let gk = kt / 4u + c4;
            var v = vec4<f32>(0.0);
            if (gr < p.n && gk < k4) {
                v = w[gr * k4 + gk];
            }
            let base = c4 * 4u * (bn / 4u) + r / 4u;
            let comp = r % 4u;
            w_tile[base][comp] = v.x;
            w_tile[base + bn / 4u][comp] = v.y;
            w_tile[base + 2u * (bn / 4u)][comp] = v.z;
            w_tile[base + 3u * (bn / 4u)][comp] = v.w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let av = a_tile[kk * (bm / 4u) + lid.y]; // rows 4 lid.y .. + 3
            let wv = w_tile[kk * (bn / 4u) + lid.x]; // columns 4 lid.x .. + 3
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
