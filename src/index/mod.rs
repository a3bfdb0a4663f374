//! A vector store for a library of embeddings: compact rows (f32, f16 or i8 with a scale
//! per row) scanned by SIMD kernels (`scan.rs`), top-k search with an allow-list, and
//! near-duplicate groups (`dups.rs`). Rows are addressed by slot (`0..len`); keys,
//! metadata, persistence and exact re-scoring of the best candidates live in the JS
//! `ClipIndex` (js/clip-index.js), which keeps a key -> slot map.
//!
//! Every row is L2-normalised on the way in, so a score is a cosine similarity. A row's
//! encoded bytes ([`VectorStore::row_bytes`], [`VectorStore::push_encoded`]) are what the
//! JS layer persists: loading a stored library is a copy, no re-quantisation.
//!
//! Memory per row: `4 * dim` (f32), `2 * dim` (f16), `dim + 4` (i8): 2048, 1024 and 516
//! bytes for ViT-B/32's 512.

#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod dups;
pub mod file;
#[cfg(not(target_arch = "wasm32"))]
pub mod parquet;
pub mod scan;

use crate::error::{ClipError, Result};

/// How a row is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
    I8,
}

impl Precision {
    pub fn parse(s: &str) -> Result<Precision> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            "i8" | "int8" => Ok(Precision::I8),
            _ => Err(ClipError::Input(format!(
                "precision must be one of f32, f16, i8, not {s:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::I8 => "i8",
        }
    }

    /// Bytes of one encoded row of `dim` values.
    pub fn row_bytes(self, dim: usize) -> usize {
        match self {
            Precision::F32 => 4 * dim,
            Precision::F16 => 2 * dim,
            Precision::I8 => 4 + dim,
        }
    }
}

/// Rows in one contiguous buffer per part, `[len, dim]`.
enum Rows {
    F32(Vec<f32>),
    F16(Vec<u16>),
    I8 { codes: Vec<i8>, scales: Vec<f32> },
}

/// A search hit: the row's slot and its score (cosine similarity as the store computes it
/// from its compact rows).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hit {
    pub slot: usize,
    pub score: f32,
}

pub struct VectorStore {
    dim: usize,
    precision: Precision,
    len: usize,
    rows: Rows,
}

/// `x / |x|`, refusing lengths, non-finite values and zero vectors with a message naming
/// `what`.
fn unit(x: &[f32], dim: usize, what: &str) -> Result<Vec<f32>> {
    if x.len() != dim {
        return Err(ClipError::Input(format!(
            "{what} has {} values, but the index holds embeddings of {dim}",
            x.len()
        )));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(ClipError::Input(format!(
            "{what} holds a non-finite value ({}) at {i}",
            x[i]
        )));
    }
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(ClipError::Input(format!(
            "{what} is a zero vector: it has no direction to compare"
        )));
    }
    Ok(x.iter().map(|v| v / norm).collect())
}

/// Symmetric int8 codes of a unit vector: `(codes, scale)` with `x ≈ scale * code`.
fn quantise(x: &[f32]) -> (Vec<i8>, f32) {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let codes = x
        .iter()
        .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (codes, scale)
}

/// A compact query: what the kernel of each precision multiplies rows with.
enum Query {
    F32(Vec<f32>),
    I8(Vec<i8>, f32),
}

