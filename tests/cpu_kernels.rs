//! The SIMD CPU kernels against the plain scalar ones in `cpu::reference`, on every ISA
//! this machine can run (AVX2+FMA, SSE2 and scalar on x86_64), on shapes that are not
//! multiples of any block size, with guard values around every output.

use webclip::cpu::gemm::{self, Epilogue, PackedMatrix};
use webclip::cpu::{ops, reference, CpuBackend, CpuWeight, Isa};
use webclip::graph::{AttentionShape, Backend, Checked};
use webclip::model::random::Rng;
use webclip::model::{Activation, Linear};
use webclip::ClipError;

const GUARD: usize = 19;
const GUARD_VALUE: f32 = 1234.5;

/// A buffer of `n` NaNs (so an unwritten output fails the comparison) between guards.
fn guarded(n: usize) -> Vec<f32> {
    let mut v = vec![GUARD_VALUE; n + 2 * GUARD];
    v[GUARD..GUARD + n].fill(f32::NAN);
    v
}

fn check_guards(buf: &[f32], what: &str) {
    let n = buf.len() - 2 * GUARD;
    assert!(
        buf[..GUARD].iter().all(|&g| g == GUARD_VALUE)
            && buf[GUARD + n..].iter().all(|&g| g == GUARD_VALUE),
        "{what}: write outside the output"
    );
}

/// Largest `|got - want| / (abs + rel * |want|)`; above 1 fails. NaN counts as failure.
fn worst(got: &[f32], want: &[f32], abs: f32, rel: f32) -> (f32, usize) {
    assert_eq!(got.len(), want.len());
    let mut w = (0f32, 0);
    for (i, (g, r)) in got.iter().zip(want).enumerate() {
        let e = (g - r).abs() / (abs + rel * r.abs());
        let e = if e.is_nan() { f32::INFINITY } else { e };
        if e > w.0 {
            w = (e, i);
        }
    }
    w
}

fn isas() -> Vec<Isa> {
    let all = Isa::available();
    assert!(all.contains(&Isa::Scalar));
    #[cfg(target_arch = "x86_64")]
    {
        assert!(all.contains(&Isa::Sse2));
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            assert!(all.contains(&Isa::Avx2Fma));
        }
    }
    all
}

const MS: [usize; 6] = [1, 7, 50, 77, 197, 577];

fn kn_shapes() -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for k in [64, 80, 112, 768] {
        for n in [64, 80, 112, 768] {
            v.push((k, n));
        }
    }
    v.extend([(3, 13), (13, 3), (3, 768), (768, 13), (1, 1), (300, 17)]);
    v
}

/// The epilogues cycled through the shapes.
fn epilogue_case(i: usize) -> (bool, Option<Activation>, bool) {
    match i % 5 {
        0 => (false, None, false),
        1 => (true, None, false),
        2 => (true, Some(Activation::QuickGelu), false),
        3 => (true, Some(Activation::Gelu), true),
        _ => (false, Some(Activation::GeluTanh), true),
    }
}

