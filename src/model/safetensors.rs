//! The safetensors container (<https://github.com/huggingface/safetensors>, format v0):
//! `u64` little-endian header length, a JSON header `{name: {dtype, shape, data_offsets}}`,
//! then the raw little-endian tensor bytes. Parsed by hand so every inconsistency gets a
//! precise error, and so the header can be read before the data is there (range downloads).

use crate::error::{ClipError, Result};
use crate::limits::{MAX_HEADER_BYTES, MAX_TENSORS};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    /// Parsed so that integer tensors (golden token ids) can be read; not valid as weights.
    I32,
    I64,
    /// Weight-only int8 matrices, with their scales beside them (`model::quantize`).
    I8,
    Other(&'static str),
}

impl Dtype {
    fn parse(s: &str) -> Dtype {
        match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "I32" => Dtype::I32,
            "I64" => Dtype::I64,
            "F64" => Dtype::Other("F64"),
            "I8" => Dtype::I8,
            "U8" => Dtype::Other("U8"),
            "I16" => Dtype::Other("I16"),
            "U16" => Dtype::Other("U16"),
            "U32" => Dtype::Other("U32"),
            "U64" => Dtype::Other("U64"),
            "BOOL" => Dtype::Other("BOOL"),
            "F8_E4M3" => Dtype::Other("F8_E4M3"),
            "F8_E5M2" => Dtype::Other("F8_E5M2"),
            _ => Dtype::Other("unknown"),
        }
    }

    pub fn size(self) -> Option<usize> {
        match self {
            Dtype::F32 | Dtype::I32 => Some(4),
            Dtype::F16 | Dtype::BF16 => Some(2),
            Dtype::I64 => Some(8),
            Dtype::I8 => Some(1),
            Dtype::Other("F64") | Dtype::Other("U64") => Some(8),
            Dtype::Other("U32") => Some(4),
            Dtype::Other("I16") | Dtype::Other("U16") => Some(2),
            Dtype::Other(_) => Some(1),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::I64 => "I64",
            Dtype::I8 => "I8",
            Dtype::Other(n) => n,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file (header included).
    pub start: usize,
    pub end: usize,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Where the tensor bytes come from: a slice in memory, or (on the web) a JS buffer or
/// a ranged download, copied one tensor at a time so the whole file never sits in wasm
/// memory twice.
pub trait TensorBytes {
    /// Bytes `[start, end)` of the safetensors file.
    fn read_range(&self, start: usize, end: usize) -> Result<Cow<'_, [u8]>>;

    /// The file's length, when this source knows it (a file in memory does; the parts of
    /// a ranged download do not, and the JS layer checked it).
    fn file_len(&self) -> Option<usize> {
        None
    }
}

impl TensorBytes for [u8] {
    fn read_range(&self, start: usize, end: usize) -> Result<Cow<'_, [u8]>> {
        self.get(start..end).map(Cow::Borrowed).ok_or_else(|| {
            ClipError::SafeTensors(format!(
                "file is truncated: tensor data [{start}, {end}) lies beyond its {} bytes",
                self.len()
            ))
        })
    }

    fn file_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

impl TensorBytes for Vec<u8> {
    fn read_range(&self, start: usize, end: usize) -> Result<Cow<'_, [u8]>> {
        self.as_slice().read_range(start, end)
    }

    fn file_len(&self) -> Option<usize> {
        Some(self.len())
    }
}

/// A parsed header: tensor names, dtypes, shapes and byte ranges.
#[derive(Debug, Clone)]
pub struct SafeTensors {
    tensors: BTreeMap<String, TensorInfo>,
    /// Length of the header prefix: 8 + JSON length.
    pub data_start: usize,
    /// End of the last tensor's bytes: the least a complete file holds.
    pub data_end: usize,
    /// The string entries of `__metadata__` (`format`, and what `model::quantize` writes).
    pub metadata: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// The header's entries in file order and the string entries of `__metadata__` (the
/// format's metadata is string to string; anything else in it is skipped), read straight
/// from the JSON (no intermediate `Value` tree) and refused past [`MAX_TENSORS`] entries or
/// at a name given twice, so the memory it takes stays proportional to what is accepted.
struct RawHeader(Vec<(String, RawEntry)>, BTreeMap<String, String>);

/// `__metadata__`'s string values; other values are skipped.
struct RawMetadata(BTreeMap<String, String>);

impl<'de> serde::Deserialize<'de> for RawMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawMetadata;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawMetadata, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if let serde_json::Value::String(v) = map.next_value::<serde_json::Value>()? {
                        out.insert(key, v);
                    }
                }
                Ok(RawMetadata(out))
            }
            fn visit_unit<E>(self) -> std::result::Result<RawMetadata, E> {
                Ok(RawMetadata(BTreeMap::new()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::Deserialize<'de> for RawHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{Error, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawHeader, A::Error> {
                let mut out: Vec<(String, RawEntry)> = Vec::new();
                let mut meta = BTreeMap::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(name) = map.next_key::<String>()? {
                    if name == "__metadata__" {
                        meta = map.next_value::<RawMetadata>()?.0;
                        continue;
                    }
                    if out.len() == MAX_TENSORS {
                        return Err(A::Error::custom(format!(
                            "more than {MAX_TENSORS} tensors (the limit)"
                        )));
                    }
                    if !seen.insert(name.clone()) {
                        return Err(A::Error::custom(format!("tensor `{name}` is listed twice")));
                    }
                    let entry = map
                        .next_value::<RawEntry>()
                        .map_err(|e| A::Error::custom(format!("entry `{name}`: {e}")))?;
                    out.push((name, entry));
                }
                Ok(RawHeader(out, meta))
            }
        }
        d.deserialize_map(V)
    }
}

