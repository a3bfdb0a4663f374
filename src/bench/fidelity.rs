//! How far a compact checkpoint (`model::quantize`) is from its float32 source: the size
//! of each tower's download, the embedding cosine to float32 over given images and texts,
//! and the zero-shot agreement (the same top-1 text for every image). Behind
//! `webclip convert --report`, and what the tests assert the goals with.

use crate::clip::{Clip, ClipOptions, Embeddings, ModelFiles};
use crate::error::{ClipError, Result};
use crate::model::plan::WeightPlan;
use crate::model::quantize::{convert, Compact};
use crate::model::{ClipConfig, SafeTensors, Towers};
use crate::preprocess::ImageInput;

/// One dtype's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Fidelity {
    /// `f32` (the source), `f16` or `int8`.
    pub dtype: &'static str,
    /// Bytes of the whole `model.safetensors`.
    pub file_bytes: usize,
    /// Bytes a vision-only and a text-only download read (header included).
    pub vision_bytes: usize,
    pub text_bytes: usize,
    /// The least cosine of an image (text) embedding to float32's.
    pub image_cosine: f32,
    pub text_cosine: f32,
    /// Images whose best text is float32's, of how many.
    pub top1_same: usize,
    pub images: usize,
    /// Images whose float32 margin between the best and the second text is within what
    /// embeddings this close can move it (`2 (acos(image_cosine) + acos(text_cosine))`
    /// times `exp(logit_scale)`): near ties, where any rounding may change the winner.
    pub near_ties: usize,
    /// Images whose best text changed although their margin is wider than that.
    pub changed_beyond_ties: usize,
}

/// Cosine of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}

fn least_cosine(a: &Embeddings, b: &Embeddings) -> f32 {
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| cosine(x, y))
        .fold(1.0, f32::min)
}

/// The best text of each image, and its margin over the second (in logits).
fn top1(clip: &Clip, images: &Embeddings, texts: &Embeddings) -> Vec<(usize, f32)> {
    let logits = clip.logits(images, texts);
    (0..logits.images)
        .map(|i| {
            let row = logits.row(i);
            let best = (0..row.len())
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            let second = (0..row.len())
                .filter(|&j| j != best)
                .map(|j| row[j])
                .fold(f32::NEG_INFINITY, f32::max);
            (best, row[best] - second)
        })
        .collect()
}

struct Run {
    images: Embeddings,
    texts: Embeddings,
    top1: Vec<(usize, f32)>,
    logit_scale: f32,
}

async fn run(
    files: ModelFiles<'_>,
    options: &ClipOptions,
    images: &[ImageInput<'_>],
    texts: &[&str],
) -> Result<Run> {
    let mut clip = Clip::load(files, options).await?;
    let images = clip.image_features(images).await?;
    let texts = clip.text_features(texts).await?;
    let top1 = top1(&clip, &images, &texts);
    Ok(Run {
        images,
        texts,
        top1,
        logit_scale: clip.logit_scale(),
    })
}

/// Figures for the float32 checkpoint `files` and its f16 and int8 conversions (`group`
/// input features per scale, 0: per row), on the backend `options` names. `source` is the
/// float file's bytes (a `Vec`: `ModelFiles` takes them as a `dyn TensorBytes`).
#[allow(clippy::ptr_arg)]
pub async fn report(
    files: ModelFiles<'_>,
    source: &Vec<u8>,
    options: &ClipOptions,
    group: usize,
    images: &[ImageInput<'_>],
    texts: &[&str],
) -> Result<Vec<Fidelity>> {
    if images.is_empty() || texts.is_empty() {
        return Err(ClipError::Input(
            "a fidelity report needs images and texts".into(),
        ));
    }
    let config = ClipConfig::from_json(files.config)?;
    let st = SafeTensors::parse(source)?;
    let options = ClipOptions {
        towers: Towers::Both,
        int8: false,
        ..options.clone()
    };
    let base = run(
        ModelFiles {
            weights: source,
            ..files
        },
        &options,
        images,
        texts,
    )
    .await?;
    let sizes = |bytes: &[u8]| -> Result<(usize, usize)> {
        let h = SafeTensors::parse(bytes)?;
        Ok((
            WeightPlan::new(&h, Towers::Vision).total_bytes(),
            WeightPlan::new(&h, Towers::Text).total_bytes(),
        ))
    };
    let (v, t) = sizes(source)?;
    let mut out = vec![Fidelity {
        dtype: "f32",
        file_bytes: source.len(),
        vision_bytes: v,
        text_bytes: t,
        image_cosine: 1.0,
        text_cosine: 1.0,
        top1_same: images.len(),
        images: images.len(),
        near_ties: 0,
        changed_beyond_ties: 0,
    }];
    for dtype in [Compact::F16, Compact::Int8] {
        let mut bytes = Vec::new();
        convert(&config, &st, source, dtype, Towers::Both, group, &mut bytes)?;
        let r = run(
            ModelFiles {
                weights: &bytes,
                ..files
            },
            &options,
            images,
            texts,
        )
        .await?;
        let (v, t) = sizes(&bytes)?;
        let (ic, tc) = (
            least_cosine(&base.images, &r.images),
            least_cosine(&base.texts, &r.texts),
        );
        // |cos(a', b') - cos(a, b)| <= angle(a, a') + angle(b, b'): the best and the second
        // text can each move by that much, in opposite directions.
        let angle = |c: f32| c.clamp(-1.0, 1.0).acos();
        let reach = 2.0 * (angle(ic) + angle(tc)) * base.logit_scale.exp();
        let tie = |m: f32| m <= reach;
        let same = |(a, b): (&(usize, f32), &(usize, f32))| a.0 == b.0;
        let pairs = || base.top1.iter().zip(&r.top1);
        out.push(Fidelity {
            dtype: dtype.as_str(),
            file_bytes: bytes.len(),
            vision_bytes: v,
            text_bytes: t,
            image_cosine: ic,
            text_cosine: tc,
            top1_same: pairs().filter(|&p| same(p)).count(),
            images: images.len(),
            near_ties: base.top1.iter().filter(|b| tie(b.1)).count(),
            changed_beyond_ties: pairs().filter(|&p| !same(p) && !tie(p.0 .1)).count(),
        });
    }
    Ok(out)
}

/// The report as a Markdown table.
pub fn table(rows: &[Fidelity]) -> String {
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let base = rows.first().map(|r| (r.vision_bytes, r.text_bytes));
    let mut s = String::from(
        "| dtype | file MiB | vision MiB (of f32) | text MiB (of f32) | image cos (min) | text cos (min) | same top-1 | near ties |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let (bv, bt) = base.unwrap_or((r.vision_bytes, r.text_bytes));
        s.push_str(&format!(
            "| {} | {:.2} | {:.2} ({:.1} %) | {:.2} ({:.1} %) | {:.6} | {:.6} | {}/{} | {} |\n",
            r.dtype,
            mib(r.file_bytes),
            mib(r.vision_bytes),
            100.0 * r.vision_bytes as f64 / bv.max(1) as f64,
            mib(r.text_bytes),
            100.0 * r.text_bytes as f64 / bt.max(1) as f64,
            r.image_cosine,
            r.text_cosine,
            r.top1_same,
            r.images,
            r.near_ties
        ));
    }
    s
}