#[test]
fn matmul_matches_scalar_reference_on_every_isa() {
    webclip::cpu::pool::ensure_workers(3);
    let isas = isas();
    let mut rng = Rng::new(1);
    let mut case = 0;
    for &m in &MS {
        for (k, n) in kn_shapes() {
            // The large shapes cost seconds in the reference: keep them to a few Ms.
            if m == 577 && k * n > 112 * 768 {
                continue;
            }
            let a = rng.fill_uniform(m * k, 1.0); // [m, k]
            let w = rng.fill_uniform(n * k, 1.0); // [n, k]
            let bias = rng.fill_uniform(n, 1.0);
            let res = rng.fill_uniform(m * n, 1.0);
            let (use_bias, act, use_res) = epilogue_case(case);
            case += 1;
            let mut want = vec![0f32; m * n];
            reference::matmul_nt(&a, &w, &mut want, m, k, n);
            reference::epilogue(
                &mut want,
                n,
                use_bias.then_some(&bias[..]),
                act,
                use_res.then_some(&res[..]),
            );
            let packed = PackedMatrix::pack(&w, n, k).unwrap();
            let ep = Epilogue {
                bias: use_bias.then_some(&bias[..]),
                activation: act,
                residual: use_res.then_some(&res[..]),
            };
            for &isa in &isas {
                let mut buf = guarded(m * n);
                gemm::matmul(isa, &a, m, &packed, &mut buf[GUARD..GUARD + m * n], &ep).unwrap();
                let what = format!("{} matmul {m}x{k}x{n} {ep:?}", isa.name());
                check_guards(&buf, &what);
                // Split over threads by columns: every column is computed as on one thread.
                let mut par = guarded(m * n);
                let out = &mut par[GUARD..GUARD + m * n];
                gemm::matmul_threads(isa, 3, &a, m, &packed, out, &ep).unwrap();
                check_guards(&par, &what);
                assert!(par == buf, "{what}: 3 threads differ from one");
                // Sums of k products of values in [-1, 1]: rounding grows with k.
                let tol = 1e-6 * k as f32 + 1e-6;
                let (e, i) = worst(&buf[GUARD..GUARD + m * n], &want, tol, 1e-6);
                assert!(
                    e <= 1.0,
                    "{what}: element {i} is {} instead of {} (error {e} x tolerance)",
                    buf[GUARD + i],
                    want[i]
                );
            }
        }
    }
}

/// The int8 matmul against the scalar references. Where the ISA has integer dot products
/// (`qdot`): against `matmul_nt_int8_codes`, the same quantised activations and integer
/// sums in f64, and within a bound of the float product (7-bit activations). Elsewhere
/// (panels dequantised block by block inside the loop nest): against the float product on
/// the dequantised matrix, the same sums, so the f32 tolerance holds.
#[test]
fn int8_matmul_matches_scalar_reference_on_every_isa() {
    use webclip::cpu::qdot;
    use webclip::model::quantize::Q8;
    let isas = isas();
    let mut rng = Rng::new(11);
    let mut case = 0;
    // K past one slice (KC = 256) and N past one column block (NC = 512), with remainders.
    let shapes = [
        (64, 80),
        (768, 13),
        (300, 17),
        (80, 600),
        (1030, 48),
        (3, 13),
        (1, 1),
    ];
    for &m in &[1, 7, 50, 97] {
        for &(k, n) in &shapes {
            for group in [0, 4, 32, 64] {
                let a = rng.fill_uniform(m * k, 1.0);
                let w = rng.fill_uniform(n * k, 1.0);
                let q = Q8::quantize(&w, n, k, group).unwrap();
                let deq = q.dequantize();
                let bias = rng.fill_uniform(n, 1.0);
                let res = rng.fill_uniform(m * n, 1.0);
                let (use_bias, act, use_res) = epilogue_case(case);
                case += 1;
                let finish = |mut out: Vec<f32>| {
                    reference::epilogue(
                        &mut out,
                        n,
                        use_bias.then_some(&bias[..]),
                        act,
                        use_res.then_some(&res[..]),
                    );
                    out
                };
                let mut float = vec![0f32; m * n];
                reference::matmul_nt(&a, &deq, &mut float, m, k, n);
                let mut coded = vec![0f32; m * n];
                reference::matmul_nt_int8_codes(&a, &q, &mut coded, m);
                // 7-bit activations: uniform rounding errors of step / sqrt(12) per input
                // put the coded product about 0.8 % (RMS) off the float one here.
                let rms = |x: &mut dyn Iterator<Item = f32>| {
                    (x.map(|v| f64::from(v * v)).sum::<f64>() / (m * n) as f64).sqrt()
                };
                let off = rms(&mut coded.iter().zip(&float).map(|(c, f)| c - f));
                let size = rms(&mut float.iter().copied());
                assert!(
                    off <= 0.02 * size,
                    "{n}x{k} group {group}: {off} RMS off {size}"
                );
                let (float, coded) = (finish(float), finish(coded));
                let packed = PackedMatrix::pack_i8(&q).unwrap();
                assert!(packed.is_i8());
                assert_eq!(packed.unpack(), deq, "{n}x{k} group {group}");
                // A quarter of f32 (quads of 4 inputs), plus scales and sums per group.
                let npad = n.div_ceil(16) * 16;
                assert_eq!(
                    packed.bytes(),
                    npad * k.div_ceil(4) * 4 + 8 * npad * q.groups()
                );
                let ep = Epilogue {
                    bias: use_bias.then_some(&bias[..]),
                    activation: act,
                    residual: use_res.then_some(&res[..]),
                };
                for &isa in &isas {
                    let mut buf = guarded(m * n);
                    gemm::matmul(isa, &a, m, &packed, &mut buf[GUARD..GUARD + m * n], &ep).unwrap();
                    let dot = qdot::available(isa, q.group);
                    let what = format!(
                        "{} int8 matmul {m}x{k}x{n} group {group} ({})",
                        isa.name(),
                        if dot { "integer" } else { "dequantised" }
                    );
                    check_guards(&buf, &what);
                    let want = if dot { &coded } else { &float };
                    let tol = 1e-6 * k as f32 + 1e-6;
                    let (e, i) = worst(&buf[GUARD..GUARD + m * n], want, tol, 1e-6);
                    assert!(
                        e <= 1.0,
                        "{what}: element {i} is {} instead of {} (error {e} x tolerance)",
                        buf[GUARD + i],
                        want[i]
                    );
                }
            }
        }
    }
    // A Q8 whose parts disagree is an error, not a panic.
    let mut bad = Q8::quantize(&[1.0; 8], 2, 4, 4).unwrap();
    bad.scales.pop();
    assert!(PackedMatrix::pack_i8(&bad).is_err());
}

