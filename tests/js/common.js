// Shared by the Node and browser tests: the reference outputs of a fixture model.

import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fixturesDir, repoRoot } from './server.js';

export { fixturesDir, repoRoot };
export const pkgDir = path.join(repoRoot, 'pkg');

/** The model folders (config.json + golden.safetensors) directly under `dir`, as paths relative to the fixtures. */
function modelDirsIn(sub) {
  const dir = path.join(fixturesDir, sub);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((d) => ['config.json', 'golden.safetensors'].every((f) => existsSync(path.join(dir, d, f))))
    .sort()
    .map((d) => (sub ? `${sub}/${d}` : d));
}

/** Every CLIP fixture model, as the Rust suites find them (a folder dropped in is tested). */
export const CLIP_MODELS = modelDirsIn('');
/** Every SigLIP fixture model (`fixtures/siglip/<name>`). */
export const SIGLIP_MODELS = modelDirsIn('siglip');
/** All of them. */
export const MODELS = [...CLIP_MODELS, ...SIGLIP_MODELS];

/** Tensors of a safetensors file (F32 and I32 only: what golden.safetensors holds). */
export function readSafetensors(file) {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    const bytes = buf.subarray(8 + n + a, 8 + n + b);
    const copy = new Uint8Array(bytes).buffer; // aligned
    const data = t.dtype === 'F32' ? new Float32Array(copy) : t.dtype === 'I32' ? new Int32Array(copy) : null;
    if (!data) throw new Error(`${file}: ${name} has dtype ${t.dtype}, not F32 or I32`);
    out[name] = { shape: t.shape, data };
  }
  return out;
}

const rows = (t) => {
  const dim = t.shape[t.shape.length - 1];
  return Array.from({ length: t.shape[0] }, (_, i) => Array.from(t.data.subarray(i * dim, (i + 1) * dim)));
};

/**
 * `{ dir, family, images, texts, imageEmbeds, textEmbeds, imageFeatures, textFeatures,
 * logits, probs, sizes }`; `probs` (SigLIP's sigmoid scores) is null for CLIP, and a file
 * the folder lacks has size null.
 */
export function golden(model) {
  const dir = path.join(fixturesDir, model);
  const meta = JSON.parse(readFileSync(path.join(dir, 'golden.json'), 'utf8'));
  const t = readSafetensors(path.join(dir, 'golden.safetensors'));
  const size = (f) => (existsSync(path.join(dir, f)) ? statSync(path.join(dir, f)).size : null);
  const config = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
  return {
    dir,
    name: model,
    family: config.model_type === 'siglip' ? 'siglip' : 'clip',
    images: meta.images,
    texts: meta.texts,
    imageEmbeds: rows(t.image_embeds),
    textEmbeds: rows(t.text_embeds),
    imageFeatures: rows(t.image_features),
    textFeatures: rows(t.text_features),
    logits: rows(t.logits_per_image),
    probs: t.probs_per_image ? rows(t.probs_per_image) : null,
    sizes: Object.fromEntries(
      ['config.json', 'model.safetensors', 'tokenizer.json', 'spiece.model', 'tokenizer_config.json', 'preprocessor_config.json'].map(
        (f) => [f, size(f)],
      ),
    ),
  };
}

export function cosine(a, b) {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
}

export const maxAbs = (a, b) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));

/** Each row's cosine to the reference is above `min` (JPEG files: the looser bound). */
export function assertParity(assert, got, want, names, { min = 0.9999, minJpeg = 0.999 } = {}) {
  assert.equal(got.length, want.length, 'number of embeddings');
  got.forEach((g, i) => {
    const bound = /\.jpe?g$/i.test(names[i] ?? '') ? minJpeg : min;
    const c = cosine(g, want[i]);
    assert.ok(c > bound, `${names[i] ?? i}: cosine ${c} <= ${bound}`);
  });
}