impl SafeTensors {
    /// How many bytes of the file to read for [`SafeTensors::parse_header`], from its first 8.
    pub fn header_len(first8: &[u8]) -> Result<usize> {
        let b: [u8; 8] = first8
            .get(..8)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                ClipError::SafeTensors(format!(
                    "file is {} bytes, too short for a header",
                    first8.len()
                ))
            })?;
        let n = u64::from_le_bytes(b);
        if n > MAX_HEADER_BYTES {
            return Err(ClipError::SafeTensors(format!(
                "header length {n} is implausible (over {MAX_HEADER_BYTES} bytes): not a safetensors file?"
            )));
        }
        Ok(8 + n as usize)
    }

    /// Parse the header from the start of the file (at least `header_len` bytes of it).
    pub fn parse_header(prefix: &[u8]) -> Result<Self> {
        let data_start = Self::header_len(prefix)?;
        let json = prefix.get(8..data_start).ok_or_else(|| {
            ClipError::SafeTensors(format!(
                "file is truncated inside its header ({} of {data_start} bytes)",
                prefix.len()
            ))
        })?;
        let RawHeader(raw, metadata) = serde_json::from_slice(json).map_err(|e| {
            ClipError::SafeTensors(format!("header is not valid safetensors JSON: {e}"))
        })?;
        let mut tensors = BTreeMap::new();
        let mut ranges = Vec::new();
        for (name, e) in raw {
            let dtype = Dtype::parse(&e.dtype);
            let [begin, end] = e.data_offsets;
            let numel = e
                .shape
                .iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| {
                    ClipError::SafeTensors(format!("`{name}`: shape {:?} overflows", e.shape))
                })?;
            let bytes = dtype.size().and_then(|s| numel.checked_mul(s));
            if end < begin || Some(end - begin) != bytes {
                return Err(ClipError::SafeTensors(format!(
                    "`{name}`: data_offsets [{begin}, {end}] do not match {} {:?} ({} bytes)",
                    e.dtype,
                    e.shape,
                    bytes.map_or("overflowing".to_string(), |b| b.to_string())
                )));
            }
            let (start, stop) = (data_start.checked_add(begin), data_start.checked_add(end));
            let (Some(start), Some(stop)) = (start, stop) else {
                return Err(ClipError::SafeTensors(format!(
                    "`{name}`: offsets overflow"
                )));
            };
            ranges.push((begin, end, name.clone()));
            tensors.insert(
                name.clone(),
                TensorInfo {
                    name,
                    dtype,
                    shape: e.shape,
                    start,
                    end: stop,
                },
            );
        }
        // Tensors must not overlap (the format requires them to tile the data exactly).
        ranges.sort();
        for w in ranges.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(ClipError::SafeTensors(format!(
                    "tensors `{}` and `{}` overlap in the data section",
                    w[0].2, w[1].2
                )));
            }
        }
        let data_end = data_start + ranges.last().map_or(0, |r| r.1);
        Ok(SafeTensors {
            tensors,
            data_start,
            data_end,
            metadata,
        })
    }

    /// Parse a whole file in memory and check it is long enough for every tensor.
    pub fn parse(file: &[u8]) -> Result<Self> {
        Self::read(file)
    }

    /// Read and parse the header from wherever the file's bytes are, and check the file
    /// is long enough for every tensor when the source knows its length.
    pub fn read<S: TensorBytes + ?Sized>(src: &S) -> Result<Self> {
        let len = src.file_len();
        // A short file still gets the header's own error ("too short", "truncated inside").
        let upto = |n: usize| len.map_or(n, |l| l.min(n));
        let first8 = src.read_range(0, upto(8))?;
        let header_len = Self::header_len(&first8)?;
        let st = Self::parse_header(&src.read_range(0, upto(header_len))?)?;
        if let Some(l) = len {
            st.check_len(l)?;
        }
        Ok(st)
    }

    pub fn check_len(&self, file_len: usize) -> Result<()> {
        if file_len < self.data_end {
            return Err(ClipError::SafeTensors(format!(
                "file is truncated: {file_len} bytes, but its header describes {} bytes",
                self.data_end
            )));
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    pub fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.get(name).ok_or_else(|| ClipError::MissingTensor {
            name: name.to_string(),
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.tensors.values()
    }

    /// Read one tensor as f32 (converting F16/BF16), whatever its shape.
    pub fn read_f32<S: TensorBytes + ?Sized>(&self, src: &S, name: &str) -> Result<Vec<f32>> {
        let info = self.info(name)?;
        let bytes = src.read_range(info.start, info.end)?;
        to_f32(info, &bytes)
    }

    /// Read an integer tensor (I32 or I64) as i64: golden token ids and masks.
    pub fn read_i64<S: TensorBytes + ?Sized>(&self, src: &S, name: &str) -> Result<Vec<i64>> {
        let info = self.info(name)?;
        let bytes = src.read_range(info.start, info.end)?;
        match info.dtype {
            Dtype::I32 => Ok(bytes
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                .collect()),
            Dtype::I64 => Ok(bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect()),
            d => Err(ClipError::UnsupportedDtype {
                name: name.into(),
                dtype: d.name().into(),
            }),
        }
    }
}

/// Convert a tensor's little-endian bytes to f32.
pub fn to_f32(info: &TensorInfo, bytes: &[u8]) -> Result<Vec<f32>> {
    let out = match info.dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        d => {
            return Err(ClipError::UnsupportedDtype {
                name: info.name.clone(),
                dtype: d.name().into(),
            })
        }
    };
    Ok(out)
}

/// Write a safetensors file of float tensors, streaming: the header is computed from
/// `(name, shape)` up front, then `fill(i, &mut buf)` produces tensor `i`'s values one at a
/// time, so a multi-GiB checkpoint never has to exist in memory whole.
pub fn write_f32<W: Write>(
    out: W,
    tensors: &[(String, Vec<usize>)],
    dtype: Dtype,
    mut fill: impl FnMut(usize, &mut Vec<f32>) -> Result<()>,
) -> Result<()> {
    if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(ClipError::UnsupportedDtype {
            name: "<output>".into(),
            dtype: dtype.name().into(),
        });
    }
    let spec: Vec<(String, Dtype, Vec<usize>)> = tensors
        .iter()
        .map(|(n, s)| (n.clone(), dtype, s.clone()))
        .collect();
    let mut buf = Vec::new();
    write_tensors(out, &BTreeMap::new(), &spec, |i, bytes| {
        buf.clear();
        fill(i, &mut buf)?;
        let n: usize = tensors[i].1.iter().product();
        if buf.len() != n {
            return Err(ClipError::Input(format!(
                "`{}`: produced {} values for shape {:?}",
                tensors[i].0,
                buf.len(),
                tensors[i].1
            )));
        }
        encode_f32(dtype, &buf, bytes)
    })
}