#[test]
fn packing_round_trips_and_bad_lengths_are_errors() {
    let mut rng = Rng::new(2);
    for (n, k) in [(1, 1), (17, 3), (16, 5), (33, 64)] {
        let w = rng.fill_uniform(n * k, 1.0);
        let p = PackedMatrix::pack(&w, n, k).unwrap();
        assert_eq!((p.n(), p.k()), (n, k));
        assert_eq!(p.unpack(), w);
    }
    assert!(PackedMatrix::pack(&[0.0; 5], 2, 3).is_err());
    let p = PackedMatrix::pack(&[1.0; 6], 2, 3).unwrap();
    let mut out = [0f32; 4];
    let none = Epilogue::default();
    for isa in isas() {
        assert!(gemm::matmul(isa, &[1.0; 5], 2, &p, &mut out, &none).is_err());
        assert!(gemm::matmul(isa, &[1.0; 6], 2, &p, &mut out[..3], &none).is_err());
        let bad_bias = Epilogue {
            bias: Some(&[1.0]),
            ..none
        };
        assert!(gemm::matmul(isa, &[1.0; 6], 2, &p, &mut out, &bad_bias).is_err());
        gemm::matmul(isa, &[1.0; 6], 2, &p, &mut out, &none).unwrap();
        assert_eq!(out, [3.0; 4]);
        // K = 0: the product is zero, the epilogue still applies.
        let empty_k = PackedMatrix::pack(&[], 3, 0).unwrap();
        let mut o = [f32::NAN; 6];
        let ep = Epilogue {
            bias: Some(&[1.0, 2.0, 3.0]),
            ..none
        };
        gemm::matmul(isa, &[], 2, &empty_k, &mut o, &ep).unwrap();
        assert_eq!(o, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        // Empty shapes are fine and touch nothing.
        gemm::matmul(isa, &[], 0, &p, &mut [], &none).unwrap();
    }
}

#[test]
fn activations_match_scalar_reference() {
    let mut rng = Rng::new(3);
    let mut x: Vec<f32> = rng.fill_uniform(1000, 12.0);
    x.extend([
        0.0, -0.0, 1e-6, -1e-6, 1e-3, -1e-3, 0.5, -0.5, 20.0, -20.0, 90.0, -90.0, 1e4, -1e4,
    ]);
    for isa in isas() {
        for a in [
            Activation::QuickGelu,
            Activation::Gelu,
            Activation::GeluTanh,
        ] {
            // Odd length: exercises the scalar tail.
            let n = x.len() - 3;
            let mut buf = guarded(n);
            buf[GUARD..GUARD + n].copy_from_slice(&x[..n]);
            ops::activation(isa, a, &mut buf[GUARD..GUARD + n]).unwrap();
            let what = format!("{} {a:?}", isa.name());
            check_guards(&buf, &what);
            let want: Vec<f32> = x[..n].iter().map(|&v| reference::activate(a, v)).collect();
            // The reference is exact to ~1e-7 relative; our exp is ~2e-7. GELU at large
            // negative x is tiny and the reference loses it to cancellation: abs 1e-6.
            let (e, i) = worst(&buf[GUARD..GUARD + n], &want, 1e-6, 2e-6);
            assert!(
                e <= 1.0,
                "{what}: f({}) = {} instead of {}",
                x[i],
                buf[GUARD + i],
                want[i]
            );
        }
    }
}

#[test]
fn layer_norm_matches_scalar_reference() {
    let mut rng = Rng::new(4);
    for isa in isas() {
        for &rows in &MS[..5] {
            for dim in [3, 13, 64, 80, 768] {
                // An offset and scale like real residual streams (mean far from 0).
                let x: Vec<f32> = rng
                    .fill_uniform(rows * dim, 4.0)
                    .into_iter()
                    .map(|v| v + 3.0)
                    .collect();
                let w: Vec<f32> = rng.fill_uniform(dim, 0.5).iter().map(|v| v + 1.0).collect();
                let b = rng.fill_uniform(dim, 0.5);
                let mut want = vec![0f32; x.len()];
                reference::layer_norm(&x, &w, &b, 1e-5, dim, &mut want);
                let mut buf = guarded(x.len());
                let n = x.len();
                ops::layer_norm(isa, &x, &w, &b, 1e-5, dim, &mut buf[GUARD..GUARD + n]).unwrap();
                let what = format!("{} layer norm {rows}x{dim}", isa.name());
                check_guards(&buf, &what);
                let (e, i) = worst(&buf[GUARD..GUARD + n], &want, 1e-5, 1e-5);
                assert!(e <= 1.0, "{what}: element {i}: {e} x tolerance");
            }
        }
        let mut out = [0f32; 6];
        assert!(ops::layer_norm(isa, &[0.0; 6], &[1.0; 4], &[0.0; 4], 1e-5, 4, &mut out).is_err());
    }
}

#[test]
fn attention_matches_scalar_reference() {
    webclip::cpu::pool::ensure_workers(3);
    let mut rng = Rng::new(5);
    // (sequences' valid lengths, queries, keys, heads, head_dim, causal, q/k scale)
    type Case<'a> = (&'a [usize], usize, usize, usize, usize, bool, f32);
    let cases: &[Case] = &[
        (&[50, 50], 50, 50, 12, 64, false, 1.0), // ViT-B/32 image, batch 2
        (&[197], 197, 197, 3, 13, false, 1.0),   // odd head_dim
        (&[77, 10, 1], 77, 77, 8, 64, true, 1.0), // text: full context and short prompts
        (&[7, 3], 7, 7, 5, 80, true, 6.0),       // peaked softmax (large scores)
        (&[1], 1, 1, 1, 3, false, 1.0),          // a single key
        (&[0, 5], 5, 5, 2, 4, true, 1.0),        // an empty sequence still attends to key 0
        (&[196, 196], 1, 196, 4, 16, false, 1.0), // SigLIP's pooling head: one probe query
        (&[729], 1, 729, 16, 72, false, 3.0),    // So400m/14 at 384 px: its pooling head
        (&[729], 729, 729, 1, 16, false, 1.0),   // and its encoder self-attention
        (&[9, 4], 3, 9, 2, 8, false, 1.0),       // a few queries over more keys
    ];
    for isa in isas() {
        for &(valid, queries, keys, heads, hd, causal, scale) in cases {
            let width = heads * hd;
            let n = valid.len() * queries * width;
            let kv = valid.len() * keys * width;
            let shape = AttentionShape {
                queries,
                keys,
                heads,
                causal,
            };
            let q = rng.fill_uniform(n, scale);
            let k = rng.fill_uniform(kv, scale);
            let v = rng.fill_uniform(kv, 1.0);
            let mut want = vec![0f32; n];
            reference::attention(&q, &k, &v, &mut want, width, shape, valid);
            let mut buf = guarded(n);
            ops::attention(
                isa,
                &q,
                &k,
                &v,
                &mut buf[GUARD..GUARD + n],
                width,
                shape,
                valid,
            )
            .unwrap();
            let what = format!(
                "{} attention {valid:?} x {queries} queries over {keys} keys, {heads} heads of \
                 {hd}, causal {causal}",
                isa.name()
            );
            check_guards(&buf, &what);
            let mut par = guarded(n);
            let out = &mut par[GUARD..GUARD + n];
            ops::attention_threads(isa, 3, &q, &k, &v, out, width, shape, valid).unwrap();
            check_guards(&par, &what);
            assert!(par == buf, "{what}: 3 threads differ from one");
            let (e, i) = worst(
                &buf[GUARD..GUARD + n],
                &want,
                2e-6 * (hd as f32).sqrt(),
                1e-5,
            );
            assert!(e <= 1.0, "{what}: element {i}: {e} x tolerance");
        }
        let mut out = [0f32; 12];
        // Width not divisible by the heads; a valid length past the keys; causal with
        // more queries than keys; keys of the wrong length.
        let z = [0f32; 12];
        let shape = |queries, keys, heads, causal| AttentionShape {
            queries,
            keys,
            heads,
            causal,
        };
        for (s, lens) in [
            (shape(2, 2, 4, false), [2]),
            (shape(2, 2, 2, false), [3]),
            (shape(2, 1, 2, true), [1]),
            (shape(2, 3, 2, false), [3]),
        ] {
            assert!(
                ops::attention(isa, &z, &z, &z, &mut out, 6, s, &lens).is_err(),
                "{s:?}"
            );
        }
    }
}

