// The matmul of f16-stored weights on tensor cores: wgpu's experimental cooperative
// matrices (VK_KHR_cooperative_matrix), native only, on devices whose subgroups are SG
// wide and that multiply 16 x 16 x 16 f16 tiles into f32 (what `Context` checks).
//   out[m, n] = act(sum_k a[m, k] * w[n, k] + bias[n]) + residual[m, n]
// Same uniform and bindings as matmul.wgsl's F16_WEIGHTS variant, without split-K: the
// backend launches it only for plans with large tiles (many rows, where throughput is
// bound by arithmetic, not by the weights' bandwidth).
//
// A workgroup of four subgroups computes a 64 x 64 tile of `out`; each subgroup a 32 x 32
// quarter as 2 x 2 accumulators of 16 x 16 f32. The k loop stages BK-deep slices of a
// (rounded to f16, as PyTorch's fp16 autocast does) and of w in workgroup memory, row by
// row with k contiguous, so that a is read row-major and w (the product's right operand
// w^T, k x n) column-major. The accumulators go through a 16 x 16 staging tile per
// subgroup for the epilogue and the bounds checks of partial tiles.

enable f16;
enable wgpu_cooperative_matrix;

//#include "matmul_common.wgsl"

override SG: u32; // threads per subgroup; four subgroups per workgroup

@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;  // [m, k / 4]
@group(0) @binding(2) var<storage, read> w: array<vec2<u32>>;  // [n, k / 4] x 4 f16

const TILE: u32 = 64u;
const BK: u32 = 32u;
const FRAG: u32 = 16u;

var<workgroup> tile_a: array<f16, TILE * BK>;        // [row][kk]
var<workgroup> tile_w: array<f16, TILE * BK>;        // [col][kk]
var<workgroup> staged: array<f32, 4u * FRAG * FRAG>; // [subgroup][16][16]

// The accumulator at rows r0.., columns c0.. of the workgroup's tile, through the
// subgroup's staging tile, to `out` with the epilogue. Every subgroup calls it as often
// as the others (the barriers are the workgroup's).
fn write_frag(acc: coop_mat16x16<f32, C>, sg: u32, lane: u32, row0: u32, col0: u32) {
    let base = sg * FRAG * FRAG;
    coopStoreT(acc, &staged[base], FRAG);
    workgroupBarrier();
    for (var e = lane; e < FRAG * FRAG; e += SG) {
        let row = row0 + e / FRAG;
        let col = col0 + e % FRAG;
        if (row < p.m && col < p.n) {
            out[row * p.n + col] = epilogue(staged[base + e], row, col);
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(4u * SG, 1, 1)
fn main(
    @builtin(local_invocation_index) tid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row0 = wid.y * TILE;
    let col0 = wid.x * TILE;
    let k4s = p.k / 4u;
    // This subgroup's quarter of the tile.
    let qr = (sg / 2u) * 2u * FRAG;
    let qc = (sg % 2u) * 2u * FRAG;

    var acc00 = coop_mat16x16<f32, C>();
    var acc01 = coop_mat16x16<f32, C>();
    var acc10 = coop_mat16x16<f32, C>();
    var acc11 = coop_mat16x16<f32, C>();

    for (var kt = 0u; kt < p.k; kt += BK) {
        // Stage a[row0 .., kt ..] and w[col0 .., kt ..]: TILE rows of BK / 4 quads each.
        for (var i = tid; i < TILE * (BK / 4u); i += 4u * SG) {
            let r = i / (BK / 4u);
            let c4 = i % (BK / 4u);
            let k4 = kt / 4u + c4;
            var av = vec4<f32>(0.0);
            if (row0 + r < p.m && k4 < k4s) {
                av = a[(row0 + r) * k4s + k4];
            }
            var wv = vec2<u32>(0u);
            if (col0 + r < p.n && k4 < k4s) {
                wv = w[(col0 + r) * k4s + k4];
            }
            let at = r * BK + 4u * c4;
            let ah = vec4<f16>(av);
            tile_a[at] = ah.x;
            tile_a[at + 1u] = ah.y;
            tile_a[at + 2u] = ah.z;
            tile_a[at + 3u] = ah.w;
            // Exact: the halves were f16 to begin with.
            let w01 = vec2<f16>(unpack2x16float(wv.x));
            let w23 = vec2<f16>(unpack2x16float(wv.y));
            tile_w[at] = w01.x;
            tile_w[at + 1u] = w01.y;
            tile_w[at + 2u] = w23.x;
            tile_w[at + 3u] = w23.y;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk += FRAG) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&tile_a[qr * BK + kk], BK);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&tile_a[(qr + FRAG) * BK + kk], BK);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&tile_w[qc * BK + kk], BK);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&tile_w[(qc + FRAG) * BK + kk], BK);
            acc00 = coopMultiplyAdd(a0, b0, acc00);
            acc01 = coopMultiplyAdd(a0, b1, acc01);
            acc10 = coopMultiplyAdd(a1, b0, acc10);
            acc11 = coopMultiplyAdd(a1, b1, acc11);
        }
        workgroupBarrier();
    }

    write_frag(acc00, sg, lane, row0 + qr, col0 + qc);
    write_frag(acc01, sg, lane, row0 + qr, col0 + qc + FRAG);
    write_frag(acc10, sg, lane, row0 + qr + FRAG, col0 + qc);
    write_frag(acc11, sg, lane, row0 + qr + FRAG, col0 + qc + FRAG);
}
