//! `config.json` (CLIPConfig or SiglipConfig): parse, validate, and the weight layout that a
//! valid config describes; a config that parses survives its own round trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use webclip::model::{tensor_specs, ClipConfig, Towers};

fuzz_target!(|data: &[u8]| {
    let cfg = match ClipConfig::from_json(data) {
        Ok(c) => c,
        Err(e) => return webclip_fuzz::check_error(&e),
    };
    let again = ClipConfig::from_json(cfg.to_json().as_bytes())
        .unwrap_or_else(|e| panic!("a parsed config does not round-trip: {e}"));
    assert_eq!(format!("{cfg:?}"), format!("{again:?}"));
    let v = &cfg.vision_config;
    assert!(v.num_positions() >= v.num_patches());
    let _ = v.patch_dim();
    for towers in [Towers::Vision, Towers::Text] {
        if let Err(e) = tensor_specs(&cfg, towers) {
            webclip_fuzz::check_error(&e);
        }
    }
});
