//! Compact checkpoints: float16 copies and weight-only int8, written by `webclip convert`
//! and by the in-memory `weights: 'int8'` load option through the same functions here.
//!
//! int8 (scheme `int8-symmetric-g{G}`, version 1): every matrix (linear layers, the patch
//! conv, the token embedding table) is stored as `I8` with its file shape, and beside it
//! `{name}_scale`, F32 `[out, ceil(in / G)]`: one scale per group of `G` consecutive input
//! features of an output row (`in` = the flattened trailing dimensions). A value is
//! `q * scale`, `scale = max |w| / 127` over its group (symmetric, no zero point; an all
//! zero group gets scale 1). `G = 0` is one scale per row (`int8-symmetric-row`). The rest
//! (LayerNorm, biases, position embeddings, the probe) is F16; the logit scalars stay F32.
//! The header's `__metadata__` says what the file is: `webclip.dtype` (`int8` | `f16`),
//! `webclip.scheme` and `webclip.version` (int8 only).

use super::config::ClipConfig;
use super::safetensors::{encode_f32, write_tensors, Dtype, SafeTensors, TensorBytes};
use super::weights::{tensor_specs, TensorKind, Tower, Towers, WeightRole};
use crate::error::{ClipError, Result};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;

/// `__metadata__` keys of a converted file.
pub const DTYPE_KEY: &str = "webclip.dtype";
pub const SCHEME_KEY: &str = "webclip.scheme";
pub const VERSION_KEY: &str = "webclip.version";
/// The one int8 layout version this build reads and writes.
pub const VERSION: &str = "1";

/// Input features per scale, chosen by measurement (README, "Compact checkpoints"): groups
/// of 64 raise the least embedding cosine over one scale per row on three of the four
/// fixture models and equal it on ViT-B/32 random weights, for 1.6 % of float32 more per
/// tower (26.6 % instead of 25.2 % on ViT-B/32, inside the 27 % goal). Random weights have
/// no outlier columns; trained ones do, which per-row scales pay for across a whole row.
pub const DEFAULT_GROUP: usize = 64;

/// What `webclip convert` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compact {
    F16,
    Int8,
}

impl Compact {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f16" | "fp16" | "float16" => Ok(Compact::F16),
            "int8" | "i8" | "q8" => Ok(Compact::Int8),
            _ => Err(ClipError::Input(format!(
                "--dtype must be f16 or int8, not `{s}`"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Compact::F16 => "f16",
            Compact::Int8 => "int8",
        }
    }
}

/// Whether the tensor `name` of `role` is stored as int8 in an int8 checkpoint: every
/// matrix and the token table (the largest tensor of the text tower), not the position
/// embeddings (small, and added unscaled to every token).
pub fn quantizes(role: WeightRole, name: &str) -> bool {
    match role {
        WeightRole::Matrix => true,
        WeightRole::Table => name.ends_with("token_embedding.weight"),
        _ => false,
    }
}

/// The name of the scale tensor of int8 tensor `name`.
pub fn scale_name(name: &str) -> String {
    format!("{name}_scale")
}

/// An int8 matrix `[rows, cols]` with a scale per group of `group` columns of each row.
#[derive(Debug, Clone, PartialEq)]
pub struct Q8 {
    pub rows: usize,
    pub cols: usize,
    /// Columns per scale (`cols` for one scale per row), at least 1.
    pub group: usize,
    pub values: Vec<i8>,  // [rows, cols]
    pub scales: Vec<f32>, // [rows, groups]
}

impl Q8 {
    /// Scales per row.
    pub fn groups(&self) -> usize {
        self.cols.div_ceil(self.group.max(1))
    }

    /// Quantise a row-major `[rows, cols]` matrix, `group` columns per scale (0: per row).
    pub fn quantize(data: &[f32], rows: usize, cols: usize, group: usize) -> Result<Q8> {
        if Some(data.len()) != rows.checked_mul(cols) {
            return Err(ClipError::Internal(format!(
                "quantising {} values as {rows} x {cols}",
                data.len()
            )));
        }
        let group = if group == 0 { cols.max(1) } else { group };
        let groups = cols.div_ceil(group);
        let mut values = vec![0i8; data.len()];
        let mut scales = Vec::with_capacity(rows * groups);
        for (row, out) in data
            .chunks_exact(cols.max(1))
            .zip(values.chunks_exact_mut(cols.max(1)))
        {
            for (g, o) in row.chunks(group).zip(out.chunks_mut(group)) {
                let amax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
                for (x, q) in g.iter().zip(o) {
                    *q = (x / scale).round().clamp(-127.0, 127.0) as i8;
                }
                scales.push(scale);
            }
        }
        Ok(Q8 {
            rows,
            cols,
            group,
            values,
            scales,
        })
    }

