//! Bad checkpoints and bad calls give typed errors that name the problem, never a panic.
mod common;

use common::*;
use webclip::clip::{Clip, ClipOptions, ModelFiles, ModelFolder};
use webclip::cpu::{self, CpuBackend};
use webclip::graph::{self, TextBatch};
use webclip::model::safetensors::{write_f32, Dtype};
use webclip::model::{tensor_specs, ClipConfig, ClipModel, SafeTensors, Towers};
use webclip::ClipError;

fn tiny() -> std::path::PathBuf {
    model_dirs()
        .into_iter()
        .find(|d| d.ends_with("tiny-quickgelu"))
        .unwrap_or_else(|| model_dirs().remove(0))
}

/// The fixture checkpoint rewritten through `edit(name, shape, data)`; `None` drops a tensor.
fn rewrite(
    edit: impl Fn(&str, Vec<usize>, Vec<f32>) -> Option<(String, Vec<usize>, Vec<f32>)>,
) -> Vec<u8> {
    rewrite_file(&tiny().join("model.safetensors"), edit)
}

/// The checkpoint at `path` rewritten through `edit`, as [`rewrite`] does.
fn rewrite_file(
    path: &std::path::Path,
    edit: impl Fn(&str, Vec<usize>, Vec<f32>) -> Option<(String, Vec<usize>, Vec<f32>)>,
) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::parse(&bytes).unwrap();
    let mut tensors = Vec::new();
    for info in st.tensors() {
        let data = st.read_f32(bytes.as_slice(), &info.name).unwrap();
        if let Some(t) = edit(&info.name, info.shape.clone(), data) {
            tensors.push(t);
        }
    }
    let spec: Vec<_> = tensors
        .iter()
        .map(|(n, s, _)| (n.clone(), s.clone()))
        .collect();
    let mut out = Vec::new();
    write_f32(&mut out, &spec, Dtype::F32, |i, buf| {
        buf.extend_from_slice(&tensors[i].2);
        Ok(())
    })
    .unwrap();
    out
}

fn config() -> ClipConfig {
    ClipConfig::from_json(&std::fs::read(tiny().join("config.json")).unwrap()).unwrap()
}

fn load(
    bytes: &[u8],
    config: &ClipConfig,
    towers: Towers,
) -> Result<ClipModel<cpu::CpuWeight>, ClipError> {
    let st = SafeTensors::parse(bytes)?;
    ClipModel::load(config, &st, bytes, towers, &mut cpu::make_weight)
}

#[test]
fn truncated_files_are_reported_as_truncated() {
    let bytes = std::fs::read(tiny().join("model.safetensors")).unwrap();
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        let err = load(&bytes[..cut], &config(), Towers::Both).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ClipError::SafeTensors(_)), "cut {cut}: {msg}");
        assert!(
            msg.contains("truncated") || msg.contains("too short"),
            "cut {cut}: {msg}"
        );
    }
}

#[test]
fn a_header_that_lies_about_offsets_is_rejected() {
    let bytes = std::fs::read(tiny().join("model.safetensors")).unwrap();
    let n = SafeTensors::header_len(&bytes).unwrap();
    let header = String::from_utf8(bytes[8..n].to_vec()).unwrap();
    // Shift the first tensor's end offset by one element: size no longer matches its shape.
    let at = header.find("\"data_offsets\":[").unwrap() + "\"data_offsets\":[".len();
    let close = at + header[at..].find(']').unwrap();
    let (begin, end) = header[at..close].split_once(',').unwrap();
    let end: usize = end.trim().parse().unwrap();
    let lie = format!("{}{},{}{}", &header[..at], begin, end + 4, &header[close..]);
    let mut file = (lie.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(lie.as_bytes());
    file.extend_from_slice(&bytes[n..]);
    let err = load(&file, &config(), Towers::Both).unwrap_err();
    assert!(err.to_string().contains("data_offsets"), "{err}");
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let name = "vision_model.encoder.layers.1.mlp.fc2.weight";
    let bytes = rewrite(|n, s, d| (n != name).then(|| (n.to_string(), s, d)));
    match load(&bytes, &config(), Towers::Both).unwrap_err() {
        ClipError::MissingTensor { name: missing } => assert_eq!(missing, name),
        e => panic!("expected MissingTensor, got {e}"),
    }
    // A tower that is not loaded does not need its tensors.
    assert!(load(&bytes, &config(), Towers::Text).is_ok());

    let bytes = rewrite(|n, s, d| {
        if n == "text_projection.weight" {
            let cut = d[..s[0] / 2 * s[1]].to_vec();
            Some((n.to_string(), vec![s[0] / 2, s[1]], cut))
        } else {
            Some((n.to_string(), s, d))
        }
    });
    let err = load(&bytes, &config(), Towers::Both).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClipError::TensorShape { .. }), "{msg}");
    assert!(
        msg.contains("text_projection.weight") && msg.contains("expected"),
        "{msg}"
    );
}

