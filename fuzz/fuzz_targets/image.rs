//! Image bytes through the engine's path: format sniffing, the header's dimensions checked
//! against the pixel limit before decoding, decode (PNG, JPEG, WebP, GIF) under image-rs'
//! allocation limit, RGB over white, resize, crop, normalise, for CLIP's and SigLIP's
//! preprocessing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webclip::preprocess::{ImageInput, PreprocessConfig, Preprocessor};

/// Lower than the library's default (100 M pixels) so one input stays fast; the limit's
/// own check is the same code.
const MAX_PIXELS: u64 = 4_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let cfg = match pick % 3 {
        0 => PreprocessConfig::clip_default(224),
        1 => PreprocessConfig::siglip_default(32),
        _ => PreprocessConfig::clip_default(7),
    };
    let side = cfg.crop_size;
    let mut pre = Preprocessor::new(cfg);
    pre.max_pixels = MAX_PIXELS;
    match pre.pixel_values(&ImageInput::Encoded(bytes)) {
        Ok(px) => {
            assert_eq!(px.len(), 3 * side * side);
            assert!(px.iter().all(|v| v.is_finite()));
        }
        Err(e) => webclip_fuzz::check_error(&e),
    }
    // The same bytes as raw RGBA of some width: the size check, then compositing.
    let w = (pick as u32 % 16) + 1;
    let h = (bytes.len() / 4) as u32 / w;
    let input = ImageInput::Rgba {
        width: w,
        height: h,
        data: &bytes[..(w * h * 4) as usize],
    };
    match pre.pixel_values(&input) {
        Ok(px) => assert_eq!(px.len(), 3 * side * side),
        Err(e) => webclip_fuzz::check_error(&e),
    }
});
