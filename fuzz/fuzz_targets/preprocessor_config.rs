//! `preprocessor_config.json`, then preprocessing a small image with whatever it describes
//! (resize filter, sizes, crop, rescale, normalisation).
#![no_main]
use libfuzzer_sys::fuzz_target;
use webclip::preprocess::{ImageInput, PreprocessConfig, Preprocessor};

fuzz_target!(|data: &[u8]| {
    // The model's input size comes from config.json: the first byte picks one of a few.
    let Some((&pick, json)) = data.split_first() else {
        return;
    };
    let image_size = [224usize, 32, 7, 1, 384][pick as usize % 5];
    let cfg = match PreprocessConfig::from_json(json, image_size) {
        Ok(c) => c,
        Err(e) => return webclip_fuzz::check_error(&e),
    };
    let pre = Preprocessor::new(cfg);
    // Wide, tall and tiny images, gray-ish ramps.
    for (w, h) in [(9u32, 5u32), (3, 40), (1, 1)] {
        let rgba: Vec<u8> = (0..w * h * 4).map(|i| (i * 37 % 251) as u8).collect();
        let input = ImageInput::Rgba {
            width: w,
            height: h,
            data: &rgba,
        };
        match pre.pixel_values(&input) {
            Ok(px) => assert_eq!(px.len(), 3 * image_size * image_size),
            Err(e) => webclip_fuzz::check_error(&e),
        }
    }
});
