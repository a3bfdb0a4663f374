//! SentencePiece unigram models (`spiece.model`, a serialized `ModelProto`), encoding as the
//! `sentencepiece` library does.
//!
//! Follows google/sentencepiece `src/`: `sentencepiece_model.proto` (the fields read),
//! `model_interface.cc` (`InitializePieces`: which pieces are matchable, one `<unk>`, byte
//! pieces), `normalizer.cc` (`Normalize`, `NormalizePrefix`, `DecodePrecompiledCharsMap`: the
//! precompiled charsmap is a darts-clone double-array trie of rewrite rules, longest match
//! first; dummy prefix, extra whitespace removal, `" "` escaped to `"▁"`; user-defined pieces
//! are never normalised), `unigram_model.cc` (`EncodeOptimized`: Viterbi over UTF-8 byte
//! positions in f32, unknown characters scored `min_score - 10`, user-defined pieces
//! `length * max_score - 0.1`) and `sentencepiece_processor.cc`
//! (`PopulateSentencePieceText`: runs of unknown pieces merged into one, or split into
//! `<0xXX>` byte pieces when the model was trained with `byte_fallback`).
//!
//! Every length, offset and trie index read from the file is checked: a broken file is a
//! [`ClipError::Tokenizer`], never a panic or an allocation the file's size does not cover.

use super::protobuf::{Reader, Value};
use crate::error::{ClipError, Result};
use std::collections::HashMap;

const SPACE_SYMBOL: &str = "\u{2581}";

/// `ModelProto.SentencePiece.Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl PieceType {
    fn from_proto(v: u64) -> Option<Self> {
        Some(match v {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            _ => return None,
        })
    }

    /// Pieces the text can be segmented into (`pieces_` in `model_interface.cc`); the
    /// others (`reserved_id_map_`) are only reachable by id.
    fn matchable(self) -> bool {
        matches!(
            self,
            PieceType::Normal | PieceType::UserDefined | PieceType::Unused
        )
    }
}

#[derive(Debug, Clone)]
pub struct Piece {
    pub piece: String,
    pub score: f32,
    pub kind: PieceType,
}

/// `NormalizerSpec` (defaults as in the .proto).
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizerSpec {
    pub name: String,
    pub precompiled_charsmap: Vec<u8>,
    pub add_dummy_prefix: bool,
    pub remove_extra_whitespaces: bool,
    pub escape_whitespaces: bool,
}

impl Default for NormalizerSpec {
    fn default() -> Self {
        NormalizerSpec {
            name: String::new(),
            precompiled_charsmap: Vec::new(),
            add_dummy_prefix: true,
            remove_extra_whitespaces: true,
            escape_whitespaces: true,
        }
    }
}

/// The parts of `TrainerSpec` that change encoding.
#[derive(Debug, Clone, PartialEq, Default)]
struct TrainerSpec {
    /// 1 unigram, 2 BPE, 3 word, 4 char.
    model_type: Option<u64>,
    treat_whitespace_as_suffix: bool,
    byte_fallback: bool,
}

/// The parsed `ModelProto` fields encoding depends on.
#[derive(Debug, Clone, Default)]
pub struct ModelProto {
    pub pieces: Vec<Piece>,
    trainer: TrainerSpec,
    pub normalizer: NormalizerSpec,
    /// Whether the file has a `normalizer_spec` (SentencePiece writes it after the pieces
    /// and the trainer spec, so a file cut short lacks it).
    has_normalizer: bool,
}

fn bad(msg: impl std::fmt::Display) -> ClipError {
    ClipError::Tokenizer(format!("spiece.model: {msg}"))
}

fn as_bool(v: Value, what: &str) -> Result<bool> {
    match v {
        Value::Varint(x) => Ok(x != 0),
        v => Err(bad(format!(
            "{what} is {}, expected a varint",
            v.wire_name()
        ))),
    }
}

fn as_bytes<'a>(v: Value<'a>, what: &str) -> Result<&'a [u8]> {
    match v {
        Value::Bytes(b) => Ok(b),
        v => Err(bad(format!(
            "{what} is {}, expected length-delimited",
            v.wire_name()
        ))),
    }
}

fn as_string(v: Value, what: &str) -> Result<String> {
    let b = as_bytes(v, what)?;
    String::from_utf8(b.to_vec()).map_err(|_| bad(format!("{what} is not valid UTF-8")))
}

