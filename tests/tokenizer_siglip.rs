//! SigLIP's tokenizers against `transformers` (`SiglipTokenizer` on `spiece.model`,
//! `GemmaTokenizerFast` on `tokenizer.json`): every golden text's ids must equal the reference
//! `input_ids` (no tolerance), for every model folder under `fixtures/siglip/`; broken
//! tokenizer files are typed errors.
mod common;
mod siglip_common;

use siglip_common::*;
use webclip::tokenizer::{
    SentencePiece, SiglipTokenizer, Tokenizer, TokenizerConfig, TokenizerFiles, TokenizerKind,
};
use webclip::ClipError;

fn tokenizer_for(g: &SiglipGolden) -> Tokenizer {
    Tokenizer::from_files(&OwnedTokenizerFiles::of(g).files(), g.context_length())
        .unwrap_or_else(|e| panic!("{}: {e}", g.name))
}

#[test]
fn ids_equal_reference_input_ids() {
    for dir in siglip_dirs() {
        let g = SiglipGolden::load(&dir);
        let tok = tokenizer_for(&g);
        let ctx = g.context_length();
        assert_eq!(g.shape("input_ids"), [g.texts.len(), ctx], "{}", g.name);
        assert!(tok.fixed_length(), "{}: {:?}", g.name, tok.kind());
        let want = g.ids("input_ids");
        for (text, want) in g.texts.iter().zip(want.chunks(ctx)) {
            let got = tok.encode(text).unwrap();
            assert_eq!(got, want, "{} ({:?}): ids of {text:?}", g.name, tok.kind());
            assert_eq!(tok.encode_padded(text).unwrap(), want);
        }
        println!(
            "{}: {:?}, {} texts exact",
            g.name,
            tok.kind(),
            g.texts.len()
        );
    }
}

#[test]
fn both_tokenizer_kinds_are_covered() {
    // The check above only means something if the fixtures hold both kinds, an empty text
    // and one long enough to be cut.
    let mut kinds = Vec::new();
    for dir in siglip_dirs() {
        let g = SiglipGolden::load(&dir);
        let tok = tokenizer_for(&g);
        kinds.push(tok.kind());
        assert!(
            g.texts.iter().any(|t| t.is_empty()),
            "{}: no empty text",
            g.name
        );
        let ctx = g.context_length();
        let cut = g.ids("input_ids").chunks(ctx).any(|ids| {
            // Cut: no padding left, the end token last.
            ids[ctx - 1] != tok.pad_id() || ids[ctx - 2] != tok.pad_id()
        });
        assert!(cut, "{}: no text long enough to be truncated", g.name);
    }
    assert!(kinds.contains(&TokenizerKind::SentencePiece), "{kinds:?}");
    assert!(kinds.contains(&TokenizerKind::Json), "{kinds:?}");
}

#[test]
fn truncation_keeps_the_end_token_and_padding_fills() {
    for dir in siglip_dirs() {
        let g = SiglipGolden::load(&dir);
        let tok = tokenizer_for(&g);
        let ctx = g.context_length();
        // The end token: what follows the text of the empty string.
        let empty = tok.encode("").unwrap();
        let eos = empty[0];
        assert_eq!(empty.len(), ctx);
        assert!(empty[1..].iter().all(|&t| t == tok.pad_id()), "{}", g.name);
        let long = tok.encode(&"cat ".repeat(500)).unwrap();
        assert_eq!(long.len(), ctx);
        assert_eq!(long[ctx - 1], eos, "{}", g.name);
        let short = tok.encode("cat cat cat").unwrap();
        let n = short.iter().position(|&t| t == eos).unwrap();
        assert!(n >= 3 && short[n + 1..].iter().all(|&t| t == tok.pad_id()));
        // The words repeat: the cut text is made of the short one's pieces.
        assert!(
            long[..ctx - 1].iter().all(|t| short[..n].contains(t)),
            "{}",
            g.name
        );
    }
}

fn spm_golden() -> SiglipGolden {
    let dir = siglip_dirs()
        .into_iter()
        .find(|d| d.join("spiece.model").exists())
        .expect("a SigLIP fixture with spiece.model");
    SiglipGolden::load(&dir)
}