/// Append `values` to `bytes` as little-endian `dtype` (F32, F16 or BF16).
pub fn encode_f32(dtype: Dtype, values: &[f32], bytes: &mut Vec<u8>) -> Result<()> {
    match dtype {
        Dtype::F32 => values
            .iter()
            .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes())),
        Dtype::F16 => values
            .iter()
            .for_each(|v| bytes.extend_from_slice(&half::f16::from_f32(*v).to_le_bytes())),
        Dtype::BF16 => values
            .iter()
            .for_each(|v| bytes.extend_from_slice(&half::bf16::from_f32(*v).to_le_bytes())),
        d => {
            return Err(ClipError::UnsupportedDtype {
                name: "<output>".into(),
                dtype: d.name().into(),
            })
        }
    }
    Ok(())
}

/// Write a safetensors file of tensors `(name, dtype, shape)` in this order, back to back
/// (the format allows no gaps), with `metadata` as `__metadata__` when it is not empty.
/// `fill(i, &mut bytes)` appends tensor `i`'s little-endian bytes, one tensor at a time.
pub fn write_tensors<W: Write>(
    mut out: W,
    metadata: &BTreeMap<String, String>,
    tensors: &[(String, Dtype, Vec<usize>)],
    mut fill: impl FnMut(usize, &mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let size = |name: &str, dtype: Dtype, shape: &[usize]| {
        dtype
            .size()
            .filter(|_| !matches!(dtype, Dtype::Other(_)))
            .map(|e| shape.iter().product::<usize>() * e)
            .ok_or_else(|| ClipError::UnsupportedDtype {
                name: name.into(),
                dtype: dtype.name().into(),
            })
    };
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut offset = 0usize;
    for (name, dtype, shape) in tensors {
        let n = size(name, *dtype, shape)?;
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
    while !(json.len() + 8).is_multiple_of(8) {
        json.push(b' ');
    }
    out.write_all(&(json.len() as u64).to_le_bytes())?;
    out.write_all(&json)?;
    let mut bytes = Vec::new();
    for (i, (name, dtype, shape)) in tensors.iter().enumerate() {
        bytes.clear();
        fill(i, &mut bytes)?;
        let n = size(name, *dtype, shape)?;
        if bytes.len() != n {
            return Err(ClipError::Input(format!(
                "`{name}`: produced {} bytes for {} {shape:?} ({n} bytes)",
                bytes.len(),
                dtype.name()
            )));
        }
        out.write_all(&bytes)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tensors: &[(&str, Vec<usize>, Vec<f32>)], dtype: Dtype) -> Vec<u8> {
        let spec: Vec<_> = tensors
            .iter()
            .map(|(n, s, _)| (n.to_string(), s.clone()))
            .collect();
        let mut out = Vec::new();
        write_f32(&mut out, &spec, dtype, |i, buf| {
            buf.extend_from_slice(&tensors[i].2);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn roundtrip_all_float_dtypes() {
        for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let f = file(
                &[
                    ("a", vec![2, 2], vec![1.0, -2.0, 0.5, 3.0]),
                    ("b", vec![], vec![7.0]),
                ],
                dtype,
            );
            let st = SafeTensors::parse(&f).unwrap();
            assert_eq!(
                st.read_f32(f.as_slice(), "a").unwrap(),
                vec![1.0, -2.0, 0.5, 3.0]
            );
            assert_eq!(st.read_f32(f.as_slice(), "b").unwrap(), vec![7.0]);
        }
    }

    #[test]
    fn truncation_and_lies_are_errors() {
        let f = file(&[("a", vec![4], vec![1.0; 4])], Dtype::F32);
        for cut in [0, 4, 8, 20, f.len() - 1] {
            let err = SafeTensors::parse(&f[..cut]).unwrap_err();
            assert!(
                err.to_string().contains("trunc") || err.to_string().contains("short"),
                "{cut}: {err}"
            );
        }
        // Shrink the tensor's end offset in the header (the bytes after it are not UTF-8).
        let at = f.windows(6).position(|w| w == b"[0,16]").unwrap();
        let mut lie = f.clone();
        lie[at..at + 6].copy_from_slice(b"[0,12]");
        let err = SafeTensors::parse(&lie).unwrap_err();
        assert!(err.to_string().contains("data_offsets"), "{err}");
        let mut huge = f.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(SafeTensors::parse(&huge)
            .unwrap_err()
            .to_string()
            .contains("implausible"));
        let not_json = [&16u64.to_le_bytes()[..], b"this is not json"].concat();
        assert!(SafeTensors::parse(&not_json)
            .unwrap_err()
            .to_string()
            .contains("JSON"));
    }

    /// A header of `n` empty F32 tensors (`t0`, `t1`, ...), as a whole file.
    fn empty_tensors(n: usize) -> Vec<u8> {
        let entries: Vec<String> = (0..n)
            .map(|i| format!(r#""t{i}":{{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#))
            .collect();
        let json = format!("{{{}}}", entries.join(","));
        [&(json.len() as u64).to_le_bytes()[..], json.as_bytes()].concat()
    }

    #[test]
    fn tensor_count_is_limited() {
        let st = SafeTensors::parse(&empty_tensors(MAX_TENSORS)).unwrap();
        assert_eq!(st.names().count(), MAX_TENSORS);
        let e = SafeTensors::parse(&empty_tensors(MAX_TENSORS + 1)).unwrap_err();
        assert_eq!(e.code(), "bad-weights");
        assert!(e.to_string().contains("more than 65536 tensors"), "{e}");
    }

    #[test]
    fn header_size_limit_is_safetensors_own() {
        // 100 MB is accepted as a length (the bytes are then read and parsed)...
        let ok = (MAX_HEADER_BYTES).to_le_bytes();
        assert_eq!(
            SafeTensors::header_len(&ok).unwrap(),
            8 + MAX_HEADER_BYTES as usize
        );
        // ...one more byte is refused before anything is allocated.
        let e = SafeTensors::header_len(&(MAX_HEADER_BYTES + 1).to_le_bytes()).unwrap_err();
        assert_eq!(e.code(), "bad-weights");
        assert!(e.to_string().contains("over 100000000 bytes"), "{e}");
    }

    #[test]
    fn a_name_given_twice_is_refused() {
        let json = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        let f = [
            &(json.len() as u64).to_le_bytes()[..],
            json.as_bytes(),
            &[0; 8],
        ]
        .concat();
        let e = SafeTensors::parse(&f).unwrap_err();
        assert!(e.to_string().contains("`a` is listed twice"), "{e}");
        // Metadata is skipped whatever it holds; a bad entry names itself.
        let json = r#"{"__metadata__":{"format":"pt","x":[1,{}]},"b":{"dtype":"F32","shape":"?"}}"#;
        let f = [&(json.len() as u64).to_le_bytes()[..], json.as_bytes()].concat();
        let e = SafeTensors::parse(&f).unwrap_err();
        assert!(e.to_string().contains("entry `b`"), "{e}");
    }
}
