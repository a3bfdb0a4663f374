//! The index file: what `webclip index` writes and `ClipIndex.importFile` reads (and
//! `exportFile` writes). A safetensors file, so any safetensors reader opens it:
//!
//! - tensor `embeddings`: F32 `[n, dim]`, L2-normalised rows, in entry order;
//! - `__metadata__` (string values, as safetensors wants): `format` = `webclip-index`,
//!   `version` = `1`, `fingerprint` (the model's, `index::fingerprint`), `dim`, and
//!   `entries`: a JSON array of `{ key, metadata }`, one per row.

use crate::error::{ClipError, Result};
use serde_json::{json, Value};

pub const FORMAT: &str = "webclip-index";
pub const VERSION: &str = "1";

/// One row of an index file.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// A string or a number.
    pub key: Value,
    pub metadata: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct IndexFile {
    pub fingerprint: Option<String>,
    pub dim: usize,
    pub entries: Vec<Entry>,
    /// `[entries.len() * dim]`
    pub embeddings: Vec<f32>,
}

fn bad(why: impl std::fmt::Display) -> ClipError {
    ClipError::Input(format!("not a webclip index file: {why}"))
}

impl IndexFile {
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        if self.embeddings.len() != self.entries.len() * self.dim {
            return Err(ClipError::Internal(format!(
                "index file: {} values for {} entries of {}",
                self.embeddings.len(),
                self.entries.len(),
                self.dim
            )));
        }
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|e| json!({ "key": e.key, "metadata": e.metadata }))
            .collect();
        let n = self.embeddings.len() * 4;
        let header = json!({
            "__metadata__": {
                "format": FORMAT,
                "version": VERSION,
                "fingerprint": self.fingerprint.clone().unwrap_or_default(),
                "dim": self.dim.to_string(),
                "entries": Value::Array(entries).to_string(),
            },
            "embeddings": { "dtype": "F32", "shape": [self.entries.len(), self.dim], "data_offsets": [0, n] },
        });
        let mut json = header.to_string().into_bytes();
        while !(json.len() + 8).is_multiple_of(8) {
            json.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + json.len() + n);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for v in &self.embeddings {
            out.extend_from_slice(&v.to_le_bytes());
        }
        Ok(out)
    }

    pub fn parse(bytes: &[u8]) -> Result<IndexFile> {
        let len = bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| bad("shorter than 8 bytes"))?;
        let start = usize::try_from(len)
            .ok()
            .and_then(|l| l.checked_add(8))
            .filter(|&s| s <= bytes.len())
            .ok_or_else(|| {
                bad(format!(
                    "its header length {len} runs past the end of the file"
                ))
            })?;
        let header: Value = serde_json::from_slice(&bytes[8..start])
            .map_err(|e| bad(format!("its header is not JSON ({e})")))?;
        let meta = header
            .get("__metadata__")
            .ok_or_else(|| bad("a safetensors file without webclip's metadata"))?;
        let field = |name: &str| meta.get(name).and_then(Value::as_str);
        if field("format") != Some(FORMAT) {
            return Err(bad(format!(
                "format is {:?}, not {FORMAT:?}",
                field("format")
            )));
        }
        if field("version") != Some(VERSION) {
            return Err(ClipError::Unsupported(format!(
                "index file version {:?}; this webclip reads version {VERSION}",
                field("version")
            )));
        }
        let dim: usize = field("dim")
            .and_then(|d| d.parse().ok())
            .filter(|&d| d > 0)
            .ok_or_else(|| bad("no valid `dim`"))?;
        let entries: Vec<Value> = serde_json::from_str(field("entries").unwrap_or("null"))
            .map_err(|e| bad(format!("`entries` is not a JSON array ({e})")))?;
        let entries = entries
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let key = e.get("key").cloned().unwrap_or(Value::Null);
                if !(key.is_string() || key.is_number()) {
                    return Err(bad(format!("entry {i} has no string or number `key`")));
                }
                let metadata = e.get("metadata").cloned().unwrap_or(Value::Null);
                Ok(Entry { key, metadata })
            })
            .collect::<Result<Vec<_>>>()?;
        let t = header
            .get("embeddings")
            .ok_or_else(|| bad("no `embeddings` tensor"))?;
        let shape: Vec<usize> = serde_json::from_value(t["shape"].clone())
            .map_err(|_| bad("`embeddings` has no shape"))?;
        let offsets: [usize; 2] = serde_json::from_value(t["data_offsets"].clone())
            .map_err(|_| bad("`embeddings` has no data_offsets"))?;
        if t["dtype"] != "F32" || shape != [entries.len(), dim] {
            return Err(bad(format!(
                "`embeddings` is {} {shape:?}, not F32 [{}, {dim}] (one row per entry)",
                t["dtype"],
                entries.len()
            )));
        }
        let n = entries.len() * dim * 4;
        let data = (offsets[1].checked_sub(offsets[0]) == Some(n))
            .then(|| bytes.get(start + offsets[0]..start + offsets[1]))
            .flatten()
            .ok_or_else(|| bad(format!("the file is truncated or its offsets are wrong ({} bytes of embeddings expected)", n)))?;
        let embeddings: Vec<f32> = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if let Some(i) = embeddings.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("row {} holds a non-finite value", i / dim)));
        }
        let fingerprint = field("fingerprint")
            .filter(|f| !f.is_empty())
            .map(str::to_string);
        Ok(IndexFile {
            fingerprint,
            dim,
            entries,
            embeddings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IndexFile {
        IndexFile {
            fingerprint: Some("abc".into()),
            dim: 3,
            entries: vec![
                Entry {
                    key: json!("k1"),
                    metadata: json!({ "path": "a/b.jpg", "paths": ["a/b.jpg"] }),
                },
                Entry {
                    key: json!(7),
                    metadata: Value::Null,
                },
            ],
            embeddings: vec![1.0, 0.0, 0.0, 0.0, 0.6, 0.8],
        }
    }

    #[test]
    fn round_trip_and_a_plain_safetensors_reader_opens_it() {
        let f = sample();
        let bytes = f.to_bytes().unwrap();
        assert_eq!(IndexFile::parse(&bytes).unwrap(), f);
        let st = crate::model::SafeTensors::parse(&bytes).unwrap();
        assert_eq!(st.info("embeddings").unwrap().shape, vec![2, 3]);
        assert_eq!(
            st.read_f32(bytes.as_slice(), "embeddings").unwrap(),
            f.embeddings
        );
    }

    #[test]
    fn foreign_truncated_and_lying_files_are_refused() {
        let bytes = sample().to_bytes().unwrap();
        for cut in [0, 5, 20, bytes.len() - 1] {
            let e = IndexFile::parse(&bytes[..cut]).unwrap_err();
            assert_eq!(e.code(), "bad-input", "{cut}: {e}");
        }
        // A model checkpoint is a safetensors file, but no index.
        let mut other = Vec::new();
        crate::model::safetensors::write_f32(
            &mut other,
            &[("w".into(), vec![2])],
            crate::model::safetensors::Dtype::F32,
            |_, b| {
                b.extend([1.0, 2.0]);
                Ok(())
            },
        )
        .unwrap();
        let e = IndexFile::parse(&other).unwrap_err();
        assert!(e.to_string().contains("without webclip's metadata"), "{e}");
        // Same-length edits of the header only.
        let edit = |from: &str, to: &str| {
            let at = bytes
                .windows(from.len())
                .position(|w| w == from.as_bytes())
                .unwrap();
            let mut b = bytes.clone();
            b[at..at + to.len()].copy_from_slice(to.as_bytes());
            b
        };
        let newer = edit("\"version\":\"1\"", "\"version\":\"9\"");
        assert_eq!(IndexFile::parse(&newer).unwrap_err().code(), "unsupported");
        assert!(IndexFile::parse(&edit("[2,3]", "[3,3]")).is_err());
    }
}