    /// Row `r` as f32 into `out` (`cols` values).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let g = self.groups();
        let q = &self.values[r * self.cols..][..self.cols];
        let s = &self.scales[r * g..][..g];
        for (i, (o, &v)) in out.iter_mut().zip(q).enumerate() {
            *o = v as f32 * s[i / self.group];
        }
    }

    /// The whole matrix as f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.dequantize_row(r, row);
        }
        out
    }

    /// Cut into `parts` matrices of `rows / parts` rows (q, k, v of a packed projection).
    pub fn split_rows(self, parts: usize) -> Vec<Q8> {
        let rows = self.rows / parts.max(1);
        let g = self.groups();
        (0..parts)
            .map(|i| Q8 {
                rows,
                cols: self.cols,
                group: self.group,
                values: self.values[i * rows * self.cols..][..rows * self.cols].to_vec(),
                scales: self.scales[i * rows * g..][..rows * g].to_vec(),
            })
            .collect()
    }

    /// Bytes held: the values and the f32 scales.
    pub fn bytes(&self) -> usize {
        self.values.len() + 4 * self.scales.len()
    }
}

/// The int8 layout a file declares in its `__metadata__`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    /// Columns per scale; 0: one scale per row.
    pub group: usize,
}

impl Scheme {
    pub fn name(self) -> String {
        match self.group {
            0 => "int8-symmetric-row".into(),
            g => format!("int8-symmetric-g{g}"),
        }
    }

    fn parse(s: &str) -> Option<Scheme> {
        if s == "int8-symmetric-row" {
            return Some(Scheme { group: 0 });
        }
        let g: usize = s.strip_prefix("int8-symmetric-g")?.parse().ok()?;
        // The GPU reads four values at a time, all under one scale.
        (g >= 4 && g.is_multiple_of(4) && !s.contains('+')).then_some(Scheme { group: g })
    }

    /// The scheme of `st`: `None` for a float file; an error naming `__metadata__` for an
    /// int8 file whose scheme or version this build does not know.
    pub fn of(st: &SafeTensors) -> Result<Option<Scheme>> {
        let Some(name) = st.metadata.get(SCHEME_KEY) else {
            return Ok(None);
        };
        let bad = |what: String| {
            ClipError::SafeTensors(format!(
                "`__metadata__`: {what}; this build reads `int8-symmetric-g<N>` and \
                 `int8-symmetric-row`, version {VERSION}"
            ))
        };
        let scheme = Scheme::parse(name).ok_or_else(|| bad(format!("unknown scheme `{name}`")))?;
        match st.metadata.get(VERSION_KEY).map(String::as_str) {
            Some(VERSION) => Ok(Some(scheme)),
            Some(v) => Err(bad(format!(
                "{SCHEME_KEY} `{name}` of unknown version `{v}`"
            ))),
            None => Err(bad(format!("{SCHEME_KEY} `{name}` without {VERSION_KEY}"))),
        }
    }
}

/// What the matrices of a checkpoint are stored as, from its header: `int8` when it has
/// int8 tensors, `f16` / `bf16` / `f32` by its largest float tensor.
pub fn weights_dtype(st: &SafeTensors) -> &'static str {
    if st.tensors().any(|t| t.dtype == Dtype::I8) {
        return "int8";
    }
    match st
        .tensors()
        .max_by_key(|t| t.end - t.start)
        .map(|t| t.dtype)
    {
        Some(Dtype::F16) => "f16",
        Some(Dtype::BF16) => "bf16",
        _ => "f32",
    }
}

/// Check the scales read for int8 tensor `name`: finite and positive.
pub fn check_scales(name: &str, scales: &[f32]) -> Result<()> {
    match scales.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
        None => Ok(()),
        Some(i) => Err(ClipError::SafeTensors(format!(
            "tensor `{}` holds scale {} at index {i}: scales must be finite and positive",
            scale_name(name),
            scales[i]
        ))),
    }
}

/// `[rows, cols]` of a matrix or table of file shape `shape`.
pub fn matrix_dims(shape: &[usize]) -> (usize, usize) {
    (
        shape.first().copied().unwrap_or(1),
        shape.iter().skip(1).product(),
    )
}

/// What one conversion wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Converted {
    /// Bytes of the written `model.safetensors`.
    pub bytes: usize,
    /// Tensors written (scale tensors included).
    pub tensors: usize,
}

/// An output tensor's header entry: name, dtype, shape.
type OutTensor = (String, Dtype, Vec<usize>);

/// One output tensor: where its values come from.
enum Part {
    /// A float tensor of the source, written as this dtype.
    Float(String),
    /// The int8 values of the source tensor.
    Values(String),
    /// Its scales.
    Scales(String),
}

