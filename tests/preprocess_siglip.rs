//! Image preprocessing against `transformers.SiglipImageProcessor` (PIL): straight resize to
//! S x S with the `resample` of `preprocessor_config.json` (bicubic or bilinear), no centre
//! crop, mean/std 0.5; the reference `pixel_values.<file>` of every fixture image, for every
//! model folder under `fixtures/siglip/`.
mod common;
mod siglip_common;

use common::{assert_rgba_matches_file, image_path, max_abs_diff};
use siglip_common::*;
use webclip::preprocess::{Filter, PreprocessConfig, Preprocessor, ResizeTo};
use webclip::ImageInput;

fn preprocessor_for(g: &SiglipGolden) -> Preprocessor {
    Preprocessor::new(
        PreprocessConfig::from_json(&g.file("preprocessor_config.json"), g.image_size())
            .unwrap_or_else(|e| panic!("{}: {e}", g.name)),
    )
}

/// `(model, resample, image, max abs error)` for each image of `ext`, printed.
fn errors(ext: &str) -> Vec<(String, Filter, String, f32)> {
    let mut out = Vec::new();
    for dir in siglip_dirs() {
        let g = SiglipGolden::load(&dir);
        let pre = preprocessor_for(&g);
        let filter = pre.config.resample;
        for name in g.images.iter().filter(|n| n.ends_with(ext)) {
            let bytes = std::fs::read(image_path(name)).unwrap();
            let got = pre.pixel_values(&ImageInput::Encoded(&bytes)).unwrap();
            let want = g.pixels(name);
            let s = g.image_size();
            assert_eq!(g.shape(&format!("pixel_values.{name}")), [3, s, s]);
            let err = max_abs_diff(&got, &want);
            let diff = got
                .iter()
                .zip(&want)
                .filter(|(a, b)| (*a - *b).abs() > 1e-6)
                .count();
            println!(
                "{} ({filter:?}, {s} px) {name}: pixel_values max abs error {err:.3e} ({diff} of {} \
                 differ)",
                g.name,
                want.len()
            );
            out.push((g.name.clone(), filter, name.clone(), err));
        }
    }
    out
}

#[test]
fn config_is_read_from_the_file() {
    for dir in siglip_dirs() {
        let g = SiglipGolden::load(&dir);
        let json: serde_json::Value =
            serde_json::from_slice(&g.file("preprocessor_config.json")).unwrap();
        let cfg = preprocessor_for(&g).config;
        let s = g.image_size();
        assert_eq!(
            cfg.size,
            ResizeTo::Exact {
                height: s,
                width: s
            },
            "{}",
            g.name
        );
        assert!(!cfg.do_center_crop, "{}", g.name);
        let resample = json["resample"].as_u64().unwrap_or(3) as u32;
        assert_eq!(Some(cfg.resample), Filter::from_pil(resample), "{}", g.name);
        let f = |k: &str| -> Vec<f32> {
            json[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        assert_eq!(cfg.image_mean.to_vec(), f("image_mean"));
        assert_eq!(cfg.image_std.to_vec(), f("image_std"));
        assert_eq!(cfg.rescale_factor, json["rescale_factor"].as_f64().unwrap());
    }
}

#[test]
fn png_pixel_values_match_reference() {
    let errs = errors(".png");
    assert!(!errs.is_empty());
    // Both of PIL's filters SigLIP checkpoints use must be covered.
    for f in [Filter::Bicubic, Filter::Bilinear] {
        assert!(
            errs.iter().any(|e| e.1 == f),
            "no fixture resizes with {f:?}"
        );
    }
    for (model, filter, name, err) in errs {
        // README tolerance: 0.05 (about 3 levels of 255); resize.rs follows Pillow's integer
        // arithmetic exactly, so we expect exact.
        assert!(
            err < 0.05,
            "{model} ({filter:?}) {name}: max abs error {err}"
        );
    }
}

#[test]
fn jpeg_pixel_values_are_close_to_reference() {
    let errs = errors(".jpg");
    assert!(!errs.is_empty());
    for (model, filter, name, err) in errs {
        // JPEG decoders differ in their IDCT and chroma upsampling (as for CLIP in
        // tests/preprocess.rs, same bound): the end-to-end cosine is what must hold.
        assert!(
            err < 0.1,
            "{model} ({filter:?}) {name}: max abs error {err}"
        );
    }
}

#[test]
fn raw_rgba_gives_the_same_pixels_as_the_file() {
    for dir in siglip_dirs() {
        let g = SiglipGolden::load(&dir);
        let pre = preprocessor_for(&g);
        for name in g.images.iter().filter(|n| n.ends_with(".png")) {
            assert_rgba_matches_file(&pre, name, &g.name);
        }
    }
}

#[test]
fn extreme_aspect_ratios_are_squashed_not_cropped() {
    // 1 x 3000 and 3000 x 1 become S x S directly; a one-pixel-wide source gives identical
    // columns.
    for dir in siglip_dirs() {
        let g = SiglipGolden::load(&dir);
        let pre = preprocessor_for(&g);
        let s = g.image_size();
        for (w, h) in [(1u32, 3000u32), (3000, 1)] {
            let data: Vec<u8> = (0..w * h * 4).map(|i| (i / 4 % 251) as u8).collect();
            let px = pre
                .pixel_values(&ImageInput::Rgba {
                    width: w,
                    height: h,
                    data: &data,
                })
                .unwrap();
            assert_eq!(px.len(), 3 * s * s);
            if w == 1 {
                for row in px.chunks(s) {
                    assert!(row.iter().all(|&v| v == row[0]));
                }
            }
        }
    }
}