#[test]
fn backend_linear_packs_hand_built_weights_and_checks_widths() {
    let mut rng = Rng::new(6);
    let (m, k, n) = (5, 21, 19);
    let w = rng.fill_uniform(n * k, 1.0);
    let x = rng.fill_uniform(m * k, 1.0);
    let linear = Linear {
        weight: CpuWeight {
            shape: vec![n, k],
            data: w.clone(),
            packed: None,
            rows_i8: None,
        },
        bias: None,
        in_features: k,
        out_features: n,
    };
    let mut b = CpuBackend::default();
    let xa = b.input(&x, m, k).unwrap();
    let got = b.linear(&xa, &linear, None, None).unwrap();
    let mut want = vec![0f32; m * n];
    reference::matmul_nt(&x, &w, &mut want, m, k, n);
    let (e, _) = worst(&got.data, &want, 1e-5, 1e-6);
    assert!(e <= 1.0);
    let wrong = b.input(&x[..m * 20], m, 20).unwrap();
    assert!(b.linear(&wrong, &linear, None, None).is_err());
    assert!(b.gather_rows(&xa, &[m]).is_err());
    // Called directly, the backend takes the shapes as checked: a mismatch it meets is a
    // bug (internal), never a read out of bounds. Through the graph's checks it is bad
    // input, named as such.
    assert!(matches!(
        b.linear(&wrong, &linear, None, None),
        Err(ClipError::Internal(_))
    ));
    assert!(matches!(
        b.gather_rows(&xa, &[m]),
        Err(ClipError::Internal(_))
    ));
    let mut c = Checked::new(&mut b);
    let err = c.linear(&wrong, &linear, None, None).unwrap_err();
    assert!(
        matches!(&err, ClipError::Input(m) if m.contains("applied to a [5, 20]")),
        "{err}"
    );
    assert!(matches!(c.gather_rows(&xa, &[m]), Err(ClipError::Input(_))));
}

