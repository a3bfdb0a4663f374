//! Image preprocessing as `transformers.CLIPImageProcessor` and `SiglipImageProcessor` (the
//! PIL-based ones) do it: decode, to RGB over white, resize (CLIP: the shortest side to S,
//! then a centre crop; SigLIP: straight to S x S), rescale, normalise.
//!
//! Follows `transformers/image_transforms.py` (`get_resize_output_image_size`, `resize`,
//! `center_crop`, `rescale`, `normalize`), the two processors' `preprocess`, and, for the
//! resampling, Pillow's `Resample.c` (see `resize.rs`: bicubic, bilinear and the other
//! filters), so PNG inputs give the reference's `pixel_values` bit for bit.

mod decode;
pub mod resize;

pub use decode::{over_white, Pixels};

use crate::error::{ClipError, Result};
pub use resize::Filter;
use resize::Window;
use serde::Deserialize;

/// An image to embed.
#[derive(Debug, Clone, Copy)]
pub enum ImageInput<'a> {
    /// PNG, JPEG, WebP or GIF file bytes.
    Encoded(&'a [u8]),
    /// Raw RGBA8 pixels, row-major (what a canvas' `ImageData` holds).
    Rgba {
        width: u32,
        height: u32,
        data: &'a [u8],
    },
}

