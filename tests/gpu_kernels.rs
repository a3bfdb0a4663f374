//! Every GPU kernel against the CPU backend, through the `Backend` trait, on shapes that
//! are not multiples of the tile sizes. Natively this runs on whatever adapter wgpu
//! finds (Mesa lavapipe in CI). Without one the tests print a note and pass, unless
//! `WEBCLIP_REQUIRE_GPU=1`, where they fail.

use webclip::cpu::{self, CpuBackend};
use webclip::gpu::{GpuBackend, GpuOptions};
use webclip::graph::{AttentionShape, Backend, Checked};
use webclip::model::quantize::Q8;
use webclip::model::random::Rng;
use webclip::model::{Activation, HostTensor, LayerNorm, Linear, WeightRole};
use webclip::ClipError;

/// A GPU backend, or `None` (with a note) when there is no adapter and none is required.
fn gpu_with(opts: &GpuOptions) -> Option<GpuBackend> {
    match pollster::block_on(GpuBackend::new(opts)) {
        Ok(g) => Some(g),
        Err(e) if std::env::var("WEBCLIP_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("WEBCLIP_REQUIRE_GPU=1 but no GPU backend: {e}")
        }
        Err(e) => {
            eprintln!("note: skipping GPU kernel test, no GPU backend: {e}");
            None
        }
    }
}

fn gpu() -> Option<GpuBackend> {
    gpu_with(&GpuOptions::default())
}

/// Weight construction for both backends from the same host data.
trait TestBackend: Backend {
    fn weight(&self, role: WeightRole, shape: &[usize], data: &[f32]) -> Self::Weight;
    /// The int8 matrix or table `q`, as an int8 checkpoint hands it over.
    fn weight_i8(&self, role: WeightRole, q: &Q8) -> Self::Weight {
        self.make(role, host_i8(q))
    }
    fn make(&self, role: WeightRole, t: HostTensor) -> Self::Weight;
}

fn host_i8(q: &Q8) -> HostTensor {
    HostTensor {
        name: "test".into(),
        shape: vec![q.rows, q.cols],
        data: Vec::new(),
        quant: Some(q.clone()),
    }
}

fn host(shape: &[usize], data: &[f32]) -> HostTensor {
    HostTensor {
        name: "test".into(),
        shape: shape.to_vec(),
        data: data.to_vec(),
        quant: None,
    }
}

impl TestBackend for CpuBackend {
    fn weight(&self, role: WeightRole, shape: &[usize], data: &[f32]) -> Self::Weight {
        cpu::make_weight(role, host(shape, data)).unwrap()
    }
    /// The GPU multiplies int8 matrices with f32 activations, where the CPU's integer matmul
    /// quantises its activations (`cpu::qdot`): the reference for a matrix is the CPU's f32
    /// product on its dequantised values. Tables stay int8 (rows dequantised exactly).
    fn weight_i8(&self, role: WeightRole, q: &Q8) -> Self::Weight {
        match role {
            WeightRole::Matrix => self.weight(role, &[q.rows, q.cols], &q.dequantize()),
            _ => self.make(role, host_i8(q)),
        }
    }
    fn make(&self, role: WeightRole, t: HostTensor) -> Self::Weight {
        cpu::make_weight(role, t).unwrap()
    }
}

impl TestBackend for GpuBackend {
    fn weight(&self, role: WeightRole, shape: &[usize], data: &[f32]) -> Self::Weight {
        self.make_weight(role, host(shape, data)).unwrap()
    }
    fn make(&self, role: WeightRole, t: HostTensor) -> Self::Weight {
        self.make_weight(role, t).unwrap()
    }
}

fn read<B: Backend>(b: &mut B, a: &B::Act) -> Vec<f32> {
    pollster::block_on(b.read(a)).unwrap()
}