/// Refuse a file this module wrote: converting it again would quantise twice.
pub fn refuse_converted(st: &SafeTensors, what: &str) -> Result<()> {
    match st.metadata.get(DTYPE_KEY) {
        Some(d) => Err(ClipError::Input(format!(
            "{what} is already converted (`{DTYPE_KEY}` = `{d}`): convert the float checkpoint \
             instead"
        ))),
        None if st.tensors().any(|t| t.dtype == Dtype::I8) => Err(ClipError::Input(format!(
            "{what} holds int8 tensors already: convert the float checkpoint instead"
        ))),
        None => Ok(()),
    }
}

/// Write the `towers` of the checkpoint (`config`, header `st`, bytes `src`) to `out` as
/// `dtype`. Tensors are grouped by tower (so a tower's Range download stays a few
/// requests), the widest elements first within each tower (so every tensor starts at a
/// multiple of its element size when the sizes allow).
pub fn convert<S: TensorBytes + ?Sized, W: Write>(
    config: &ClipConfig,
    st: &SafeTensors,
    src: &S,
    dtype: Compact,
    towers: Towers,
    group: usize,
    out: W,
) -> Result<Converted> {
    config.validate()?;
    refuse_converted(st, "the source checkpoint")?;
    if group != 0 && !(group >= 4 && group.is_multiple_of(4)) {
        return Err(ClipError::Input(format!(
            "the group size must be a multiple of 4 (or 0: per row), not {group}"
        )));
    }
    let specs = tensor_specs(config, towers)?;
    let mut list: Vec<(Option<Tower>, OutTensor, Part)> = Vec::new();
    for spec in &specs {
        let info = st.info(&spec.name)?;
        let entry = |d: Dtype, shape: Vec<usize>| (spec.name.clone(), d, shape);
        // Both dtypes keep the rest as f16 and the logit scalars as f32.
        let float = match spec.kind {
            TensorKind::Scalar { .. } => Dtype::F32,
            _ => Dtype::F16,
        };
        match spec.kind {
            TensorKind::Weight(role) if dtype == Compact::Int8 && quantizes(role, &spec.name) => {
                let (rows, cols) = matrix_dims(&info.shape);
                let g = if group == 0 { cols } else { group };
                list.push((
                    spec.tower,
                    (
                        scale_name(&spec.name),
                        Dtype::F32,
                        vec![rows, cols.div_ceil(g.max(1))],
                    ),
                    Part::Scales(spec.name.clone()),
                ));
                list.push((
                    spec.tower,
                    entry(Dtype::I8, info.shape.clone()),
                    Part::Values(spec.name.clone()),
                ));
            }
            _ => list.push((
                spec.tower,
                entry(float, info.shape.clone()),
                Part::Float(spec.name.clone()),
            )),
        }
    }
    let rank = |t: Option<Tower>| match t {
        Some(Tower::Vision) => 0,
        Some(Tower::Text) => 1,
        None => 2,
    };
    // Stable: describe's order within a tower and element size.
    list.sort_by_key(|(t, (_, d, _), _)| (rank(*t), std::cmp::Reverse(d.size().unwrap_or(1))));

    let mut metadata = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        (DTYPE_KEY.to_string(), dtype.as_str().to_string()),
    ]);
    if dtype == Compact::Int8 {
        metadata.insert(SCHEME_KEY.into(), Scheme { group }.name());
        metadata.insert(VERSION_KEY.into(), VERSION.into());
    }
    let header: Vec<_> = list.iter().map(|(_, h, _)| h.clone()).collect();
    // A matrix is quantised once; its scales are written first and its values kept here
    // until their turn (at most one tower's int8 values).
    let mut pending: HashMap<String, Vec<i8>> = HashMap::new();
    let mut written = 0usize;
    let counter = CountingWriter {
        inner: out,
        n: &mut written,
    };
    write_tensors(counter, &metadata, &header, |i, bytes| {
        let (_, (_, d, _), part) = &list[i];
        match part {
            Part::Float(name) => encode_f32(*d, &st.read_f32(src, name)?, bytes),
            Part::Scales(name) => {
                let info = st.info(name)?;
                let (rows, cols) = matrix_dims(&info.shape);
                let data = st.read_f32(src, name)?;
                if let Some(j) = data.iter().position(|v| !v.is_finite()) {
                    return Err(ClipError::SafeTensors(format!(
                        "tensor `{name}` holds a non-finite value ({}) at index {j}",
                        data[j]
                    )));
                }
                let q = Q8::quantize(&data, rows, cols, group)?;
                encode_f32(Dtype::F32, &q.scales, bytes)?;
                pending.insert(name.clone(), q.values);
                Ok(())
            }
            Part::Values(name) => {
                let values = pending.remove(name).ok_or_else(|| {
                    ClipError::Internal(format!("`{name}`: values before their scales"))
                })?;
                bytes.extend(values.iter().map(|&v| v as u8));
                Ok(())
            }
        }
    })?;
    Ok(Converted {
        bytes: written,
        tensors: list.len(),
    })
}