impl ImageInput<'_> {
    /// The bytes it holds (what the per-call limit counts).
    pub fn len(&self) -> usize {
        match self {
            ImageInput::Encoded(b) => b.len(),
            ImageInput::Rgba { data, .. } => data.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What `size` of `preprocessor_config.json` resizes the image to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTo {
    /// `{"shortest_edge": s}`: the shorter side becomes `s`, the aspect ratio kept (CLIP).
    ShortestEdge(usize),
    /// `{"height": h, "width": w}`: straight to `w x h`, the aspect ratio not kept (SigLIP).
    Exact { height: usize, width: usize },
}

/// `preprocessor_config.json`, with the processor's defaults for absent fields (CLIP's,
/// or SigLIP's when `image_processor_type` is `SiglipImageProcessor`).
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessConfig {
    pub size: ResizeTo,
    /// Side of the square centre crop (when `do_center_crop`).
    pub crop_size: usize,
    pub do_resize: bool,
    /// PIL filter of the resize (`resample`, 3 = bicubic for CLIP).
    pub resample: Filter,
    pub do_center_crop: bool,
    pub do_rescale: bool,
    pub do_normalize: bool,
    /// f64 as in Python: `rescale` multiplies in float64 before casting to float32.
    pub rescale_factor: f64,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl PreprocessConfig {
    pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
    pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];
    /// `IMAGENET_STANDARD_MEAN` / `_STD`, SigLIP's.
    pub const SIGLIP_MEAN: [f32; 3] = [0.5; 3];
    pub const SIGLIP_STD: [f32; 3] = [0.5; 3];

    /// CLIP's defaults for a model of input size `image_size`.
    pub fn clip_default(image_size: usize) -> Self {
        PreprocessConfig {
            size: ResizeTo::ShortestEdge(image_size),
            crop_size: image_size,
            do_resize: true,
            resample: Filter::Bicubic,
            do_center_crop: true,
            do_rescale: true,
            do_normalize: true,
            rescale_factor: 1.0 / 255.0,
            image_mean: Self::CLIP_MEAN,
            image_std: Self::CLIP_STD,
        }
    }

    /// `SiglipImageProcessor`'s defaults: bicubic straight to `image_size` square, no crop,
    /// mean and std 0.5.
    pub fn siglip_default(image_size: usize) -> Self {
        PreprocessConfig {
            size: ResizeTo::Exact {
                height: image_size,
                width: image_size,
            },
            do_center_crop: false,
            image_mean: Self::SIGLIP_MEAN,
            image_std: Self::SIGLIP_STD,
            ..Self::clip_default(image_size)
        }
    }

    pub fn from_json(bytes: &[u8], image_size: usize) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Size {
            Int(usize),
            Map {
                shortest_edge: Option<usize>,
                height: Option<usize>,
                width: Option<usize>,
            },
        }
        #[derive(Deserialize)]
        struct Raw {
            image_processor_type: Option<String>,
            size: Option<Size>,
            crop_size: Option<Size>,
            do_resize: Option<bool>,
            resample: Option<u32>,
            do_center_crop: Option<bool>,
            do_rescale: Option<bool>,
            do_normalize: Option<bool>,
            rescale_factor: Option<f64>,
            image_mean: Option<[f32; 3]>,
            image_std: Option<[f32; 3]>,
        }
        let raw: Raw = serde_json::from_slice(bytes)
            .map_err(|e| ClipError::Config(format!("preprocessor_config.json: {e}")))?;
        let kind = raw.image_processor_type.as_deref().unwrap_or_default();
        if kind.starts_with("Siglip2") {
            return Err(ClipError::Unsupported(format!(
                "preprocessor_config.json: {kind} (SigLIP 2 NaFlex, variable resolution) is not \
                 supported; the fixed-resolution SigLIP 2 checkpoints use SiglipImageProcessor"
            )));
        }
        // `SiglipImageProcessor` resizes straight to `size` and has no centre crop.
        let siglip = kind.starts_with("Siglip");
        let d = if siglip {
            Self::siglip_default(image_size)
        } else {
            Self::clip_default(image_size)
        };
        // `get_size_dict`: an int is the shortest edge for CLIP (`default_to_square=False`),
        // both sides for SigLIP; a dict says which.
        let size = match raw.size {
            None => d.size,
            Some(Size::Int(v)) if siglip => ResizeTo::Exact {
                height: v,
                width: v,
            },
            Some(Size::Int(v)) => ResizeTo::ShortestEdge(v),
            Some(Size::Map {
                shortest_edge: Some(s),
                ..
            }) => ResizeTo::ShortestEdge(s),
            Some(Size::Map {
                height: Some(height),
                width: Some(width),
                ..
            }) => ResizeTo::Exact { height, width },
            Some(Size::Map { .. }) => {
                return Err(ClipError::Config(
                    "preprocessor_config.json: size needs `shortest_edge`, or `height` and \
                     `width`"
                        .into(),
                ))
            }
        };
        let edge = |s: &Option<Size>, default: usize| match s {
            Some(Size::Int(v)) => *v,
            Some(Size::Map {
                shortest_edge,
                height,
                width,
            }) => shortest_edge.or(*height).or(*width).unwrap_or(default),
            None => default,
        };
        let cfg = PreprocessConfig {
            size,
            crop_size: if siglip {
                d.crop_size
            } else {
                edge(&raw.crop_size, d.crop_size)
            },
            do_resize: raw.do_resize.unwrap_or(true),
            resample: match raw.resample {
                None => d.resample,
                Some(v) => Filter::from_pil(v).ok_or_else(|| {
                    ClipError::Config(format!(
                        "preprocessor_config.json: resample = {v} is not supported (1 lanczos, \
                         2 bilinear, 3 bicubic, 4 box, 5 hamming)"
                    ))
                })?,
            },
            do_center_crop: !siglip && raw.do_center_crop.unwrap_or(true),
            do_rescale: raw.do_rescale.unwrap_or(true),
            do_normalize: raw.do_normalize.unwrap_or(true),
            rescale_factor: raw.rescale_factor.unwrap_or(d.rescale_factor),
            image_mean: raw.image_mean.unwrap_or(d.image_mean),
            image_std: raw.image_std.unwrap_or(d.image_std),
        };
        let (out_w, out_h) = match (cfg.do_center_crop, cfg.size) {
            (true, _) => (cfg.crop_size, cfg.crop_size),
            (false, ResizeTo::ShortestEdge(s)) => (s, s),
            (false, ResizeTo::Exact { height, width }) => (width, height),
        };
        if cfg.crop_size != image_size || (out_w, out_h) != (image_size, image_size) {
            return Err(ClipError::Config(format!(
                "preprocessor_config.json produces {out_w}x{out_h} px images but the model takes \
                 {image_size} px"
            )));
        }
        if cfg.image_std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
            return Err(ClipError::Config(
                "preprocessor_config.json: image_std must be non-zero".into(),
            ));
        }
        Ok(cfg)
    }
}