#[test]
fn kernel_length_mismatches_are_internal_and_a_missing_isa_is_unsupported() {
    let p = PackedMatrix::pack(&[1.0; 6], 2, 3).unwrap();
    let mut out = [0f32; 4];
    let none = Epilogue::default();
    let short = gemm::matmul(Isa::Scalar, &[1.0; 5], 2, &p, &mut out, &none);
    assert!(matches!(short, Err(ClipError::Internal(_))), "{short:?}");
    assert!(matches!(
        PackedMatrix::pack(&[0.0; 5], 2, 3),
        Err(ClipError::Internal(_))
    ));
    let z = [0f32; 12];
    let mut o = [0f32; 12];
    assert!(matches!(
        ops::attention(
            Isa::Scalar,
            &z,
            &z,
            &z,
            &mut o,
            6,
            AttentionShape::self_attention(2, 2, false),
            &[3]
        ),
        Err(ClipError::Internal(_))
    ));
    assert!(matches!(
        ops::layer_norm(Isa::Scalar, &z, &[1.0; 5], &[0.0; 5], 1e-5, 5, &mut o),
        Err(ClipError::Internal(_))
    ));
    // Natively, simd128 is never available (wasm32 only).
    let missing: Vec<Isa> = [Isa::Avx2Fma, Isa::Sse2, Isa::Simd128]
        .into_iter()
        .filter(|i| !Isa::available().contains(i))
        .collect();
    assert!(!missing.is_empty());
    for isa in missing {
        let err = gemm::matmul(isa, &[1.0; 6], 2, &p, &mut out, &none).unwrap_err();
        assert!(matches!(err, ClipError::Unsupported(_)), "{err}");
        let err = ops::activation(isa, Activation::Gelu, &mut o).unwrap_err();
        assert!(matches!(err, ClipError::Unsupported(_)), "{err}");
    }
}