/// Run `$body` (an expression over the backend `$b`, giving an activation) on the CPU
/// and on the GPU, and compare: max abs error within `$tol` times the output's scale.
macro_rules! compare {
    ($gpu:expr, $tol:expr, $what:expr, |$b:ident| $body:expr) => {{
        let want = {
            let $b = &mut CpuBackend::default();
            let a = $body;
            read($b, &a)
        };
        let got = {
            // Guard values: idle buffers hold NaN (new ones hold zeros), so a write past
            // the output shows in its buffer's slack.
            $gpu.fill_free_buffers(f32::NAN).unwrap();
            let $b = &mut *$gpu;
            let a = $body;
            let whole = pollster::block_on($b.read_whole_buffer(&a)).unwrap();
            let n = read($b, &a).len();
            if let Some(i) = whole[n..].iter().position(|v| !(v.is_nan() || *v == 0.0)) {
                panic!("{}: write past the output at element {}", $what, n + i);
            }
            whole[..n].to_vec()
        };
        assert_eq!(got.len(), want.len(), "{}: length", $what);
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .map(|(g, w)| {
                if g.is_nan() {
                    f32::INFINITY
                } else {
                    (g - w).abs()
                }
            })
            .fold(0f32, f32::max);
        assert!(
            err <= $tol * scale,
            "{}: max abs error {err} (scale {scale})",
            $what
        );
    }};
}

fn linear<E: TestBackend>(
    b: &E,
    w: &[f32],
    bias: Option<&[f32]>,
    k: usize,
    n: usize,
) -> Linear<E::Weight> {
    Linear {
        weight: b.weight(WeightRole::Matrix, &[n, k], w),
        bias: bias.map(|v| b.weight(WeightRole::Vector, &[n], v)),
        in_features: k,
        out_features: n,
    }
}

#[test]
fn matmul_with_every_epilogue_matches_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = Rng::new(7);
    let acts = [
        None,
        Some(Activation::QuickGelu),
        Some(Activation::Gelu),
        Some(Activation::GeluTanh),
    ];
    // (M, K, N): rows of ViT-B/32 batch 1 (50), text (7, 77), ViT-B/16 (197), one row;
    // widths that are not tile multiples. Few-row products with a deep k are split
    // (split-K: 50x768x112 in 6 chunks, 7x1000x36 in 7 with the last ending mid-slice);
    // the last one takes the large-tile path.
    let shapes = [
        (1, 64, 80),
        (7, 80, 64),
        (50, 768, 112),
        (77, 112, 768),
        (197, 80, 112),
        (50, 64, 768),
        (7, 768, 80),
        (7, 1000, 36),
        (197, 64, 2304),
    ];
    let mut case = 0;
    for &(m, k, n) in &shapes {
        for act in acts {
            for (use_bias, use_res) in [(true, false), (false, true), (true, true)] {
                case += 1;
                // Every combination on the small shapes; a rotating subset on the rest.
                if m * n > 4000 && case % 3 != 0 {
                    continue;
                }
                let x = rng.fill_uniform(m * k, 2.0);
                let w = rng.fill_uniform(n * k, (3.0 / k as f32).sqrt());
                let bias = rng.fill_uniform(n, 0.5);
                let res = rng.fill_uniform(m * n, 1.0);
                let what = format!("matmul {m}x{k}x{n} {act:?} bias={use_bias} res={use_res}");
                compare!(&mut g, 1e-5, what, |b| {
                    let l = linear(b, &w, use_bias.then_some(&bias[..]), k, n);
                    let xa = b.input(&x, m, k).unwrap();
                    let r = use_res.then(|| b.input(&res, m, n).unwrap());
                    b.linear(&xa, &l, act, r.as_ref()).unwrap()
                });
            }
        }
    }
}

#[test]
fn matmul_with_f16_weights_matches_cpu_on_the_rounded_weights() {
    let Some(mut g) = gpu_with(&GpuOptions {
        weights: webclip::gpu::WeightPrecision::F16,
        ..Default::default()
    }) else {
        return;
    };
    let mut rng = Rng::new(23);
    for &(m, k, n) in &[(1, 64, 80), (50, 768, 112), (77, 112, 768), (197, 64, 2304)] {
        let x = rng.fill_uniform(m * k, 2.0);
        // The CPU gets the weights the GPU stores: f16-rounded.
        let w: Vec<f32> = rng
            .fill_uniform(n * k, (3.0 / k as f32).sqrt())
            .into_iter()
            .map(|v| half::f16::from_f32(v).to_f32())
            .collect();
        let bias = rng.fill_uniform(n, 0.5);
        let res = rng.fill_uniform(m * n, 1.0);
        let what = format!("f16 matmul {m}x{k}x{n}");
        compare!(&mut g, 1e-5, what, |b| {
            let l = linear(b, &w, Some(&bias[..]), k, n);
            let xa = b.input(&x, m, k).unwrap();
            let r = b.input(&res, m, n).unwrap();
            b.linear(&xa, &l, Some(Activation::Gelu), Some(&r)).unwrap()
        });
    }
    let l = linear(&g, &[0.5; 64], None, 16, 4);
    assert!(l.weight.f16, "matrices are stored as f16");
    assert!(
        !g.make_weight(WeightRole::Vector, host(&[4], &[0.0; 4]))
            .unwrap()
            .f16
    );
}

