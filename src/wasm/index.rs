//! The vector store (`crate::index`) for js/clip-index.js: rows by slot, flat typed
//! arrays in and out, every failure a JS `Error` with a `code`.

use super::js_err;
use crate::error::ClipError;
use crate::index::file::{Entry, IndexFile};
use crate::index::{self, Precision, VectorStore};
use js_sys::{Float32Array, Uint32Array};
use wasm_bindgen::prelude::*;

/// `fingerprint(header, config)`: the model's identity for an index (see
/// `index::fingerprint`): 32 hex digits.
#[wasm_bindgen(js_name = modelFingerprint)]
pub fn model_fingerprint(header: &[u8], config: &[u8]) -> String {
    index::fingerprint(header, config)
}

#[wasm_bindgen]
pub struct WasmVectorStore(VectorStore);

/// `Some(mask)` unless the array is empty: JS passes an empty one for "every row".
fn mask(allow: &[u32]) -> Option<&[u32]> {
    (!allow.is_empty()).then_some(allow)
}

#[wasm_bindgen]
impl WasmVectorStore {
    /// A store of `dim`-long rows at `precision` (`f32`, `f16` or `i8`).
    #[wasm_bindgen(constructor)]
    pub fn new(dim: usize, precision: &str) -> Result<WasmVectorStore, JsValue> {
        let p = Precision::parse(precision).map_err(js_err)?;
        Ok(WasmVectorStore(VectorStore::new(dim, p).map_err(js_err)?))
    }

    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.0.len()
    }

    #[wasm_bindgen(getter)]
    pub fn dim(&self) -> usize {
        self.0.dim()
    }

    #[wasm_bindgen(getter)]
    pub fn precision(&self) -> String {
        self.0.precision().name().into()
    }

    /// Bytes of one encoded row.
    #[wasm_bindgen(getter, js_name = rowBytes)]
    pub fn row_bytes(&self) -> usize {
        self.0.precision().row_bytes(self.0.dim())
    }

    /// Bytes the rows occupy in wasm memory.
    #[wasm_bindgen(getter, js_name = memoryBytes)]
    pub fn memory_bytes(&self) -> f64 {
        self.0.memory_bytes() as f64
    }

    /// Append `[n * dim]` embeddings (normalised); returns the first new slot.
    #[wasm_bindgen(js_name = pushMany)]
    pub fn push_many(&mut self, flat: &[f32]) -> Result<usize, JsValue> {
        let first = self.0.len();
        self.0.push_many(flat).map_err(js_err)?;
        Ok(first)
    }

    /// Append encoded rows (as `encoded` returned them); returns the first new slot.
    #[wasm_bindgen(js_name = pushEncoded)]
    pub fn push_encoded(&mut self, bytes: &[u8]) -> Result<usize, JsValue> {
        let first = self.0.len();
        self.0.push_encoded(bytes).map_err(js_err)?;
        Ok(first)
    }

    pub fn set(&mut self, slot: usize, x: &[f32]) -> Result<(), JsValue> {
        self.0.set(slot, x).map_err(js_err)
    }

    /// Move the last row into `slot`; returns the moved row's old slot, or -1.
    #[wasm_bindgen(js_name = swapRemove)]
    pub fn swap_remove(&mut self, slot: usize) -> Result<i32, JsValue> {
        Ok(match self.0.swap_remove(slot).map_err(js_err)? {
            Some(moved) => moved as i32,
            None => -1,
        })
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The encoded bytes of `slot`.
    pub fn encoded(&self, slot: usize) -> Result<Vec<u8>, JsValue> {
        self.0.row_bytes(slot).map_err(js_err)
    }

    /// The stored row at `slot`, decoded.
    pub fn get(&self, slot: usize) -> Result<Float32Array, JsValue> {
        Ok(Float32Array::from(
            self.0.get(slot).map_err(js_err)?.as_slice(),
        ))
    }

    /// Top `k`: `{ slots: Uint32Array, scores: Float32Array }` best first, among the slots
    /// whose bit is set in `allow` (empty: all) scoring at least `minScore`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        allow: &[u32],
        min_score: f32,
    ) -> Result<JsValue, JsValue> {
        let hits = self
            .0
            .search(query, k, mask(allow), min_score)
            .map_err(js_err)?;
        let slots: Vec<u32> = hits.iter().map(|h| h.slot as u32).collect();
        let scores: Vec<f32> = hits.iter().map(|h| h.score).collect();
        let out = js_sys::Object::new();
        js_sys::Reflect::set(&out, &"slots".into(), &Uint32Array::from(slots.as_slice()))?;
        js_sys::Reflect::set(
            &out,
            &"scores".into(),
            &Float32Array::from(scores.as_slice()),
        )?;
        Ok(out.into())
    }

    /// Near-duplicate groups as one flat array: `[n0, s, s, ..., n1, s, ...]` (each
    /// group's length, then its slots).
    #[wasm_bindgen(js_name = duplicateGroups)]
    pub fn duplicate_groups(&self, threshold: f32, allow: &[u32]) -> Uint32Array {
        let groups = self.0.duplicate_groups(threshold, mask(allow));
        let mut flat = Vec::new();
        for g in groups {
            flat.push(g.len() as u32);
            flat.extend(g.iter().map(|&s| s as u32));
        }
        Uint32Array::from(flat.as_slice())
    }
}