fn fields<'a>(
    bytes: &'a [u8],
    what: &str,
    mut f: impl FnMut(u32, Value<'a>) -> Result<()>,
) -> Result<()> {
    let mut r = Reader::new(bytes);
    loop {
        match r.next_field() {
            Ok(Some((n, v))) => f(n, v)?,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(bad(format!(
                    "{what}: {e} (truncated, or not a SentencePiece model)"
                )))
            }
        }
    }
}

impl ModelProto {
    /// Parses the protobuf; unknown fields are skipped, repeated sub-messages merged, as a
    /// protobuf parser does.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut m = ModelProto::default();
        fields(bytes, "ModelProto", |n, v| {
            match n {
                1 => {
                    let i = m.pieces.len();
                    let what = format!("piece {i}");
                    let mut p = Piece {
                        piece: String::new(),
                        score: 0.0,
                        kind: PieceType::Normal,
                    };
                    fields(as_bytes(v, &what)?, &what, |n, v| {
                        match n {
                            1 => p.piece = as_string(v, &format!("{what} text"))?,
                            2 => match v {
                                Value::Fixed32(x) => p.score = f32::from_bits(x),
                                v => {
                                    return Err(bad(format!(
                                        "{what} score is {}, expected a float",
                                        v.wire_name()
                                    )))
                                }
                            },
                            3 => match v {
                                Value::Varint(x) => {
                                    p.kind = PieceType::from_proto(x).ok_or_else(|| {
                                        bad(format!("{what} has unknown type {x}"))
                                    })?
                                }
                                v => {
                                    return Err(bad(format!(
                                        "{what} type is {}, expected a varint",
                                        v.wire_name()
                                    )))
                                }
                            },
                            _ => {}
                        }
                        Ok(())
                    })?;
                    m.pieces.push(p);
                }
                2 => fields(as_bytes(v, "trainer_spec")?, "trainer_spec", |n, v| {
                    match n {
                        3 => match v {
                            Value::Varint(x) => m.trainer.model_type = Some(x),
                            v => {
                                return Err(bad(format!(
                                    "trainer_spec.model_type is {}, expected a varint",
                                    v.wire_name()
                                )))
                            }
                        },
                        24 => {
                            m.trainer.treat_whitespace_as_suffix =
                                as_bool(v, "trainer_spec.treat_whitespace_as_suffix")?
                        }
                        35 => m.trainer.byte_fallback = as_bool(v, "trainer_spec.byte_fallback")?,
                        _ => {}
                    }
                    Ok(())
                })?,
                3 => {
                    m.has_normalizer = true;
                    let spec = &mut m.normalizer;
                    fields(
                        as_bytes(v, "normalizer_spec")?,
                        "normalizer_spec",
                        |n, v| {
                            match n {
                                1 => spec.name = as_string(v, "normalizer_spec.name")?,
                                2 => {
                                    spec.precompiled_charsmap =
                                        as_bytes(v, "precompiled_charsmap")?.to_vec()
                                }
                                3 => spec.add_dummy_prefix = as_bool(v, "add_dummy_prefix")?,
                                4 => {
                                    spec.remove_extra_whitespaces =
                                        as_bool(v, "remove_extra_whitespaces")?
                                }
                                5 => spec.escape_whitespaces = as_bool(v, "escape_whitespaces")?,
                                _ => {}
                            }
                            Ok(())
                        },
                    )?
                }
                _ => {}
            }
            Ok(())
        })?;
        Ok(m)
    }
}

/// `Darts::DoubleArray` as sentencepiece serialises it: little-endian u32 units.
#[derive(Debug, Clone)]
struct DoubleArray {
    units: Vec<u32>,
}

impl DoubleArray {
    fn unit(&self, pos: usize) -> Result<u32> {
        self.units
            .get(pos)
            .copied()
            .ok_or_else(|| bad("precompiled_charsmap: trie index out of range (corrupt file)"))
    }