/// The f16 matmul on tensor cores (cooperative matrices), where the adapter has them: on
/// large-tile products only (many rows), with partial tiles at every edge and a k that
/// ends mid-slice. It rounds the activations to f16 as well, so the CPU gets both
/// operands rounded; the products are then exact and only the order of the f32 sums
/// differs. Elsewhere it is skipped with the reason, unless `WEBCLIP_REQUIRE_TENSOR_CORES=1`
/// (the GPU benchmark sets it on a machine that should have them).
#[test]
fn matmul_on_tensor_cores_matches_cpu_on_f16_operands() {
    let Some(mut g) = gpu_with(&GpuOptions {
        weights: webclip::gpu::WeightPrecision::F16,
        ..Default::default()
    }) else {
        return;
    };
    if let Err(why) = g.tensor_cores() {
        if std::env::var("WEBCLIP_REQUIRE_TENSOR_CORES").as_deref() == Ok("1") {
            panic!("WEBCLIP_REQUIRE_TENSOR_CORES=1 but no tensor cores: {why}");
        }
        eprintln!("note: skipping the tensor-core matmul test: {why}");
        return;
    }
    let round = |v: Vec<f32>| -> Vec<f32> {
        v.into_iter()
            .map(|v| half::f16::from_f32(v).to_f32())
            .collect()
    };
    let mut rng = Rng::new(29);
    // ViT-B/32 at batch 32 (1600 rows: the attention and MLP widths), then edges
    // everywhere: 1030 rows, k = 100 (three 32-deep slices and a partial one), 1000 columns.
    for &(m, k, n) in &[(1600, 768, 768), (1600, 768, 3072), (1030, 100, 1000)] {
        let x = round(rng.fill_uniform(m * k, 2.0));
        let w = round(rng.fill_uniform(n * k, (3.0 / k as f32).sqrt()));
        let bias = rng.fill_uniform(n, 0.5);
        let res = rng.fill_uniform(m * n, 1.0);
        let what = format!("tensor-core matmul {m}x{k}x{n}");
        compare!(&mut g, 1e-5, what, |b| {
            let l = linear(b, &w, Some(&bias[..]), k, n);
            let xa = b.input(&x, m, k).unwrap();
            let r = b.input(&res, m, n).unwrap();
            b.linear(&xa, &l, Some(Activation::QuickGelu), Some(&r))
                .unwrap()
        });
    }
}

fn layer_norm_cases(g: &mut GpuBackend, label: &str) {
    let mut rng = Rng::new(11);
    for &(rows, dim) in &[(1, 64), (7, 80), (50, 768), (3, 1000), (197, 112)] {
        // A large common offset: a one-pass E[x^2] - E[x]^2 would lose it.
        let x: Vec<f32> = rng
            .fill_uniform(rows * dim, 1.0)
            .into_iter()
            .map(|v| v + 50.0)
            .collect();
        let w: Vec<f32> = rng.fill_uniform(dim, 0.2).iter().map(|v| 1.0 + v).collect();
        let bias = rng.fill_uniform(dim, 0.1);
        compare!(g, 1e-4, format!("{label} layer_norm {rows}x{dim}"), |b| {
            let ln = LayerNorm {
                weight: b.weight(WeightRole::Vector, &[dim], &w),
                bias: b.weight(WeightRole::Vector, &[dim], &bias),
                eps: 1e-5,
                dim,
            };
            let xa = b.input(&x, rows, dim).unwrap();
            b.layer_norm(&xa, &ln).unwrap()
        });
    }
}