/// Parse an index file (`index::file`): `{ fingerprint, dim, entries, embeddings }` with
/// `entries` the JSON text of `[{ key, metadata }]` and `embeddings` `[n * dim]`.
#[wasm_bindgen(js_name = parseIndexFile)]
pub fn parse_index_file(bytes: &[u8]) -> Result<JsValue, JsValue> {
    let f = IndexFile::parse(bytes).map_err(js_err)?;
    let entries: Vec<serde_json::Value> = f
        .entries
        .into_iter()
        .map(|e| serde_json::json!({ "key": e.key, "metadata": e.metadata }))
        .collect();
    let out = js_sys::Object::new();
    let fp = f.fingerprint.map_or(JsValue::NULL, |s| s.into());
    js_sys::Reflect::set(&out, &"fingerprint".into(), &fp)?;
    js_sys::Reflect::set(&out, &"dim".into(), &(f.dim as f64).into())?;
    let text = serde_json::Value::Array(entries).to_string();
    js_sys::Reflect::set(&out, &"entries".into(), &text.into())?;
    let emb = Float32Array::from(f.embeddings.as_slice());
    js_sys::Reflect::set(&out, &"embeddings".into(), &emb)?;
    Ok(out.into())
}

/// Write an index file from `entries` (the JSON text of `[{ key, metadata }]`) and their
/// embeddings `[n * dim]`.
#[wasm_bindgen(js_name = writeIndexFile)]
pub fn write_index_file(
    fingerprint: Option<String>,
    dim: usize,
    entries: &str,
    embeddings: &[f32],
) -> Result<Vec<u8>, JsValue> {
    let list: Vec<serde_json::Value> = serde_json::from_str(entries)
        .map_err(|e| js_err(ClipError::Input(format!("index entries: {e}"))))?;
    let entries = list
        .into_iter()
        .map(|e| Entry {
            key: e["key"].clone(),
            metadata: e["metadata"].clone(),
        })
        .collect::<Vec<_>>();
    if dim == 0 || embeddings.len() != entries.len() * dim {
        return Err(js_err(ClipError::Input(format!(
            "{} values for {} entries of {dim}",
            embeddings.len(),
            entries.len()
        ))));
    }
    let file = IndexFile {
        fingerprint,
        dim,
        entries,
        embeddings: embeddings.to_vec(),
    };
    file.to_bytes().map_err(js_err)
}