impl VectorStore {
    pub fn new(dim: usize, precision: Precision) -> Result<VectorStore> {
        if dim == 0 || dim > 65_536 {
            return Err(ClipError::Input(format!(
                "an index needs an embedding length between 1 and 65536, not {dim}"
            )));
        }
        let rows = match precision {
            Precision::F32 => Rows::F32(Vec::new()),
            Precision::F16 => Rows::F16(Vec::new()),
            Precision::I8 => Rows::I8 {
                codes: Vec::new(),
                scales: Vec::new(),
            },
        };
        Ok(VectorStore {
            dim,
            precision,
            len: 0,
            rows,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the rows occupy (what the store holds, not its spare capacity).
    pub fn memory_bytes(&self) -> usize {
        self.len * self.precision.row_bytes(self.dim)
    }

    /// Append one embedding (any length > 0; it is normalised); returns its slot.
    pub fn push(&mut self, x: &[f32]) -> Result<usize> {
        let u = unit(x, self.dim, "an embedding")?;
        self.write(None, &u);
        self.len += 1;
        Ok(self.len - 1)
    }

    /// Append `n` embeddings given as one flat `[n, dim]` array; all or none are added.
    pub fn push_many(&mut self, flat: &[f32]) -> Result<usize> {
        if !flat.len().is_multiple_of(self.dim) {
            return Err(ClipError::Input(format!(
                "{} values are not a whole number of embeddings of {}",
                flat.len(),
                self.dim
            )));
        }
        let units = flat
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(i, x)| unit(x, self.dim, &format!("embedding {i}")))
            .collect::<Result<Vec<_>>>()?;
        for u in &units {
            self.write(None, u);
            self.len += 1;
        }
        Ok(units.len())
    }

    /// Replace the row at `slot`.
    pub fn set(&mut self, slot: usize, x: &[f32]) -> Result<()> {
        self.check_slot(slot)?;
        let u = unit(x, self.dim, "an embedding")?;
        self.write(Some(slot), &u);
        Ok(())
    }

    fn check_slot(&self, slot: usize) -> Result<()> {
        if slot >= self.len {
            return Err(ClipError::Input(format!(
                "row {slot} does not exist (the index holds {})",
                self.len
            )));
        }
        Ok(())
    }

    /// Encode the unit vector `u` into `slot`, or append it.
    fn write(&mut self, slot: Option<usize>, u: &[f32]) {
        let d = self.dim;
        match &mut self.rows {
            Rows::F32(v) => match slot {
                Some(s) => v[s * d..(s + 1) * d].copy_from_slice(u),
                None => v.extend_from_slice(u),
            },
            Rows::F16(v) => {
                let enc = u.iter().map(|&x| half::f16::from_f32(x).to_bits());
                match slot {
                    Some(s) => v[s * d..(s + 1) * d]
                        .iter_mut()
                        .zip(enc)
                        .for_each(|(o, e)| *o = e),
                    None => v.extend(enc),
                }
            }
            Rows::I8 { codes, scales } => {
                let (c, scale) = quantise(u);
                match slot {
                    Some(s) => {
                        codes[s * d..(s + 1) * d].copy_from_slice(&c);
                        scales[s] = scale;
                    }
                    None => {
                        codes.extend_from_slice(&c);
                        scales.push(scale);
                    }
                }
            }
        }
    }

    /// Remove the row at `slot` by moving the last row into it. Returns the slot the moved
    /// row had (`len - 1` before the call), or `None` when `slot` was the last row.
    pub fn swap_remove(&mut self, slot: usize) -> Result<Option<usize>> {
        self.check_slot(slot)?;
        let (d, last) = (self.dim, self.len - 1);
        fn mv<T: Copy>(v: &mut Vec<T>, d: usize, slot: usize, last: usize) {
            if slot != last {
                v.copy_within(last * d..(last + 1) * d, slot * d);
            }
            v.truncate(last * d);
        }
        match &mut self.rows {
            Rows::F32(v) => mv(v, d, slot, last),
            Rows::F16(v) => mv(v, d, slot, last),
            Rows::I8 { codes, scales } => {
                mv(codes, d, slot, last);
                mv(scales, 1, slot, last);
            }
        }
        self.len = last;
        Ok((slot != last).then_some(last))
    }

    pub fn clear(&mut self) {
        *self = VectorStore::new(self.dim, self.precision).expect("dim was valid");
    }

    /// The stored row at `slot`, decoded to floats (unit length up to the precision).
    pub fn get(&self, slot: usize) -> Result<Vec<f32>> {
        self.check_slot(slot)?;
        Ok(self.decode(slot))
    }

    fn decode(&self, slot: usize) -> Vec<f32> {
        let d = self.dim;
        let r = slot * d..(slot + 1) * d;
        match &self.rows {
            Rows::F32(v) => v[r].to_vec(),
            Rows::F16(v) => v[r].iter().map(|&h| scan::scalar::f16_to_f32(h)).collect(),
            Rows::I8 { codes, scales } => {
                let s = scales[slot];
                codes[r].iter().map(|&c| c as f32 * s).collect()
            }
        }
    }

    /// The encoded bytes of `slot` (little-endian; i8: the f32 scale, then the codes), as
    /// [`push_encoded`](Self::push_encoded) takes them back.
    pub fn row_bytes(&self, slot: usize) -> Result<Vec<u8>> {
        self.check_slot(slot)?;
        let d = self.dim;
        let r = slot * d..(slot + 1) * d;
        Ok(match &self.rows {
            Rows::F32(v) => v[r].iter().flat_map(|x| x.to_le_bytes()).collect(),
            Rows::F16(v) => v[r].iter().flat_map(|x| x.to_le_bytes()).collect(),
            Rows::I8 { codes, scales } => {
                let mut out = scales[slot].to_le_bytes().to_vec();
                out.extend(codes[r].iter().map(|&c| c as u8));
                out
            }
        })
    }

    /// Append rows already encoded at this store's precision (`n * row_bytes` bytes), as
    /// a stored library is loaded. Every row is checked (finite, non-zero); all or none
    /// are added.
    pub fn push_encoded(&mut self, bytes: &[u8]) -> Result<usize> {
        let (d, rb) = (self.dim, self.precision.row_bytes(self.dim));
        if !bytes.len().is_multiple_of(rb) {
            return Err(ClipError::Input(format!(
                "{} bytes are not a whole number of {} rows of {d} values ({rb} bytes each): the stored index is damaged or was written with another precision",
                bytes.len(),
                self.precision.name()
            )));
        }
        let n = bytes.len() / rb;
        let bad =
            |i: usize, why: &str| ClipError::Input(format!("stored row {i} is damaged: {why}"));
        let f32s = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        match &mut self.rows {
            Rows::F32(v) => {
                let vals = f32s(bytes);
                for (i, row) in vals.chunks_exact(d).enumerate() {
                    if row.iter().any(|x| !x.is_finite()) || row.iter().all(|&x| x == 0.0) {
                        return Err(bad(i, "non-finite or zero"));
                    }
                }
                v.extend_from_slice(&vals);
            }
            Rows::F16(v) => {
                let vals: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                for (i, row) in vals.chunks_exact(d).enumerate() {
                    // Exponent all ones: inf or NaN; all-zero magnitude everywhere: no direction.
                    if row.iter().any(|h| h & 0x7c00 == 0x7c00)
                        || row.iter().all(|h| h & 0x7fff == 0)
                    {
                        return Err(bad(i, "non-finite or zero"));
                    }
                }
                v.extend_from_slice(&vals);
            }
            Rows::I8 { codes, scales } => {
                let mut new_scales = Vec::with_capacity(n);
                for (i, row) in bytes.chunks_exact(rb).enumerate() {
                    let s = f32::from_le_bytes([row[0], row[1], row[2], row[3]]);
                    if !(s.is_finite() && s > 0.0) || row[4..].iter().all(|&c| c == 0) {
                        return Err(bad(i, "bad scale or zero codes"));
                    }
                    new_scales.push(s);
                }
                for row in bytes.chunks_exact(rb) {
                    codes.extend(row[4..].iter().map(|&c| c as i8));
                }
                scales.extend(new_scales);
            }
        }
        self.len += n;
        Ok(n)
    }

    fn query(&self, q: &[f32]) -> Result<Query> {
        let u = unit(q, self.dim, "the query")?;
        Ok(match self.precision {
            Precision::I8 => {
                let (c, s) = quantise(&u);
                Query::I8(c, s)
            }
            _ => Query::F32(u),
        })
    }

    /// The score of every row (or of the allowed ones) through `visit(slot, score)`.
    fn scan(&self, q: &Query, allow: Option<&[u32]>, mut visit: impl FnMut(usize, f32)) {
        let d = self.dim;
        let allowed =
            |s: usize| allow.is_none_or(|m| m.get(s / 32).is_some_and(|w| w >> (s % 32) & 1 == 1));
        match (&self.rows, q) {
            (Rows::F32(v), Query::F32(q)) => {
                for (s, row) in v.chunks_exact(d).enumerate() {
                    if allowed(s) {
                        visit(s, scan::dot_f32(q, row));
                    }
                }
            }
            (Rows::F16(v), Query::F32(q)) => {
                for (s, row) in v.chunks_exact(d).enumerate() {
                    if allowed(s) {
                        visit(s, scan::dot_f16(q, row));
                    }
                }
            }
            (Rows::I8 { codes, scales }, Query::I8(q, qs)) => {
                for (s, row) in codes.chunks_exact(d).enumerate() {
                    if allowed(s) {
                        visit(s, scan::dot_i8(q, row) as f32 * qs * scales[s]);
                    }
                }
            }
            // `query` builds the query of the store's own precision.
            _ => unreachable!("query and rows of different precisions"),
        }
    }

    /// The `k` rows most similar to `query`, best first (ties: lower slot first), only
    /// among slots whose bit is set in `allow` (bit `s % 32` of word `s / 32`) when given,
    /// and only those scoring at least `min_score`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        allow: Option<&[u32]>,
        min_score: f32,
    ) -> Result<Vec<Hit>> {
        let q = self.query(query)?;
        let mut top = TopK::new(k);
        self.scan(&q, allow, |slot, score| {
            if score >= min_score {
                top.offer(slot, score)
            }
        });
        Ok(top.into_sorted())
    }

    /// Similarity of two stored rows, from their compact forms.
    pub(crate) fn pair_score(&self, a: usize, b: usize) -> f32 {
        let d = self.dim;
        let (ra, rb) = (a * d..(a + 1) * d, b * d..(b + 1) * d);
        match &self.rows {
            Rows::F32(v) => scan::dot_f32(&v[ra], &v[rb]),
            Rows::F16(v) => {
                let x: Vec<f32> = v[ra].iter().map(|&h| scan::scalar::f16_to_f32(h)).collect();
                scan::dot_f16(&x, &v[rb])
            }
            Rows::I8 { codes, scales } => {
                scan::dot_i8(&codes[ra], &codes[rb]) as f32 * scales[a] * scales[b]
            }
        }
    }
}

/// The `k` best `(slot, score)` seen, in a min-heap (the worst kept on top, so most rows
/// are refused by one comparison).
struct TopK {
    k: usize,
    heap: Vec<Hit>,
}

/// `a` ranks below `b`: a lower score, or the same score at a higher slot.
fn worse(a: &Hit, b: &Hit) -> bool {
    a.score < b.score || (a.score == b.score && a.slot > b.slot)
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: Vec::with_capacity(k.min(1 << 16)),
        }
    }

    #[inline]
    fn offer(&mut self, slot: usize, score: f32) {
        let hit = Hit { slot, score };
        if self.heap.len() < self.k {
            self.heap.push(hit);
            let mut i = self.heap.len() - 1;
            while i > 0 {
                let p = (i - 1) / 2;
                if worse(&self.heap[i], &self.heap[p]) {
                    self.heap.swap(i, p);
                    i = p;
                } else {
                    break;
                }
            }
        } else if self.k > 0 && worse(&self.heap[0], &hit) {
            self.heap[0] = hit;
            let n = self.heap.len();
            let mut i = 0;
            loop {
                let (l, r) = (2 * i + 1, 2 * i + 2);
                let mut m = i;
                if l < n && worse(&self.heap[l], &self.heap[m]) {
                    m = l;
                }
                if r < n && worse(&self.heap[r], &self.heap[m]) {
                    m = r;
                }
                if m == i {
                    break;
                }
                self.heap.swap(i, m);
                i = m;
            }
        }
    }

    fn into_sorted(mut self) -> Vec<Hit> {
        self.heap
            .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.slot.cmp(&b.slot)));
        self.heap
    }
}

