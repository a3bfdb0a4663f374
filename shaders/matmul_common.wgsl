// What every matmul kernel shares (`matmul.wgsl`, and `matmul_coop.wgsl` natively): the
// uniform, the epilogue's bindings and the epilogue itself:
//   out[m, n] = act(acc + bias[n]) + residual[m, n]

struct Params { // MatmulParams in src/gpu/pipelines.rs
    m: u32,            // rows of a and out
    n: u32,            // rows of w = columns of out
    k: u32,            // inner dimension, a multiple of 4
    act: u32,          // 0 none, 1 quick_gelu, 2 gelu (erf), 3 gelu (tanh)
    has_bias: u32,
    has_residual: u32,
    k_chunk: u32,      // k range per split, a multiple of BK (>= k when not split)
    splits: u32,       // 1, or the number of partial products to reduce
    groups_x: u32,     // reduce: workgroups along x of the launch grid
    group: u32,        // I8_WEIGHTS: input features per scale
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;          // [n] (unused if !has_bias)
@group(0) @binding(4) var<storage, read> residual: array<f32>;      // [m, n] (unused if !has_residual)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;     // [m, n], or [splits, m, n]

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

// erf(x) with |error| < 1.2e-7: Numerical Recipes' erfc (Chebyshev fit), the same
// formula as the CPU backend. WGSL has no erf.
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