fn spm_tokenizer(bytes: &[u8], ctx: usize) -> Result<SiglipTokenizer, ClipError> {
    SiglipTokenizer::new(bytes, &TokenizerConfig::default(), ctx)
}

#[test]
fn the_charsmap_normalises_like_nfkc() {
    // The fixture's normalizer is nmt_nfkc: full-width letters, ligatures and decomposed
    // accents tokenize as their NFKC forms (without the charsmap they would be unknown).
    let g = spm_golden();
    let tok = tokenizer_for(&g);
    let sp = SentencePiece::from_bytes(&g.file("spiece.model")).unwrap();
    assert_eq!(sp.normalizer_spec().name, "nmt_nfkc");
    for (odd, plain) in [
        ("\u{ff43}\u{ff41}\u{ff54}", "cat"),
        ("\u{fb01}sh", "fish"),
        ("cafe\u{301}", "café"),
        ("CAT\u{3000}PHOTO", "cat photo"),
    ] {
        assert_eq!(
            tok.encode(odd).unwrap(),
            tok.encode(plain).unwrap(),
            "{odd:?}"
        );
    }
    let unk = sp.unk_id();
    assert!(!tok
        .encode("\u{ff43}\u{ff41}\u{ff54}")
        .unwrap()
        .contains(&unk));
    // A character the vocabulary lacks is one <unk> per run.
    let ids = tok.encode("a \u{10400}\u{10401} b").unwrap();
    assert_eq!(ids.iter().filter(|&&t| t == unk).count(), 1, "{ids:?}");
}

#[test]
fn which_files_exist_decides_the_kind() {
    let g = spm_golden();
    let spm = g.file("spiece.model");
    let clip_json = std::fs::read(common::fixtures_dir().join("tokenizer/tokenizer.json"))
        .or_else(|_| {
            std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/clip-tokenizer.json"),
            )
        })
        .unwrap();
    let kind = |files: TokenizerFiles| Tokenizer::from_files(&files, 64).map(|t| t.kind());
    let only_spm = TokenizerFiles {
        spiece_model: Some(&spm),
        ..Default::default()
    };
    assert_eq!(kind(only_spm).unwrap(), TokenizerKind::SentencePiece);
    let only_clip = TokenizerFiles {
        tokenizer_json: Some(&clip_json),
        ..Default::default()
    };
    assert_eq!(kind(only_clip).unwrap(), TokenizerKind::Clip);
    // CLIP through the common type gives ClipTokenizer's ids, unpadded and padded.
    let clip = Tokenizer::from_files(&only_clip, 77).unwrap();
    let ids = clip.encode("a photo of a cat").unwrap();
    assert_eq!(ids.len(), 7);
    assert_eq!(clip.encode_padded("a photo of a cat").unwrap().len(), 77);
    // tokenizer_config.json naming a class whose file is missing; no file at all.
    let cfg = br#"{"tokenizer_class": "SiglipTokenizer"}"#;
    let e = kind(TokenizerFiles {
        tokenizer_json: Some(&clip_json),
        tokenizer_config: Some(cfg),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(e, ClipError::NotFound(_)) && e.to_string().contains("spiece.model"),
        "{e}"
    );
    let e = kind(TokenizerFiles::default()).unwrap_err();
    assert!(matches!(e, ClipError::NotFound(_)), "{e}");
    let e = kind(TokenizerFiles {
        spiece_model: Some(&spm),
        tokenizer_config: Some(b"{not json"),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, ClipError::Tokenizer(_)), "{e}");
}