/// Run `cases` on `g`, and when `g` uses subgroups, on a backend without them too, so
/// that both variants of the reduction kernels are checked.
fn each_reduction_variant(g: &mut GpuBackend, cases: fn(&mut GpuBackend, &str)) {
    if g.uses_subgroups() {
        cases(g, "subgroup");
        let mut plain = gpu_with(&GpuOptions {
            disable_subgroups: true,
            ..Default::default()
        })
        .unwrap();
        assert!(!plain.uses_subgroups());
        cases(&mut plain, "shared-memory");
    } else {
        eprintln!("note: this adapter has no subgroups; only the shared-memory variants ran");
        cases(g, "shared-memory");
    }
}

#[test]
fn layer_norm_matches_cpu_with_and_without_subgroups() {
    let Some(mut g) = gpu() else { return };
    each_reduction_variant(&mut g, layer_norm_cases);
}

fn attention_cases(g: &mut GpuBackend, label: &str) {
    let mut rng = Rng::new(13);
    // (queries, keys, heads, head_dim, causal, valid lengths): self-attention has as many
    // queries as keys; SigLIP's pooling head one query over every token.
    type Case<'a> = (usize, usize, usize, usize, bool, &'a [usize]);
    let cases: &[Case] = &[
        (1, 1, 1, 16, false, &[1]),
        (7, 7, 4, 16, true, &[7, 3]),
        (50, 50, 12, 64, false, &[50]),
        (77, 77, 8, 64, true, &[77, 5, 1]),
        (197, 197, 4, 64, false, &[197, 197]),
        (23, 23, 6, 80, true, &[20, 23]),
        (13, 13, 2, 256, false, &[13]),
        (64, 64, 4, 16, false, &[64, 64]), // SigLIP text: both ways over the padding
        (1, 196, 4, 16, false, &[196, 196]),
        (1, 729, 16, 72, false, &[729]), // So400m/14 at 384 px: its pooling head
        (729, 729, 1, 16, false, &[729]), // and its encoder's self-attention
        (3, 9, 2, 8, false, &[9, 4]),
    ];
    for &(queries, keys, heads, hd, causal, lens) in cases {
        let (rows, kv_rows) = (lens.len() * queries, lens.len() * keys);
        let width = heads * hd;
        let q = rng.fill_uniform(rows * width, 1.0);
        let k = rng.fill_uniform(kv_rows * width, 1.0);
        let v = rng.fill_uniform(kv_rows * width, 1.0);
        let what = format!(
            "{label} attention {queries} queries over {keys} keys, heads {heads}x{hd} \
             causal={causal} lens {lens:?}"
        );
        let shape = AttentionShape {
            queries,
            keys,
            heads,
            causal,
        };
        compare!(g, 1e-5, what, |b| {
            let (qa, ka, va) = (
                b.input(&q, rows, width).unwrap(),
                b.input(&k, kv_rows, width).unwrap(),
                b.input(&v, kv_rows, width).unwrap(),
            );
            b.attention(&qa, &ka, &va, shape, lens).unwrap()
        });
    }
}

#[test]
fn attention_matches_cpu_with_causal_and_padding_masks() {
    let Some(mut g) = gpu() else { return };
    each_reduction_variant(&mut g, attention_cases);
}