    /// `commonPrefixSearch`, keeping the longest match: `(value, matched length)`.
    fn longest_prefix(&self, key: &[u8]) -> Result<Option<(u32, usize)>> {
        let offset = |u: u32| ((u >> 10) << ((u & (1 << 9)) >> 6)) as usize;
        let mut best = None;
        let mut pos = offset(self.unit(0)?);
        for (i, &c) in key.iter().enumerate() {
            pos ^= c as usize;
            let unit = self.unit(pos)?;
            if unit & ((1 << 31) | 0xff) != c as u32 {
                break;
            }
            pos ^= offset(unit);
            if (unit >> 8) & 1 == 1 {
                best = Some((self.unit(pos)? & ((1 << 31) - 1), i + 1));
            }
        }
        Ok(best)
    }
}

/// The text normaliser (`normalizer::Normalizer`).
#[derive(Debug, Clone)]
struct Normalizer {
    spec: NormalizerSpec,
    treat_whitespace_as_suffix: bool,
    /// The charsmap's rules and the NUL-separated replacement strings they point into.
    rules: Option<(DoubleArray, Vec<u8>)>,
    /// User-defined pieces, matched before the rules and kept as they are.
    user_defined: Vec<String>,
}

impl Normalizer {
    fn new(
        spec: NormalizerSpec,
        treat_whitespace_as_suffix: bool,
        user_defined: Vec<String>,
    ) -> Result<Self> {
        let blob = &spec.precompiled_charsmap;
        let rules = if blob.is_empty() {
            None
        } else {
            // `<trie size: u32 LE><trie: u32 units><replacement strings>`.
            if blob.len() <= 4 {
                return Err(bad("precompiled_charsmap is broken (too short)"));
            }
            let size = u32::from_le_bytes([blob[0], blob[1], blob[2], blob[3]]) as usize;
            if size >= blob.len() {
                return Err(bad(format!(
                    "precompiled_charsmap: trie of {size} bytes exceeds the {} bytes of the map",
                    blob.len()
                )));
            }
            let trie = &blob[4..];
            if size > trie.len() {
                return Err(bad("precompiled_charsmap: trie exceeds the map"));
            }
            let units = trie[..size]
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect::<Vec<_>>();
            if units.is_empty() {
                return Err(bad("precompiled_charsmap: empty trie"));
            }
            Some((DoubleArray { units }, trie[size..].to_vec()))
        };
        Ok(Normalizer {
            spec,
            treat_whitespace_as_suffix,
            rules,
            user_defined,
        })
    }

    /// `NormalizePrefix`: the normalised form of the start of `input` and how many bytes
    /// of `input` it stands for.
    fn normalize_prefix<'a>(&'a self, input: &'a str) -> Result<(&'a str, usize)> {
        let longest_user = self
            .user_defined
            .iter()
            .filter(|p| input.starts_with(p.as_str()))
            .map(|p| p.len())
            .max();
        if let Some(n) = longest_user {
            return Ok((&input[..n], n));
        }
        if let Some((trie, strings)) = &self.rules {
            if let Some((value, len)) = trie.longest_prefix(input.as_bytes())? {
                let rest = strings.get(value as usize..).ok_or_else(|| {
                    bad("precompiled_charsmap: replacement offset out of range (corrupt file)")
                })?;
                let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                let out = std::str::from_utf8(&rest[..end])
                    .map_err(|_| bad("precompiled_charsmap: replacement is not valid UTF-8"))?;
                // A rule matching part of a character would leave invalid UTF-8 behind.
                if !input.is_char_boundary(len) {
                    return Err(bad(
                        "precompiled_charsmap: a rule ends inside a character (corrupt file)",
                    ));
                }
                return Ok((out, len));
            }
        }
        let n = input.chars().next().map_or(0, char::len_utf8);
        Ok((&input[..n], n))
    }

    /// `Normalizer::Normalize`, without the offset mapping.
    fn normalize(&self, mut input: &str) -> Result<String> {
        let spec = &self.spec;
        let mut out = String::new();
        if spec.remove_extra_whitespaces {
            // Leading spaces (after normalisation) are dropped.
            while !input.is_empty() {
                let (s, n) = self.normalize_prefix(input)?;
                if s != " " {
                    break;
                }
                input = &input[n..];
            }
        }
        if input.is_empty() {
            return Ok(out);
        }
        let space = if spec.escape_whitespaces {
            SPACE_SYMBOL
        } else {
            " "
        };
        if !self.treat_whitespace_as_suffix && spec.add_dummy_prefix {
            out.push_str(space);
        }
        let mut prev_space = spec.remove_extra_whitespaces;
        while !input.is_empty() {
            let (mut s, n) = self.normalize_prefix(input)?;
            while prev_space && s.starts_with(' ') {
                s = &s[1..];
            }
            if !s.is_empty() {
                for c in s.chars() {
                    match c {
                        ' ' => out.push_str(space),
                        c => out.push(c),
                    }
                }
                prev_space = s.ends_with(' ');
            }
            input = &input[n..];
            if !spec.remove_extra_whitespaces {
                prev_space = false;
            }
        }
        if spec.remove_extra_whitespaces {
            while out.ends_with(space) {
                out.truncate(out.len() - space.len());
            }
        }
        if self.treat_whitespace_as_suffix && spec.add_dummy_prefix {
            out.push_str(space);
        }
        Ok(out)
    }
}