#[test]
fn a_config_that_disagrees_with_the_weights_is_reported() {
    let mut cfg = config();
    cfg.vision_config.intermediate_size += 8;
    let bytes = std::fs::read(tiny().join("model.safetensors")).unwrap();
    let msg = load(&bytes, &cfg, Towers::Vision).unwrap_err().to_string();
    assert!(msg.contains("fc1.weight") && msg.contains("shape"), "{msg}");
}

#[test]
fn unsupported_dtypes_and_non_finite_weights_are_rejected() {
    let bytes = std::fs::read(tiny().join("model.safetensors")).unwrap();
    let n = SafeTensors::header_len(&bytes).unwrap();
    let header = String::from_utf8(bytes[8..n].to_vec()).unwrap();
    // Relabel every F32 tensor as I32: same byte size, wrong type for weights.
    let relabeled = header.replace("\"F32\"", "\"I32\"");
    let mut file = (relabeled.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(relabeled.as_bytes());
    file.extend_from_slice(&bytes[n..]);
    let err = load(&file, &config(), Towers::Both).unwrap_err();
    assert!(matches!(err, ClipError::UnsupportedDtype { .. }), "{err}");

    let bytes = rewrite(|n, s, mut d| {
        if n == "text_model.final_layer_norm.weight" {
            d[3] = f32::NAN;
        }
        Some((n.to_string(), s, d))
    });
    let msg = load(&bytes, &config(), Towers::Both)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("final_layer_norm.weight") && msg.contains("non-finite"),
        "{msg}"
    );
}

