//! Resampling bit-exact with Pillow's `Image.resize(size, Image.BICUBIC)` on 8-bit images,
//! which is what `transformers.CLIPImageProcessor` calls, and `Image.BILINEAR` (triangle,
//! support 1), which SigLIP 2's `SiglipImageProcessor` configs ask for (and Pillow's other
//! convolution filters).
//!
//! Follows Pillow `src/libImaging/Resample.c` (`precompute_coeffs`, `normalize_coeffs_8bpc`,
//! `ImagingResampleHorizontal_8bpc` / `Vertical_8bpc`, `ImagingResampleInner`):
//! - the filter is Keys' cubic with a = -0.5, support 2; when shrinking, the support is
//!   stretched by the scale factor (antialiasing) and the taps by 1 / scale;
//! - each output sample's taps are normalised to sum 1 in f64, then rounded half away from
//!   zero to fixed point with 22 fractional bits (`PRECISION_BITS = 32 - 8 - 2`);
//! - sums start at 0.5 (`1 << 21`), are shifted right by 22 (floor) and clamped to 0..=255;
//! - two passes with an 8-bit intermediate, horizontal first, except where Pillow 13 goes
//!   vertical first (see [`vertical_first`]); a pass is skipped when its size does not
//!   change.
//!
//! Each output sample depends only on its own taps, so computing a window of the output (the
//! centre crop) gives the same bytes as resizing everything and cropping afterwards, without
//! the cost, and without allocating the full resized image of a very long panorama.

use crate::error::{ClipError, Result};

/// Fixed-point fraction bits of the taps, as in Pillow (8 bits of result, 2 of headroom).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's resampling filters (`Image.Resampling`, the numbers `preprocessor_config.json`
/// stores as `resample`). CLIP uses bicubic; the others share the same machinery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// `resample = 1`: truncated sinc, support 3.
    Lanczos,
    /// `resample = 2`: triangle, support 1.
    Bilinear,
    /// `resample = 3`: Keys' cubic with a = -0.5, support 2.
    Bicubic,
    /// `resample = 4`: box, support 0.5.
    Box,
    /// `resample = 5`: Hamming-windowed sinc, support 1.
    Hamming,
}

