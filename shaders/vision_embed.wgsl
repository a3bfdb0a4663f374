// CLIPVisionEmbeddings / SiglipVisionEmbeddings after the patch conv: for image b with a
// class token (CLIP), token 0 is the class embedding and token 1 + p is patch p; without
// one (SigLIP), token p is patch p; each plus its position embedding. One thread per
// output element.

struct Params { // VisionEmbedParams in src/gpu/pipelines.rs
    batch: u32,
    patches: u32,  // patches per image
    dim: u32,
    groups_x: u32, // workgroups along x of the launch grid
    class_token: u32, // 1: a class token leads each image; 0: none (class_embedding unused)
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> patch_embeds: array<f32>;  // [batch * patches, dim]
@group(0) @binding(2) var<storage, read> class_embedding: array<f32>; // [dim]
@group(0) @binding(3) var<storage, read> position: array<f32>;      // [tokens, dim]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;     // [batch * tokens, dim]

//#include "elementwise.wgsl"

fn elements() -> u32 {
    return p.batch * (p.patches + p.class_token) * p.dim;
}

fn element(idx: u32) {
    let tokens = p.patches + p.class_token;
    let row = idx / p.dim;
    let c = idx % p.dim;
    let b = row / tokens;
    let t = row % tokens;
    var x: f32;
    if (t < p.class_token) {
        x = class_embedding[c];
    } else {
        x = patch_embeds[(b * p.patches + t - p.class_token) * p.dim + c];
    }
    out[idx] = x + position[t * p.dim + c];
}
