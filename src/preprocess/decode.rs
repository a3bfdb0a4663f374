//! Bytes or canvas pixels to 8-bit RGB (or gray) pixels, the way the reference gets there:
//! `PIL.Image.open(...)` then `convert("RGB")` with any alpha composited onto white by
//! Pillow's `Image.alpha_composite` (Pillow `src/libImaging/AlphaComposite.c`, the integer
//! path), and gray replicated to three channels (done at the very end: resampling is per
//! channel, so one gray channel is resized instead of three equal ones).
//!
//! The image's dimensions are read from its header and checked against the pixel limit
//! before anything is decoded, so a small file that declares a huge image costs nothing.

use super::ImageInput;
use crate::error::{ClipError, Result};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// Decoded pixels, row-major `[height, width, channels]`, `channels` 1 (gray) or 3 (RGB).
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

/// An image from `input`, refusing more than `max_pixels` pixels.
pub fn pixels(input: &ImageInput, max_pixels: u64) -> Result<Pixels> {
    match *input {
        ImageInput::Encoded(bytes) => decode(bytes, max_pixels),
        ImageInput::Rgba {
            width,
            height,
            data,
        } => from_rgba(width, height, data, max_pixels),
    }
}

/// Pixels the image declares (its header's width times height; an RGBA buffer's own), read
/// without decoding; None where the header cannot be read (decoding then says why).
pub fn declared_pixels(input: &ImageInput) -> Option<u64> {
    let (width, height) = match *input {
        ImageInput::Encoded(bytes) => ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .ok()?
            .into_dimensions()
            .ok()?,
        ImageInput::Rgba { width, height, .. } => (width, height),
    };
    Some(u64::from(width) * u64::from(height))
}

fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(ClipError::Image(format!(
            "the image is empty ({width}x{height} pixels)"
        )));
    }
    let n = width as u64 * height as u64;
    if n > max_pixels {
        return Err(ClipError::Image(format!(
            "the image is {width}x{height} = {n} pixels, more than the limit of {max_pixels}"
        )));
    }
    Ok(())
}

/// Raw RGBA8 (a canvas' `ImageData`), composited onto white.
fn from_rgba(width: u32, height: u32, data: &[u8], max_pixels: u64) -> Result<Pixels> {
    check_size(width, height, max_pixels)?;
    let expected = width as u64 * height as u64 * 4;
    if data.len() as u64 != expected {
        return Err(ClipError::Image(format!(
            "an RGBA buffer of {width}x{height} pixels holds {expected} bytes, got {}",
            data.len()
        )));
    }
    Ok(Pixels {
        width: width as usize,
        height: height as usize,
        channels: 3,
        data: rgba_over_white_copy(data),
    })
}

fn decode(bytes: &[u8], max_pixels: u64) -> Result<Pixels> {
    let err = |e: image::ImageError| ClipError::Image(format!("cannot decode the image: {e}"));
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ClipError::Image(format!("cannot read the image: {e}")))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP | ImageFormat::Gif) => {}
        Some(other) => {
            return Err(ClipError::Image(format!(
                "unsupported image format {}: use PNG, JPEG, WebP or GIF",
                other
                    .extensions_str()
                    .first()
                    .unwrap_or(&"?")
                    .to_uppercase()
            )))
        }
        None => {
            return Err(ClipError::Image(format!(
                "not an image: {} bytes that are not PNG, JPEG, WebP or GIF",
                bytes.len()
            )))
        }
    }
    // Decoders that honour it stop at this budget: the output (up to 8 bytes a pixel for
    // 16-bit RGBA) plus room for their own buffers.
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    // Reads the header only.
    let mut decoder = reader.into_decoder().map_err(err)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, max_pixels)?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(err)?;
    // EXIF rotation, as `transformers.image_utils.load_image` (exif_transpose) and browsers
    // apply it: the file then gives the same pixels as a canvas drawn from it.
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(to_pixels(img))
}

/// RGB or gray bytes, alpha composited onto white. 16-bit samples keep their high byte,
/// as Pillow reads 16-bit PNGs into 8-bit modes (`RGB;16B` raw mode).
fn to_pixels(img: DynamicImage) -> Pixels {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let (channels, data) = match img {
        DynamicImage::ImageLuma8(b) => (1, b.into_raw()),
        DynamicImage::ImageRgb8(b) => (3, b.into_raw()),
        DynamicImage::ImageLumaA8(b) => (1, gray_alpha_over_white(b.into_raw())),
        DynamicImage::ImageRgba8(b) => (3, rgba_over_white(b.into_raw())),
        DynamicImage::ImageLuma16(b) => (1, b.as_raw().iter().map(|&v| (v >> 8) as u8).collect()),
        DynamicImage::ImageRgb16(b) => (3, b.as_raw().iter().map(|&v| (v >> 8) as u8).collect()),
        DynamicImage::ImageLumaA16(b) => {
            let hi: Vec<u8> = b.as_raw().iter().map(|&v| (v >> 8) as u8).collect();
            (1, gray_alpha_over_white(hi))
        }
        DynamicImage::ImageRgba16(b) => {
            let hi: Vec<u8> = b.as_raw().iter().map(|&v| (v >> 8) as u8).collect();
            (3, rgba_over_white(hi))
        }
        other => (3, rgba_over_white(other.to_rgba8().into_raw())),
    };
    Pixels {
        width,
        height,
        channels,
        data,
    }
}

