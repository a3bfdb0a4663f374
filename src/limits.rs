//! Limits on untrusted input, each checked with a clear error before the allocation it
//! guards. A library that runs inside other people's pages must not take the page down with
//! one absurd file or call; these bounds sit far above every real checkpoint and request
//! (documented in js/README.md, mirrored for the JS layer in js/limits.js).

use crate::error::{ClipError, Result};

/// The safetensors JSON header, in bytes: the cap the `safetensors` crate itself applies
/// (`MAX_HEADER_SIZE`, 100 MB). Real headers are tens of KiB.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Tensors in one safetensors file. CLIP ViT-L/14 has 590, SigLIP so400m about 900.
pub const MAX_TENSORS: usize = 65_536;

/// Pixels of one image, by the dimensions its header declares (checked before decoding)
/// or by the RGBA buffer's width and height. 100 M pixels is 400 MB decoded as RGBA.
pub const MAX_IMAGE_PIXELS: u64 = 100_000_000;

/// Images or texts per forward pass (`maxBatch`): activation memory grows with it.
pub const MAX_BATCH: usize = 256;

/// Texts in one call (`embedTexts`), and images in one call (`embedImages`).
pub const MAX_ITEMS_PER_CALL: usize = 65_536;

/// One text, in UTF-8 bytes. The model reads at most its context (77 tokens for CLIP, a few
/// hundred characters); tokenising megabytes only to drop them would stall the page.
pub const MAX_TEXT_BYTES: usize = 65_536;

/// All the bytes of one call together (encoded images, RGBA pixels, texts): what is copied
/// into wasm memory, or posted to the worker, at once.
pub const MAX_REQUEST_BYTES: usize = 512 << 20;

/// `maxBatch` (0 is the backend's default).
pub fn check_max_batch(n: usize) -> Result<()> {
    if n > MAX_BATCH {
        return Err(ClipError::Input(format!(
            "maxBatch {n} is over the limit of {MAX_BATCH} images or texts per forward pass"
        )));
    }
    Ok(())
}

/// The texts of one call: their count, each one's length, and their total size.
pub fn check_texts<S: AsRef<str>>(texts: &[S]) -> Result<()> {
    check_count(texts.len(), "texts")?;
    let mut total = 0usize;
    for (i, t) in texts.iter().enumerate() {
        let n = t.as_ref().len();
        if n > MAX_TEXT_BYTES {
            return Err(ClipError::Input(format!(
                "text {i} is {n} bytes long, over the limit of {MAX_TEXT_BYTES} bytes (the model \
                 reads only its first tokens)"
            )));
        }
        total += n;
    }
    check_request_bytes(total)
}

/// The images of one call: their count and total size in bytes (encoded or RGBA).
pub fn check_images(count: usize, total_bytes: usize) -> Result<()> {
    check_count(count, "images")?;
    check_request_bytes(total_bytes)
}

fn check_count(n: usize, what: &str) -> Result<()> {
    if n > MAX_ITEMS_PER_CALL {
        return Err(ClipError::Input(format!(
            "{n} {what} in one call, over the limit of {MAX_ITEMS_PER_CALL}; split the call"
        )));
    }
    Ok(())
}

/// The total size of one call.
pub fn check_request_bytes(n: usize) -> Result<()> {
    if n > MAX_REQUEST_BYTES {
        return Err(ClipError::Input(format!(
            "the call holds {n} bytes of input, over the limit of {MAX_REQUEST_BYTES} bytes per \
             call; split the call"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_limit() {
        assert!(check_max_batch(0).is_ok());
        assert!(check_max_batch(MAX_BATCH).is_ok());
        let e = check_max_batch(MAX_BATCH + 1).unwrap_err();
        assert_eq!(e.code(), "bad-input");
        assert!(e.to_string().contains("maxBatch"), "{e}");
    }

    #[test]
    fn text_limits() {
        assert!(check_texts(&["a photo of a cat"; 3]).is_ok());
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        let e = check_texts(&["ok", long.as_str()]).unwrap_err();
        assert_eq!(e.code(), "bad-input");
        assert!(e.to_string().contains("text 1 is"), "{e}");
        // Multi-byte characters count in bytes.
        let wide = "é".repeat(MAX_TEXT_BYTES / 2 + 1);
        assert!(check_texts(&[wide]).is_err());
        let many = vec![""; MAX_ITEMS_PER_CALL + 1];
        let e = check_texts(&many).unwrap_err();
        assert!(e.to_string().contains("texts in one call"), "{e}");
        // Many texts each under the limit, over the request limit together.
        let big = "y".repeat(MAX_TEXT_BYTES);
        let n = MAX_REQUEST_BYTES / MAX_TEXT_BYTES + 1;
        let e = check_texts(&vec![big.as_str(); n]).unwrap_err();
        assert!(e.to_string().contains("bytes of input"), "{e}");
    }

    #[test]
    fn image_limits() {
        assert!(check_images(10, 1 << 20).is_ok());
        assert!(check_images(MAX_ITEMS_PER_CALL + 1, 0).is_err());
        let e = check_images(2, MAX_REQUEST_BYTES + 1).unwrap_err();
        assert_eq!(e.code(), "bad-input");
    }

    /// The JS layer states the same numbers (js/limits.js), so a call is refused the same
    /// way before and after crossing to the worker.
    #[test]
    fn js_layer_states_the_same_limits() {
        let js = include_str!("../js/limits.js");
        for (name, value) in [
            ("MAX_BATCH", MAX_BATCH),
            ("MAX_ITEMS_PER_CALL", MAX_ITEMS_PER_CALL),
            ("MAX_TEXT_BYTES", MAX_TEXT_BYTES),
            ("MAX_REQUEST_BYTES", MAX_REQUEST_BYTES),
            ("MAX_IMAGE_PIXELS", MAX_IMAGE_PIXELS as usize),
        ] {
            let line = format!("export const {name} = {value};");
            assert!(js.contains(&line), "js/limits.js lacks `{line}`");
        }
    }
}