#[test]
fn int8_matmul_and_token_table_match_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = Rng::new(29);
    // Split-K (50x768x112), the large tile (197x64x2304), a group that is the whole row.
    for &(m, k, n, group) in &[
        (1, 64, 80, 32),
        (7, 80, 64, 0),
        (50, 768, 112, 64),
        (77, 112, 768, 64),
        (197, 64, 2304, 4),
    ] {
        let x = rng.fill_uniform(m * k, 2.0);
        let w = rng.fill_uniform(n * k, (3.0 / k as f32).sqrt());
        let q = Q8::quantize(&w, n, k, group).unwrap();
        let bias = rng.fill_uniform(n, 0.5);
        let res = rng.fill_uniform(m * n, 1.0);
        compare!(
            &mut g,
            1e-5,
            format!("int8 matmul {m}x{k}x{n} group {group}"),
            |b| {
                let l = Linear {
                    weight: b.weight_i8(WeightRole::Matrix, &q),
                    bias: Some(b.weight(WeightRole::Vector, &[n], &bias)),
                    in_features: k,
                    out_features: n,
                };
                let xa = b.input(&x, m, k).unwrap();
                let r = b.input(&res, m, n).unwrap();
                b.linear(&xa, &l, Some(Activation::QuickGelu), Some(&r))
                    .unwrap()
            }
        );
    }
    // The GPU holds a quarter of the f32 bytes, plus the scales.
    let q = Q8::quantize(&rng.fill_uniform(768 * 768, 0.1), 768, 768, 64).unwrap();
    let held = g.weight_i8(WeightRole::Matrix, &q).bytes();
    assert!(
        held <= (768 * 768 + 4 * 768 * 12 + 32) as u64,
        "{held} bytes"
    );
    let (vocab, ctx, d) = (1000, 77, 80);
    let tok = Q8::quantize(&rng.fill_uniform(vocab * d, 1.0), vocab, d, 16).unwrap();
    let pos = rng.fill_uniform(ctx * d, 1.0);
    let ids: Vec<u32> = (0..3 * 7)
        .map(|_| (rng.next_u64() % vocab as u64) as u32)
        .collect();
    compare!(&mut g, 1e-6, "int8 text_embed", |b| {
        let t = b.weight_i8(WeightRole::Table, &tok);
        let p = b.weight(WeightRole::Table, &[ctx, d], &pos);
        b.text_embed(&ids, 7, &t, &p).unwrap()
    });
    // A width the GPU cannot read four at a time is refused with the tensor's name.
    let odd = Q8::quantize(&[0.5; 2 * 6], 2, 6, 0).unwrap();
    let err = g.make_weight(WeightRole::Table, host_i8(&odd)).unwrap_err();
    assert!(
        matches!(&err, ClipError::Gpu(m) if m.contains("`test`")),
        "{err}"
    );
}

#[test]
fn embeddings_and_gather_match_cpu() {
    let Some(mut g) = gpu() else { return };
    let mut rng = Rng::new(17);
    for &(batch, patches, d, class_token) in &[
        (1, 49, 64, true),
        (3, 7, 80, true),
        (2, 64, 64, false), // SigLIP: no class token
    ] {
        let pe = rng.fill_uniform(batch * patches * d, 1.0);
        let class = rng.fill_uniform(d, 1.0);
        let tokens = patches + usize::from(class_token);
        let pos = rng.fill_uniform(tokens * d, 1.0);
        compare!(
            &mut g,
            0.0,
            format!("vision_embed {batch}x{patches}x{d} class token {class_token}"),
            |b| {
                let x = b.input(&pe, batch * patches, d).unwrap();
                let c = b.weight(WeightRole::Vector, &[d], &class);
                let p = b.weight(WeightRole::Table, &[tokens, d], &pos);
                b.vision_embed(&x, class_token.then_some(&c), &p, batch)
                    .unwrap()
            }
        );
    }
    let (vocab, ctx, d) = (1000, 77, 80);
    let tok = rng.fill_uniform(vocab * d, 1.0);
    let pos = rng.fill_uniform(ctx * d, 1.0);
    for &(batch, seq) in &[(1, 77), (3, 7)] {
        let ids: Vec<u32> = (0..batch * seq)
            .map(|_| (rng.next_u64() % vocab as u64) as u32)
            .collect();
        compare!(&mut g, 0.0, format!("text_embed {batch}x{seq}"), |b| {
            let t = b.weight(WeightRole::Table, &[vocab, d], &tok);
            let p = b.weight(WeightRole::Table, &[ctx, d], &pos);
            b.text_embed(&ids, seq, &t, &p).unwrap()
        });
    }
    let x = rng.fill_uniform(50 * 80, 1.0);
    for rows in [vec![0], vec![49, 0, 17, 17], vec![]] {
        compare!(&mut g, 0.0, format!("gather_rows {rows:?}"), |b| {
            let xa = b.input(&x, 50, 80).unwrap();
            b.gather_rows(&xa, &rows).unwrap()
        });
    }
}