impl Filter {
    /// From PIL's `Image.Resampling` value; 0 (nearest) takes another code path in Pillow
    /// and is not supported.
    pub fn from_pil(value: u32) -> Option<Filter> {
        Some(match value {
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            _ => return None,
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    /// The filter functions as Pillow writes them, so the f64 rounding is the same
    /// (`sin`/`cos` of Hamming and Lanczos come from the platform's libm and may differ
    /// from Pillow's in the last bit; bicubic, bilinear and box are exact).
    fn eval(self, x: f64) -> f64 {
        fn sinc(x: f64) -> f64 {
            if x == 0.0 {
                return 1.0;
            }
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
        match self {
            Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    // `0.54f + 0.46f * cos(x)`: C float constants promoted to double.
                    x.sin() / x * (0.54f32 as f64 + 0.46f32 as f64 * x.cos())
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// The fixed-point taps of `count` consecutive output samples along one axis.
struct Taps {
    /// First input index of each output sample.
    start: Vec<usize>,
    /// Number of input samples each output sample reads.
    len: Vec<usize>,
    /// `[count, ksize]` fixed-point weights (row `i` holds `len[i]` used entries).
    weights: Vec<i32>,
    ksize: usize,
}

impl Taps {
    /// Taps of output samples `first..first + count` for `in_size -> out_size`
    /// (Pillow's `precompute_coeffs` with box `(0, in_size)`, then `normalize_coeffs_8bpc`).
    fn new(filter: Filter, in_size: usize, out_size: u64, first: u64, count: usize) -> Taps {
        // `(double)(in1 - in0) / outSize` where in0, in1 are C floats.
        let scale = (in_size as f32) as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let inv = 1.0 / filterscale;
        let mut taps = Taps {
            start: Vec::with_capacity(count),
            len: Vec::with_capacity(count),
            weights: vec![0; count * ksize],
            ksize,
        };
        let mut w = vec![0f64; ksize];
        for (i, xx) in (first..first + count as u64).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // C `(int)` truncates toward zero; the clamps make that the same as floor here.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(0) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut total = 0.0;
            for (x, wx) in w[..n].iter_mut().enumerate() {
                *wx = filter.eval(((x + xmin) as f64 - center + 0.5) * inv);
                total += *wx;
            }
            let row = &mut taps.weights[i * ksize..][..n];
            for (k, wx) in row.iter_mut().zip(&w[..n]) {
                let v = if total != 0.0 { wx / total } else { *wx };
                let fixed = v * (1u32 << PRECISION_BITS) as f64;
                // Round half away from zero, then truncate, as `normalize_coeffs_8bpc` does.
                *k = if v < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            taps.start.push(xmin);
            taps.len.push(n);
        }
        taps
    }

    fn row(&self, i: usize) -> (usize, &[i32]) {
        (
            self.start[i],
            &self.weights[i * self.ksize..][..self.len[i]],
        )
    }
}

/// Pillow's `clip8`: drop the 22 fraction bits (floor) and clamp to a byte.
#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rounding bias the sums start from (0.5 in fixed point).
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Which part of the resized image to compute: columns `x0..x0 + width`, rows
/// `y0..y0 + height` of the `out_width x out_height` result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x0: u64,
    pub y0: u64,
    pub width: usize,
    pub height: usize,
}

/// Resizes an interleaved 8-bit image (`channels` bytes a pixel, row-major `[height, width,
/// channels]`) to `out_width x out_height` with Pillow's `filter` and returns the `window` of
/// the result, `[window.height, window.width, channels]`.
#[allow(clippy::too_many_arguments)]
pub fn resize_window(
    filter: Filter,
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_width: u64,
    out_height: u64,
    window: Window,
) -> Result<Vec<u8>> {
    let bad = |what: String| Err(ClipError::Image(format!("resize: {what}")));
    if width == 0 || height == 0 || channels == 0 || out_width == 0 || out_height == 0 {
        return bad(format!(
            "empty image ({width}x{height}x{channels} -> {out_width}x{out_height})"
        ));
    }
    if width
        .checked_mul(height)
        .and_then(|n| n.checked_mul(channels))
        != Some(src.len())
    {
        return bad(format!(
            "{} bytes is not a {width}x{height} image of {channels} channels",
            src.len()
        ));
    }
    if window.x0 + window.width as u64 > out_width || window.y0 + window.height as u64 > out_height
    {
        return bad(format!(
            "window {window:?} outside the {out_width}x{out_height} result"
        ));
    }
    if window.width == 0 || window.height == 0 {
        return Ok(Vec::new());
    }
    let c = channels;
    let need_h = out_width != width as u64;
    let need_v = out_height != height as u64;
    // The source rows / columns the window's taps read (all of the window's own when that
    // axis is not resized).
    let span = |t: &Taps, n: usize| {
        let first = t.start.iter().copied().min().unwrap_or(0);
        let last = (0..n).map(|i| t.start[i] + t.len[i]).max().unwrap_or(first);
        (first, last - first)
    };
    let mut horiz = need_h.then(|| Taps::new(filter, width, out_width, window.x0, window.width));
    let mut vert = need_v.then(|| Taps::new(filter, height, out_height, window.y0, window.height));
    let (col0, cols) = match &horiz {
        Some(t) => span(t, window.width),
        None => (window.x0 as usize, window.width),
    };
    let (row0, rows) = match &vert {
        Some(t) => span(t, window.height),
        None => (window.y0 as usize, window.height),
    };
    // Taps relative to the first source column / row read (Pillow shifts its bounds too).
    if let Some(t) = &mut horiz {
        t.start.iter_mut().for_each(|s| *s -= col0);
    }
    if let Some(t) = &mut vert {
        t.start.iter_mut().for_each(|s| *s -= row0);
    }
    let stride = width * c;
    let src_at = |row: usize, col: usize| (row * width + col) * c;
    if need_h && need_v && vertical_first(width, height, out_width, out_height) {
        // Vertical pass over the columns the horizontal pass reads: [window.height, cols, c].
        let (Some(vert), Some(horiz)) = (&vert, &horiz) else {
            return Err(ClipError::Internal("resize: taps of both passes".into()));
        };
        let tmp = vertical_pass(&src[src_at(row0, col0)..], stride, cols * c, vert);
        Ok(horizontal_pass(&tmp, cols * c, window.height, c, horiz))
    } else {
        // Horizontal pass over the rows the vertical pass reads: [rows, window.width, c].
        let tmp = match &horiz {
            Some(h) => horizontal_pass(&src[src_at(row0, col0)..], stride, rows, c, h),
            // Same width: the window's columns are source columns.
            None => (0..rows)
                .flat_map(|r| &src[src_at(row0 + r, col0)..][..cols * c])
                .copied()
                .collect(),
        };
        Ok(match &vert {
            Some(v) => vertical_pass(&tmp, window.width * c, window.width * c, v),
            None => tmp,
        })
    }
}

/// Pillow 13 resizes vertically first when both axes change, the height shrinks and the
/// vertical pass removes more than twice as many lines as the horizontal one (measured on
/// Pillow 13.0 against both orders, every filter: the order changes the 8-bit
/// intermediate, so it changes results by a level here and there).
fn vertical_first(width: usize, height: usize, out_width: u64, out_height: u64) -> bool {
    let (w, h, ow, oh) = (
        width as i128,
        height as i128,
        out_width as i128,
        out_height as i128,
    );
    oh < h && 2 * (w - ow) < h - oh
}

/// The horizontal pass over `rows` rows of `stride` bytes: `[rows, taps.count, c]`.
fn horizontal_pass(src: &[u8], stride: usize, rows: usize, c: usize, taps: &Taps) -> Vec<u8> {
    let out_width = taps.start.len();
    let mut out = vec![0u8; rows * out_width * c];
    for (r, out_row) in out.chunks_exact_mut((out_width * c).max(1)).enumerate() {
        let in_row = &src[r * stride..];
        match c {
            1 => horizontal_row::<1>(in_row, out_row, taps),
            3 => horizontal_row::<3>(in_row, out_row, taps),
            4 => horizontal_row::<4>(in_row, out_row, taps),
            _ => {
                for (x, out_px) in out_row.chunks_exact_mut(c).enumerate() {
                    let (start, k) = taps.row(x);
                    for (ch, out) in out_px.iter_mut().enumerate() {
                        let mut acc = HALF;
                        for (i, &w) in k.iter().enumerate() {
                            acc += in_row[(start + i) * c + ch] as i32 * w;
                        }
                        *out = clip8(acc);
                    }
                }
            }
        }
    }
    out
}

/// The vertical pass: output row `y` sums rows `taps.row(y)` of `src` (rows `stride` bytes
/// apart), each `width` bytes wide: `[taps.count, width]`.
fn vertical_pass(src: &[u8], stride: usize, width: usize, taps: &Taps) -> Vec<u8> {
    let out_rows = taps.start.len();
    let mut out = vec![0u8; out_rows * width];
    // Row at a time: `acc[i] += row[i] * w` runs over contiguous memory and vectorises.
    // Integer sums do not depend on their order, so this equals Pillow's per-pixel loop.
    let mut acc = vec![0i32; width];
    for (y, out_row) in out.chunks_exact_mut(width.max(1)).enumerate() {
        let (start, k) = taps.row(y);
        acc.fill(HALF);
        for (j, &w) in k.iter().enumerate() {
            let row = &src[(start + j) * stride..][..width];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i32 * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    out
}

/// One row of the horizontal pass for `C` interleaved channels: `[width, C]` source to
/// `[window.width, C]` output, all channels of a pixel summed together as Pillow does.
fn horizontal_row<const C: usize>(in_row: &[u8], out_row: &mut [u8], taps: &Taps) {
    for (x, out_px) in out_row.chunks_exact_mut(C).enumerate() {
        let (start, k) = taps.row(x);
        let px = &in_row[start * C..(start + k.len()) * C];
        let mut acc = [HALF; C];
        for (p, &w) in px.chunks_exact(C).zip(k) {
            for ch in 0..C {
                acc[ch] += p[ch] as i32 * w;
            }
        }
        for ch in 0..C {
            out_px[ch] = clip8(acc[ch]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(src: &[u8], w: usize, h: usize, c: usize, ow: u64, oh: u64) -> Vec<u8> {
        let win = Window {
            x0: 0,
            y0: 0,
            width: ow as usize,
            height: oh as usize,
        };
        resize_window(Filter::Bicubic, src, w, h, c, ow, oh, win).unwrap()
    }

    fn noise(n: usize, seed: u32) -> Vec<u8> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn taps_sum_to_one_in_fixed_point() {
        for (inp, out) in [(7, 224), (224, 224), (900, 3360), (4000, 224), (60, 224)] {
            let t = Taps::new(Filter::Bicubic, inp, out, 0, out as usize);
            for i in 0..out as usize {
                let s: i64 = t.row(i).1.iter().map(|&w| w as i64).sum();
                // Rounding each tap moves the sum by at most 0.5 a tap.
                assert!(
                    (s - (1 << PRECISION_BITS)).unsigned_abs() as usize <= t.len[i],
                    "{inp}->{out} sample {i}: sum {s}"
                );
            }
        }
    }

    #[test]
    fn same_size_is_identity() {
        let src = noise(13 * 9 * 3, 1);
        assert_eq!(full(&src, 13, 9, 3, 13, 9), src);
    }

    const FILTERS: [Filter; 5] = [
        Filter::Lanczos,
        Filter::Bilinear,
        Filter::Bicubic,
        Filter::Box,
        Filter::Hamming,
    ];

    #[test]
    fn constant_image_stays_constant() {
        for f in FILTERS {
            for v in [0u8, 1, 128, 254, 255] {
                let src = vec![v; 37 * 23];
                for (ow, oh) in [(224, 139), (5, 3), (300, 23), (37, 500)] {
                    let win = Window {
                        x0: 0,
                        y0: 0,
                        width: ow as usize,
                        height: oh as usize,
                    };
                    let out = resize_window(f, &src, 37, 23, 1, ow, oh, win).unwrap();
                    assert!(out.iter().all(|&o| o == v), "{f:?} {v} -> {ow}x{oh}");
                }
            }
        }
    }

    #[test]
    fn box_and_bilinear_match_hand_computed_pillow() {
        let one_row = |f, src: &[u8], ow| {
            let win = Window {
                x0: 0,
                y0: 0,
                width: ow,
                height: 1,
            };
            resize_window(f, src, src.len(), 1, 1, ow as u64, 1, win).unwrap()
        };
        // Box halving: the mean of each pair, half rounded up.
        assert_eq!(one_row(Filter::Box, &[10, 21, 0, 255], 2), vec![16, 128]);
        // Bilinear 2 -> 4: output 0 reads only input 0 (its other tap is outside);
        // output 1 is 0.75 * p0 + 0.25 * p1.
        assert_eq!(
            one_row(Filter::Bilinear, &[0, 200], 4),
            vec![0, 50, 150, 200]
        );
    }

    #[test]
    fn window_equals_crop_of_full_resize() {
        let (w, h, c) = (61, 43, 3);
        let src = noise(w * h * c, 7);
        // (70, 20) and (224, 30) go vertical first.
        for (ow, oh) in [
            (224u64, 157u64),
            (30, 20),
            (61, 100),
            (100, 43),
            (70, 20),
            (224, 30),
        ] {
            let all = full(&src, w, h, c, ow, oh);
            let win = Window {
                x0: ow / 3,
                y0: oh / 4,
                width: (ow / 2) as usize,
                height: (oh / 2) as usize,
            };
            let part = resize_window(Filter::Bicubic, &src, w, h, c, ow, oh, win).unwrap();
            for y in 0..win.height {
                let a = &all[((win.y0 as usize + y) * ow as usize + win.x0 as usize) * c..]
                    [..win.width * c];
                assert_eq!(
                    &part[y * win.width * c..][..win.width * c],
                    a,
                    "{ow}x{oh} row {y}"
                );
            }
        }
    }

    #[test]
    fn pass_order_follows_pillow() {
        // Pillow 13.0's `Image.resize((4, 3), BILINEAR)` of this 2x4 image: vertical first
        // (the height shrinks, the width grows). Horizontal first would give 118 for the
        // last row's third pixel instead of 119.
        let src = [200, 128, 0, 128, 0, 200, 37, 128];
        let win = Window {
            x0: 0,
            y0: 0,
            width: 4,
            height: 3,
        };
        let out = resize_window(Filter::Bilinear, &src, 2, 4, 1, 4, 3, win).unwrap();
        assert_eq!(out, [140, 137, 131, 128, 0, 41, 123, 164, 26, 57, 119, 150]);
        // Vertical first only when the height shrinks by more than twice the width's loss.
        assert!(vertical_first(200, 256, 224, 224));
        assert!(!vertical_first(256, 200, 224, 224));
        assert!(!vertical_first(100, 100, 60, 20));
        assert!(vertical_first(100, 100, 61, 20));
        assert!(!vertical_first(55, 61, 88, 64));
        assert!(!vertical_first(300, 400, 100, 100));
    }

    #[test]
    fn upscale_of_two_pixels_matches_hand_computed_pillow() {
        // 2x1 [0, 255] -> 4x1, scale 0.5. Output 1: center 0.75, taps at x = 0, 1 are
        // bicubic(0.25) = 0.8671875 and bicubic(0.75) = 0.2265625, normalised 0.79286 and
        // 0.20714; 255 * 0.20714 = 52.8 -> 53. Output 0: taps bicubic(0.25) and
        // bicubic(1.25) = -0.0703125 give 255 * -0.088 < 0 -> 0 (clamped).
        let out = full(&[0, 255], 2, 1, 1, 4, 1);
        assert_eq!(out, vec![0, 53, 202, 255]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let win = Window {
            x0: 0,
            y0: 0,
            width: 4,
            height: 4,
        };
        assert!(resize_window(Filter::Bicubic, &[0; 5], 2, 2, 1, 4, 4, win).is_err());
        assert!(resize_window(Filter::Bicubic, &[], 0, 0, 1, 4, 4, win).is_err());
        assert!(resize_window(Filter::Bicubic, &[0; 4], 2, 2, 1, 3, 3, win).is_err());
    }
}
