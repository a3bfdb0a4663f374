// CLIPVisionEmbeddings after the patch conv: for image b, token 0 is the class embedding
// and token 1 + p is patch p, each plus its position embedding. One thread per output
// element.

struct Params {
    batch: u32,
    patches: u32,  // patches per image (tokens - 1)
    dim: u32,
    groups_x: u32, // workgroups along x of the launch grid
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> patch_embeds: array<f32>;  // [batch * patches, dim]
@group(0) @binding(2) var<storage, read> class_embedding: array<f32>; // [dim]
@group(0) @binding(3) var<storage, read> position: array<f32>;      // [patches + 1, dim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;     // [batch * (patches + 1), dim]

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.y * (p.groups_x * WG) + gid.x;
    let tokens = p.patches + 1u;
    if (idx >= p.batch * tokens * p.dim) {
        return;
    }
    let row = idx / p.dim;
    let c = idx % p.dim;
    let b = row / tokens;
    let t = row % tokens;
    var x: f32;
    if (t == 0u) {
        x = class_embedding[c];
    } else {
        x = patch_embeds[(b * p.patches + t - 1u) * p.dim + c];
    }
    out[idx] = x + position[t * p.dim + c];
}