#[test]
fn clip_folders_still_give_clip_ids() {
    // The common type on a CLIP folder's files is CLIP's tokenizer, reference ids intact.
    for dir in common::model_dirs() {
        let g = common::Golden::load(&dir);
        let json = g.file("tokenizer.json");
        let cfg = std::fs::read(dir.join("tokenizer_config.json")).ok();
        let tok = Tokenizer::from_files(
            &TokenizerFiles {
                tokenizer_json: Some(&json),
                tokenizer_config: cfg.as_deref(),
                ..Default::default()
            },
            g.config.text_config.max_position_embeddings,
        )
        .unwrap();
        assert_eq!(tok.kind(), TokenizerKind::Clip, "{}", g.name);
        assert!(!tok.fixed_length());
        let ctx = g.shape("input_ids")[1];
        for (text, want) in g.texts.iter().zip(g.ids("input_ids").chunks(ctx)) {
            assert_eq!(
                tok.encode_padded(text).unwrap(),
                want,
                "{}: {text:?}",
                g.name
            );
        }
    }
}

fn tokenizer_error(r: Result<SiglipTokenizer, ClipError>) -> String {
    match r {
        Err(ClipError::Tokenizer(m)) => m,
        Err(e) => panic!("expected a tokenizer error, got {e:?}"),
        Ok(_) => panic!("expected a tokenizer error, got a tokenizer"),
    }
}

#[test]
fn truncated_spiece_model_is_an_error() {
    let g = spm_golden();
    let bytes = g.file("spiece.model");
    let n = bytes.len();
    // Every cut near the start and the end, and a spread of cuts in between (pieces,
    // trainer spec, the charsmap).
    let cuts: Vec<usize> = (0..600)
        .chain((n - 600..n).rev())
        .chain((600..n - 600).step_by(997))
        .collect();
    for &cut in &cuts {
        let msg = tokenizer_error(spm_tokenizer(&bytes[..cut], 64));
        assert!(msg.contains("spiece.model"), "cut at {cut}: {msg}");
    }
    println!(
        "{} cuts refused; at half: {}",
        cuts.len(),
        tokenizer_error(spm_tokenizer(&bytes[..n / 2], 64))
    );
    assert!(spm_tokenizer(&bytes, 64).is_ok());
}

#[test]
fn random_and_foreign_bytes_are_errors() {
    let mut seed = 0x1234_5678u32;
    let mut random = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect()
    };
    for len in [0, 1, 2, 5, 16, 100, 1000, 10_000, 300_000] {
        for _ in 0..4 {
            let b = random(len);
            tokenizer_error(spm_tokenizer(&b, 64));
        }
    }
    let png = std::fs::read(common::image_path("tiny-7x5.png")).unwrap();
    let g = spm_golden();
    for b in [&b"{\"version\": \"1.0\"}"[..], &png, &g.file("config.json")] {
        let msg = tokenizer_error(spm_tokenizer(b, 64));
        println!("{msg}");
    }
}

/// The `(offset, length)` of the varint at `at`.
fn varint_at(b: &[u8], at: usize) -> (u64, usize) {
    let (mut v, mut i) = (0u64, 0);
    loop {
        v |= u64::from(b[at + i] & 0x7f) << (7 * i);
        i += 1;
        if b[at + i - 1] & 0x80 == 0 {
            return (v, i);
        }
    }
}

#[test]
fn lying_lengths_are_errors() {
    let g = spm_golden();
    let bytes = g.file("spiece.model");
    assert_eq!(bytes[0], 0x0a, "starts with a piece");
    let (len, n) = varint_at(&bytes, 1);
    // The first piece claims 2^31 bytes (the file has 264 k): refused, nothing allocated.
    let mut lie = vec![0x0a, 0x80, 0x80, 0x80, 0x80, 0x08];
    lie.extend_from_slice(&bytes[1 + n..]);
    let msg = tokenizer_error(spm_tokenizer(&lie, 64));
    assert!(msg.contains("2147483648"), "{msg}");
    // Inside the first piece, its string claims more bytes than the piece has.
    let mut lie = bytes.clone();
    let inner = 1 + n;
    assert_eq!(lie[inner], 0x0a);
    lie[inner + 1] = (len as u8).wrapping_add(3) & 0x7f;
    let msg = tokenizer_error(spm_tokenizer(&lie, 64));
    assert!(msg.contains("piece 0"), "{msg}");
    // The charsmap's trie size lies.
    let at = bytes.windows(8).position(|w| w == b"nmt_nfkc").unwrap() + 8;
    assert_eq!(bytes[at], 0x12, "precompiled_charsmap follows the name");
    let (_, n) = varint_at(&bytes, at + 1);
    let mut lie = bytes.clone();
    lie[at + 1 + n..at + 5 + n].copy_from_slice(&0xffff_ff00u32.to_le_bytes());
    let msg = tokenizer_error(spm_tokenizer(&lie, 64));
    assert!(msg.contains("precompiled_charsmap"), "{msg}");
}

