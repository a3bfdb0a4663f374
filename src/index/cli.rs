//! `webclip index DIR --model M --out FILE`: embed every image under a folder into an index
//! file (`file.rs`) that `ClipIndex.importFile` loads in the browser. Entries are keyed by
//! the SHA-256 of the file's content (as the demo keys its photos), with `{ path, paths }` as
//! metadata (every path with that content); a file whose hash is already in FILE is not
//! embedded again, so re-running after adding photos embeds only the new ones. Unreadable
//! files and non-images are listed on stderr, never fatal. Embedding runs on `--threads`
//! workers (default: every core), each with its own model, `--batch` images per call.

use super::file::{Entry, IndexFile};
use crate::clip::{BackendChoice, ClipOptions, ModelFolder};
use crate::error::{ClipError, Result};
use crate::model::Towers;
use crate::preprocess::ImageInput;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

pub const USAGE: &str = "\
  webclip index DIR --model M --out FILE [--parquet FILE.parquet] [--backend cpu|gpu|auto] [--batch N] [--threads N]
      embed every image under DIR (recursively) into an index file that ClipIndex.importFile
      loads; files whose content (SHA-256) is already in FILE are not embedded again;
      --parquet writes the whole index as Parquet too (id, path, content_hash,
      model_fingerprint, embedding) for DuckDB, Spark, Ray or a vector database
  webclip to-parquet INDEX --out FILE.parquet
      an index file (from webclip index or ClipIndex.exportFile) as Parquet";

/// Runs the command; returns the exit status (2: usage, 1: failure).
pub fn main(args: &[String]) -> i32 {
    report(run(args))
}

fn report(outcome: std::result::Result<(), Fail>) -> i32 {
    match outcome {
        Ok(()) => 0,
        Err(Fail::Usage(m)) => {
            eprintln!("webclip: {m}\n\nusage:\n{USAGE}");
            2
        }
        Err(Fail::Run(e)) => {
            eprintln!("webclip: error: {e}");
            1
        }
    }
}

enum Fail {
    Usage(String),
    Run(ClipError),
}

impl From<ClipError> for Fail {
    fn from(e: ClipError) -> Self {
        Fail::Run(e)
    }
}

struct Opts {
    dir: PathBuf,
    model: PathBuf,
    out: PathBuf,
    backend: String,
    batch: usize,
    threads: usize,
    parquet: Option<PathBuf>,
}

fn parse(args: &[String]) -> std::result::Result<Opts, Fail> {
    let mut flags: HashMap<&str, &str> = HashMap::new();
    let mut dir = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            if !["model", "out", "backend", "batch", "threads", "parquet"].contains(&name) {
                return Err(Fail::Usage(format!("unknown option `{a}`")));
            }
            let v = it
                .next()
                .ok_or_else(|| Fail::Usage(format!("`{a}` needs a value")))?;
            flags.insert(name, v);
        } else if dir.replace(PathBuf::from(a)).is_some() {
            return Err(Fail::Usage("index takes one folder".into()));
        }
    }
    let need = |n: &str| {
        flags
            .get(n)
            .copied()
            .ok_or_else(|| Fail::Usage(format!("--{n} is required")))
    };
    let number =
        |n: &str, dflt: usize| -> std::result::Result<usize, Fail> {
            match flags.get(n) {
                None => Ok(dflt),
                Some(v) => v.parse().ok().filter(|&x| x > 0).ok_or_else(|| {
                    Fail::Usage(format!("--{n} must be a positive integer, not `{v}`"))
                }),
            }
        };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(Opts {
        dir: dir.ok_or_else(|| Fail::Usage("index needs a folder".into()))?,
        model: PathBuf::from(need("model")?),
        out: PathBuf::from(need("out")?),
        backend: flags.get("backend").unwrap_or(&"cpu").to_string(),
        batch: number("batch", 8)?,
        threads: number("threads", cores)?,
        parquet: flags.get("parquet").map(PathBuf::from),
    })
}

/// `webclip to-parquet INDEX --out FILE.parquet`; returns the exit status.
pub fn to_parquet_main(args: &[String]) -> i32 {
    let run = || -> std::result::Result<(), Fail> {
        let (index, out) = match args {
            [index, flag, out] if flag == "--out" => (PathBuf::from(index), PathBuf::from(out)),
            _ => {
                return Err(Fail::Usage(
                    "to-parquet takes INDEX --out FILE.parquet".into(),
                ))
            }
        };
        let bytes = std::fs::read(&index).map_err(|e| ClipError::file("cannot read", &index, e))?;
        let file = IndexFile::parse(&bytes)
            .map_err(|e| ClipError::Input(format!("{}: {e}", index.display())))?;
        write_parquet(&file, &out)?;
        println!("{} entries in {}", file.entries.len(), out.display());
        Ok(())
    };
    report(run())
}