#[test]
fn a_whole_chain_in_one_encoder_reuses_pooled_buffers_correctly() {
    // Many ops recorded before one readback, with activations dropped (and their
    // buffers reused) mid-recording: the result must still equal the CPU's.
    let Some(mut g) = gpu() else { return };
    let mut rng = Rng::new(19);
    let (m, d) = (50, 64);
    let x = rng.fill_uniform(m * d, 1.0);
    let ws: Vec<Vec<f32>> = (0..20).map(|_| rng.fill_uniform(d * d, 0.2)).collect();
    compare!(&mut g, 1e-4, "chain of 20 linears", |b| {
        let layers: Vec<_> = ws.iter().map(|w| linear(b, w, None, d, d)).collect();
        let mut h = b.input(&x, m, d).unwrap();
        for l in &layers {
            let y = b
                .linear(&h, l, Some(Activation::QuickGelu), Some(&h))
                .unwrap();
            h = y;
        }
        h
    });
}

#[test]
fn a_repeated_pass_reuses_its_bind_groups_and_still_reads_its_new_inputs() {
    // Passes of one shape record the same launches on the same pooled buffers: from the
    // second on, no bind group is made, yet each reads its own input and uniforms.
    let Some(mut g) = gpu() else { return };
    let mut rng = Rng::new(23);
    let d = 64;
    let ws: Vec<Vec<f32>> = (0..4).map(|_| rng.fill_uniform(d * d, 0.2)).collect();
    let bias = rng.fill_uniform(d, 0.5);
    let gpu_layers: Vec<_> = ws
        .iter()
        .map(|w| linear(&g, w, Some(&bias), d, d))
        .collect();
    let cpu = CpuBackend::default();
    let cpu_layers: Vec<_> = ws
        .iter()
        .map(|w| linear(&cpu, w, Some(&bias), d, d))
        .collect();
    fn chain<B: Backend>(b: &mut B, layers: &[Linear<B::Weight>], x: &[f32], m: usize) -> Vec<f32> {
        let mut h = b.input(x, m, 64).unwrap();
        for l in layers {
            h = b
                .linear(&h, l, Some(Activation::QuickGelu), Some(&h))
                .unwrap();
        }
        read(b, &h)
    }
    let mut made = Vec::new();
    for (pass, m) in [50, 50, 50, 7, 7, 7].into_iter().enumerate() {
        let x = rng.fill_uniform(m * d, 1.0);
        let before = g.bind_groups_made();
        let got = chain(&mut g, &gpu_layers, &x, m);
        made.push(g.bind_groups_made() - before);
        let want = chain(&mut CpuBackend::default(), &cpu_layers, &x, m);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(err < 1e-3, "pass {pass} (m = {m}): max abs error {err}");
    }
    assert!(
        made[0] >= 4,
        "the first pass makes its bind groups: {made:?}"
    );
    assert_eq!(made[2], 0, "a third pass of one shape makes none: {made:?}");
    assert!(made[3] > 0, "another shape makes its own: {made:?}");
    assert_eq!(made[5], 0, "and then reuses them: {made:?}");
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let Some(mut g) = gpu() else { return };
    let x = g.input(&[0.0; 12], 3, 4).unwrap();
    let mut c = Checked::new(&mut g);
    assert!(matches!(c.input(&[0.0; 5], 3, 4), Err(ClipError::Input(_))));
    let l = linear(&g, &[0.0; 40], None, 8, 5);
    let mut c = Checked::new(&mut g);
    assert!(matches!(
        c.linear(&x, &l, None, None),
        Err(ClipError::Input(_))
    ));
    assert!(matches!(c.gather_rows(&x, &[3]), Err(ClipError::Input(_))));
    let q = c.input(&[0.0; 8 * 6], 8, 6).unwrap();
    // head_dim 3 is not a multiple of 4: the graph's checks pass, the GPU's limit does not.
    let two_heads = AttentionShape::self_attention(8, 2, false);
    assert!(g.attention(&q, &q, &q, two_heads, &[8]).is_err());
    assert!(matches!(
        Checked::new(&mut g).attention(&q, &q, &q, two_heads, &[8]),
        Err(ClipError::Gpu(_))
    ));
    // A weight with in_features not divisible by 4 is refused at upload.
    let odd = g.make_weight(WeightRole::Matrix, host(&[2, 3], &[0.0; 6]));
    assert!(matches!(odd, Err(ClipError::Gpu(_))));
    // The backend still works afterwards.
    let y = g.gather_rows(&x, &[2]).unwrap();
    assert_eq!(read(&mut g, &y).len(), 4);
}

