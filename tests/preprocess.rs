//! Image preprocessing against `transformers.CLIPImageProcessor`: the reference
//! `pixel_values.<file>` of every fixture image, from the image file itself.
mod common;

use common::*;
use webclip::preprocess::{PreprocessConfig, Preprocessor};
use webclip::ImageInput;

fn preprocessor_for(g: &Golden) -> Preprocessor {
    Preprocessor::new(
        PreprocessConfig::from_json(
            &g.file("preprocessor_config.json"),
            g.config.vision_config.image_size,
        )
        .unwrap(),
    )
}

fn read_image(name: &str) -> Vec<u8> {
    std::fs::read(image_path(name)).unwrap()
}

/// Max abs error of each image of `ext` against the reference, printed.
fn errors(ext: &str) -> Vec<(String, String, f32)> {
    let mut out = Vec::new();
    for dir in model_dirs() {
        let g = Golden::load(&dir);
        let pre = preprocessor_for(&g);
        for name in g.images.iter().filter(|n| n.ends_with(ext)) {
            let got = pre
                .pixel_values(&ImageInput::Encoded(&read_image(name)))
                .unwrap();
            let want = g.pixels(name);
            let err = max_abs_diff(&got, &want);
            let diff = got
                .iter()
                .zip(&want)
                .filter(|(a, b)| (*a - *b).abs() > 1e-6)
                .count();
            println!(
                "{} {name}: pixel_values max abs error {err:.3e} ({diff} of {} differ)",
                g.name,
                want.len()
            );
            out.push((g.name.clone(), name.clone(), err));
        }
    }
    out
}

#[test]
fn png_pixel_values_match_reference() {
    let errs = errors(".png");
    assert!(!errs.is_empty());
    for (model, name, err) in errs {
        // README tolerance: 0.05 (about 3 levels of 255); PIL's resampling is integer
        // arithmetic, which resize.rs follows exactly, so we expect (and get) exact.
        assert!(err < 0.05, "{model} {name}: max abs error {err}");
    }
}