/// 64-bit FNV-1a over `parts`, each prefixed by its length (so `("ab", "c")` and
/// `("a", "bc")` differ).
fn fnv1a64(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h = seed;
    let mut eat = |b: u8| {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    for p in parts {
        for b in (p.len() as u64).to_le_bytes() {
            eat(b);
        }
        for &b in *p {
            eat(b);
        }
    }
    h
}

/// A model's identity for an index: a 128-bit hash (two FNV-1a lanes) of the weights
/// file's safetensors header (tensor names, dtypes, shapes, offsets, `__metadata__`) and
/// of `config.json`, as 32 hex digits. The same files served from another address give
/// the same fingerprint; another architecture, dtype or config gives another. Two
/// checkpoints with byte-identical headers and configs (a fine-tune saved by the same
/// tool) share one: the header holds no weight values.
pub fn fingerprint(header: &[u8], config: &[u8]) -> String {
    let a = fnv1a64(0xcbf2_9ce4_8422_2325, &[header, config]);
    let b = fnv1a64(0x6c62_272e_07bb_0142, &[config, header]);
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random floats in [-1, 1) (xorshift).
    pub(crate) fn rand_vecs(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n * dim)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    fn exact_top(data: &[f32], dim: usize, q: &[f32], k: usize) -> Vec<usize> {
        let qn = unit(q, dim, "q").unwrap();
        let mut s: Vec<(usize, f32)> = data
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, r)| (i, scan::scalar::dot_f32(&qn, &unit(r, dim, "r").unwrap())))
            .collect();
        s.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        s.into_iter().take(k).map(|x| x.0).collect()
    }

    #[test]
    fn search_matches_exact_ranking_per_precision() {
        // 37 is no multiple of any SIMD width: the tails are exercised.
        let (n, dim) = (500, 37);
        let data = rand_vecs(n, dim, 7);
        let q = rand_vecs(1, dim, 99);
        let want = exact_top(&data, dim, &q, 10);
        for (p, min_overlap, tol) in [
            (Precision::F32, 10, 1e-5),
            (Precision::F16, 9, 2e-3),
            (Precision::I8, 7, 2e-2),
        ] {
            let mut st = VectorStore::new(dim, p).unwrap();
            st.push_many(&data).unwrap();
            assert_eq!(st.memory_bytes(), n * p.row_bytes(dim));
            let hits = st.search(&q, 10, None, f32::NEG_INFINITY).unwrap();
            assert_eq!(hits.len(), 10);
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
            let got: Vec<usize> = hits.iter().map(|h| h.slot).collect();
            let overlap = got.iter().filter(|s| want.contains(s)).count();
            assert!(overlap >= min_overlap, "{p:?}: {got:?} vs {want:?}");
            // Scores are cosines up to the precision.
            let qn = unit(&q, dim, "q").unwrap();
            for h in &hits {
                let r = unit(&data[h.slot * dim..(h.slot + 1) * dim], dim, "r").unwrap();
                let exact = scan::scalar::dot_f32(&qn, &r);
                assert!(
                    (h.score - exact).abs() < tol,
                    "{p:?} {} vs {exact}",
                    h.score
                );
            }
        }
    }

    #[test]
    fn allow_list_min_score_and_k_larger_than_len() {
        let dim = 16;
        let data = rand_vecs(100, dim, 3);
        let mut st = VectorStore::new(dim, Precision::F32).unwrap();
        st.push_many(&data).unwrap();
        let mut mask = vec![0u32; 4];
        for s in [5usize, 40, 77, 99] {
            mask[s / 32] |= 1 << (s % 32);
        }
        let hits = st.search(&data[..dim], 1000, Some(&mask), -2.0).unwrap();
        let mut slots: Vec<usize> = hits.iter().map(|h| h.slot).collect();
        slots.sort();
        assert_eq!(slots, vec![5, 40, 77, 99]);
        // Row 0 against itself scores 1; a threshold of 0.999 keeps only it.
        let hits = st.search(&data[..dim], 1000, None, 0.999).unwrap();
        assert_eq!(hits.iter().map(|h| h.slot).collect::<Vec<_>>(), vec![0]);
        assert!(st.search(&data[..dim], 0, None, -2.0).unwrap().is_empty());
    }

    #[test]
    fn swap_remove_set_and_encoded_round_trip() {
        let dim = 20;
        let data = rand_vecs(5, dim, 11);
        for p in [Precision::F32, Precision::F16, Precision::I8] {
            let mut st = VectorStore::new(dim, p).unwrap();
            st.push_many(&data).unwrap();
            let last = st.get(4).unwrap();
            assert_eq!(st.swap_remove(1).unwrap(), Some(4));
            assert_eq!(st.len(), 4);
            assert_eq!(st.get(1).unwrap(), last);
            assert_eq!(st.swap_remove(3).unwrap(), None);
            assert!(st.swap_remove(3).is_err());
            st.set(0, &data[4 * dim..]).unwrap();
            assert_eq!(st.get(0).unwrap(), last);
            // Encoded rows load back bit for bit.
            let bytes: Vec<u8> = (0..st.len())
                .flat_map(|s| st.row_bytes(s).unwrap())
                .collect();
            assert_eq!(bytes.len(), st.len() * p.row_bytes(dim));
            let mut back = VectorStore::new(dim, p).unwrap();
            back.push_encoded(&bytes).unwrap();
            for s in 0..st.len() {
                assert_eq!(back.get(s).unwrap(), st.get(s).unwrap());
            }
            // A torn record is refused whole.
            assert!(back.push_encoded(&bytes[..bytes.len() - 1]).is_err());
            assert_eq!(back.len(), st.len());
        }
    }

    #[test]
    fn bad_input_is_refused_with_input_errors() {
        let mut st = VectorStore::new(4, Precision::F16).unwrap();
        for bad in [&[1.0, 2.0][..], &[0.0; 4], &[1.0, f32::NAN, 0.0, 0.0]] {
            assert_eq!(st.push(bad).unwrap_err().code(), "bad-input");
        }
        assert_eq!(st.push_many(&[1.0; 7]).unwrap_err().code(), "bad-input");
        // One bad embedding in a batch adds none.
        assert!(st
            .push_many(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
            .is_err());
        assert_eq!(st.len(), 0);
        let inf = half::f16::INFINITY.to_bits().to_le_bytes();
        let row: Vec<u8> = [inf, [0, 0], [0, 0], [0, 0]].concat();
        assert_eq!(st.push_encoded(&row).unwrap_err().code(), "bad-input");
        assert!(VectorStore::new(0, Precision::F32).is_err());
        assert_eq!(Precision::parse("f64").unwrap_err().code(), "bad-input");
    }

    #[test]
    fn fingerprint_names_header_and_config() {
        let f = fingerprint(b"{\"a\":1}", b"{}");
        assert_eq!(f.len(), 32);
        assert_eq!(f, fingerprint(b"{\"a\":1}", b"{}"));
        assert_ne!(f, fingerprint(b"{\"a\":2}", b"{}"));
        assert_ne!(f, fingerprint(b"{\"a\":1}", b"{ }"));
        assert_ne!(fingerprint(b"ab", b"c"), fingerprint(b"a", b"bc"));
    }
}