#[test]
fn bad_configs_are_rejected_with_reasons() {
    for (json, needle) in [
        (r#"{"text_config": {"hidden_act": "relu6"}}"#, "relu6"),
        (
            r#"{"vision_config": {"hidden_size": 100, "num_attention_heads": 12}}"#,
            "divisible",
        ),
        (
            r#"{"vision_config": {"num_hidden_layers": 0}}"#,
            "num_hidden_layers",
        ),
        (r#"{"model_type": "siglip2"}"#, "siglip2"),
        (r#"{"model_type": "blip"}"#, "blip"),
        (
            r#"{"model_type": "siglip", "vision_config": {"vision_use_head": false}}"#,
            "vision_use_head",
        ),
        (r#"not json"#, "JSON"),
    ] {
        let msg = ClipConfig::from_json(json.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(msg.contains(needle), "{json}: {msg}");
    }
}

#[test]
fn calls_on_missing_towers_and_bad_tokens_are_errors_and_empty_lists_are_empty() {
    let folder = ModelFolder::read(&tiny(), None).unwrap();
    let opts = ClipOptions {
        towers: Towers::Vision,
        ..Default::default()
    };
    let mut clip = pollster::block_on(folder.load(&opts)).unwrap();
    let err = pollster::block_on(clip.text_features(&["a cat"])).unwrap_err();
    assert!(matches!(err, ClipError::TowerNotLoaded("text")), "{err}");
    assert_eq!(
        pollster::block_on(clip.image_features(&[])).unwrap().rows,
        0
    );

    let mut clip = pollster::block_on(folder.load(&ClipOptions::default())).unwrap();
    assert_eq!(pollster::block_on(clip.text_features(&[])).unwrap().rows, 0);
    let err =
        pollster::block_on(clip.token_features(&[vec![49406, 1_000_000, 49407]])).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
    let err = pollster::block_on(clip.pixel_features(&[0.0; 10], 1)).unwrap_err();
    assert!(matches!(err, ClipError::Input(_)), "{err}");
    assert!(err.to_string().contains("pixel buffer"), "{err}");

    // Cut into batches of one image, two images' worth of pixels for three is still
    // refused as a whole, before any batch runs.
    let opts = ClipOptions {
        max_batch: 1,
        ..Default::default()
    };
    let mut clip = pollster::block_on(folder.load(&opts)).unwrap();
    let err =
        pollster::block_on(clip.pixel_features(&vec![0.0; 2 * 3 * 224 * 224], 3)).unwrap_err();
    assert!(
        matches!(&err, ClipError::Input(m) if m.contains("expected 3 x 3 x 224 x 224")),
        "{err}"
    );
}

#[test]
fn the_graph_checks_what_a_hand_made_batch_holds() {
    let bytes = std::fs::read(tiny().join("model.safetensors")).unwrap();
    let config = config();
    let model = load(&bytes, &config, Towers::Both).unwrap();
    let text = model.text().unwrap();
    let t = &config.text_config;
    let good = TextBatch::from_tokens(&[vec![49406, 320, 49407]], t, 49407).unwrap();
    let run = |batch: &TextBatch| {
        graph::text_forward(&mut CpuBackend::default(), text, batch, false)
            .map(|_| ())
            .err()
    };
    assert!(run(&good).is_none());
    type Edit = fn(&mut TextBatch);
    let edits: Vec<(Edit, &str)> = vec![
        (
            |b| b.valid_lens = vec![4],
            "valid length 4 is outside 1..=3",
        ),
        (|b| b.valid_lens = vec![0], "valid length 0"),
        (|b| b.valid_lens = vec![3, 3], "pools positions"),
        (|b| b.pool_positions = vec![3], "pools positions"),
        (|b| b.ids[1] = 49408, "outside the vocabulary of 49408"),
        (|b| b.ids.push(320), "do not split into sequences of 3"),
        (|b| b.seq_len = 0, "pools positions"),
    ];
    for (i, (edit, needle)) in edits.into_iter().enumerate() {
        let mut batch = good.clone();
        edit(&mut batch);
        match run(&batch) {
            Some(ClipError::Input(m)) => assert!(m.contains(needle), "edit {i}: {m}"),
            e => panic!("edit {i}: expected an input error, got {e:?}"),
        }
    }

    let vision = model.vision().unwrap();
    let err = graph::vision_forward(&mut CpuBackend::default(), vision, &[0.0; 10], 1, false)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&err, ClipError::Input(m) if m.contains("pixel buffer holds 10 values")),
        "{err}"
    );
}

#[test]
fn the_description_names_exactly_the_tensors_of_each_fixture_checkpoint() {
    for dir in every_model_dir() {
        let config =
            ClipConfig::from_json(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = SafeTensors::parse(&bytes).unwrap();
        // A scalar may be stored as [] or [1] (SigLIP's files hold [1]); both load.
        let scalar = |shape: &Vec<usize>| match shape.as_slice() {
            [1] => Vec::new(),
            s => s.to_vec(),
        };
        let mut stored: Vec<_> = st.tensors().map(|t| (&t.name, scalar(&t.shape))).collect();
        let specs = tensor_specs(&config, Towers::Both).unwrap();
        let mut described: Vec<_> = specs.iter().map(|s| (&s.name, scalar(&s.shape))).collect();
        stored.sort();
        described.sort();
        assert_eq!(described, stored, "{}", dir.display());
    }
}

#[test]
fn scalars_load_as_either_shape_and_the_patch_conv_must_be_4d() {
    let original = load(
        &std::fs::read(tiny().join("model.safetensors")).unwrap(),
        &config(),
        Towers::Both,
    )
    .unwrap()
    .logit_scale;
    let bytes = rewrite(|n, s, d| {
        let s = if n == "logit_scale" { vec![1] } else { s };
        Some((n.to_string(), s, d))
    });
    let model = load(&bytes, &config(), Towers::Vision).unwrap();
    assert_eq!(model.logit_scale, original);

    let bytes = rewrite(|n, s, d| {
        if n == "logit_scale" {
            return Some((n.to_string(), s, vec![f32::INFINITY]));
        }
        Some((n.to_string(), s, d))
    });
    let msg = load(&bytes, &config(), Towers::Text)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("logit_scale") && msg.contains("non-finite"),
        "{msg}"
    );

    let name = "vision_model.embeddings.patch_embedding.weight";
    let bytes = rewrite(|n, s, d| {
        let s = if n == name {
            vec![s[0], s[1..].iter().product()]
        } else {
            s
        };
        Some((n.to_string(), s, d))
    });
    match load(&bytes, &config(), Towers::Vision).unwrap_err() {
        ClipError::TensorShape {
            name: n, expected, ..
        } => {
            assert_eq!(n, name);
            assert_eq!(expected.len(), 4, "{expected:?}");
        }
        e => panic!("expected TensorShape, got {e}"),
    }
    // Only the vision tower reads the patch conv.
    assert!(load(&bytes, &config(), Towers::Text).is_ok());
}

#[test]
fn a_model_folder_needs_config_and_weights_only() {
    let dir = std::env::temp_dir().join(format!("webclip-folder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = ModelFolder::read(&dir, None).err().expect("no config.json");
    assert_eq!(err.code(), "not-found", "{err}");
    assert!(err.to_string().contains("config.json"), "{err}");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny().join(f), dir.join(f)).unwrap();
    }
    // No tokenizer.json, no preprocessor_config.json: CLIP's preprocessing, images only.
    let folder = ModelFolder::read(&dir, None).unwrap();
    assert!(folder.tokenizer.is_none() && folder.preprocessor.is_none());
    let mut clip = pollster::block_on(folder.load(&ClipOptions::default())).unwrap();
    let png = std::fs::read(image_path("tiny-7x5.png")).unwrap();
    let feats = pollster::block_on(clip.image_features(&[webclip::ImageInput::Encoded(&png)]));
    assert_eq!(feats.unwrap().rows, 1);
    let err = pollster::block_on(clip.text_features(&["a cat"])).unwrap_err();
    assert_eq!(err.code(), "bad-tokenizer", "{err}");

    // A broken weights file is named in the error.
    std::fs::write(dir.join("model.safetensors"), b"not a safetensors file").unwrap();
    let folder = ModelFolder::read(&dir, None).unwrap();
    let err = pollster::block_on(folder.load(&ClipOptions::default()))
        .err()
        .expect("bad weights");
    assert_eq!(err.code(), "bad-weights", "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn clip_load_reads_the_header_from_the_weights_source() {
    let dir = tiny();
    let config = std::fs::read(dir.join("config.json")).unwrap();
    let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
    let files = |weights: &Vec<u8>| {
        let files = ModelFiles {
            config: &config,
            weights,
            tokenizer: Default::default(),
            preprocessor: None,
        };
        let opts = ClipOptions {
            towers: Towers::Vision,
            ..Default::default()
        };
        pollster::block_on(Clip::load(files, &opts))
    };
    assert!(files(&weights).is_ok());
    // Cut inside the header and inside the data: both are truncation errors at load.
    for cut in [5, 100, weights.len() - 1] {
        let err = files(&weights[..cut].to_vec()).err().expect("truncated");
        assert!(matches!(err, ClipError::SafeTensors(_)), "cut {cut}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains("trunc") || msg.contains("short"),
            "cut {cut}: {msg}"
        );
    }
}

/// A SigLIP fixture folder copied to a temporary folder, with `edit` applied to it.
fn siglip_folder(kind: &str, edit: impl FnOnce(&std::path::Path)) -> std::path::PathBuf {
    let src = siglip_dirs()
        .into_iter()
        .find(|d| d.ends_with(kind))
        .unwrap_or_else(|| siglip_dirs().remove(0));
    let dir = std::env::temp_dir().join(format!(
        "webclip-siglip-{kind}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        if !p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("golden")
        {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    edit(&dir);
    dir
}

fn load_folder(dir: &std::path::Path) -> Result<Clip, ClipError> {
    let options = ClipOptions {
        backend: webclip::BackendChoice::Cpu,
        ..Default::default()
    };
    let folder = ModelFolder::read(dir, None)?;
    let clip = pollster::block_on(folder.load(&options));
    std::fs::remove_dir_all(dir).ok();
    clip
}

#[test]
fn siglip_checkpoints_with_bad_parts_are_clear_errors() {
    // A SigLIP fixture loads; the same folder with one part broken gives an error that
    // names it.
    assert!(load_folder(&siglip_folder("siglip-spm", |_| {})).is_ok());
    let edit_config = |f: fn(&mut serde_json::Value)| {
        move |dir: &std::path::Path| {
            let path = dir.join("config.json");
            let mut json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            f(&mut json);
            std::fs::write(&path, json.to_string()).unwrap();
        }
    };
    // (fixture, how to break it, the error's code, a word its message names)
    type Case<'a> = (&'a str, Box<dyn FnOnce(&std::path::Path)>, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "siglip-spm",
            Box::new(|d: &std::path::Path| {
                std::fs::write(d.join("spiece.model"), b"\x0a\xff").unwrap()
            }),
            "bad-tokenizer",
            "spiece.model",
        ),
        (
            "siglip-spm",
            Box::new(edit_config(|j| {
                j["vision_config"]["vision_use_head"] = false.into()
            })),
            "unsupported",
            "vision_use_head",
        ),
        (
            "siglip-spm",
            Box::new(edit_config(|j| {
                j["text_config"]["projection_size"] = 32.into()
            })),
            "bad-config",
            "projection_size",
        ),
        (
            "siglip-spm",
            Box::new(edit_config(|j| j["model_type"] = "blip".into())),
            "unsupported",
            "blip",
        ),
        (
            "siglip2-gemma",
            Box::new(|d: &std::path::Path| {
                let path = d.join("tokenizer.json");
                let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
                let text = text.replacen("\"type\": \"BPE\"", "\"type\": \"WordLevelX\"", 1);
                std::fs::write(&path, text).unwrap();
            }),
            "bad-tokenizer",
            "tokenizer.json",
        ),
    ];
    for (kind, edit, code, needle) in cases {
        let err = load_folder(&siglip_folder(kind, edit))
            .err()
            .unwrap_or_else(|| panic!("{kind} with a bad {needle} loaded"));
        assert_eq!(err.code(), code, "{kind} {needle}: {err}");
        assert!(err.to_string().contains(needle), "{kind}: {err}");
    }
}

#[test]
fn a_siglip_checkpoint_without_its_head_names_the_missing_tensor() {
    let dir = siglip_folder("siglip-spm", |d| {
        let path = d.join("model.safetensors");
        let out = rewrite_file(&path, |name, shape, data| {
            (name != "vision_model.head.attention.in_proj_weight")
                .then(|| (name.to_string(), shape, data))
        });
        std::fs::write(&path, out).unwrap();
    });
    let err = load_folder(&dir).err().expect("no pooling head");
    assert!(
        err.to_string()
            .contains("vision_model.head.attention.in_proj_weight"),
        "{err}"
    );
}
