//! From files to features: `Clip::load` on each fixture model (CPU backend), images from their
//! PNG/JPEG files and texts from their strings, against the transformers reference.
mod common;

use common::*;
use webclip::{BackendChoice, Clip, ClipOptions, Embeddings, ImageInput};

fn load(g: &Golden, weights_file: &str) -> Clip {
    let options = ClipOptions {
        backend: BackendChoice::Cpu,
        ..Default::default()
    };
    g.clip(weights_file, &options).unwrap()
}

fn image_features(clip: &mut Clip, g: &Golden) -> Embeddings {
    let files: Vec<Vec<u8>> = g
        .images
        .iter()
        .map(|n| std::fs::read(image_path(n)).unwrap())
        .collect();
    let inputs: Vec<ImageInput> = files.iter().map(|b| ImageInput::Encoded(b)).collect();
    pollster::block_on(clip.image_features(&inputs)).unwrap()
}

fn text_features(clip: &mut Clip, g: &Golden) -> Embeddings {
    let texts: Vec<&str> = g.texts.iter().map(String::as_str).collect();
    pollster::block_on(clip.text_features(&texts)).unwrap()
}

/// Per-image cosine to the reference, checked against the README's end-to-end bounds:
/// PNG above `png_min`, JPEG above `jpg_min`.
fn check_images(g: &Golden, got: &Embeddings, what: &str, png_min: f32, jpg_min: f32) {
    let want = g.f32("image_features");
    assert_eq!(got.rows, g.images.len(), "{} {what}", g.name);
    assert_eq!(got.data.len(), want.len(), "{} {what}", g.name);
    for (i, name) in g.images.iter().enumerate() {
        let want = &want[i * got.dim..][..got.dim];
        let cos = cosine(got.row(i), want);
        let err = max_abs_diff(got.row(i), want);
        println!(
            "{} {what} {name}: cosine {cos:.7}, max abs error {err:.2e}",
            g.name
        );
        let min = if name.ends_with(".png") {
            png_min
        } else {
            jpg_min
        };
        assert!(cos > min, "{} {what} {name}: cosine {cos} <= {min}", g.name);
    }
}

#[test]
fn image_features_from_files_match_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        let mut clip = load(&g, "model.safetensors");
        let got = image_features(&mut clip, &g);
        // README: PNG cosine > 0.9999 (our PNG pixels are exact, so this is the backend's
        // error only), JPEG > 0.999 (JPEG decoders differ).
        check_images(&g, &got, "f32", 0.9999, 0.999);
        // PNG pixels are exact, so PNG features also meet the backend's own bound.
        for (i, name) in g.images.iter().enumerate() {
            if name.ends_with(".png") {
                let want = &g.f32("image_features")[i * got.dim..][..got.dim];
                let err = max_abs_diff(got.row(i), want);
                assert!(err < 1e-3, "{} {name}: max abs error {err}", g.name);
            }
        }
    }
}

#[test]
fn text_features_from_strings_match_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        let mut clip = load(&g, "model.safetensors");
        let got = text_features(&mut clip, &g);
        assert_eq!(got.rows, g.texts.len(), "{}", g.name);
        let err = max_abs_diff(&got.data, &g.f32("text_features"));
        println!("{} text_features: max abs error {err:.2e}", g.name);
        // README: text has no slack; features within 1e-3.
        assert!(err < 1e-3, "{} text_features: max abs error {err}", g.name);
    }
}

#[test]
fn fp16_weights_match_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        let mut clip = load(&g, "model.fp16.safetensors");
        // README: float16 weights with float32 arithmetic, cosine > 0.9999 (JPEGs keep
        // their decoder slack on top).
        let images = image_features(&mut clip, &g);
        check_images(&g, &images, "fp16", 0.9999, 0.999);
        let texts = text_features(&mut clip, &g);
        let want = g.f32("text_features");
        for (i, text) in g.texts.iter().enumerate() {
            let cos = cosine(texts.row(i), &want[i * texts.dim..][..texts.dim]);
            println!("{} fp16 text {i}: cosine {cos:.7}", g.name);
            assert!(cos > 0.9999, "{} fp16 text {text:?}: cosine {cos}", g.name);
        }
    }
}

/// The logits and scores of `Clip` from files: SigLIP's sigmoid probabilities against
/// `probs_per_image`, CLIP's softmax rows summing to one.
#[test]
fn logits_and_probabilities_from_files_match_reference() {
    for dir in every_model_dir() {
        let g = Golden::load(&dir);
        let mut clip = load(&g, "model.safetensors");
        let images = image_features(&mut clip, &g);
        let texts = text_features(&mut clip, &g);
        let logits = clip.logits(&images, &texts);
        let want = g.f32("logits_per_image");
        // Cosines from JPEG files keep their decoder slack (0.999), which exp(logit_scale)
        // multiplies: compare the PNG rows only.
        for (i, name) in g.images.iter().enumerate() {
            if !name.ends_with(".png") {
                continue;
            }
            let err = max_abs_diff(logits.row(i), &want[i * logits.texts..][..logits.texts]);
            assert!(err < 1e-2, "{} {name} logits: max abs error {err}", g.name);
        }
        let probs = clip.probabilities(&logits);
        if g.has("probs_per_image") {
            let want = g.f32("probs_per_image");
            for (i, name) in g
                .images
                .iter()
                .enumerate()
                .filter(|(_, n)| n.ends_with(".png"))
            {
                let row = &probs[i * logits.texts..][..logits.texts];
                let err = max_abs_diff(row, &want[i * logits.texts..][..logits.texts]);
                assert!(err < 1e-3, "{} {name} sigmoid: max abs error {err}", g.name);
            }
        } else {
            for row in probs.chunks(logits.texts) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{} softmax sums to {sum}", g.name);
            }
        }
    }
}

#[test]
fn empty_lists_give_empty_results() {
    let g = Golden::load(&model_dirs()[0]);
    let mut clip = load(&g, "model.safetensors");
    let images = pollster::block_on(clip.image_features(&[])).unwrap();
    assert_eq!((images.rows, images.data.len()), (0, 0));
    assert_eq!(images.dim, g.config.projection_dim);
    let texts = pollster::block_on(clip.text_features(&[])).unwrap();
    assert_eq!((texts.rows, texts.data.len()), (0, 0));
    assert_eq!(texts.dim, g.config.projection_dim);
    let logits = clip.logits(&images, &texts);
    assert_eq!(logits.data.len(), 0);
}

#[test]
fn a_bad_image_among_good_ones_names_its_index() {
    let g = Golden::load(&model_dirs()[0]);
    let mut clip = load(&g, "model.safetensors");
    let good = std::fs::read(image_path("tiny-7x5.png")).unwrap();
    let inputs = [
        ImageInput::Encoded(&good),
        ImageInput::Encoded(b"definitely not an image"),
    ];
    match pollster::block_on(clip.image_features(&inputs)) {
        Err(webclip::ClipError::Image(msg)) => assert!(msg.contains("image 1"), "{msg}"),
        Err(e) => panic!("expected an image error, got {e}"),
        Ok(_) => panic!("expected an error"),
    }
}