/// Operations whose shapes do not fit, on one backend: the errors they give through the
/// graph's checks; and, unchecked (straight to the backend), that none panics and the
/// backend still works after.
fn shape_errors<E: TestBackend>(b: &mut E) -> Vec<String> {
    let x = b.input(&[0.0; 12], 3, 4).unwrap();
    let q = b.input(&[0.0; 64], 8, 8).unwrap();
    let l = linear(b, &[0.0; 40], None, 8, 5);
    let l4 = linear(b, &[0.0; 16], None, 4, 4);
    let ln = LayerNorm {
        weight: b.weight(WeightRole::Vector, &[8], &[1.0; 8]),
        bias: b.weight(WeightRole::Vector, &[8], &[0.0; 8]),
        eps: 1e-5,
        dim: 8,
    };
    let class = b.weight(WeightRole::Vector, &[4], &[0.0; 4]);
    let pos = b.weight(WeightRole::Table, &[3, 4], &[0.0; 12]);
    let tok = b.weight(WeightRole::Table, &[10, 4], &[0.0; 40]);
    let tpos = b.weight(WeightRole::Table, &[5, 4], &[0.0; 20]);
    let att = |queries, keys, heads, causal| AttentionShape {
        queries,
        keys,
        heads,
        causal,
    };
    // `$b` is a backend or a `Checked` one: the same method names.
    macro_rules! bad_calls {
        ($b:expr) => {{
            let b = $b;
            vec![
                b.input(&[0.0; 5], 3, 4).err(),
                b.linear(&x, &l, None, None).err(),
                b.linear(&x, &l4, None, Some(&q)).err(),
                b.layer_norm(&x, &ln).err(),
                // Valid lengths past the sequence, and of zero.
                b.attention(&q, &q, &q, att(8, 8, 2, false), &[9]).err(),
                b.attention(&q, &q, &q, att(8, 8, 2, true), &[0]).err(),
                b.attention(&q, &q, &q, att(4, 4, 2, false), &[4]).err(),
                b.attention(&q, &x, &q, att(8, 8, 2, false), &[8]).err(),
                b.attention(&q, &q, &q, att(8, 8, 3, false), &[8]).err(),
                // Keys of another length than said; causal with fewer keys than queries.
                b.attention(&q, &q, &q, att(8, 4, 2, false), &[4]).err(),
                b.attention(&x, &q, &q, att(3, 8, 2, true), &[8]).err(),
                b.vision_embed(&x, Some(&class), &pos, 2).err(),
                b.vision_embed(&x, None, &pos, 2).err(),
                b.text_embed(&[1, 2, 10], 3, &tok, &tpos).err(),
                b.text_embed(&[1, 2, 3], 2, &tok, &tpos).err(),
                b.text_embed(&[0; 6], 6, &tok, &tpos).err(),
                b.text_embed(&[], 0, &tok, &tpos).err(),
                b.gather_rows(&x, &[3]).err(),
            ]
        }};
    }
    let checked = bad_calls!(&mut Checked::new(&mut *b));
    // The backends no longer check shapes themselves: nothing they say is an input error.
    let unchecked = bad_calls!(&mut *b);
    for (i, e) in unchecked.iter().enumerate() {
        assert!(
            !matches!(e, Some(ClipError::Input(_))),
            "bad call {i}: {e:?}"
        );
    }
    let y = b.gather_rows(&x, &[2, 0]).unwrap();
    assert_eq!(read(b, &y), vec![0.0; 8]);
    checked
        .into_iter()
        .enumerate()
        .map(|(i, e)| match e {
            Some(ClipError::Input(m)) => m,
            e => panic!("bad call {i}: expected an input error, got {e:?}"),
        })
        .collect()
}