/// Counts the bytes written through it.
struct CountingWriter<'a, W> {
    inner: W,
    n: &'a mut usize,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        *self.n += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The files of a model folder besides its weights that a converted folder keeps: the
/// config, tokenizer and preprocessor files (JSON, text, SentencePiece models).
#[cfg(not(target_arch = "wasm32"))]
fn copied(name: &str) -> bool {
    [".json", ".txt", ".model"]
        .iter()
        .any(|e| name.ends_with(e))
        && !name.starts_with("golden")
}

/// `webclip convert`: read the Hugging Face folder `src`, write `dst` (created) with the
/// same config, tokenizer and preprocessor files and a converted `model.safetensors`.
#[cfg(not(target_arch = "wasm32"))]
pub fn convert_folder(
    src: &std::path::Path,
    dst: &std::path::Path,
    dtype: Compact,
    towers: Towers,
    group: usize,
) -> Result<Converted> {
    use std::fs;
    let io = |what: &str, p: &std::path::Path, e: std::io::Error| ClipError::file(what, p, e);
    let src_real = fs::canonicalize(src).map_err(|e| io("cannot read", src, e))?;
    if let Ok(d) = fs::canonicalize(dst) {
        if d == src_real {
            return Err(ClipError::Input(format!(
                "--out {} is the source folder: write the converted model to a new folder",
                dst.display()
            )));
        }
    }
    let weights_path = src.join("model.safetensors");
    let weights = fs::read(&weights_path).map_err(|e| io("cannot read", &weights_path, e))?;
    let config_path = src.join("config.json");
    let config_bytes = fs::read(&config_path).map_err(|e| io("cannot read", &config_path, e))?;
    let config = ClipConfig::from_json(&config_bytes)?;
    let st = SafeTensors::parse(&weights).map_err(|e| match e {
        ClipError::SafeTensors(m) => {
            ClipError::SafeTensors(format!("{}: {m}", weights_path.display()))
        }
        e => e,
    })?;
    refuse_converted(&st, &weights_path.display().to_string())?;
    fs::create_dir_all(dst).map_err(|e| io("cannot create", dst, e))?;
    let out_path = dst.join("model.safetensors");
    let file = fs::File::create(&out_path).map_err(|e| io("cannot create", &out_path, e))?;
    let done = convert(
        &config,
        &st,
        weights.as_slice(),
        dtype,
        towers,
        group,
        std::io::BufWriter::new(file),
    )?;
    for entry in fs::read_dir(src).map_err(|e| io("cannot read", src, e))? {
        let entry = entry.map_err(|e| io("cannot read", src, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && copied(&name) {
            fs::copy(entry.path(), dst.join(&name))
                .map_err(|e| io("cannot copy", &entry.path(), e))?;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_round_trips_within_half_a_step() {
        let data: Vec<f32> = (0..3 * 70)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0)
            .collect();
        for group in [0, 4, 32, 64] {
            let q = Q8::quantize(&data, 3, 70, group).unwrap();
            let back = q.dequantize();
            for (i, (a, b)) in data.iter().zip(&back).enumerate() {
                let s = q.scales[(i / 70) * q.groups() + (i % 70) / q.group];
                assert!(
                    (a - b).abs() <= 0.5 * s + 1e-6,
                    "group {group} at {i}: {a} vs {b}"
                );
            }
        }
        // An all-zero group has scale 1, never 0.
        let z = Q8::quantize(&[0.0; 8], 1, 8, 4).unwrap();
        assert_eq!(z.scales, [1.0, 1.0]);
        let parts = Q8::quantize(&data[..6 * 35], 6, 35, 0)
            .unwrap()
            .split_rows(3);
        assert_eq!(parts[2].values.len(), 2 * 35);
        assert_eq!(parts[2].scales.len(), 2);
    }

    #[test]
    fn schemes_parse_and_name_themselves() {
        for g in [0, 32, 64, 128] {
            assert_eq!(
                Scheme::parse(&Scheme { group: g }.name()),
                Some(Scheme { group: g })
            );
        }
        for bad in [
            "int8-symmetric-g3",
            "int8-symmetric-g0",
            "int8-asym-g64",
            "int8-symmetric-g+8",
        ] {
            assert_eq!(Scheme::parse(bad), None, "{bad}");
        }
    }
}