fn json_golden() -> SiglipGolden {
    let dir = siglip_dirs()
        .into_iter()
        .find(|d| d.join("tokenizer.json").exists() && !d.join("spiece.model").exists())
        .expect("a SigLIP fixture with tokenizer.json");
    SiglipGolden::load(&dir)
}

#[test]
fn unsupported_tokenizer_json_is_an_error() {
    let g = json_golden();
    let mut json: serde_json::Value = serde_json::from_slice(&g.file("tokenizer.json")).unwrap();
    let cfg = g.file("tokenizer_config.json");
    let load = |json: &[u8]| {
        Tokenizer::from_files(
            &TokenizerFiles {
                tokenizer_json: Some(json),
                tokenizer_config: Some(&cfg),
                ..Default::default()
            },
            64,
        )
    };
    json["model"]["type"] = "SentencePieceBPE".into();
    let e = load(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert!(matches!(e, ClipError::Tokenizer(_)), "{e}");
    assert!(
        e.to_string().contains("SentencePieceBPE") && e.to_string().contains("BPE, Unigram"),
        "{e}"
    );
    json["model"]["type"] = 7.into();
    assert!(matches!(
        load(&serde_json::to_vec(&json).unwrap()),
        Err(ClipError::Tokenizer(_))
    ));
    for bad in [
        &b"not json"[..],
        b"{}",
        b"[1, 2]",
        b"{\"model\": {\"type\": \"BPE\"}}",
    ] {
        let e = load(bad).unwrap_err();
        assert!(matches!(e, ClipError::Tokenizer(_)), "{e}");
        println!("{}: {e}", String::from_utf8_lossy(bad));
    }
    // A pad token the vocabulary lacks.
    let e = Tokenizer::from_files(
        &TokenizerFiles {
            tokenizer_json: Some(&g.file("tokenizer.json")),
            tokenizer_config: Some(br#"{"pad_token": "<nothing>"}"#),
            ..Default::default()
        },
        64,
    )
    .unwrap_err();
    assert!(e.to_string().contains("<nothing>"), "{e}");
}

#[test]
fn add_bos_and_eos_flags_rewrite_the_post_processor() {
    let g = json_golden();
    let json = g.file("tokenizer.json");
    let load = |cfg: &str| {
        Tokenizer::from_files(
            &TokenizerFiles {
                tokenizer_json: Some(&json),
                tokenizer_config: Some(cfg.as_bytes()),
                ..Default::default()
            },
            64,
        )
        .unwrap()
    };
    let plain = load(&String::from_utf8(g.file("tokenizer_config.json")).unwrap());
    let ids = plain.encode("a cat").unwrap();
    let n = ids.iter().position(|&t| t == plain.pad_id()).unwrap();
    let (body, eos) = (&ids[..n - 1], ids[n - 1]);
    let with_bos = load(r#"{"pad_token": "<pad>", "bos_token": "<bos>", "add_bos_token": true}"#);
    let ids = with_bos.encode("a cat").unwrap();
    assert_eq!(ids[1..n], *body);
    assert_eq!(ids[n], eos, "add_eos_token left out keeps the file's <eos>");
    let none = load(r#"{"pad_token": "<pad>", "add_eos_token": false}"#);
    let ids = none.encode("a cat").unwrap();
    assert_eq!(ids[..n - 1], *body);
    assert_eq!(ids[n - 1], none.pad_id());
    // Truncation still leaves room for both special tokens.
    let ids = with_bos.encode(&"cat ".repeat(500)).unwrap();
    assert_eq!(ids[63], eos);
}