/// A SentencePiece unigram model: normaliser, pieces, Viterbi segmentation.
#[derive(Debug, Clone)]
pub struct SentencePiece {
    pieces: Vec<Piece>,
    /// Pieces the text is segmented into (normal, user-defined, unused), by text.
    matchable: HashMap<String, u32>,
    /// Every piece, by text (`PieceToId`).
    all: HashMap<String, u32>,
    /// Longest matchable piece, in bytes.
    max_piece_len: usize,
    unk_id: u32,
    min_score: f32,
    max_score: f32,
    /// `<0xXX>` piece ids when the model falls back to bytes for unknown characters.
    byte_ids: Option<Vec<u32>>,
    normalizer: Normalizer,
}

impl SentencePiece {
    /// From `spiece.model` bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_proto(ModelProto::parse(bytes)?)
    }

    pub fn from_proto(m: ModelProto) -> Result<Self> {
        match m.trainer.model_type {
            None | Some(1) => {}
            Some(t) => {
                let name = match t {
                    2 => "BPE",
                    3 => "word",
                    4 => "char",
                    _ => "unknown",
                };
                return Err(ClipError::Unsupported(format!(
                    "spiece.model is a SentencePiece {name} model (model_type {t}); only \
                     unigram models are supported"
                )));
            }
        }
        if m.pieces.is_empty() {
            return Err(bad("no pieces (not a SentencePiece model)"));
        }
        if !m.has_normalizer {
            return Err(bad(
                "no normalizer_spec (the file is truncated, or not a SentencePiece model)",
            ));
        }
        if u32::try_from(m.pieces.len()).is_err() {
            return Err(bad("too many pieces"));
        }
        let mut matchable = HashMap::new();
        let mut reserved = HashMap::new();
        let mut unk_id = None;
        let mut user_defined = Vec::new();
        let mut byte_ids = vec![None; 256];
        for (i, p) in m.pieces.iter().enumerate() {
            let id = i as u32;
            if p.piece.is_empty() {
                return Err(bad(format!("piece {i} is empty")));
            }
            let map = if p.kind.matchable() {
                &mut matchable
            } else {
                &mut reserved
            };
            if map.insert(p.piece.clone(), id).is_some() {
                return Err(bad(format!("piece {:?} is defined twice", p.piece)));
            }
            match p.kind {
                PieceType::UserDefined => user_defined.push(p.piece.clone()),
                PieceType::Unknown if unk_id.is_some() => {
                    return Err(bad("more than one unknown piece"))
                }
                PieceType::Unknown => unk_id = Some(id),
                PieceType::Byte => {
                    if !m.trainer.byte_fallback {
                        return Err(bad(format!(
                            "byte piece {:?} although byte_fallback is off",
                            p.piece
                        )));
                    }
                    let b = piece_to_byte(&p.piece)
                        .ok_or_else(|| bad(format!("invalid byte piece {:?}", p.piece)))?;
                    byte_ids[b as usize] = Some(id);
                }
                _ => {}
            }
        }
        let unk_id = unk_id.ok_or_else(|| bad("no unknown piece (<unk>) is defined"))?;
        let byte_ids = if m.trainer.byte_fallback {
            Some(
                byte_ids
                    .into_iter()
                    .collect::<Option<Vec<u32>>>()
                    .ok_or_else(|| bad("byte_fallback is on but not all 256 byte pieces exist"))?,
            )
        } else {
            None
        };
        // `FLT_MAX` / `FLT_MIN` starting values, over normal pieces only.
        let (mut min_score, mut max_score) = (f32::MAX, f32::MIN_POSITIVE);
        for p in m.pieces.iter().filter(|p| p.kind == PieceType::Normal) {
            min_score = min_score.min(p.score);
            max_score = max_score.max(p.score);
        }
        let max_piece_len = matchable.keys().map(String::len).max().unwrap_or(0);
        let mut all = reserved;
        for (k, v) in &matchable {
            all.entry(k.clone()).or_insert(*v);
        }
        let normalizer = Normalizer::new(
            m.normalizer,
            m.trainer.treat_whitespace_as_suffix,
            user_defined,
        )?;
        Ok(SentencePiece {
            pieces: m.pieces,
            matchable,
            all,
            max_piece_len,
            unk_id,
            min_score,
            max_score,
            byte_ids,
            normalizer,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    pub fn piece_to_id(&self, piece: &str) -> Option<u32> {
        self.all.get(piece).copied()
    }

    pub fn id_to_piece(&self, id: u32) -> Option<&Piece> {
        self.pieces.get(id as usize)
    }

    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }

    pub fn normalizer_spec(&self) -> &NormalizerSpec {
        &self.normalizer.spec
    }

    /// Sets `add_dummy_prefix` (transformers' tokenizers turn it off and add `"▁"`
    /// themselves).
    pub fn set_add_dummy_prefix(&mut self, on: bool) {
        self.normalizer.spec.add_dummy_prefix = on;
    }

    /// The normalised text the pieces are matched against.
    pub fn normalize(&self, text: &str) -> Result<String> {
        self.normalizer.normalize(text)
    }

    /// Token ids of `text`, as `SentencePieceProcessor::Encode` gives them (no BOS/EOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let normalized = self.normalize(text)?;
        let mut ids = Vec::new();
        let mut prev_unk = false;
        for (piece, id) in self.viterbi(&normalized) {
            let unk = id == self.unk_id;
            match (&self.byte_ids, unk) {
                (Some(bytes), true) => ids.extend(piece.bytes().map(|b| bytes[b as usize])),
                // A run of unknown pieces becomes one.
                (None, true) if prev_unk => {}
                _ => ids.push(id),
            }
            prev_unk = unk;
        }
        Ok(ids)
    }

    /// `EncodeOptimized`: the best segmentation of `normalized`, as `(piece, id)`.
    fn viterbi<'a>(&self, normalized: &'a str) -> Vec<(&'a str, u32)> {
        #[derive(Clone, Copy)]
        struct Best {
            id: u32,
            score: f32,
            start: Option<usize>,
        }
        let size = normalized.len();
        if size == 0 {
            return Vec::new();
        }
        let unk_score = self.min_score - 10.0;
        let mut best = vec![
            Best {
                id: self.unk_id,
                score: 0.0,
                start: None,
            };
            size + 1
        ];
        for (start, ch) in normalized.char_indices() {
            let here = best[start].score;
            let char_len = ch.len_utf8();
            let mut has_single = false;
            let rest = &normalized[start..];
            let limit = rest.len().min(self.max_piece_len);
            // Piece ends: every later character boundary, up to the longest piece.
            let ends = rest
                .char_indices()
                .map(|(i, _)| i)
                .skip(1)
                .chain(std::iter::once(rest.len()));
            for len in ends.take_while(|&i| i <= limit) {
                let Some(&id) = self.matchable.get(&rest[..len]) else {
                    continue;
                };
                let p = &self.pieces[id as usize];
                if p.kind == PieceType::Unused {
                    continue;
                }
                let target = &mut best[start + len];
                if p.kind == PieceType::UserDefined {
                    // `length * max_score_ - 0.1` is a double in C++.
                    let cand = f64::from(len as f32 * self.max_score) - 0.1 + f64::from(here);
                    if target.start.is_none() || cand > f64::from(target.score) {
                        *target = Best {
                            id,
                            score: cand as f32,
                            start: Some(start),
                        };
                    }
                } else {
                    let cand = p.score + here;
                    if target.start.is_none() || cand > target.score {
                        *target = Best {
                            id,
                            score: cand,
                            start: Some(start),
                        };
                    }
                }
                has_single |= len == char_len;
            }
            if !has_single {
                let target = &mut best[start + char_len];
                let cand = unk_score + here;
                if target.start.is_none() || cand > target.score {
                    *target = Best {
                        id: self.unk_id,
                        score: cand,
                        start: Some(start),
                    };
                }
            }
        }
        let mut out = Vec::new();
        let mut end = size;
        while end > 0 {
            let b = best[end];
            // Every character end is reached (a piece or the unknown piece covers each
            // character), so `start` is set; stop rather than loop if it is not.
            let Some(start) = b.start else { break };
            out.push((&normalized[start..end], b.id));
            end = start;
        }
        out.reverse();
        out
    }
}