#[test]
fn unchecked_embeddings_are_internal_errors_and_checked_ones_bad_input() {
    let table = |rows: usize, cols: usize| CpuWeight {
        shape: vec![rows, cols],
        data: vec![0.5; rows * cols],
        packed: None,
        rows_i8: None,
    };
    let mut b = CpuBackend::default();
    let (tok, pos) = (table(10, 4), table(5, 4));
    // Id 10 of a vocabulary of 10; sequences longer than the position table.
    for (ids, seq) in [(&[1u32, 10][..], 2), (&[0; 6][..], 6)] {
        let direct = b.text_embed(ids, seq, &tok, &pos);
        assert!(matches!(direct, Err(ClipError::Internal(_))), "{ids:?}");
        let checked = Checked::new(&mut b).text_embed(ids, seq, &tok, &pos);
        assert!(matches!(checked, Err(ClipError::Input(_))), "{ids:?}");
    }
    let x = b.input(&[1.0; 12], 3, 4).unwrap();
    let class = CpuWeight {
        shape: vec![4],
        data: vec![2.0; 4],
        packed: None,
        rows_i8: None,
    };
    // Three patch rows are not two images of two patches.
    let direct = b.vision_embed(&x, Some(&class), &table(3, 4), 2);
    assert!(matches!(direct, Err(ClipError::Internal(_))));
    for (class, pos) in [(Some(&class), table(3, 4)), (None, table(2, 4))] {
        let err = Checked::new(&mut b)
            .vision_embed(&x, class, &pos, 2)
            .unwrap_err();
        assert!(
            matches!(&err, ClipError::Input(m) if m.contains("3 patch rows")),
            "{err}"
        );
    }
    let y = Checked::new(&mut b)
        .vision_embed(&x, Some(&class), &table(4, 4), 1)
        .unwrap();
    assert_eq!((y.rows, y.cols), (4, 4));
    assert_eq!(&y.data[..4], &[2.5; 4]);
    assert_eq!(&y.data[4..], &[1.5; 12]);
    // Without a class token (SigLIP) each patch takes the position of its own index.
    let pos = CpuWeight {
        shape: vec![3, 4],
        data: (0..12).map(|i| (i / 4) as f32).collect(),
        packed: None,
        rows_i8: None,
    };
    let y = Checked::new(&mut b)
        .vision_embed(&x, None, &pos, 1)
        .unwrap();
    assert_eq!((y.rows, y.cols), (3, 4));
    assert_eq!(y.data, [[1.0; 4], [2.0; 4], [3.0; 4]].concat());
}