/// Decodes and preprocesses images into `[3, S, S]` model input.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    pub config: PreprocessConfig,
    /// Refuse images with more pixels than this (decoded RGBA is 4 bytes a pixel).
    pub max_pixels: u64,
}

impl Preprocessor {
    pub const DEFAULT_MAX_PIXELS: u64 = crate::limits::MAX_IMAGE_PIXELS;

    pub fn new(config: PreprocessConfig) -> Self {
        Preprocessor {
            config,
            max_pixels: Self::DEFAULT_MAX_PIXELS,
        }
    }

    /// Side of the square model input, `S`.
    pub fn output_size(&self) -> usize {
        self.config.crop_size
    }

    /// Model input `[3, S, S]` for one image.
    pub fn pixel_values(&self, input: &ImageInput) -> Result<Vec<f32>> {
        let px = decode::pixels(input, self.max_pixels)?;
        self.pixel_values_from(&px)
    }

    /// Whether `images` may be decoded at once: the pixels their headers declare, together,
    /// within what one image may hold (`max_pixels`), so decoding them side by side needs no
    /// more memory than the largest single image could. A header that cannot be read counts
    /// as the largest.
    pub fn fits_at_once(&self, images: &[ImageInput]) -> bool {
        let mut total = 0u64;
        for img in images {
            total = total.saturating_add(decode::declared_pixels(img).unwrap_or(self.max_pixels));
            if total > self.max_pixels {
                return false;
            }
        }
        true
    }

    /// Decoded pixels (gray or RGB, alpha already composited), `[height, width, channels]`.
    pub fn decode(&self, input: &ImageInput) -> Result<Pixels> {
        decode::pixels(input, self.max_pixels)
    }