/// `<0x41>` -> 0x41 (`PieceToByte`: two upper-case hex digits).
fn piece_to_byte(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::protobuf::tests::varint;
    use super::*;

    /// Serialises a model the way `sentencepiece` writes one (for tests).
    pub(crate) fn model_bytes(
        pieces: &[(&str, f32, u64)],
        trainer: &[(u32, u64)],
        normalizer: Option<(&str, &[u8])>,
        flags: &[(u32, bool)],
    ) -> Vec<u8> {
        fn field_bytes(n: u32, b: &[u8], out: &mut Vec<u8>) {
            varint(u64::from(n) << 3 | 2, out);
            varint(b.len() as u64, out);
            out.extend_from_slice(b);
        }
        let mut out = Vec::new();
        for (p, s, t) in pieces {
            let mut m = Vec::new();
            field_bytes(1, p.as_bytes(), &mut m);
            varint(2 << 3 | 5, &mut m);
            m.extend(s.to_le_bytes());
            varint(3 << 3, &mut m);
            varint(*t, &mut m);
            field_bytes(1, &m, &mut out);
        }
        let mut t = Vec::new();
        for (n, v) in trainer {
            varint(u64::from(*n) << 3, &mut t);
            varint(*v, &mut t);
        }
        field_bytes(2, &t, &mut out);
        let mut n = Vec::new();
        if let Some((name, map)) = normalizer {
            field_bytes(1, name.as_bytes(), &mut n);
            field_bytes(2, map, &mut n);
        }
        for (f, v) in flags {
            varint(u64::from(*f) << 3, &mut n);
            varint(*v as u64, &mut n);
        }
        field_bytes(3, &n, &mut out);
        out
    }

    fn toy(extra: &[(&str, f32, u64)], flags: &[(u32, bool)]) -> SentencePiece {
        let mut pieces = vec![
            ("<pad>", 0.0, 3),
            ("</s>", 0.0, 3),
            ("<unk>", 0.0, 2),
            ("\u{2581}", -2.0, 1),
            ("a", -3.0, 1),
            ("b", -3.0, 1),
            ("ab", -4.0, 1),
            ("\u{2581}ab", -4.5, 1),
            ("c", -3.0, 1),
        ];
        pieces.extend_from_slice(extra);
        SentencePiece::from_bytes(&model_bytes(&pieces, &[], None, flags)).unwrap()
    }

    #[test]
    fn viterbi_takes_the_best_segmentation() {
        let sp = toy(&[], &[]);
        // "▁ab" (-4.5) beats "▁" + "ab" (-6) and "▁" + "a" + "b" (-8).
        assert_eq!(sp.encode("ab").unwrap(), vec![7]);
        assert_eq!(sp.encode("ab abc").unwrap(), vec![7, 7, 8]);
        assert_eq!(sp.normalize("  ab   c  ").unwrap(), "\u{2581}ab\u{2581}c");
        assert_eq!(sp.encode("").unwrap(), Vec::<u32>::new());
        assert_eq!(sp.encode("   ").unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn unknown_runs_merge_into_one_unk() {
        let sp = toy(&[], &[]);
        // "xyz" are unknown: one <unk> for the run, as sentencepiece merges them.
        assert_eq!(sp.encode("axyzb").unwrap(), vec![3, 4, 2, 5]);
        assert_eq!(sp.encode("x a y").unwrap(), vec![3, 2, 3, 4, 3, 2]);
    }

    #[test]
    fn normalizer_flags_are_honoured() {
        // add_dummy_prefix off: no leading "▁".
        let sp = toy(&[], &[(3, false)]);
        assert_eq!(sp.normalize(" ab c").unwrap(), "ab\u{2581}c");
        // remove_extra_whitespaces off: spaces kept, leading and trailing too.
        let sp = toy(&[], &[(4, false)]);
        assert_eq!(
            sp.normalize(" a  b ").unwrap(),
            "\u{2581}\u{2581}a\u{2581}\u{2581}b\u{2581}"
        );
        // escape_whitespaces off.
        let sp = toy(&[], &[(5, false)]);
        assert_eq!(sp.normalize("a  b").unwrap(), " a b");
    }

    #[test]
    fn user_defined_pieces_win_and_unused_never_match() {
        // User-defined "bc" scores 2 * max_score - 0.1 = -4.1 whatever its own score, more
        // than "b" + "c" (-6); unused "ca" never matches, however high its score.
        let sp = toy(&[("bc", -100.0, 4), ("ca", 10.0, 5)], &[]);
        assert_eq!(sp.encode("bc").unwrap(), vec![3, 9]);
        assert_eq!(sp.encode("ca").unwrap(), vec![3, 8, 4]);
    }

    #[test]
    fn byte_fallback_splits_unknown_characters_into_bytes() {
        let mut pieces = vec![("<unk>", 0.0, 2), ("\u{2581}", -1.0, 1), ("a", -1.0, 1)];
        let names: Vec<String> = (0..256).map(|b| format!("<0x{b:02X}>")).collect();
        pieces.extend(names.iter().map(|n| (n.as_str(), 0.0, 6)));
        let sp = SentencePiece::from_bytes(&model_bytes(&pieces, &[(35, 1)], None, &[])).unwrap();
        // "é" is C3 A9: byte pieces start at id 3.
        assert_eq!(sp.encode("aé").unwrap(), vec![1, 2, 3 + 0xc3, 3 + 0xa9]);
        // Byte pieces without byte_fallback, or too few of them, are refused.
        assert!(SentencePiece::from_bytes(&model_bytes(&pieces, &[], None, &[])).is_err());
        assert!(
            SentencePiece::from_bytes(&model_bytes(&pieces[..100], &[(35, 1)], None, &[])).is_err()
        );
    }

    #[test]
    fn invalid_models_are_errors() {
        let err = |pieces: &[(&str, f32, u64)], trainer: &[(u32, u64)]| {
            SentencePiece::from_bytes(&model_bytes(pieces, trainer, None, &[])).unwrap_err()
        };
        let msg = err(&[("a", 0.0, 1)], &[]).to_string();
        assert!(msg.contains("unknown piece"), "{msg}");
        let msg = err(&[("<unk>", 0.0, 2), ("a", 0.0, 1), ("a", 0.0, 1)], &[]).to_string();
        assert!(msg.contains("twice"), "{msg}");
        let msg = err(&[("<unk>", 0.0, 2), ("", 0.0, 1)], &[]).to_string();
        assert!(msg.contains("empty"), "{msg}");
        let msg = err(&[("<unk>", 0.0, 2), ("a", 0.0, 9)], &[]).to_string();
        assert!(msg.contains("unknown type"), "{msg}");
        let e = err(&[("<unk>", 0.0, 2)], &[(3, 2)]);
        assert!(matches!(e, ClipError::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("BPE"), "{e}");
        // A charsmap whose trie size lies.
        let bytes = model_bytes(
            &[("<unk>", 0.0, 2)],
            &[],
            Some(("nmt_nfkc", &[0xff, 0xff, 0, 0, 1, 2, 3])),
            &[],
        );
        assert!(SentencePiece::from_bytes(&bytes).is_err());
        // A charsmap whose trie points outside itself: an error when text meets it.
        let mut map = 8u32.to_le_bytes().to_vec();
        map.extend(0xffff_fc00u32.to_le_bytes());
        map.extend(0u32.to_le_bytes());
        map.extend(b"x\0");
        let bytes = model_bytes(&[("<unk>", 0.0, 2)], &[], Some(("nmt_nfkc", &map)), &[]);
        let sp = SentencePiece::from_bytes(&bytes).unwrap();
        assert!(matches!(sp.encode("abc"), Err(ClipError::Tokenizer(_))));
    }

    #[test]
    fn byte_piece_names() {
        assert_eq!(piece_to_byte("<0x00>"), Some(0));
        assert_eq!(piece_to_byte("<0xFF>"), Some(255));
        assert_eq!(piece_to_byte("<0xff>"), None);
        assert_eq!(piece_to_byte("<0x1>"), None);
        assert_eq!(piece_to_byte("0x41"), None);
    }
}