/// One channel of `Image.alpha_composite(white, src)`: Pillow's integer path with 7 extra
/// bits of precision (`PRECISION_BITS 7`) and its shift-based division by 255.
///
/// Over an opaque white destination Pillow's `coef1 = a * 255 * 255 * 128 / outa255` has
/// `outa255 = 255 * 255`, so it is exactly `a * 128`: no division per pixel (the unit test
/// checks every (value, alpha) pair against the general formula).
#[inline]
pub fn over_white(v: u8, alpha: u8) -> u8 {
    const BITS: u32 = 7;
    match alpha {
        0 => return 255,
        // The formula gives `v` back (tested); most canvas pixels are opaque.
        255 => return v,
        _ => {}
    }
    let a = alpha as u32;
    let coef1 = a << BITS;
    let coef2 = (255 - a) << BITS;
    let t = v as u32 * coef1 + 255 * coef2 + (0x80 << BITS);
    // SHIFTFORDIV255(t) = ((t >> 8) + t) >> 8
    ((((t >> 8) + t) >> 8) >> BITS) as u8
}

/// RGBA to RGB over white, from a borrowed buffer (a canvas' pixels).
fn rgba_over_white_copy(rgba: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let a = px[3];
        out.extend([
            over_white(px[0], a),
            over_white(px[1], a),
            over_white(px[2], a),
        ]);
    }
    out
}

/// RGBA to RGB over white, in place (a big photo is not held twice).
fn rgba_over_white(mut px: Vec<u8>) -> Vec<u8> {
    let n = px.len() / 4;
    for i in 0..n {
        let a = px[4 * i + 3];
        // Writes at 3i.. never overtake the reads at 4i..
        for c in 0..3 {
            px[3 * i + c] = over_white(px[4 * i + c], a);
        }
    }
    px.truncate(3 * n);
    px
}

/// Gray + alpha to gray over white, in place.
fn gray_alpha_over_white(mut px: Vec<u8>) -> Vec<u8> {
    let n = px.len() / 2;
    for i in 0..n {
        px[i] = over_white(px[2 * i], px[2 * i + 1]);
    }
    px.truncate(n);
    px
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_is_unchanged_and_transparent_is_white() {
        for v in 0..=255u8 {
            assert_eq!(over_white(v, 255), v);
            assert_eq!(over_white(v, 0), 255);
        }
    }

    /// `ImagingAlphaComposite`'s scalar path for any destination, transcribed.
    fn pillow_alpha_composite(src: [u8; 4], dst: [u8; 4]) -> [u8; 4] {
        const BITS: u32 = 7;
        let shiftdiv255 = |a: u32| ((a >> 8) + a) >> 8;
        if src[3] == 0 {
            return dst;
        }
        let (sa, da) = (src[3] as u32, dst[3] as u32);
        let blend = da * (255 - sa);
        let outa255 = sa * 255 + blend;
        let coef1 = sa * 255 * 255 * (1 << BITS) / outa255;
        let coef2 = 255 * (1 << BITS) - coef1;
        let ch = |i: usize| {
            let t = src[i] as u32 * coef1 + dst[i] as u32 * coef2;
            (shiftdiv255(t + (0x80 << BITS)) >> BITS) as u8
        };
        [ch(0), ch(1), ch(2), shiftdiv255(outa255 + 0x80) as u8]
    }

    #[test]
    fn over_white_equals_pillow_for_every_value_and_alpha() {
        for a in 0..=255u8 {
            for v in 0..=255u8 {
                let want = pillow_alpha_composite([v, v, v, a], [255; 4]);
                assert_eq!(over_white(v, a), want[0], "v {v} a {a}");
                assert_eq!(want[3], 255);
            }
        }
    }

    #[test]
    fn composite_is_the_rounded_blend() {
        // Pillow's integer path rounds v * a / 255 + 255 * (1 - a / 255) to within one level.
        for a in 0..=255u32 {
            for v in (0..=255u32).step_by(5) {
                let exact = (v * a + 255 * (255 - a)) as f64 / 255.0;
                let got = over_white(v as u8, a as u8) as f64;
                assert!((got - exact).abs() <= 1.0, "v {v} a {a}: {got} vs {exact}");
            }
        }
    }
}