    /// Resize, crop, rescale and normalise decoded pixels into `[3, S, S]`.
    pub fn pixel_values_from(&self, px: &Pixels) -> Result<Vec<f32>> {
        let cfg = &self.config;
        if px.channels != 1 && px.channels != 3 {
            return Err(ClipError::Image(format!(
                "pixels must have 1 (gray) or 3 (RGB) channels, not {}",
                px.channels
            )));
        }
        let (w, h) = (px.width as u64, px.height as u64);
        // `get_resize_output_image_size(size=shortest_edge, default_to_square=False)`: the
        // short side becomes S, the long one `int(S * long / short)` (f64 division, truncated).
        let (rw, rh) = match (cfg.do_resize, cfg.size) {
            (false, _) => (w, h),
            // `resize(size=(height, width))`: straight there (SigLIP).
            (true, ResizeTo::Exact { height, width }) => (width as u64, height as u64),
            (true, ResizeTo::ShortestEdge(s)) => {
                let s = s as u64;
                let (short, long) = if w <= h { (w, h) } else { (h, w) };
                // Python divides the exact integer product; so does f64 below 2^53.
                let new_long = s
                    .checked_mul(long)
                    .filter(|p| *p < 1 << 53)
                    .map_or(0, |p| (p as f64 / short as f64) as u64);
                if new_long == 0 || s == 0 {
                    return Err(ClipError::Image(format!(
                        "cannot resize a {w}x{h} image to shortest edge {s}"
                    )));
                }
                if w <= h {
                    (s, new_long)
                } else {
                    (new_long, s)
                }
            }
        };
        let (out_w, out_h) = if cfg.do_center_crop {
            (cfg.crop_size as u64, cfg.crop_size as u64)
        } else {
            (rw, rh)
        };
        let side = self.output_size() as u64;
        if (out_w, out_h) != (side, side) {
            return Err(ClipError::Image(format!(
                "a {w}x{h} image becomes {out_w}x{out_h} without a centre crop; the model takes \
                 {side}x{side}"
            )));
        }
        // `center_crop`: offset (resized - crop) // 2 when the image is large enough, else the
        // image is zero-padded, centred with ceil((crop - resized) / 2) before it.
        let (ox, oy) = (crop_offset(rw, out_w), crop_offset(rh, out_h));
        // The part of the resized image the crop keeps.
        let (x0, x1) = (ox.max(0) as u64, (ox + out_w as i64).min(rw as i64) as u64);
        let (y0, y1) = (oy.max(0) as u64, (oy + out_h as i64).min(rh as i64) as u64);
        let window = Window {
            x0,
            y0,
            width: (x1 - x0) as usize,
            height: (y1 - y0) as usize,
        };
        // Unchanged sizes skip their pass (PIL copies), so `do_resize = false` works too.
        let kept = resize::resize_window(
            cfg.resample,
            &px.data,
            px.width,
            px.height,
            px.channels,
            rw,
            rh,
            window,
        )?;

        // `rescale` (uint8 * scale in f64, cast to f32), then `normalize` in f32; zero padding
        // is a pixel value of 0 as in `center_crop`.
        let value = |v: u8, c: usize| -> f32 {
            let x = if cfg.do_rescale {
                (v as f64 * cfg.rescale_factor) as f32
            } else {
                v as f32
            };
            if cfg.do_normalize {
                (x - cfg.image_mean[c]) / cfg.image_std[c]
            } else {
                x
            }
        };
        let (sw, sh) = (out_w as usize, out_h as usize);
        let mut out = vec![0f32; 3 * sh * sw];
        let ch = px.channels;
        for (c, plane) in out.chunks_exact_mut(sh * sw).enumerate() {
            // Gray is replicated into the three channels here.
            let src_c = if ch == 1 { 0 } else { c };
            let pad = value(0, c);
            for (y, row) in plane.chunks_exact_mut(sw).enumerate() {
                let ry = oy + y as i64;
                for (x, o) in row.iter_mut().enumerate() {
                    let rx = ox + x as i64;
                    *o = if (y0 as i64..y1 as i64).contains(&ry)
                        && (x0 as i64..x1 as i64).contains(&rx)
                    {
                        let (wy, wx) = ((ry - y0 as i64) as usize, (rx - x0 as i64) as usize);
                        value(kept[(wy * window.width + wx) * ch + src_c], c)
                    } else {
                        pad
                    };
                }
            }
        }
        Ok(out)
    }
}

