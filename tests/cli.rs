//! The native command, end to end: its outputs match the reference and its errors are clear.
mod common;

use common::*;
use std::process::Command;
use webclip::model::SafeTensors;

fn webclip(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_webclip"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn embed_writes_reference_text_features() {
    let out_dir = std::env::temp_dir().join(format!("webclip-cli-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        let out = out_dir.join(format!("{}.safetensors", g.name));
        let mut args = vec![
            "embed",
            "--model",
            dir.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        for t in &g.texts[..4] {
            args.extend(["--text", t.as_str()]);
        }
        let run = webclip(&args);
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert!(
            stdout.contains("4 texts") && stdout.contains("cpu"),
            "{stdout}"
        );
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::parse(&bytes).unwrap();
        assert_eq!(
            st.info("text_features").unwrap().shape,
            vec![4, g.config.projection_dim]
        );
        assert_eq!(
            st.info("image_features").unwrap().shape,
            vec![0, g.config.projection_dim]
        );
        let got = st.read_f32(bytes.as_slice(), "text_features").unwrap();
        let want = g.f32("text_features");
        let err = max_abs_diff(&got, &want[..got.len()]);
        assert!(err < 1e-3, "{}: text_features max abs error {err}", g.name);
    }
    std::fs::remove_dir_all(&out_dir).ok();
}

#[test]
fn errors_go_to_stderr_with_a_nonzero_status() {
    let run = webclip(&[
        "embed",
        "--model",
        "no-such-model-dir",
        "--text",
        "x",
        "--out",
        "x.safetensors",
    ]);
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("no-such-model-dir") && err.contains("config.json"),
        "{err}"
    );
    assert!(run.stdout.is_empty());

    let run = webclip(&["classify", "--model", "m"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("--labels"));

    let run = webclip(&["frobnicate"]);
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn gen_weights_writes_a_loadable_checkpoint() {
    let dir = std::env::temp_dir().join(format!("webclip-gen-{}", std::process::id()));
    let tiny = model_dirs()[0].join("config.json");
    let run = webclip(&[
        "gen-weights",
        "--config",
        tiny.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
        "--dtype",
        "f16",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = dir.join("out.safetensors");
    let run = webclip(&[
        "embed",
        "--model",
        dir.to_str().unwrap(),
        "--text",
        "a dog",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let st = SafeTensors::parse(&bytes).unwrap();
    let feats = st.read_f32(bytes.as_slice(), "text_features").unwrap();
    assert!(feats.iter().all(|v| v.is_finite()) && feats.iter().any(|v| *v != 0.0));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn gpu_weights_flag_is_parsed_and_picks_the_storage() {
    let dir = &model_dirs()[0];
    let g = Golden::load(dir);
    let out = std::env::temp_dir().join(format!(
        "webclip-cli-f16-{}.safetensors",
        std::process::id()
    ));
    let run_with = |backend: &str, weights: &str| {
        webclip(&[
            "embed",
            "--model",
            dir.to_str().unwrap(),
            "--backend",
            backend,
            "--gpu-weights",
            weights,
            "--text",
            g.texts[0].as_str(),
            "--out",
            out.to_str().unwrap(),
        ])
    };

    let bad = run_with("cpu", "f8");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--gpu-weights"));
    // The CPU backend accepts and ignores it.
    let cpu = run_with("cpu", "f16");
    assert!(
        cpu.status.success(),
        "{}",
        String::from_utf8_lossy(&cpu.stderr)
    );

    let gpu = run_with("gpu", "f16");
    let stderr = String::from_utf8_lossy(&gpu.stderr);
    if !gpu.status.success() && std::env::var("WEBCLIP_REQUIRE_GPU").as_deref() != Ok("1") {
        eprintln!("note: no GPU backend, skipping the f16 run: {stderr}");
        return;
    }
    assert!(gpu.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&gpu.stdout);
    assert!(stdout.contains("f16 weights"), "{stdout}");
    let bytes = std::fs::read(&out).unwrap();
    let st = SafeTensors::parse(&bytes).unwrap();
    let got = st.read_f32(bytes.as_slice(), "text_features").unwrap();
    let want = g.f32("text_features");
    let cos = cosine(&got, &want[..got.len()]);
    // Fixtures README: float16 weights with float32 arithmetic, cosine above 0.9999.
    assert!(cos > 0.9999, "f16 storage: cosine {cos}");
    std::fs::remove_file(&out).ok();
}
