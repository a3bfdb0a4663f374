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

/// `webclip index`: a folder with a subfolder, a copy of one photo, a text file and a broken
/// PNG becomes an index file whose rows are the reference image embeddings, keyed by content
/// hash with every path of a copy; a second run embeds nothing; another model is refused.
#[test]
fn index_embeds_a_folder_once_and_skips_what_it_knows() {
    let dir = model_dirs()
        .into_iter()
        .find(|d| d.ends_with("tiny-quickgelu"))
        .unwrap();
    let g = Golden::load(&dir);
    let root = std::env::temp_dir().join(format!("webclip-index-{}", std::process::id()));
    let photos = root.join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    let pngs: Vec<&String> = g
        .images
        .iter()
        .filter(|n| n.ends_with(".png"))
        .take(3)
        .collect();
    for (i, name) in pngs.iter().enumerate() {
        let to = if i == 0 {
            photos.join("sub").join(name)
        } else {
            photos.join(name)
        };
        std::fs::copy(image_path(name), to).unwrap();
    }
    std::fs::copy(image_path(pngs[1]), photos.join("copy.png")).unwrap();
    std::fs::write(photos.join("notes.txt"), "not a photo").unwrap();
    std::fs::write(photos.join("broken.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    let out = root.join("library.safetensors");
    let parquet = root.join("library.parquet");
    let args = |model: &std::path::Path| {
        vec![
            "index".to_string(),
            photos.to_str().unwrap().into(),
            "--model".into(),
            model.to_str().unwrap().into(),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--threads".into(),
            "2".into(),
            "--batch".into(),
            "2".into(),
            "--parquet".into(),
            parquet.to_str().unwrap().into(),
        ]
    };
    let run = |model: &std::path::Path| {
        let a = args(model);
        webclip(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let first = run(&dir);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr),
    );
    assert!(first.status.success(), "{stderr}");
    assert!(
        stdout.contains("3 entries") && stdout.contains("3 embedded on 2 x cpu"),
        "{stdout}"
    );
    assert!(stdout.contains("per core"), "{stdout}");
    assert!(
        stderr.contains("skipped") && stderr.contains("notes.txt: not an image"),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken.png"),
        "the broken PNG is listed: {stderr}"
    );

    let file = webclip::index::file::IndexFile::parse(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(file.entries.len(), 3);
    assert_eq!(file.dim, g.config.projection_dim);
    let want = g.f32("image_embeds");
    for (e, row) in file
        .entries
        .iter()
        .zip(file.embeddings.chunks_exact(file.dim))
    {
        let path = e.metadata["path"].as_str().unwrap();
        let name = path.rsplit('/').next().unwrap();
        let i = g.images.iter().position(|n| n == name).unwrap();
        let c = cosine(row, &want[i * file.dim..(i + 1) * file.dim]);
        assert!(c > 0.9999, "{path}: cosine {c}");
        let hash = webclip::index::cli::sha256(&std::fs::read(image_path(name)).unwrap());
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(e.key.as_str(), Some(hex.as_str()));
    }
    let copy = file
        .entries
        .iter()
        .find(|e| e.metadata["paths"].as_array().unwrap().len() == 2)
        .expect("the copy shares an entry");
    let paths: Vec<&str> = copy.metadata["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    // Every path of the content, in the order the folder walk met them (sorted by name).
    let mut want_paths = vec!["copy.png", pngs[1].as_str()];
    want_paths.sort();
    assert_eq!(paths, want_paths);
    assert!(file
        .entries
        .iter()
        .any(|e| e.metadata["path"] == format!("sub/{}", pngs[0])));

    // The Parquet copy: a row per entry, in order, with its path, hash and embedding.
    {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::record::{ListAccessor, RowAccessor};
        let reader = SerializedFileReader::new(std::fs::File::open(&parquet).unwrap()).unwrap();
        let rows: Vec<_> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(rows.len(), file.entries.len());
        for ((row, e), want) in rows
            .iter()
            .zip(&file.entries)
            .zip(file.embeddings.chunks_exact(file.dim))
        {
            assert_eq!(Some(row.get_string(0).unwrap().as_str()), e.key.as_str());
            assert_eq!(
                Some(row.get_string(1).unwrap().as_str()),
                e.metadata["path"].as_str()
            );
            assert_eq!(Some(row.get_string(2).unwrap().as_str()), e.key.as_str());
            assert_eq!(Some(row.get_string(3).unwrap()), file.fingerprint.as_ref());
            let list = row.get_list(4).unwrap();
            let got: Vec<f32> = (0..list.len())
                .map(|j| list.get_float(j).unwrap())
                .collect();
            assert_eq!(got, want);
        }
        // `to-parquet` makes the same file from the index file.
        let again = root.join("again.parquet");
        let run = webclip(&[
            "to-parquet",
            out.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ]);
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_eq!(
            std::fs::read(&again).unwrap(),
            std::fs::read(&parquet).unwrap()
        );
        let bad = webclip(&[
            "to-parquet",
            parquet.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ]);
        assert_eq!(bad.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("not a webclip index file"));
    }

    // Again: nothing to embed, the same rows.
    let again = run(&dir);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success() && stdout.contains("3 entries") && stdout.contains("(0 embedded"),
        "{stdout}"
    );
    let same = webclip::index::file::IndexFile::parse(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(same, file);

    // Another model into the same file: refused, the file untouched.
    let other = model_dirs()
        .into_iter()
        .find(|d| d.ends_with("small-gelu"))
        .unwrap();
    let refused = run(&other);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("was made with another model"));
    assert_eq!(
        webclip::index::file::IndexFile::parse(&std::fs::read(&out).unwrap()).unwrap(),
        file
    );
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn convert_writes_a_folder_and_refuses_its_source_and_its_own_output() {
    let tiny = model_dirs()
        .into_iter()
        .find(|d| d.ends_with("tiny-quickgelu"))
        .unwrap();
    let out = std::env::temp_dir().join(format!("webclip-cli-convert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (src, dst) = (tiny.to_str().unwrap(), out.to_str().unwrap());
    let run = webclip(&["convert", "--model", src, "--dtype", "int8", "--out", dst]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::parse(&bytes).unwrap();
    assert_eq!(st.metadata["webclip.dtype"], "int8");
    for (args, code, says) in [
        (
            vec!["--model", dst, "--dtype", "f16", "--out", "/nonexistent/x"],
            1,
            "already converted",
        ),
        (
            vec!["--model", src, "--dtype", "f16", "--out", src],
            1,
            "is the source folder",
        ),
        (
            vec!["--model", src, "--dtype", "int4", "--out", dst],
            1,
            "--dtype must be f16 or int8",
        ),
        (
            vec![
                "--model", src, "--dtype", "int8", "--out", dst, "--group", "x",
            ],
            2,
            "--group expects",
        ),
    ] {
        let run = webclip(&[&["convert"][..], &args].concat());
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // The report: three rows, the goals met.
    let run = webclip(&["convert", "--report", "--model", src]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("| f16 |") && stdout.contains("| int8 |"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}