/// Where `center_crop` starts, in resized-image coordinates (negative: zero padding first).
fn crop_offset(size: u64, crop: u64) -> i64 {
    if size >= crop {
        ((size - crop) / 2) as i64
    } else {
        -((crop - size).div_ceil(2) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_resample() {
        let cfg = |json: &str| PreprocessConfig::from_json(json.as_bytes(), 224);
        assert_eq!(cfg("{}").unwrap(), PreprocessConfig::clip_default(224));
        assert_eq!(cfg(r#"{"resample": 3}"#).unwrap().resample, Filter::Bicubic);
        assert_eq!(
            cfg(r#"{"resample": 2}"#).unwrap().resample,
            Filter::Bilinear
        );
        assert!(matches!(
            cfg(r#"{"resample": 0}"#),
            Err(ClipError::Config(_))
        ));
        assert!(matches!(
            cfg(r#"{"resample": 9}"#),
            Err(ClipError::Config(_))
        ));
    }

    #[test]
    fn config_reads_siglip_and_size_forms() {
        let cfg = |json: &str| PreprocessConfig::from_json(json.as_bytes(), 224);
        let siglip = cfg(
            r#"{"image_processor_type": "SiglipImageProcessor", "resample": 2,
                             "size": {"height": 224, "width": 224}}"#,
        )
        .unwrap();
        assert_eq!(
            siglip,
            PreprocessConfig {
                resample: Filter::Bilinear,
                ..PreprocessConfig::siglip_default(224)
            }
        );
        assert!(!siglip.do_center_crop);
        assert_eq!(siglip.image_mean, [0.5; 3]);
        // SiglipImageProcessor has no centre crop, whatever the file says; an int size is
        // both sides for it, the shortest edge for CLIP.
        let s = cfg(
            r#"{"image_processor_type": "SiglipImageProcessor", "size": 224,
                        "do_center_crop": true, "crop_size": 100}"#,
        )
        .unwrap();
        assert_eq!(s, PreprocessConfig::siglip_default(224));
        assert_eq!(
            cfg(r#"{"size": 224}"#).unwrap().size,
            ResizeTo::ShortestEdge(224)
        );
        // CLIPImageProcessor with {height, width} resizes straight there too.
        assert_eq!(
            cfg(r#"{"size": {"height": 224, "width": 224}}"#)
                .unwrap()
                .size,
            ResizeTo::Exact {
                height: 224,
                width: 224
            }
        );
        // Sizes that do not give the model's input, incomplete sizes, NaFlex: errors.
        for (json, unsupported) in [
            (
                r#"{"image_processor_type": "SiglipImageProcessor", "size": 256}"#,
                false,
            ),
            (
                r#"{"size": {"height": 224, "width": 300}, "do_center_crop": false}"#,
                false,
            ),
            (r#"{"size": {"height": 224}}"#, false),
            (r#"{"image_processor_type": "Siglip2ImageProcessor"}"#, true),
        ] {
            match cfg(json) {
                Err(ClipError::Config(_)) if !unsupported => {}
                Err(ClipError::Unsupported(_)) if unsupported => {}
                r => panic!("{json}: {r:?}"),
            }
        }
    }

    #[test]
    fn exact_resize_keeps_the_whole_image() {
        // 8x4, left half black, right half white: straight to 224 x 224, no crop, so the
        // left column is black and the right one white (a centre crop of a shortest-edge
        // resize would show only the middle).
        let pre = Preprocessor::new(PreprocessConfig::siglip_default(224));
        let data: Vec<u8> = (0..8 * 4)
            .flat_map(|i| {
                let v = if i % 8 < 4 { 0 } else { 255 };
                [v, v, v, 255]
            })
            .collect();
        let px = pre
            .pixel_values(&ImageInput::Rgba {
                width: 8,
                height: 4,
                data: &data,
            })
            .unwrap();
        assert_eq!(px.len(), 3 * 224 * 224);
        for y in [0, 100, 223] {
            assert_eq!(px[y * 224], -1.0);
            assert_eq!(px[y * 224 + 223], 1.0);
        }
    }

    #[test]
    fn crop_offsets_follow_transformers() {
        // (size - crop) // 2 when it fits; ceil((crop - size) / 2) of zero padding otherwise.
        assert_eq!(crop_offset(286, 224), 31);
        assert_eq!(crop_offset(225, 224), 0);
        assert_eq!(crop_offset(224, 224), 0);
        assert_eq!(crop_offset(221, 224), -2);
        assert_eq!(crop_offset(222, 224), -1);
    }

    #[test]
    fn small_shortest_edge_pads_with_zero_pixels() {
        // shortest_edge 200 < crop 224: transformers' center_crop pads with 0 (before
        // rescale), i.e. (0 - mean) / std after normalisation.
        let mut cfg = PreprocessConfig::clip_default(224);
        cfg.size = ResizeTo::ShortestEdge(200);
        let pre = Preprocessor::new(cfg.clone());
        let white = vec![255u8; 8 * 8 * 4];
        let px = pre
            .pixel_values(&ImageInput::Rgba {
                width: 8,
                height: 8,
                data: &white,
            })
            .unwrap();
        let (s, pad) = (224, 12);
        for c in 0..3 {
            let plane = &px[c * s * s..][..s * s];
            let zero = (0.0 - cfg.image_mean[c]) / cfg.image_std[c];
            let one = (1.0 - cfg.image_mean[c]) / cfg.image_std[c];
            assert_eq!(plane[0], zero);
            assert_eq!(plane[(pad - 1) * s + pad], zero);
            assert_eq!(plane[pad * s + pad], one);
            assert_eq!(plane[(s - pad - 1) * s + s - pad - 1], one);
            assert_eq!(plane[(s - pad) * s + s - pad - 1], zero);
        }
    }
}