#[test]
fn shape_errors_are_the_graphs_and_the_same_on_both_backends() {
    let Some(mut g) = gpu() else { return };
    let cpu = shape_errors(&mut CpuBackend::default());
    assert!(
        cpu[4].contains("valid length 9") && cpu[5].contains("valid length 0"),
        "{cpu:?}"
    );
    assert!(cpu[13].contains("vocabulary of 10"), "{cpu:?}");
    assert_eq!(shape_errors(&mut g), cpu);
}

#[test]
fn a_lost_device_is_an_error_and_a_new_backend_recovers() {
    let Some(mut g) = gpu() else { return };
    let x = g.input(&[1.0; 16], 4, 4).unwrap();
    g.lose_device();
    assert!(g.is_lost());
    let err = g
        .gather_rows(&x, &[0])
        .err()
        .expect("ops on a lost device must fail");
    assert!(
        matches!(&err, ClipError::DeviceLost(_)) && err.to_string().contains("lost"),
        "{err}"
    );
    let err = pollster::block_on(g.read(&x)).expect_err("reads on a lost device must fail");
    assert!(
        matches!(&err, ClipError::DeviceLost(_)) && err.to_string().contains("lost"),
        "{err}"
    );
    assert!(g
        .make_weight(WeightRole::Vector, host(&[4], &[0.0; 4]))
        .is_err());
    // A new backend gets a new device.
    let mut g2 = gpu().unwrap();
    let y = g2.input(&[2.0; 8], 2, 4).unwrap();
    assert_eq!(read(&mut g2, &y), vec![2.0; 8]);
}

#[test]
fn a_token_table_larger_than_a_buffer_is_looked_up_page_by_page() {
    // 1 MiB buffers (the backend's own arena needs that much): a 10000 x 80 f32 table
    // (3.2 MB) becomes 4 pages of 3276 rows.
    let small = GpuOptions {
        max_buffer_size: Some(1 << 20),
        ..Default::default()
    };
    let Some(mut g) = gpu_with(&small) else {
        return;
    };
    let mut rng = Rng::new(23);
    let (vocab, ctx, d) = (10_000, 8, 80);
    let tok = rng.fill_uniform(vocab * d, 1.0);
    let pos = rng.fill_uniform(ctx * d, 1.0);
    // Ids from every part of the table: the first and last rows of pages, the last id.
    let mut ids: Vec<u32> = vec![0, 3275, 3276, 3277, 9999, 9827, 9828, 6552];
    ids.extend((0..16).map(|_| (rng.next_u64() % vocab as u64) as u32));
    compare!(&mut g, 0.0, "paged text_embed", |b| {
        let t = b.weight(WeightRole::Table, &[vocab, d], &tok);
        let p = b.weight(WeightRole::Table, &[ctx, d], &pos);
        b.text_embed(&ids, ctx, &t, &p).unwrap()
    });
    // An int8 table of 40,000 x 80 (3.2 MB) is paged the same way, its scales unpaged.
    let big = 40_000;
    let q = Q8::quantize(&rng.fill_uniform(big * d, 1.0), big, d, 16).unwrap();
    let mut big_ids = ids.clone();
    big_ids.extend([13106, 13107, 39_999, 26_214, 1, 2, 3, 4]);
    compare!(&mut g, 1e-6, "paged int8 text_embed", |b| {
        let t = b.weight_i8(WeightRole::Table, &q);
        let p = b.weight(WeightRole::Table, &[ctx, d], &pos);
        b.text_embed(&big_ids, ctx, &t, &p).unwrap()
    });
    // Only a token lookup reads a paged table: a position table that large is an error
    // naming it, not a wrong result.
    let x = g.input(&vec![0.0; 2 * 8 * d], 2 * 8, d).unwrap();
    let big_pos = g.weight(WeightRole::Table, &[vocab, d], &tok);
    let err = g
        .vision_embed(&x, None, &big_pos, 2)
        .err()
        .expect("a paged position table");
    assert!(
        matches!(&err, ClipError::Gpu(m) if m.contains("position embedding")),
        "{err}"
    );
    // A matrix is never paged: too large is refused at upload, naming the limit.
    let err = g
        .make_weight(WeightRole::Matrix, host(&[4000, 80], &vec![0.0; 320_000]))
        .unwrap_err();
    assert!(
        matches!(&err, ClipError::Gpu(m) if m.contains("MiB")),
        "{err}"
    );
}