/// Write `file` as Parquet to `out`, through a temporary file (nothing half-written).
fn write_parquet(file: &IndexFile, out: &Path) -> Result<()> {
    let tmp = out.with_extension("parquet.tmp");
    std::fs::write(&tmp, super::parquet::to_parquet(file)?)
        .map_err(|e| ClipError::file("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| ClipError::file("cannot write", out, e))
}

const IMAGE_EXT: &[&str] = &["jpg", "jpeg", "jfif", "png", "gif", "webp"];

/// Every file under `dir`, sorted; folders that cannot be read go to `skipped`.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, skipped: &mut Vec<(PathBuf, String)>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return skipped.push((dir.to_path_buf(), format!("cannot read the folder: {e}"))),
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            walk(&p, files, skipped);
        } else {
            files.push(p);
        }
    }
}

fn run(args: &[String]) -> std::result::Result<(), Fail> {
    let o = parse(args)?;
    if !o.dir.is_dir() {
        return Err(ClipError::NotFound(format!("{} is not a folder", o.dir.display())).into());
    }
    let backend = BackendChoice::parse(&o.backend)?;
    let folder = ModelFolder::read(&o.model, None)?;
    let weights_header_len = crate::model::SafeTensors::header_len(&folder.weights)?;
    let fingerprint = super::fingerprint(
        folder
            .weights
            .get(..weights_header_len)
            .unwrap_or(&folder.weights),
        &folder.config,
    );
    // What FILE already holds (same model only).
    let mut known: BTreeMap<String, (Value, Vec<f32>)> = BTreeMap::new();
    let mut dim = None;
    if o.out.exists() {
        let bytes = std::fs::read(&o.out).map_err(|e| ClipError::file("cannot read", &o.out, e))?;
        let old = IndexFile::parse(&bytes)
            .map_err(|e| ClipError::Input(format!("{}: {e}", o.out.display())))?;
        if old.fingerprint.as_deref() != Some(fingerprint.as_str()) {
            return Err(ClipError::Input(format!(
                "{} was made with another model (fingerprint {}; {} has {fingerprint}): write to another --out, or delete it to re-index",
                o.out.display(),
                old.fingerprint.as_deref().unwrap_or("none"),
                o.model.display()
            ))
            .into());
        }
        dim = Some(old.dim);
        for (e, row) in old
            .entries
            .into_iter()
            .zip(old.embeddings.chunks_exact(old.dim))
        {
            if let Some(k) = e.key.as_str() {
                known.insert(k.to_string(), (e.metadata, row.to_vec()));
            }
        }
    }

    let mut files = Vec::new();
    let mut skipped = Vec::new();
    walk(&o.dir, &mut files, &mut skipped);
    let t0 = Instant::now();
    // Hash every file; group paths by content.
    let mut todo: BTreeMap<String, (Vec<u8>, Vec<String>)> = BTreeMap::new();
    let mut seen_paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in &files {
        let rel = p
            .strip_prefix(&o.dir)
            .unwrap_or(p)
            .to_string_lossy()
            .replace('\\', "/");
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if !ext.as_deref().is_some_and(|e| IMAGE_EXT.contains(&e)) {
            skipped.push((p.clone(), "not an image (by its extension)".into()));
            continue;
        }
        let bytes = match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => {
                skipped.push((p.clone(), format!("cannot read it: {e}")));
                continue;
            }
        };
        let hash = hex(&sha256(&bytes));
        seen_paths
            .entry(hash.clone())
            .or_default()
            .push(rel.clone());
        if !known.contains_key(&hash) {
            todo.entry(hash)
                .or_insert_with(|| (bytes, Vec::new()))
                .1
                .push(rel);
        }
    }
    let new: Vec<(String, Vec<u8>, Vec<String>)> =
        todo.into_iter().map(|(h, (b, p))| (h, b, p)).collect();
    eprintln!(
        "webclip index: {} files, {} images to embed, {} already in {}",
        files.len(),
        new.len(),
        seen_paths.len() - new.len().min(seen_paths.len()),
        o.out.display()
    );

    // Embed on `threads` workers, each with its own model, pulling batches.
    let threads = o.threads.min(new.len().div_ceil(o.batch)).max(1);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<BTreeMap<String, Vec<f32>>> = Mutex::new(BTreeMap::new());
    let failed: Mutex<Vec<(PathBuf, String)>> = Mutex::new(Vec::new());
    let options = ClipOptions {
        backend,
        towers: Towers::Vision,
        ..Default::default()
    };
    let embed_start = Instant::now();
    let mut backend_name = String::new();
    if !new.is_empty() {
        let outcome: Vec<Result<String>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| -> Result<String> {
                        let mut clip = pollster::block_on(folder.load(&options))?;
                        let name = clip.backend().kind.to_string();
                        loop {
                            let start = next.fetch_add(o.batch, Ordering::Relaxed);
                            if start >= new.len() {
                                return Ok(name);
                            }
                            let batch = &new[start..(start + o.batch).min(new.len())];
                            let inputs: Vec<ImageInput> = batch
                                .iter()
                                .map(|(_, b, _)| ImageInput::Encoded(b))
                                .collect();
                            let rows = match pollster::block_on(clip.image_features(&inputs)) {
                                Ok(e) => batch
                                    .iter()
                                    .zip(e.normalized().iter().map(<[f32]>::to_vec))
                                    .map(|(x, r)| (x, Ok(r)))
                                    .collect::<Vec<_>>(),
                                // One bad image fails the batch: embed one by one to find it.
                                Err(_) => batch
                                    .iter()
                                    .map(|x| {
                                        let one = [ImageInput::Encoded(&x.1)];
                                        (
                                            x,
                                            pollster::block_on(clip.image_features(&one))
                                                .map(|e| e.normalized().row(0).to_vec()),
                                        )
                                    })
                                    .collect(),
                            };
                            for ((hash, _, paths), r) in rows {
                                match r {
                                    Ok(row) => {
                                        results
                                            .lock()
                                            .expect("no panics hold it")
                                            .insert(hash.clone(), row);
                                    }
                                    Err(e) => failed
                                        .lock()
                                        .expect("no panics hold it")
                                        .push((o.dir.join(&paths[0]), e.to_string())),
                                }
                            }
                            let n = done.fetch_add(batch.len(), Ordering::Relaxed) + batch.len();
                            let secs = embed_start.elapsed().as_secs_f64();
                            eprint!(
                                "\rwebclip index: {n}/{} embedded ({:.1} images/s)   ",
                                new.len(),
                                n as f64 / secs
                            );
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| {
                    w.join().unwrap_or_else(|_| {
                        Err(ClipError::Internal("an embedding worker panicked".into()))
                    })
                })
                .collect()
        });
        eprintln!();
        for r in outcome {
            backend_name = r?;
        }
    }
    let embed_secs = embed_start.elapsed().as_secs_f64();
    let results = results.into_inner().expect("workers are done");
    skipped.extend(failed.into_inner().expect("workers are done"));

    // Old entries keep their order; new ones follow in hash order. Paths are brought up to
    // date for every entry whose content was seen in DIR this time.
    let mut entries = Vec::new();
    let mut embeddings = Vec::new();
    let meta = |paths: &[String]| json!({ "path": paths[0], "paths": paths });
    for (hash, (metadata, row)) in &known {
        let metadata = seen_paths
            .get(hash)
            .map_or_else(|| metadata.clone(), |p| meta(p));
        entries.push(Entry {
            key: json!(hash),
            metadata,
        });
        embeddings.extend_from_slice(row);
    }
    for (hash, _, _) in &new {
        if let Some(row) = results.get(hash) {
            dim.get_or_insert(row.len());
            entries.push(Entry {
                key: json!(hash),
                metadata: meta(&seen_paths[hash]),
            });
            embeddings.extend_from_slice(row);
        }
    }
    let file = IndexFile {
        fingerprint: Some(fingerprint),
        dim: dim.unwrap_or(0).max(1),
        entries,
        embeddings,
    };
    let tmp = o.out.with_extension("tmp");
    std::fs::write(&tmp, file.to_bytes()?).map_err(|e| ClipError::file("cannot write", &tmp, e))?;
    std::fs::rename(&tmp, &o.out).map_err(|e| ClipError::file("cannot write", &o.out, e))?;
    if let Some(parquet) = &o.parquet {
        write_parquet(&file, parquet)?;
    }
    for (p, why) in &skipped {
        eprintln!("webclip index: skipped {}: {why}", p.display());
    }
    let embedded = results.len();
    let per_core = if embedded > 0 {
        embedded as f64 / embed_secs / threads as f64
    } else {
        0.0
    };
    println!(
        "{} entries in {} ({embedded} embedded{}, {} skipped) in {:.1} s{}",
        file.entries.len(),
        o.out.display(),
        if embedded > 0 {
            format!(
                " on {threads} x {backend_name}: {:.2} images/s, {per_core:.2} per core",
                embedded as f64 / embed_secs
            )
        } else {
            String::new()
        },
        skipped.len(),
        t0.elapsed().as_secs_f64(),
        if file.fingerprint.is_some() {
            ""
        } else {
            " (no fingerprint)"
        }
    );
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 (FIPS 180-4): the content hash the demo keys photos by (`crypto.subtle.digest`).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, c) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 32];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_standard_vectors() {
        assert_eq!(
            hex(&sha256(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Two blocks (56 bytes: the padding needs a second block).
        assert_eq!(
            hex(&sha256(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }
}
