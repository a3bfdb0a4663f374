//! Shared by the fuzz targets: the fixture files some targets need (read once, at start),
//! and the checks every target makes on an error.

use std::path::PathBuf;
use webclip::ClipError;

/// `../shared/fixtures` beside the repository, or `WEBCLIP_FIXTURES` (fuzz/run.sh sets it).
pub fn fixtures() -> PathBuf {
    match std::env::var_os("WEBCLIP_FIXTURES") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"),
    }
}

/// A fixture file; the harness cannot run without it, so a missing one stops it at once.
pub fn fixture(rel: &str) -> Vec<u8> {
    let path = fixtures().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "fuzz harness: cannot read fixture {} ({e}); set WEBCLIP_FIXTURES",
            path.display()
        )
    })
}

/// Every error from untrusted bytes is a typed input error with a message, never
/// `Internal` (which would be a bug in webclip, found by the fuzzer).
pub fn check_error(e: &ClipError) {
    assert!(
        !matches!(e, ClipError::Internal(_)),
        "untrusted input produced an internal error: {e}"
    );
    assert!(!e.to_string().is_empty());
    assert!(!e.code().is_empty());
}
