// <webclip-tagger>: private photo tagging and search, entirely in the browser.
//
// A drop-in custom element over the webclip package (CLIP on WebGPU or the CPU, in a worker).
// Photos are hashed (SHA-256), embedded once, tagged against a label vocabulary (zero-shot CLIP
// classification with prompt ensembling, as in Radford et al. 2021, section 3.1.4) and kept in
// IndexedDB keyed by model and content hash, so reopening the page recomputes nothing.
// Nothing but the model download leaves the page.
//
//   <script type="module" src="webclip-tagger.js"></script>
//   <webclip-tagger model="https://huggingface.co/openai/clip-vit-base-patch32/resolve/main/"
//                   labels="cat, dog, beach, mountain"></webclip-tagger>
//
// Attributes: model, labels (comma or newline separated), templates ("|" separated, each with {}),
// backend (auto | webgpu | cpu), top (tags shown per photo), threshold (0-1: a tag is shown only
// when its score passes it; SigLIP's scores are independent sigmoid probabilities, default 0.1;
// CLIP's a softmax over the labels, default 0), autoload (load the model at once),
// max-pixels (larger photos are downscaled before embedding; default 50e6),
// package (URL of the webclip package's index.js; default ../pkg/index.js beside this file).
// Events: webclip-progress {phase, file, loaded, total, text} while the model loads,
// webclip-ready {backend, backendInfo}, webclip-indexed {count, computed, cached, skipped},
// webclip-search {query, ranking}, webclip-error {message}.
// Property `stats` counts computed and cached embeddings; `searchTop` (50) is how many matches a
// search shows, `showMore()` adds as many again.
//
// At scale (100,000 photos): the grid is virtual (only the cards near the viewport exist),
// a search shows its top matches ranked by ClipIndex in WebAssembly, and thumbnails stay in
// IndexedDB until a card shows one (tests/js/bench/demo-scale.mjs measures it).
//
// The logic without the page is `TaggerCore` (exported): the vocabulary and its cached label
// embeddings, the photo index, the indexing pipeline and search, on the package's maths. It
// runs in Node as well (tests/js/node/tagger.test.js); the element adds the page: files,
// decoding, thumbnails, IndexedDB, the virtual grid and the controls. This file defines the element only where
// custom elements exist, so importing it in Node gives the core alone.
//
// Sections: defaults · small helpers · tagger core · storage (IndexedDB) · input files ·
// virtual grid · element.

// ---------------------------------------------------------------------------------- defaults

export const DEFAULT_MODEL = 'https://huggingface.co/openai/clip-vit-base-patch32/resolve/main/';

// A subset of the prompt ensemble CLIP used for ImageNet; averaging over a few phrasings makes
// a label's embedding less sensitive to any one wording.
export const DEFAULT_TEMPLATES = [
  'a photo of a {}.',
  'a picture of a {}.',
  'a close-up photo of a {}.',
  'a bright photo of a {}.',
  'a photo of the {}.',
  'an image of a {}.',
];

export const DEFAULT_LABELS = [
  'person', 'man', 'woman', 'child', 'baby', 'group of people', 'selfie', 'crowd',
  'dog', 'cat', 'bird', 'horse', 'cow', 'sheep', 'fish', 'insect', 'butterfly', 'wild animal',
  'flower', 'tree', 'plant', 'forest', 'mountain', 'beach', 'ocean', 'lake', 'river',
  'waterfall', 'desert', 'snow', 'sky', 'sunset', 'clouds', 'field',
  'city', 'street', 'building', 'house', 'bridge', 'road', 'car', 'bicycle', 'motorcycle',
  'bus', 'train', 'airplane', 'boat', 'rocket', 'outer space', 'astronaut',
  'food', 'fruit', 'vegetables', 'bread', 'cake', 'pizza', 'coffee', 'tea', 'wine', 'beer',
  'kitchen', 'restaurant', 'table', 'chair', 'sofa', 'bed', 'living room', 'office',
  'computer', 'laptop', 'phone', 'camera', 'television', 'book', 'document', 'screenshot',
  'painting', 'drawing', 'sculpture', 'toy', 'ball', 'sports', 'football', 'swimming pool',
  'park', 'garden', 'playground', 'concert', 'party', 'wedding', 'birthday', 'christmas tree',
  'fireworks', 'museum', 'church', 'castle', 'statue', 'clock', 'glasses', 'hat', 'shoes',
  'clothes', 'bag', 'night', 'black and white photo',
];

const MAX_FILE_BYTES = 256 * 2 ** 20; // larger files are refused before reading them
const MAX_JOB_FAILURES = 1000; // failed files a job's record keeps (the count is exact)
// Above this, decode once and hand the model a smaller copy: keeps the worker's memory low and
// stays under the package's own decode limit (100 MP), which would refuse the photo.
const HUGE_PIXELS = 50e6;
const DOWNSCALED_SHORT_SIDE = 1024; // >= 4x the CLIP input, so the model's own resize still decides
const THUMB_SIDE = 320; // thumbnail's longer side in pixels (sharp on 2x screens at 160 CSS px)
const IMAGE_BATCH = 4; // photos per embedImages call: progress stays live, memory stays bounded
const PREPARE_AHEAD = 4; // files read, hashed and thumbnailed at once while indexing
const PREPARE_BYTES = 64 * 2 ** 20; // ...unless they are this large together (a few big photos)
const INDEX_BATCH = 1024; // photos per ClipIndex.addMany (about 10 ms of a task at 512 values)
const TEXT_BATCH = 64; // prompts per embedTexts call
const SEARCH_DEBOUNCE_MS = 250;
// Saved photos are read back a page at a time: a small first page (it fills the screen at
// once), then larger ones, each short enough to keep the page responsive.
const RESTORE_FIRST = 120;
const RESTORE_BATCH = 2000;
// A search shows its best SEARCH_TOP photos (`searchTop`), ranked by TaggerCore through
// ClipIndex; "Show more" extends the result by as many again. The rest of the library is not
// touched, so a search costs the same at 100 photos or 100,000. While photos are being indexed
// (or a large library is read back), a search in the box is re-ranked at most once per
// RERANK_WHILE_INDEXING_MS, and once at the end.
const SEARCH_TOP = 50;
const RERANK_WHILE_INDEXING_MS = 1000;
const IMAGE_EXT = /\.(jpe?g|jfif|png|gif|webp|avif|bmp|ico|tiff?|heic|heif)$/i;

// ------------------------------------------------------------------------------ small helpers

const fmtBytes = (n) => {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n < 10 && i ? n.toFixed(1) : Math.round(n)} ${units[i]}`;
};

const toHex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');

async function sha256(data) {
  if (!globalThis.crypto?.subtle) {
    throw new Error('this page is not a secure context (https or localhost), so the browser offers no SHA-256');
  }
  const bytes = data instanceof Blob ? await data.arrayBuffer() : ArrayBuffer.isView(data) ? data : new TextEncoder().encode(data);
  return toHex(await crypto.subtle.digest('SHA-256', bytes));
}

/** Labels from an attribute or text area: one per line or comma separated, trimmed, unique. */
export function parseLabels(text) {
  const seen = new Set();
  for (const raw of String(text ?? '').split(/[\n,]/)) {
    const label = raw.trim().replace(/\s+/g, ' ');
    if (label) seen.add(label);
  }
  return [...seen];
}

/** Templates: one per line or "|" separated; each must hold "{}" where the label goes. */
export function parseTemplates(text) {
  const list = [...new Set(String(text ?? '').split(/[\n|]/).map((t) => t.trim()).filter(Boolean))];
  const bad = list.filter((t) => !t.includes('{}'));
  if (bad.length) throw new Error(`every template needs {} where the label goes; "${bad[0]}" has none`);
  return list;
}

/**
 * A review policy from a text area: one rule per line, a label then the score that flags a
 * photo for review ("a weapon 0.3", or "a weapon 30%"); blank lines are skipped.
 */
export function parsePolicy(text) {
  const rules = new Map();
  String(text ?? '').split('\n').forEach((raw, i) => {
    const line = raw.trim().replace(/\s+/g, ' ');
    if (!line) return;
    const m = /^(.*\S)\s+(\d*\.?\d+)(%?)$/.exec(line);
    const threshold = m ? Number(m[2]) / (m[3] ? 100 : 1) : NaN;
    if (!m || !(threshold >= 0 && threshold <= 1)) {
      throw new Error(`line ${i + 1} ("${line}") needs a label then a score from 0 to 1 (or 0% to 100%), such as "a weapon 0.3"`);
    }
    rules.set(m[1], threshold);
  });
  return [...rules].map(([label, threshold]) => ({ label, threshold }));
}

/**
 * A record as the page keeps it: without its thumbnail. Every Blob read from IndexedDB that
 * the page holds keeps its bytes in the browser process (about 30 KB a photo: 3 GB for
 * 100,000), so thumbnails stay in storage and are read when a card shows one.
 */
function withoutThumb(record) {
  const { thumb, ...rest } = record;
  return rest;
}

/**
 * A saved record as the page keeps it: without its thumbnail nor its float32 embedding (2 KiB
 * at 512 values, 200 MiB for 100,000 photos), which are read from storage when needed (the
 * search index keeps its own compact row).
 */
function pageRecord(record) {
  const { thumb, embedding, ...rest } = record;
  return rest;
}

/** Embeddings the page reads back for its cards (tags of another vocabulary, review flags). */
const VECTOR_CACHE = 2000;

const errMessage = (e) => (e && (e.message || String(e))) || 'unknown error';

// -------------------------------------------------------------------------------- tagger core

/** One label's embedding: the mean of its prompts' L2-normalised embeddings, renormalised. */
function meanDirection(rows) {
  const out = new Float32Array(rows[0].length);
  for (const r of rows) for (let i = 0; i < r.length; i++) out[i] += r[i];
  const n = Math.hypot(...out) || 1;
  for (let i = 0; i < out.length; i++) out[i] /= n;
  return out;
}

const asF32 = (v) => (v instanceof Float32Array ? v : Float32Array.from(v));

/** `TaggerCore.index` could not get the model or the label embeddings; `cause` says why. */
export class ModelUnavailableError extends Error {
  constructor(cause) {
    super(errMessage(cause), { cause });
    this.name = 'ModelUnavailableError';
  }
}

/** The default `labelStore` of a TaggerCore: label embeddings kept in memory. */
export class MemoryLabelStore {
  constructor() {
    this.rows = new Map();
  }

  async get(keys) {
    return keys.map((k) => this.rows.get(k));
  }

  async put(rows) {
    for (const { key, embedding } of rows) this.rows.set(key, embedding);
  }
}

/**
 * The tagger without a page: a label vocabulary with cached label embeddings, photos by key
 * with their embeddings and tags, the indexing pipeline and search. No DOM and no storage of
 * photos (the element keeps its records in IndexedDB); label embeddings go through
 * `labelStore`. The maths is the package's: pass its `Clip` class (`Clip.rank` ranks by
 * cosine, `Clip.softmax` scores the tags as `clip.classify` does).
 *
 *   const core = new TaggerCore({ Clip });
 *   core.setModel('my-model', () => Clip.load({ model: url }));
 *   await core.setVocab(['cat', 'dog'], ['a photo of a {}.']);
 *   await core.index([{ key: 'a.png', input: bytes }]);
 *   core.get('a.png').tags;                  // [{ label, score }] best first, `top` of them
 *   await core.searchText('a cat');          // [{ key, score }] best first
 */
export class TaggerCore {
  /**
   * @param {object} options
   * @param {object} options.Clip the webclip package's `Clip` class
   * @param {object} [options.ClipIndex] the package's `ClipIndex` class: searches then scan
   *   compact rows in WebAssembly (SIMD) and re-score the best candidates exactly, instead of
   *   ranking every photo in JS with `Clip.rank`
   * @param {{ get(keys: string[]): Promise<(Float32Array | undefined)[]>,
   *           put(rows: { key: string, embedding: Float32Array }[]): Promise<void> }} [options.labelStore]
   *   where label embeddings are kept, keyed by model id, template set and label (default: memory)
   * @param {{ get(keys: string[]): Promise<(Float32Array | null | undefined)[]> }} [options.embeddingStore]
   *   where the photos' exact embeddings can be read back by key. With it (and `ClipIndex`),
   *   a photo's embedding is let go once the index holds its compact row (`get(key).embedding`
   *   is then null): search re-scores its few candidates, and `moreLikeThis`, `embeddingOf` and
   *   `retag` read theirs, from the store. Default: every embedding stays in memory.
   * @param {number} [options.top] tags kept per photo (default 3)
   * @param {number} [options.threshold] the least score a tag is kept with (default: 0.1 for
   *   SigLIP's per-label sigmoid probabilities, 0 for CLIP's softmax)
   * @param {number} [options.batch] photos per embedImages call
   * @param {number} [options.textBatch] prompts per embedTexts call
   * @param {(p: { done: number, total: number, labels: number }) => void} [options.onLabelProgress]
   *   prompts embedded so far while new labels are prepared (`done === total` at the end)
   */
  constructor({ Clip, ClipIndex = null, labelStore = new MemoryLabelStore(), embeddingStore = null, top = 3, threshold = null, batch = IMAGE_BATCH, textBatch = TEXT_BATCH, onLabelProgress = null } = {}) {
    if (typeof Clip?.rank !== 'function' || typeof Clip?.softmax !== 'function') {
      throw new TypeError("TaggerCore needs the webclip package's Clip class (it ranks and scores with Clip.rank and Clip.softmax)");
    }
    this.Clip = Clip;
    this.labelStore = labelStore;
    this.embeddingStore = embeddingStore;
    this.top = top;
    /** `null`: the family's default (see `scoreThreshold`). */
    this.threshold = threshold;
    this.batch = batch;
    this.textBatch = textBatch;
    this.onLabelProgress = onLabelProgress;
    this.stats = { imagesComputed: 0, imagesCached: 0, textsComputed: 0, labelsCached: 0 };
    /** The model's id (it keys the label cache), how to load it, and the model once loaded. */
    this.modelId = null;
    this._load = null;
    this.clip = null;
    /** `{ labels, templates, key }`; `key` names this vocabulary in the photos' `vocabKey`. */
    this.vocab = null;
    this._photos = new Map(); // key -> { key, embedding (null once let go), tags, vocabKey }, in insertion order
    this._labelMatrix = null; // { model, vocab, embeddings }
    /** `[{ label, threshold }]`: labels that flag a photo for review (`setPolicy`). */
    this.policy = [];
    this._policyMatrix = null; // { model, vocab, policy, embeddings }
    this._texts = new Map(); // model id + query text -> embedding
    // Search: a ClipIndex over the photos' embeddings, kept in step with `_photos` lazily
    // (adds and removes are queued and applied before a search, or soon after they happen).
    this.ClipIndex = typeof ClipIndex?.open === 'function' ? ClipIndex : null;
    this._index = null;
    this._indexOps = Promise.resolve();
    this._toAdd = new Map(); // key -> photo, not yet in the index
    this._toRemove = new Set();
    this._dropIndex = false;
    this._syncTimer = null;
  }

  // -- model

  /** Switch to another model: `load()` resolves to a loaded Clip; the photos are forgotten. */
  setModel(id, load) {
    this.modelId = id;
    this._load = load;
    this.clip = null;
    this._labelMatrix = null;
    this.clear();
  }

  /** The model, loaded on first use. */
  async model() {
    if (this.clip) return this.clip;
    if (!this._load) throw new Error('no model is set (TaggerCore.setModel)');
    const id = this.modelId;
    const clip = await this._load();
    if (this.modelId === id) this.clip = clip;
    return clip;
  }

  /** The least score a tag is kept with: `threshold`, else 0.1 for SigLIP and 0 for CLIP. */
  get scoreThreshold() {
    const t = Number(this.threshold);
    if (this.threshold != null && Number.isFinite(t)) return t;
    return this.clip?.family === 'siglip' ? 0.1 : 0;
  }

  /** exp(logit_scale): the multiplier CLIP puts on cosines before the softmax (100 before a model is loaded). */
  get logitScale() {
    const s = Number(this.clip?.logitScale);
    return Number.isFinite(s) && s > 0 ? s : 100;
  }

  // -- vocabulary and label embeddings

  /** The labels photos are tagged with, and the prompt templates (`{}` = the label) averaged per label. */
  async setVocab(labels, templates) {
    if (!Array.isArray(labels) || !labels.length || labels.some((l) => typeof l !== 'string')) {
      throw new TypeError('the vocabulary needs at least one label');
    }
    if (!Array.isArray(templates) || !templates.length || templates.some((t) => typeof t !== 'string' || !t.includes('{}'))) {
      throw new TypeError('the vocabulary needs at least one template, each with {} where the label goes');
    }
    const key = (await sha256(JSON.stringify([labels, templates]))).slice(0, 16);
    this.vocab = { labels: [...labels], templates: [...templates], key };
    return this.vocab;
  }

  /** One embedding per label of the vocabulary: from `labelStore`, else embedded and stored there. */
  async labelEmbeddings() {
    return (await this._labels()).embeddings;
  }

  async _labels() {
    const vocab = this.vocab;
    const model = this.modelId;
    if (!vocab) throw new Error('no vocabulary is set (TaggerCore.setVocab)');
    const m = this._labelMatrix;
    if (m && m.vocab === vocab && m.model === model) return m;
    const embeddings = await this._embedLabels(vocab.labels, vocab.templates, model);
    const matrix = { model, vocab, embeddings };
    if (this.modelId === model && this.vocab === vocab) this._labelMatrix = matrix;
    return matrix;
  }

  /** One embedding per label (the mean of its templates): from `labelStore`, else embedded and stored there. */
  async _embedLabels(labels, templates, model) {
    const tkey = (await sha256(templates.join('\n'))).slice(0, 16);
    const keys = labels.map((l) => `${model}\n${tkey}\n${l}`);
    const found = await this.labelStore.get(keys);
    const embeddings = keys.map((_, i) => found?.[i]);
    const missing = labels.filter((_, i) => !embeddings[i]);
    this.stats.labelsCached += labels.length - missing.length;
    if (missing.length) {
      const clip = await this.model();
      const prompts = missing.flatMap((l) => templates.map((t) => t.replaceAll('{}', l)));
      const rows = [];
      this.onLabelProgress?.({ done: 0, total: prompts.length, labels: missing.length });
      for (let i = 0; i < prompts.length; i += this.textBatch) {
        const out = await clip.embedTexts(prompts.slice(i, i + this.textBatch));
        rows.push(...out);
        this.stats.textsComputed += out.length;
        this.onLabelProgress?.({ done: rows.length, total: prompts.length, labels: missing.length });
      }
      const n = templates.length;
      const fresh = missing.map((label, j) => ({
        key: `${model}\n${tkey}\n${label}`,
        embedding: meanDirection(rows.slice(j * n, (j + 1) * n)),
      }));
      await this.labelStore.put(fresh);
      const byKey = new Map(fresh.map((r) => [r.key, r.embedding]));
      keys.forEach((k, i) => { embeddings[i] ??= byKey.get(k); });
    }
    return embeddings;
  }

  /**
   * The review policy: `[{ label, threshold }]`, a photo is flagged for human review when a
   * label's score reaches its threshold; [] for none. Scored with the vocabulary's templates.
   */
  setPolicy(rules) {
    if (!Array.isArray(rules) || rules.some((r) => typeof r?.label !== 'string' || !r.label || !(r.threshold >= 0 && r.threshold <= 1))) {
      throw new TypeError('a review policy is a list of { label, threshold } with thresholds from 0 to 1');
    }
    this.policy = rules.map(({ label, threshold }) => ({ label, threshold }));
    this._policyMatrix = null;
    return this.policy;
  }

  /** The embeddings of the policy's labels (and the vocabulary's, which they are scored against). */
  async policyEmbeddings() {
    await this._labels();
    const { policy, vocab } = this;
    const model = this.modelId;
    const m = this._policyMatrix;
    if (m && m.policy === policy && m.vocab === vocab && m.model === model) return m.embeddings;
    const embeddings = policy.length ? await this._embedLabels(policy.map((r) => r.label), vocab.templates, model) : [];
    if (this.policy === policy && this.vocab === vocab && this.modelId === model) {
      this._policyMatrix = { model, vocab, policy, embeddings };
    }
    return embeddings;
  }

  /** Whether `review` can score now (the label and policy embeddings are at hand). */
  policyReady() {
    const m = this._policyMatrix;
    return this.labelsReady() && !!m && m.policy === this.policy && m.vocab === this.vocab && m.model === this.modelId;
  }

  /**
   * The policy labels whose score reaches their threshold, highest first: `[{ label, score,
   * threshold }]`. Scored as `clip.classify` over the vocabulary and the policy labels
   * together (CLIP: softmax, so a photo a harmless label describes better scores low;
   * SigLIP: each label's own sigmoid). `policyEmbeddings()` must have run.
   */
  review(embedding) {
    if (!this.policy.length) return [];
    if (!this.policyReady()) throw new Error('the review policy is not ready: await policyEmbeddings() first');
    const labels = this._labelMatrix.embeddings;
    const ranked = this.Clip.rank(embedding, [...labels, ...this._policyMatrix.embeddings]);
    const logits = ranked.map((r) => this.logitScale * r.score + (Number(this.clip?.logitBias) || 0));
    const scores = this.clip?.family === 'siglip' ? logits.map((l) => this.Clip.sigmoid(l)) : this.Clip.softmax(logits);
    const out = [];
    ranked.forEach((r, i) => {
      const rule = this.policy[r.index - labels.length];
      if (rule && scores[i] >= rule.threshold) out.push({ label: rule.label, score: scores[i], threshold: rule.threshold });
    });
    return out;
  }

  /**
   * Zero-shot tags, the best `top` whose score passes `scoreThreshold`, scored as
   * `clip.classify` does: CLIP's softmax over the labels of logitScale × cosine, SigLIP's
   * sigmoid of logitScale × cosine + logitBias for each label on its own.
   */
  _tag(embedding, { vocab, embeddings }) {
    const ranked = this.Clip.rank(embedding, embeddings);
    const logits = ranked.map((r) => this.logitScale * r.score + (Number(this.clip?.logitBias) || 0));
    const scores = this.clip?.family === 'siglip' ? logits.map((l) => this.Clip.sigmoid(l)) : this.Clip.softmax(logits);
    const min = this.scoreThreshold;
    return ranked
      .slice(0, this.top)
      .map((r, i) => ({ label: vocab.labels[r.index], score: scores[i] }))
      .filter((t) => t.score >= min);
  }

  /** Whether the label embeddings of the current vocabulary and model are at hand (`tagsFor` works). */
  labelsReady() {
    const m = this._labelMatrix;
    return !!m && m.vocab === this.vocab && m.model === this.modelId;
  }

  /** Tags for an embedding with the current vocabulary; `labelEmbeddings()` must have run for it. */
  tagsFor(embedding) {
    const m = this._labelMatrix;
    if (!m || m.vocab !== this.vocab || m.model !== this.modelId) {
      throw new Error('the label embeddings of this vocabulary are not ready: await labelEmbeddings() first');
    }
    return this._tag(embedding, m);
  }

  /**
   * Tags every photo again with the current vocabulary. Resolves to the photos retagged, or
   * null when the vocabulary or model changed meanwhile (a later retag is then due).
   */
  async retag() {
    const m = await this._labels();
    if (m.vocab !== this.vocab || m.model !== this.modelId) return null;
    const out = [];
    const photos = [...this._photos.values()];
    for (let i = 0; i < photos.length; i += RESTORE_BATCH) {
      const slice = photos.slice(i, i + RESTORE_BATCH);
      const embeddings = await this._embeddingsOf(slice);
      if (m.vocab !== this.vocab || m.model !== this.modelId) return null;
      slice.forEach((photo, j) => {
        if (!embeddings[j]) return; // gone from the store: its old tags stay
        photo.tags = this._tag(embeddings[j], m);
        photo.vocabKey = m.vocab.key;
        out.push(photo);
      });
    }
    return out;
  }

  /** The exact embedding of photo `key`: in memory, else from `embeddingStore`; null when unknown. */
  async embeddingOf(key) {
    const photo = this._photos.get(key);
    return photo ? (await this._embeddingsOf([photo]))[0] : null;
  }

  /** The embeddings of `photos` (entries of `_photos`), those let go read from the store in one call. */
  async _embeddingsOf(photos) {
    const out = photos.map((p) => p.embedding ?? null);
    const missing = photos.flatMap((p, i) => (p.embedding ? [] : [i]));
    if (missing.length && this.embeddingStore) {
      const got = await this.embeddingStore.get(missing.map((i) => photos[i].key)).catch(() => []);
      missing.forEach((i, j) => { out[i] = got[j] ? asF32(got[j]) : null; });
    }
    return out;
  }

  // -- photos

  /** Adds (or replaces) a photo by key; `tags` and their `vocabKey` as stored earlier, if any. */
  add(key, embedding, { tags = null, vocabKey = null } = {}) {
    const photo = { key, embedding: asF32(embedding), tags, vocabKey };
    this._photos.set(key, photo);
    if (this.ClipIndex) {
      this._toAdd.set(key, photo);
      this._syncSoon();
    }
    return photo;
  }

  remove(key) {
    const had = this._photos.delete(key);
    if (had && this.ClipIndex) {
      this._toAdd.delete(key);
      this._toRemove.add(key);
      this._syncSoon();
    }
    return had;
  }

  clear() {
    this._photos.clear();
    this._toAdd.clear();
    this._toRemove.clear();
    this._dropIndex = true; // also when the first index is still being opened
  }

  has(key) {
    return this._photos.has(key);
  }

  /** `{ key, embedding, tags, vocabKey }` (`embedding` null once let go: see `embeddingStore`), or undefined. */
  get(key) {
    return this._photos.get(key);
  }

  /** Keys in the order photos were added. */
  keys() {
    return [...this._photos.keys()];
  }

  get size() {
    return this._photos.size;
  }

  /**
   * Embeds, tags and adds photos. `photos` is an iterable or async iterable of
   * `{ key, input, ... }` (`input`: an image the model reads); they are pulled one at a time,
   * embedded `batch` at a time, so a generator can read and decode lazily. A batch the model
   * refuses is retried photo by photo: the photos it still refuses go to `onFailed` and are
   * left out. Keys already indexed are not embedded again (counted in `stats.imagesCached`).
   * Hooks: `onBatch(photos)` before a batch is embedded; `onAdded(added, { msPerImage })`
   * after (awaited before `index` resolves, one call at a time in batch order, while the next
   * batch is embedded), with `added` = `[{ photo, entry, embedding }]` (`entry` as `get` gives it,
   * `embedding` its embedding, which `entry` lets go once indexed when there is an `embeddingStore`;
   * `msPerImage` null when the batch was retried); `onFailed(photo, error)`.
   * `signal` (an AbortSignal) stops the job: what is being embedded then is not added.
   * Throws ModelUnavailableError when the model or the label embeddings cannot be had.
   * @returns {Promise<{ computed: number, cached: number, failed: number }>}
   */
  async index(photos, { signal = null, onBatch = null, onAdded = null, onFailed = null } = {}) {
    const counts = { computed: 0, cached: 0, failed: 0 };
    const pending = [];
    const queued = new Set(); // keys pending or being embedded
    const flush = async () => {
      if (!pending.length) return;
      const batch = pending.splice(0);
      try {
        await embedBatch(batch);
      } finally {
        for (const p of batch) queued.delete(p.key);
      }
    };
    const embedBatch = async (batch) => {
      let clip;
      let labels;
      try {
        clip = await this.model();
        labels = await this._labels();
        await this.policyEmbeddings(); // so that `review` works for what this adds
      } catch (e) {
        throw new ModelUnavailableError(e);
      }
      if (signal?.aborted) return;
      onBatch?.(batch);
      let embeddings;
      let msPerImage = null;
      const t0 = performance.now();
      try {
        embeddings = await clip.embedImages(batch.map((p) => p.input));
        msPerImage = (performance.now() - t0) / batch.length;
      } catch {
        // Find the culprit(s): embed one by one, leave out what fails.
        embeddings = [];
        for (const p of batch) {
          try {
            embeddings.push((await clip.embedImages([p.input]))[0]);
          } catch (err) {
            embeddings.push(null);
            counts.failed++;
            onFailed?.(p, err);
          }
        }
      }
      if (signal?.aborted) return;
      const added = [];
      batch.forEach((photo, i) => {
        if (!embeddings[i]) return;
        this.stats.imagesComputed++;
        counts.computed++;
        const entry = this.add(photo.key, embeddings[i], { tags: this._tag(embeddings[i], labels), vocabKey: labels.vocab.key });
        added.push({ photo, entry, embedding: entry.embedding });
      });
      // The caller's saving runs behind the next batch's embedding, in batch order.
      adding = adding.then(() => onAdded?.(added, { msPerImage }));
      adding.catch(() => {}); // awaited at the end
    };
    // A small pipeline: while one batch is embedded (in the worker), the next is read and
    // prepared here and the one before is handed to `onAdded` (saved), so none waits for the
    // others; batches are embedded one at a time and added in order.
    let embedding = null;
    let adding = Promise.resolve();
    const launch = async () => {
      if (embedding) await embedding;
      embedding = null;
      if (signal?.aborted || !pending.length) return;
      embedding = flush();
      embedding.catch(() => {}); // awaited by the next launch or at the end
    };
    try {
      for await (const photo of photos) {
        if (signal?.aborted) break;
        if (this._photos.has(photo.key) || queued.has(photo.key)) {
          this.stats.imagesCached++;
          counts.cached++;
          continue;
        }
        pending.push(photo);
        queued.add(photo.key);
        if (pending.length >= this.batch) {
          await launch();
          if (signal?.aborted) break; // read no further
        }
      }
      if (!signal?.aborted) await launch();
    } finally {
      await embedding?.catch(() => {});
      await adding.catch(() => {});
    }
    await embedding; // rethrows the last batch's error (ModelUnavailableError)
    await adding; // and the caller's
    return counts;
  }

  // -- search

  /** A query text's embedding (kept per model, so repeating a search embeds nothing). */
  async embedText(text) {
    const key = `${this.modelId}\n${text}`;
    let embedding = this._texts.get(key);
    if (!embedding) {
      const clip = await this.model();
      [embedding] = await clip.embedTexts([text]);
      this.stats.textsComputed++;
      this._texts.set(key, embedding);
    }
    return embedding;
  }

  /**
   * Photos ranked by cosine to `embedding`: `[{ key, score }]`, best first, at most `topK`.
   * With `ClipIndex`, a SIMD scan of int8 rows in WebAssembly whose best 4 × topK candidates
   * are re-scored with the exact embeddings (about 20 ms for 100,000 photos of 512 values);
   * without, `Clip.rank` over every photo.
   */
  async search(embedding, { topK = Infinity } = {}) {
    const k = Math.min(this._photos.size, topK);
    if (!(k > 0)) return [];
    if (this.ClipIndex) {
      await this._syncIndex();
      if (this._index) {
        const hits = await this._index.search(embedding, { k: Math.floor(k) });
        return hits.filter((h) => this._photos.has(h.key)).map(({ key, score }) => ({ key, score }));
      }
    }
    const photos = [...this._photos.values()];
    return this.Clip.rank(embedding, photos.map((p) => p.embedding), { topK })
      .map(({ index, score }) => ({ key: photos[index].key, score }));
  }

  // The index is fed from `_photos` without a second copy of the embeddings: ClipIndex keeps
  // its compact rows (int8: 4 + dim bytes a photo, in WebAssembly memory) and asks its
  // storage for the exact float32 embeddings of the few candidates it re-scores; here that
  // storage is `_photos` itself (nothing is written: the element keeps the records in
  // IndexedDB). So memory grows by the int8 rows only, and ranking is one SIMD scan.
  _indexStorage() {
    const unit = (e) => {
      let n = 0;
      for (let i = 0; i < e.length; i++) n += e[i] * e[i];
      const inv = 1 / (Math.sqrt(n) || 1);
      return e.map((x) => x * inv);
    };
    return {
      open: async () => null,
      writeMeta: async () => {},
      rows: async () => [],
      put: async () => {},
      delete: async () => {},
      clear: async () => {},
      close() {},
      exact: async (keys) => {
        const photos = keys.map((k) => this._photos.get(k));
        const known = photos.filter(Boolean);
        const got = new Map((await this._embeddingsOf(known)).map((e, i) => [known[i], e]));
        return photos.map((p) => (p && got.get(p) ? unit(got.get(p)) : null));
      },
    };
  }

  _syncSoon() {
    if (this._syncTimer) return;
    this._syncTimer = setTimeout(() => {
      this._syncTimer = null;
      this._syncIndex().catch(() => {});
    }, 0);
  }

  /** Apply the queued adds and removes to the index (one run at a time, in order). */
  _syncIndex() {
    const run = this._indexOps.then(() => this._applyIndexOps());
    this._indexOps = run.catch(() => {});
    return run;
  }

  async _applyIndexOps() {
    for (;;) {
      if (this._dropIndex) {
        this._dropIndex = false;
        const old = this._index;
        this._index = null;
        await old?.close();
      } else if (this._toRemove.size) {
        const keys = [...this._toRemove];
        this._toRemove.clear();
        if (this._index) await this._index.remove(keys);
      } else if (this._toAdd.size) {
        const batch = [];
        for (const [key, photo] of this._toAdd) {
          batch.push(photo);
          this._toAdd.delete(key);
          if (batch.length === INDEX_BATCH) break;
        }
        if (!this._index) {
          this._index = await this.ClipIndex.open({ dim: batch[0].embedding.length, precision: 'i8', storage: this._indexStorage() });
          if (this._dropIndex) continue; // cleared meanwhile: this batch is stale
        }
        const index = this._index;
        const entries = batch.filter((p) => this._photos.get(p.key) === p).map((p) => ({ key: p.key, embedding: p.embedding }));
        try {
          await index.addMany(entries);
          // The index holds their rows now: with a store to read them back from, the page
          // keeps no float32 copy (2 KiB a photo at 512 values).
          if (this.embeddingStore) for (const p of batch) p.embedding = null;
          // Let the page breathe between slices: a restore of 100,000 photos adds them all.
          if (this._toAdd.size && globalThis.setTimeout) await new Promise((r) => setTimeout(r, 0));
        } catch {
          // One bad embedding (wrong length, zero, NaN) refuses the batch: add the others.
          let bad = 0;
          for (const e of entries) await index.add(e.key, e.embedding).catch(() => bad++);
          if (bad) console.warn(`webclip-tagger: ${bad} photos have unusable embeddings and are left out of searches`);
        }
      } else {
        return;
      }
    }
  }

  /** Photos ranked by likeness to a text (embedded as is, no template). */
  async searchText(text, options) {
    return this.search(await this.embedText(text), options);
  }

  /** Photos ranked by likeness to the photo `key` (itself first); null for an unknown key. */
  async moreLikeThis(key, options) {
    const embedding = await this.embeddingOf(key);
    return embedding ? this.search(embedding, options) : null;
  }
}

// ----------------------------------------------------------------------------------- storage

// IndexedDB "webclip-tagger": images (one record per model x photo content), their
// thumbnails (`thumbs`, by the same key: apart, so that reading a library back reads no Blob),
// label embeddings (per model x template set x label), settings, and the indexing job under
// way (`jobs`, so that a tab closed halfway knows what was cut short). Falls back to memory when
// IndexedDB is unavailable (some private modes), with a message saying nothing is kept.
// Records written before version 3 hold their thumbnail themselves; they are moved to the
// new layout as the library is read back (`migrate`), and read either way meanwhile.
class Store {
  constructor() {
    this.db = null;
    this.mem = { images: new Map(), thumbs: new Map(), labels: new Map(), settings: new Map(), jobs: new Map() };
  }

  async open() {
    if (!globalThis.indexedDB) throw new Error('this browser has no IndexedDB');
    this.db = await new Promise((resolve, reject) => {
      const req = indexedDB.open('webclip-tagger', 4);
      req.onupgradeneeded = (e) => {
        const db = req.result;
        if (e.oldVersion < 1) {
          db.createObjectStore('images', { keyPath: 'key' }).createIndex('model', 'model');
          db.createObjectStore('labels', { keyPath: 'key' });
          db.createObjectStore('settings', { keyPath: 'key' });
        }
        // Version 2: a model's photos in the order added, read a page at a time.
        if (e.oldVersion < 2) req.transaction.objectStore('images').createIndex('added', ['model', 'added']);
        // Version 3: thumbnails in their own store, { key, thumb }.
        if (e.oldVersion < 3) db.createObjectStore('thumbs', { keyPath: 'key' });
        // Version 4: the indexing job under way, per model (`JobLog`).
        if (e.oldVersion < 4) db.createObjectStore('jobs', { keyPath: 'key' });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
      req.onblocked = () => reject(new Error('IndexedDB is blocked by another tab with an older version'));
    });
  }

  _req(store, mode, fn) {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction(store, mode);
      const req = fn(tx.objectStore(store));
      tx.oncomplete = () => resolve(req?.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error || new Error('IndexedDB transaction aborted (disk full?)'));
    });
  }

  get(store, key) {
    if (!this.db) return Promise.resolve(this.mem[store].get(key));
    return this._req(store, 'readonly', (s) => s.get(key));
  }

  put(store, value) {
    if (!this.db) return Promise.resolve(void this.mem[store].set(value.key, value));
    return this._req(store, 'readwrite', (s) => s.put(value));
  }

  delete(store, key) {
    if (!this.db) return Promise.resolve(void this.mem[store].delete(key));
    return this._req(store, 'readwrite', (s) => s.delete(key));
  }

  putAll(store, values) {
    if (!this.db) { for (const v of values) this.mem[store].set(v.key, v); return Promise.resolve(); }
    return this._req(store, 'readwrite', (s) => { for (const v of values) s.put(v); });
  }

  /** Sets the fields of each `{ key, ...fields }` on the stored record `key` (if there is one). */
  patchAll(store, patches) {
    if (!this.db) {
      for (const { key, ...fields } of patches) {
        const r = this.mem[store].get(key);
        if (r) Object.assign(r, fields);
      }
      return Promise.resolve();
    }
    return this._req(store, 'readwrite', (s) => {
      for (const { key, ...fields } of patches) {
        s.get(key).onsuccess = (e) => {
          const r = e.target.result;
          if (r) s.put(Object.assign(r, fields));
        };
      }
    });
  }

  getMany(store, keys) {
    if (!this.db) return Promise.resolve(keys.map((k) => this.mem[store].get(k)));
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction(store, 'readonly');
      const s = tx.objectStore(store);
      const out = new Array(keys.length);
      keys.forEach((k, i) => { s.get(k).onsuccess = (e) => { out[i] = e.target.result; }; });
      tx.oncomplete = () => resolve(out);
      tx.onerror = () => reject(tx.error);
    });
  }

  /**
   * The next `count` photos of `model` in the order added, after the position `after` (null:
   * from the first): `{ records, after }`, `after` null once there are no more. Photos added
   * in the same millisecond share an `added` value: the position remembers which of those
   * were read.
   */
  async imagesPage(model, after, count) {
    if (!this.db) {
      const all = [...this.mem.images.values()].filter((r) => r.model === model).sort((a, b) => a.added - b.added);
      const at = after?.at ?? 0;
      return { records: all.slice(at, at + count), after: at + count < all.length ? { at: at + count } : null };
    }
    const skip = after ? after.keys.size : 0;
    const range = IDBKeyRange.bound([model, after ? after.added : -Infinity], [model, Infinity]);
    const got = await this._req('images', 'readonly', (s) => s.index('added').getAll(range, count + skip));
    const records = after ? got.filter((r) => !(r.added === after.added && after.keys.has(r.key))) : got;
    if (got.length < count + skip || !records.length) return { records, after: null };
    const last = records[records.length - 1].added;
    const keys = new Set(after?.added === last ? after.keys : []);
    for (let i = records.length - 1; i >= 0 && records[i].added === last; i--) keys.add(records[i].key);
    return { records, after: { added: last, keys } };
  }

  deleteImagesOf(model) {
    if (!this.db) {
      for (const [k, r] of this.mem.images) if (r.model === model) { this.mem.images.delete(k); this.mem.thumbs.delete(k); }
      return Promise.resolve();
    }
    return this._tx(['images', 'thumbs'], 'readwrite', (tx) => {
      const s = tx.objectStore('images');
      s.index('model').openKeyCursor(IDBKeyRange.only(model)).onsuccess = (e) => {
        const cur = e.target.result;
        if (cur) { s.delete(cur.primaryKey); cur.continue(); }
      };
      // Keys are `${model}\n${hash}`: the model's thumbnails are one key range.
      tx.objectStore('thumbs').delete(IDBKeyRange.bound(`${model}\n`, `${model}\n\uffff`));
    });
  }

  _tx(stores, mode, fn) {
    return new Promise((resolve, reject) => {
      const tx = this.db.transaction(stores, mode);
      const out = fn(tx);
      tx.oncomplete = () => resolve(out);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error || new Error('IndexedDB transaction aborted (disk full?)'));
    });
  }

  /** Saves photos (records with their `thumb`): the record and the thumbnail apart, in one transaction. */
  putPhotos(records) {
    if (!this.db) {
      for (const r of records) { this.mem.images.set(r.key, withoutThumb(r)); this.mem.thumbs.set(r.key, { key: r.key, thumb: r.thumb }); }
      return Promise.resolve();
    }
    return this._tx(['images', 'thumbs'], 'readwrite', (tx) => {
      const images = tx.objectStore('images');
      const thumbs = tx.objectStore('thumbs');
      for (const r of records) {
        images.put(withoutThumb(r));
        if (r.thumb) thumbs.put({ key: r.key, thumb: r.thumb });
      }
    });
  }

  /** Moves records of the old layout (the thumbnail inside) to the new one. */
  migrate(records) {
    return this.putPhotos(records.filter((r) => r.thumb));
  }

  /** The thumbnails of the records `keys` (Blob or undefined each), in either layout. */
  thumbsOf(keys) {
    if (!this.db) return Promise.resolve(keys.map((k) => this.mem.thumbs.get(k)?.thumb ?? this.mem.images.get(k)?.thumb));
    return this._tx(['thumbs', 'images'], 'readonly', (tx) => {
      const out = new Array(keys.length);
      const thumbs = tx.objectStore('thumbs');
      const images = tx.objectStore('images');
      keys.forEach((k, i) => {
        thumbs.get(k).onsuccess = (e) => {
          if (e.target.result) out[i] = e.target.result.thumb;
          else images.get(k).onsuccess = (e2) => { out[i] = e2.target.result?.thumb; };
        };
      });
      return out;
    });
  }
}

/**
 * An indexing job as storage keeps it while it runs, so that a tab closed halfway reopens
 * knowing what was cut short: the job's files (path, size, modification time; written once),
 * how many of them, in order, are settled (indexed, known or skipped), and which failed. Files
 * are settled in order, except the photos being embedded, so the settled count is the first
 * of those (or every file read so far). Removed when the job ends or is cancelled.
 *
 *   const job = new JobLog(store, model, files); await job.start();
 *   job.reach(i); job.embedding(i); job.settle(i); job.fail(path, reason); job.save();
 *   await job.end();
 */
class JobLog {
  static key(model) { return `${model}\njob`; }

  /** The cut-short job of `model` in `store`, `{ total, settled, failed, left }`, or null. */
  static async cutShort(store, model) {
    const key = JobLog.key(model);
    const [meta, list] = await store.getMany('jobs', [key, `${key}\nfiles`]).catch(() => []);
    if (!meta) return null;
    const left = (list?.files ?? []).slice(meta.settled).map(([path]) => path);
    return { total: meta.total, settled: meta.settled, failed: meta.failed, left };
  }

  static async forget(store, model) {
    const key = JobLog.key(model);
    await Promise.all([store.delete('jobs', key), store.delete('jobs', `${key}\nfiles`)]);
  }

  constructor(store, model, files) {
    this.store = store;
    this.model = model;
    this.files = files;
    this.key = JobLog.key(model);
    this.read = 0; // files before this one are settled or being embedded
    this.embeddingNow = new Set();
    this.failed = [];
    this.saving = Promise.resolve();
  }

  get settled() {
    let first = this.read;
    for (const i of this.embeddingNow) first = Math.min(first, i);
    return first;
  }

  /** Writes the file list and the first state; a storage failure only loses the record. */
  start() {
    const list = { key: `${this.key}\nfiles`, files: this.files.map(({ path, file }) => [path, file.size, file.lastModified]) };
    return this.store.putAll('jobs', [list, this._meta()]).catch(() => {});
  }

  _meta() {
    return { key: this.key, model: this.model, total: this.files.length, settled: this.settled, failed: this.failed.slice(0, MAX_JOB_FAILURES) };
  }

  reach(i) { this.read = i; }
  embedding(i) { this.embeddingNow.add(i); }
  settle(i) {
    this.embeddingNow.delete(i);
    this.read = Math.max(this.read, i + 1); // the last file read may be the one just settled
  }
  fail(path, reason) { this.failed.push({ path, reason }); }
  finish() { this.read = this.files.length; }

  /** Records the state (one write at a time; a later call writes the latest). */
  save() {
    this.saving = this.saving.then(() => this.store.put('jobs', this._meta())).catch(() => {});
    return this.saving;
  }

  async end() {
    await this.saving;
    await JobLog.forget(this.store, this.model).catch(() => {});
  }
}

// ------------------------------------------------------------------------------- input files

/** Files (with their relative paths) from a drop, walking dropped folders recursively. */
async function filesFromDrop(dataTransfer) {
  // Entries must be taken synchronously, while the drop event is still being dispatched.
  const entries = [...(dataTransfer.items || [])]
    .filter((it) => it.kind === 'file')
    .map((it) => it.webkitGetAsEntry?.())
    .filter(Boolean);
  if (!entries.length) return [...dataTransfer.files].map((file) => ({ file, path: file.name }));
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ file, path: prefix + file.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const entry of entries) await walk(entry, '');
  return out;
}

const filesFromInput = (input) =>
  [...input.files].map((file) => ({ file, path: file.webkitRelativePath || file.name }));

/** Why a file is not worth decoding, or null. */
function rejectReason(file) {
  const looksImage = file.type.startsWith('image/') || IMAGE_EXT.test(file.name);
  if (!looksImage) return `not an image (${file.type || 'unknown type'})`;
  if (file.type === 'image/svg+xml' || /\.svg$/i.test(file.name)) return 'SVG drawings are not supported; export it as PNG';
  if (file.size === 0) return 'the file is empty';
  if (file.size > MAX_FILE_BYTES) return `too large (${fmtBytes(file.size)}; the limit is ${fmtBytes(MAX_FILE_BYTES)})`;
  return null;
}

/** Types the package decodes itself (as Python's PIL does), so it gets their bytes as they are. */
const MODEL_DECODES = /^image\/(png|jpeg|jpg|webp|gif)$/i;

/**
 * Decodes a photo, `file` whose content is `bytes` (already read): its size, a JPEG thumbnail,
 * and what to hand the model (the bytes, or for a type only the browser decodes a Blob of
 * them; a downscaled PNG when it is huge, so the worker never holds hundreds of MB of pixels).
 */
async function decodePhoto(file, bytes, maxPixels = HUGE_PIXELS) {
  const blob = new Blob([bytes], { type: file.type });
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob);
  } catch (e) {
    throw new Error(`the browser could not decode it as an image (${errMessage(e)})`);
  }
  try {
    const { width, height } = bitmap;
    const fit = (side) => {
      const s = Math.min(1, side / Math.max(width, height));
      return [Math.max(1, Math.round(width * s)), Math.max(1, Math.round(height * s))];
    };
    const toBlob = async (w, h, type, quality) => {
      const canvas = new OffscreenCanvas(w, h);
      const ctx = canvas.getContext('2d');
      ctx.imageSmoothingQuality = 'high';
      if (type === 'image/jpeg') { ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, w, h); } // alpha on white, as CLIP's reference does
      ctx.drawImage(bitmap, 0, 0, w, h);
      return canvas.convertToBlob({ type, quality });
    };
    const [tw, th] = fit(THUMB_SIDE);
    const thumb = await toBlob(tw, th, 'image/jpeg', 0.82);
    let input = MODEL_DECODES.test(file.type) ? bytes : blob;
    let note = null;
    if (width * height > maxPixels) {
      // Small enough for the worker, never enlarged, and no smaller than the model's own resize needs.
      const s = Math.min(1, DOWNSCALED_SHORT_SIDE / Math.min(width, height), Math.sqrt(maxPixels / (width * height)));
      const w = Math.max(1, Math.round(width * s));
      const h = Math.max(1, Math.round(height * s));
      input = await toBlob(w, h, 'image/png');
      const mp = (n) => `${+(n / 1e6).toPrecision(2)} MP`;
      note = `${width}×${height} (${mp(width * height)}) is over ${mp(maxPixels)}; tagged from a ${w}×${h} copy`;
    }
    return { width, height, thumb, input, note };
  } finally {
    bitmap.close();
  }
}

// ------------------------------------------------------------------------------ virtual grid

/**
 * A grid of equal cards of which only those in and near the viewport exist in the DOM, so a
 * library of 100,000 photos costs the page what a screenful does. The list's own height
 * stands in for the cards that are not there (the scroll height is that of every card), and
 * cards are recycled as the page scrolls: one leaving the range is bound to a key entering
 * it, so no element is kept per photo. Cards are placed absolutely by index; the DOM order
 * follows the index, so Tab goes through them in order (the next rows come into being as
 * focus scrolls to them), and the card that holds focus is kept while it scrolls away.
 * Arrow keys, Page Up/Down, Home and End move focus between the cards' `focusSelector`.
 *
 *   const grid = new VirtualGrid(ul, { create, bind, release, measure });
 *   grid.setKeys(keys);   // an array; grid.changed() after appending to it
 */
class VirtualGrid {
  /**
   * @param {HTMLElement} list the container (a `ul`): it gets the height, cards go inside
   * @param {object} hooks
   * @param {() => HTMLElement} hooks.create a new, unbound card
   * @param {(card: HTMLElement, key: string, index: number, inView: boolean) => void} hooks.bind
   *   show `key` in `card`; `inView`: the card is in the viewport (not only in the overscan)
   * @param {(card: HTMLElement) => void} [hooks.release] `card` no longer shows its key
   * @param {(width: number) => number} hooks.measure a card's height at this width
   * @param {string} [hooks.focusSelector] what in a card takes focus for the arrow keys
   * @param {number} [hooks.overscan] viewport heights rendered beyond each edge (default 0.5)
   */
  constructor(list, { create, bind, release = () => {}, measure, focusSelector = 'button', overscan = 0.5 }) {
    this.list = list;
    Object.assign(this, { create, bind, release, measure, focusSelector, overscan });
    this.keys = [];
    this.active = new Map(); // key -> card in the DOM
    this.pool = []; // detached cards, ready to be bound again
    this.layout = null; // { width, cols, colW, cardH, rowH, gap }
    this._range = null;
    this._onScroll = () => this.update();
    // Scroll events do not bubble, but a capturing listener sees those of every scroller.
    document.addEventListener('scroll', this._onScroll, { passive: true, capture: true });
    window.addEventListener('resize', this._onScroll, { passive: true });
    this._resize = new ResizeObserver(() => {
      if (this.list.clientWidth !== (this.layout?.width ?? 0)) this.relayout();
    });
    this._resize.observe(list);
    list.addEventListener('keydown', (e) => this._key(e));
  }

  /** Show `keys` (an array, kept by reference) from the first; cards of keys still shown are kept. */
  setKeys(keys) {
    this.keys = keys;
    this._range = null;
    this.update({ unpin: true });
  }

  /** The array given to setKeys changed (grown, usually): update the height and the cards. */
  changed() {
    this._range = null;
    this.update();
  }

  /** Measure again (the width or the card's contents changed), then update. */
  relayout() {
    this.layout = null;
    this._range = null;
    this.update();
  }

  /** Bind again the card of `key` (its data changed), if it is in the DOM. */
  refresh(key) {
    const card = this.active.get(key);
    if (card) this.bind(card, key, card._index, true);
  }

  refreshAll() {
    for (const [key, card] of this.active) this.bind(card, key, card._index, true);
  }

  /** The card showing `key`, if it is in the DOM. */
  cardOf(key) {
    return this.active.get(key) ?? null;
  }

  /** Render the card at `index` (scrolling to it) and focus it. */
  focusIndex(index) {
    if (!this.keys.length) return;
    const i = Math.max(0, Math.min(this.keys.length - 1, index));
    this.update({ include: i });
    const card = this.active.get(this.keys[i]);
    const target = card?.querySelector(this.focusSelector) ?? card;
    target?.focus(); // scrolls it into view; the scroll renders its neighbours
  }

  destroy() {
    document.removeEventListener('scroll', this._onScroll, { capture: true });
    window.removeEventListener('resize', this._onScroll);
    this._resize.disconnect();
  }

  _measure() {
    const cs = getComputedStyle(this.list);
    const min = parseFloat(cs.getPropertyValue('--card-min')) || 160;
    const gap = parseFloat(cs.getPropertyValue('--gap')) || 0;
    const width = this.list.clientWidth;
    if (!width) return null; // not laid out (hidden, or not in a page yet)
    const cols = Math.max(1, Math.floor((width + gap) / (min + gap)));
    const colW = (width - gap * (cols - 1)) / cols;
    const cardH = Math.ceil(this.measure(colW));
    this.list.style.setProperty('--col-w', `${colW}px`);
    this.list.style.setProperty('--card-h', `${cardH}px`);
    for (const card of this.active.values()) card._index = -1; // placed again below
    return { width, cols, colW, cardH, rowH: cardH + gap, gap };
  }

  /**
   * Bring the DOM in line with the scroll position: recycle the cards that left the range,
   * bind cards for the keys that entered it, place them, keep the DOM order.
   * `include`: an index rendered even outside the range; `unpin`: the list changed, so the
   * focused card is not kept for its old key.
   */
  update({ include = -1, unpin = false } = {}) {
    const list = this.list;
    if (!list.isConnected) return;
    const n = this.keys.length;
    if (!this.layout && n) this.layout = this._measure();
    const L = this.layout;
    if (!L && n) return; // measured once the list is laid out (the ResizeObserver calls again)
    const rows = L ? Math.ceil(n / L.cols) : 0;
    const height = rows ? rows * L.rowH - L.gap : 0;
    if (height !== this._height) {
      list.style.height = `${height}px`;
      this._height = height;
    }
    let i0 = 0;
    let i1 = 0;
    let v0 = 0; // the cards in the viewport itself
    let v1 = 0;
    if (n) {
      const rect = list.getBoundingClientRect();
      const vh = window.innerHeight || document.documentElement.clientHeight;
      const over = vh * this.overscan;
      const row = (y) => Math.max(0, Math.min(rows, y / L.rowH));
      i0 = Math.min(n, Math.floor(row(-rect.top - over)) * L.cols);
      i1 = Math.max(i0, Math.min(n, Math.ceil(row(vh - rect.top + over)) * L.cols));
      v0 = Math.floor(row(-rect.top)) * L.cols;
      v1 = Math.ceil(row(vh - rect.top)) * L.cols;
    }
    const range = `${i0}:${i1}:${include}`;
    if (range === this._range && !unpin) return;
    this._range = range;

    const root = list.getRootNode();
    const focused = root.activeElement && list.contains(root.activeElement) ? root.activeElement : null;
    const wanted = new Map();
    for (let i = i0; i < i1; i++) wanted.set(this.keys[i], i);
    if (include >= 0 && include < n) wanted.set(this.keys[include], include);
    let pinned = null;
    for (const [key, card] of this.active) {
      if (wanted.has(key)) continue;
      if (!unpin && focused && card.contains(focused)) { pinned = card; continue; }
      this.active.delete(key);
      this.release(card);
      card.remove();
      this.pool.push(card);
    }
    const ordered = [];
    for (const [key, i] of wanted) {
      let card = this.active.get(key);
      if (!card) {
        card = this.pool.pop() ?? this.create();
        card._index = -1;
        this.bind(card, key, i, (i >= v0 && i < v1) || i === include);
        this.active.set(key, card);
      }
      if (card._index !== i) {
        card._index = i;
        card.style.transform = `translate(${(i % L.cols) * (L.colW + L.gap)}px, ${Math.floor(i / L.cols) * L.rowH}px)`;
        card.setAttribute('aria-posinset', String(i + 1));
      }
      if (card._setsize !== n) {
        card._setsize = n;
        card.setAttribute('aria-setsize', String(n));
      }
      ordered.push(card);
    }
    if (pinned) ordered.push(pinned);
    ordered.sort((a, b) => a._index - b._index);
    // Only out-of-place cards move (a moved element loses focus; that is restored below).
    let prev = null;
    for (const card of ordered) {
      const next = prev ? prev.nextSibling : list.firstChild;
      if (card !== next) list.insertBefore(card, next);
      prev = card;
    }
    if (!prev) list.replaceChildren();
    else while (prev.nextSibling) prev.nextSibling.remove(); // nothing else belongs in the list
    if (focused && focused.isConnected && root.activeElement !== focused) focused.focus({ preventScroll: true });
    this.pool.length = Math.min(this.pool.length, 64);
  }

  _key(e) {
    if (e.altKey || e.ctrlKey || e.metaKey || !this.layout) return;
    const card = e.target.closest?.('.card');
    if (!card || card.parentNode !== this.list || !e.target.matches(this.focusSelector)) return;
    const { cols, rowH } = this.layout;
    const page = cols * Math.max(1, Math.floor((window.innerHeight || 600) / rowH));
    const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols, PageDown: page, PageUp: -page }[e.key];
    let to;
    if (step !== undefined) to = card._index + step;
    else if (e.key === 'Home') to = 0;
    else if (e.key === 'End') to = this.keys.length - 1;
    else return;
    e.preventDefault();
    this.focusIndex(to);
  }
}

// ------------------------------------------------------------------------------------ element

const STYLE = `
:host { display: block; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--webclip-fg, #1d232b); --accent: var(--webclip-accent, #2357c6); --line: #d3d9e2;
  --muted: #5b6573; --bg: var(--webclip-bg, #fff); --soft: #f3f5f9; }
* { box-sizing: border-box; }
section { border: 1px solid var(--line); border-radius: 10px; padding: 12px; margin: 0 0 12px; background: var(--bg); }
h2 { font-size: 1rem; margin: 0 0 8px; }
.row { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.grow { flex: 1 1 240px; min-width: 0; }
input[type=url], input[type=search], textarea { font: inherit; padding: 7px 9px; border: 1px solid #a9b3c1;
  border-radius: 7px; width: 100%; background: #fff; color: inherit; }
textarea { min-height: 7em; resize: vertical; font-size: 0.9em; }
button, .button { font: inherit; padding: 7px 12px; border-radius: 7px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; cursor: pointer; white-space: nowrap; }
button.secondary { background: #fff; color: var(--accent); }
button:disabled { opacity: 0.5; cursor: not-allowed; }
:focus-visible { outline: 3px solid #f5a623; outline-offset: 2px; }
progress { width: 100%; height: 10px; }
.hidden { display: none !important; }
.muted { color: var(--muted); font-size: 0.9em; }
.privacy { background: #edf7ee; border-color: #9fd0a6; }
.status { display: flex; flex-wrap: wrap; gap: 6px 14px; font-size: 0.9em; color: var(--muted); margin-top: 6px; }
.status b { color: var(--webclip-fg, #1d232b); font-weight: 600; }
.messages { list-style: none; margin: 0 0 12px; padding: 0; }
.messages li { display: flex; gap: 8px; align-items: flex-start; padding: 8px 10px; border-radius: 8px;
  margin-bottom: 6px; border: 1px solid; }
.messages li span { flex: 1; overflow-wrap: anywhere; }
.messages li button { padding: 0 8px; background: transparent; color: inherit; border-color: currentColor; }
.msg-error { background: #fdecec; border-color: #e5a3a3 !important; color: #8a1c1c; }
.msg-warn { background: #fff6e0; border-color: #e8c877 !important; color: #6b4d00; }
.msg-info { background: #eaf1fd; border-color: #a8c0ec !important; color: #1d3f7a; }
.drop { border: 2px dashed #9aa6b6; border-radius: 10px; padding: 18px; text-align: center; background: var(--soft); }
.drop.over { border-color: var(--accent); background: #e6eefc; }
.drop p { margin: 0 0 10px; }
details summary { cursor: pointer; font-weight: 600; }
.labels-grid { display: grid; grid-template-columns: 2fr 1fr; gap: 10px; margin: 8px 0; }
.skipped { font-size: 0.88em; max-height: 10em; overflow: auto; margin: 6px 0 0; padding-left: 1.2em; }
/* The grid is virtual (VirtualGrid): its height is that of every card, the cards in the DOM
   are only those near the viewport, placed absolutely; all cards have one size. */
.grid { list-style: none; padding: 0; margin: 0; position: relative; contain: layout style;
  --card-min: 160px; --gap: 10px; }
.card { position: absolute; top: 0; left: 0; width: var(--col-w, 160px); height: var(--card-h, auto);
  border: 1px solid var(--line); border-radius: 9px; overflow: hidden; display: flex; flex-direction: column;
  background: #fff; contain: layout style paint; }
.card.probe { visibility: hidden; height: auto; }
.card img { width: 100%; aspect-ratio: 4 / 3; object-fit: cover; background: var(--soft); display: block; flex: none; }
.card .body { padding: 6px 8px 8px; display: flex; flex-direction: column; gap: 5px; flex: 1; min-height: 0; overflow: hidden; }
.card .name { font-size: 0.85em; font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; min-height: 1.45em; }
.card .sim { font-size: 0.8em; color: var(--accent); font-variant-numeric: tabular-nums; min-height: 1.45em;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.card.flag { border-color: #b3261e; box-shadow: inset 0 0 0 1px #b3261e; }
.card.flag .sim { color: #b3261e; font-weight: 600; }
.card .note { font-size: 0.78em; color: #6b4d00; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; flex: none; }
.tags { list-style: none; display: flex; flex-wrap: wrap; gap: 4px; padding: 0; margin: 0; overflow: hidden;
  max-height: var(--tags-h); flex: none; } /* two rows of tags; more are cut (all are in the export) */
.card .tags { --tags-h: calc(2 * (0.78em * 1.4 + 2px) + 4px); }
.card.probe .tags { height: var(--tags-h); }
.card .tags li { line-height: 1.4; white-space: nowrap; max-width: 100%; overflow: hidden; text-overflow: ellipsis; }
.tags li { font-size: 0.78em; background: #e9eef7; border-radius: 99px; padding: 1px 8px; }
.tags li b { font-weight: 600; font-variant-numeric: tabular-nums; margin-left: 3px; color: var(--muted); }
.card button { margin-top: auto; padding: 4px 8px; font-size: 0.85em; flex: none; }
.empty { color: var(--muted); text-align: center; padding: 20px; }
.more { justify-content: center; margin: 12px 0; }
@media (max-width: 560px) {
  :host { font-size: 14px; }
  section { padding: 10px; }
  .labels-grid { grid-template-columns: 1fr; }
  .grid { --card-min: 130px; --gap: 8px; }
  button, .button { padding: 8px 10px; }
}
`;

const TEMPLATE = `
<style>${STYLE}</style>
<section class="privacy" part="privacy">
  <strong>Private:</strong> your photos never leave this device. They are hashed, embedded and tagged
  here, in this browser; results are kept in this browser's storage (IndexedDB). The only network
  request is the model download<span data-ref="modelHost"></span>.
</section>
<ul class="messages" data-ref="messages" role="status" aria-live="polite"></ul>
<section part="model" aria-labelledby="wct-model-h">
  <h2 id="wct-model-h">Model</h2>
  <form class="row" data-ref="urlForm">
    <label class="grow"><span class="muted">Model folder URL (Hugging Face layout)</span>
      <input type="url" data-ref="url" required spellcheck="false" autocomplete="url"
        placeholder="https://huggingface.co/ORG/NAME/resolve/main/"></label>
    <button type="submit" data-ref="loadBtn">Load model</button>
  </form>
  <div class="row" style="margin-top:8px">
    <span class="muted">Offline? Use a model on this device:</span>
    <button type="button" class="secondary" data-ref="pickModelDir">Choose model folder…</button>
    <button type="button" class="secondary" data-ref="pickModelFiles">Choose model files…</button>
    <input type="file" class="hidden" data-ref="modelDir" webkitdirectory multiple>
    <input type="file" class="hidden" data-ref="modelFiles" multiple accept=".json,.safetensors,.model">
  </div>
  <div data-ref="modelProgressBox" class="hidden" style="margin-top:8px">
    <progress data-ref="modelProgress" max="1" aria-label="Model download"></progress>
    <div class="muted" data-ref="modelProgressText"></div>
  </div>
  <div class="status">
    <span>Model: <b data-ref="modelName">none loaded</b></span>
    <span>Backend: <b data-ref="backend">–</b></span>
    <span>Time per image: <b data-ref="perImage">–</b></span>
    <span>Embeddings: <b data-ref="counts">0 computed, 0 from cache</b></span>
    <span>Storage: <b data-ref="storage">–</b>
      <button type="button" class="secondary hidden" data-ref="persist"
        title="Browsers may clear a site's saved data when the disk runs low; a kept library is cleared only by you">Keep my library on this device</button></span>
  </div>
</section>
<section part="photos" aria-labelledby="wct-photos-h">
  <h2 id="wct-photos-h">Photos</h2>
  <div class="drop" data-ref="drop">
    <p>Drop photos or a whole folder here, or</p>
    <div class="row" style="justify-content:center">
      <button type="button" data-ref="pickPhotos">Choose photos…</button>
      <button type="button" class="secondary" data-ref="pickFolder">Choose a folder…</button>
    </div>
    <input type="file" class="hidden" data-ref="photos" multiple accept="image/*">
    <input type="file" class="hidden" data-ref="folder" webkitdirectory multiple>
  </div>
  <div data-ref="indexBox" class="hidden" style="margin-top:8px">
    <progress data-ref="indexProgress" max="1" aria-label="Indexing photos"></progress>
    <div class="row" style="flex-wrap:nowrap">
      <!-- The line changes with every file: it takes the room left, so the buttons stay put. -->
      <span class="muted" data-ref="indexText" style="flex:1;min-width:0;overflow:hidden;text-overflow:ellipsis;white-space:nowrap"></span>
      <button type="button" class="secondary hidden" data-ref="pauseJob">Pause</button>
      <button type="button" class="secondary hidden" data-ref="cancelJob">Cancel</button>
    </div>
  </div>
  <div data-ref="jobBox" class="hidden row" role="status" style="margin-top:8px">
    <span data-ref="jobText"></span>
    <button type="button" class="secondary" data-ref="forgetJob">Forget it</button>
  </div>
  <details data-ref="skippedBox" class="hidden" style="margin-top:8px">
    <summary data-ref="skippedSummary"></summary>
    <ul class="skipped" data-ref="skipped"></ul>
  </details>
</section>
<section part="labels">
  <details data-ref="labelsBox">
    <summary>Labels <span class="muted" data-ref="labelsSummary"></span></summary>
    <div class="labels-grid">
      <label><span class="muted">Label vocabulary, one per line</span>
        <textarea data-ref="labels" spellcheck="false"></textarea></label>
      <label><span class="muted">Prompt templates, {} is the label; averaged per label</span>
        <textarea data-ref="templates" spellcheck="false"></textarea></label>
      <label><span class="muted">Review policy: a label and the score that flags a photo for review, one per line ("a weapon 0.3")</span>
        <textarea data-ref="policy" spellcheck="false" placeholder="none"></textarea></label>
    </div>
    <div class="row">
      <button type="button" data-ref="applyLabels">Apply labels</button>
      <button type="button" class="secondary" data-ref="resetLabels">Reset to defaults</button>
    </div>
  </details>
</section>
<section part="search" aria-labelledby="wct-search-h" data-ref="searchBox">
  <h2 id="wct-search-h" class="hidden">Search and export</h2>
  <div class="row">
    <label class="grow"><span class="muted">Search your photos by description</span>
      <input type="search" data-ref="query" placeholder="e.g. a cat on a sofa" spellcheck="false"></label>
    <button type="button" class="secondary" data-ref="clearSearch" disabled>Show all</button>
  </div>
  <div class="row" style="margin-top:8px">
    <span class="muted" data-ref="searchInfo" aria-live="polite"></span>
    <span class="grow"></span>
    <button type="button" class="secondary" data-ref="exportJson">Export JSON</button>
    <button type="button" class="secondary" data-ref="exportCsv">Export CSV</button>
    <button type="button" class="secondary" data-ref="forget">Forget these photos</button>
  </div>
</section>
<ul class="grid" data-ref="grid" aria-label="Photos"></ul>
<div class="row more hidden" data-ref="moreBox">
  <button type="button" class="secondary" data-ref="more">Show more</button>
  <span class="muted" data-ref="moreInfo"></span>
</div>
<p class="empty" data-ref="empty">No photos yet.</p>
`;

// Node has no HTMLElement: there the class is never defined as an element, only the core is used.
const ElementBase = globalThis.HTMLElement ?? class {};

export class WebclipTagger extends ElementBase {
  /** Where the webclip package lives when no `package` attribute says otherwise. */
  static packageUrl = new URL('../pkg/index.js', import.meta.url).href;

  constructor() {
    super();
    this.attachShadow({ mode: 'open' }).innerHTML = TEMPLATE;
    this.$ = {};
    for (const el of this.shadowRoot.querySelectorAll('[data-ref]')) this.$[el.dataset.ref] = el;
    this.store = new Store();
    this.core = null; // TaggerCore, once the package is imported
    this.clipPromise = null; // pending load
    this.modelSpec = null; // { id, label, source }: source is a URL string or a files object
    // The page's side of the core's photos: the saved record of each (thumbnail, name, size,
    // tags) by content hash, and the hashes in the order added. No element is kept per photo:
    // the grid binds its few cards to these as it scrolls.
    this.records = new Map();
    // Review flags worked out for a record (`_reviewOf`), with the policy and vocabulary
    // they were scored under: a new one of either makes them stale.
    this._reviewFresh = new WeakMap(); // record -> { policy, vocab, list }
    this._tagsToSave = new Map();
    this._tagSaveTimer = null;
    this.order = [];
    this.hits = null; // the search result shown: { keys, scores: Map }, or null (every photo)
    this._libGen = 0; // bumped when the library is reloaded: a restore still running stops
    this._restoring = null; // the rest of a restore, after its first page
    this._thumbs = new Map(); // hash -> thumbnail read with the first page, until a card shows it
    // Embeddings read back for the cards shown (`_vectorOf`): the most recent VECTOR_CACHE.
    this._vectors = new Map();
    this._vectorWanted = new Set();
    this._vectorQueue = [];
    this.grid = new VirtualGrid(this.$.grid, {
      create: () => this._newCard(),
      bind: (card, hash, index, inView) => this._bindCard(card, hash, inView),
      release: (card) => this._releaseCard(card),
      measure: (width) => this._cardHeight(width),
      focusSelector: 'button[data-similar]',
    });
    // Jobs run one after another, once the core exists.
    this.queue = new Promise((resolve) => { this._coreReady = resolve; });
    this.jobs = new AbortController(); // aborted by "forget" and model switches: stale jobs stop
    this.query = null; // { kind: 'text', text } | { kind: 'image', hash }
    this.querySeq = 0;
    /** How many photos a search shows at first, and how many more "Show more" adds. */
    this.searchTop = SEARCH_TOP;
    this._shown = SEARCH_TOP; // how many the current search shows
    this.skipped = [];
  }

  connectedCallback() {
    if (this._wired) return;
    this._wired = true;
    this._wire();
    this._start().catch((e) => this._error(`Could not start: ${errMessage(e)}`));
  }

  disconnectedCallback() {
    // The element may be moved in the page; only a real removal frees the model.
    queueMicrotask(() => { if (!this.isConnected) this.dispose(); });
  }

  dispose() {
    this.clip?.dispose?.();
    if (this.core) this.core.clip = null;
    this.clipPromise = null;
    for (const card of this.grid.active.values()) this._releaseCard(card);
  }

  /** The loaded Clip, or null. */
  get clip() { return this.core?.clip ?? null; }
  /** `{ labels, templates, key }` in use. */
  get vocab() { return this.core?.vocab ?? null; }
  /** `{ imagesComputed, imagesCached, textsComputed, labelsCached }` */
  get stats() { return this.core?.stats ?? { imagesComputed: 0, imagesCached: 0, textsComputed: 0, labelsCached: 0 }; }

  get backend() { return this.getAttribute('backend') || 'auto'; }
  get maxPixels() { return Number(this.getAttribute('max-pixels')) || HUGE_PIXELS; }
  get topK() { return Math.max(1, Math.min(20, parseInt(this.getAttribute('top'), 10) || 3)); }
  /** The `threshold` attribute (0 to 1), or null for the family's default. */
  get threshold() {
    const t = parseFloat(this.getAttribute('threshold'));
    return Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : null;
  }

  // -- start-up: storage, vocabulary, model choice, saved photos
  async _start() {
    try {
      const [{ Clip, ClipIndex }] = await Promise.all([
        this._package(),
        this.store.open().catch((e) => this._warn(`Results will not be kept after this page closes: ${errMessage(e)}.`)),
      ]);
      this.core = new TaggerCore({
        Clip,
        ClipIndex, // searches scan int8 rows in WebAssembly (an older package without it: Clip.rank)
        labelStore: {
          get: (keys) => this.store.getMany('labels', keys).then((rows) => rows.map((r) => r?.embedding), () => []),
          put: (rows) => this.store.putAll('labels', rows).catch((e) => this._warn(`Label embeddings not saved: ${errMessage(e)}`)),
        },
        // The photos' exact embeddings stay in storage: the core lets its copy go once the
        // index has the compact row (a record not saved yet still holds its own).
        embeddingStore: { get: (hashes) => this._storedEmbeddings(hashes) },
        onLabelProgress: ({ done, total, labels }) => {
          if (done === total) this._progressDone();
          else this._progress(done, total, done ? `Preparing labels: ${done} of ${total} prompts` : `Preparing ${labels} labels…`);
        },
      });
      await this._initVocab();
      const model = this.getAttribute('model') || DEFAULT_MODEL;
      this.$.url.value = model;
      try {
        this._setModelSpec(this._specFromUrl(model));
      } catch (e) {
        this._error(errMessage(e));
        return;
      }
    } finally {
      this._coreReady();
    }
    await this._restoreLibrary();
    this._showStorage();
    // A failed load has already said why; the page stays usable (another URL, local files).
    if (this.hasAttribute('autoload')) await this._loadModel().catch(() => {});
  }

  async _initVocab() {
    const attrLabels = this.getAttribute('labels');
    const attrTemplates = this.getAttribute('templates');
    let labels = DEFAULT_LABELS;
    let templates = DEFAULT_TEMPLATES;
    const saved = this.hasAttribute('labels') ? null : await this.store.get('settings', 'vocab').catch(() => null);
    if (saved) ({ labels, templates } = saved);
    if (attrLabels !== null) {
      const parsed = parseLabels(attrLabels);
      if (parsed.length) labels = parsed;
      else this._error('The labels attribute is empty: using the default vocabulary instead. Give at least one label, comma separated.');
    }
    if (attrTemplates !== null) {
      try {
        const parsed = parseTemplates(attrTemplates);
        if (parsed.length) templates = parsed;
      } catch (e) {
        this._error(`The templates attribute is not usable (${errMessage(e)}); using the defaults.`);
      }
    }
    await this._setVocab(labels, templates);
    const policy = await this.store.get('settings', 'policy').catch(() => null);
    try {
      this._setPolicy(policy?.rules ?? []);
    } catch {
      this._setPolicy([]); // a damaged setting: no policy rather than no page
    }
  }

  async _setVocab(labels, templates) {
    await this.core.setVocab(labels, templates);
    this.$.labels.value = labels.join('\n');
    this.$.templates.value = templates.join('\n');
    this.$.labelsSummary.textContent = `(${labels.length} labels × ${templates.length} templates)`;
  }

  // -- wiring of controls
  _wire() {
    const $ = this.$;
    $.persist.addEventListener('click', () => this._persistStorage());
    $.urlForm.addEventListener('submit', (e) => {
      e.preventDefault();
      let spec;
      try {
        spec = this._specFromUrl($.url.value.trim());
      } catch (err) {
        this._error(errMessage(err));
        return;
      }
      this._switchModel(spec);
    });
    const clickThrough = (btn, input) => btn.addEventListener('click', () => input.click());
    clickThrough($.pickModelDir, $.modelDir);
    clickThrough($.pickModelFiles, $.modelFiles);
    clickThrough($.pickPhotos, $.photos);
    clickThrough($.pickFolder, $.folder);
    for (const input of [$.modelDir, $.modelFiles]) {
      input.addEventListener('change', () => {
        const files = [...input.files];
        input.value = '';
        if (files.length) this._modelFromFiles(files);
      });
    }
    for (const input of [$.photos, $.folder]) {
      input.addEventListener('change', () => {
        const files = filesFromInput(input);
        input.value = '';
        this.addFiles(files);
      });
    }
    const drop = $.drop;
    drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      const pending = filesFromDrop(e.dataTransfer);
      pending.then((files) => this.addFiles(files), (err) => this._error(`Could not read the dropped files: ${errMessage(err)}`));
    });
    let timer = 0;
    $.query.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.search($.query.value), SEARCH_DEBOUNCE_MS);
    });
    $.query.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { clearTimeout(timer); this.search($.query.value); }
    });
    $.clearSearch.addEventListener('click', () => { $.query.value = ''; this.search(''); });
    $.more.addEventListener('click', () => this.showMore());
    $.applyLabels.addEventListener('click', () => this._applyLabels($.labels.value, $.templates.value, $.policy.value));
    $.resetLabels.addEventListener('click', () => this._applyLabels(DEFAULT_LABELS.join('\n'), DEFAULT_TEMPLATES.join('\n')));
    // An export holds every photo's tags and review flags: the label and policy embeddings
    // they are worked out from are made ready first (they are, unless the library was just
    // read back).
    const exported = (name, type, make) => this._scoringReady().then(
      () => make().then((text) => this._download(name, type, text)),
      (e) => this._error(`The export needs the label embeddings, which could not be made: ${errMessage(e)}`));
    $.exportJson.addEventListener('click', () => exported('webclip-tags.json', 'application/json', () => this.exportJson()));
    $.exportCsv.addEventListener('click', () => exported('webclip-tags.csv', 'text/csv', () => this.exportCsv()));
    $.forget.addEventListener('click', () => this._forget());
    $.pauseJob.addEventListener('click', () => (this._pauseGate ? this.resumeIndexing() : this.pauseIndexing()));
    $.cancelJob.addEventListener('click', () => this.cancelIndexing());
    $.forgetJob.addEventListener('click', () => this._forgetCutShortJob());
    $.grid.addEventListener('click', (e) => {
      const btn = e.target.closest('button[data-similar]');
      if (btn) this.moreLikeThis(btn.dataset.similar);
    });
  }

  // -- messages
  _message(kind, text) {
    const li = document.createElement('li');
    li.className = `msg-${kind}`;
    const span = document.createElement('span');
    span.textContent = text;
    const close = document.createElement('button');
    close.type = 'button';
    close.textContent = '×';
    close.setAttribute('aria-label', 'Dismiss message');
    close.addEventListener('click', () => li.remove());
    li.append(span, close);
    this.$.messages.append(li);
    while (this.$.messages.children.length > 8) this.$.messages.firstElementChild.remove();
    if (kind === 'error') this.dispatchEvent(new CustomEvent('webclip-error', { detail: { message: text } }));
  }
  _error(t) { this._message('error', t); }
  _warn(t) { this._message('warn', t); }
  _info(t) { this._message('info', t); }

  // -- model
  _specFromUrl(value) {
    let url;
    try {
      url = new URL(value, document.baseURI);
    } catch {
      throw new Error(`"${value}" is not a URL. Give the address of a model folder, e.g. ${DEFAULT_MODEL}`);
    }
    if (!/^https?:$/.test(url.protocol)) throw new Error(`The model URL must start with http:// or https://, not ${url.protocol}`);
    if (!url.pathname.endsWith('/')) url.pathname += '/';
    const hub = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\//);
    const label = url.hostname === 'huggingface.co' && hub ? hub[1] : url.href;
    return { id: url.href, label, source: url.href, host: url.host };
  }

  async _modelFromFiles(files) {
    // A folder pick gives every file in it; plain picks give what was chosen. Match by name.
    const byName = new Map(files.map((f) => [f.name, f]));
    const weights = byName.get('model.safetensors')
      || files.find((f) => /\.safetensors$/i.test(f.name) && !/golden/i.test(f.name));
    const missing = [];
    if (!byName.has('config.json')) missing.push('config.json');
    if (!weights) missing.push('model.safetensors');
    // CLIP and SigLIP 2 ship tokenizer.json; SigLIP spiece.model.
    if (!byName.has('tokenizer.json') && !byName.has('spiece.model')) missing.push('tokenizer.json (or spiece.model)');
    if (missing.length) {
      const folder = files[0]?.webkitRelativePath?.split('/')[0];
      this._error(`The model ${folder ? `folder "${folder}"` : 'files'} lack${missing.length > 1 || !folder ? '' : 's'} ${missing.join(', ')}. ` +
        'A CLIP or SigLIP model needs config.json, model.safetensors and tokenizer.json or spiece.model ' +
        '(tokenizer_config.json and preprocessor_config.json are optional), as in a Hugging Face repository.');
      return;
    }
    const config = byName.get('config.json');
    const folder = files[0].webkitRelativePath?.split('/')[0] || 'local files';
    let id;
    try {
      // Identify a local model without reading its weights: config content + weights name and size.
      id = `local:${(await sha256(config)).slice(0, 16)}:${weights.name}:${weights.size}`;
    } catch (e) {
      this._error(`Could not read the model files: ${errMessage(e)}`);
      return;
    }
    const source = { config, weights };
    const optional = { tokenizer: 'tokenizer.json', spiece: 'spiece.model', tokenizerConfig: 'tokenizer_config.json', preprocessor: 'preprocessor_config.json' };
    for (const [k, file] of Object.entries(optional)) if (byName.has(file)) source[k] = byName.get(file);
    this.$.url.value = ''; // the URL field no longer names the model in use
    this._switchModel({ id, label: `${folder} (${weights.name}, on this device)`, source, host: null });
  }

  _setModelSpec(spec) {
    this.modelSpec = spec;
    this.core.setModel(spec.id, () => this._loadModel());
    this.$.modelName.textContent = `${spec.label} (not loaded yet)`;
    this.$.modelHost.textContent = spec.host ? ` (from ${spec.host})` : ' (none: the model is on this device)';
  }

  async _switchModel(spec) {
    if (this.modelSpec && spec.id === this.modelSpec.id && (this.clip || this.clipPromise)) {
      await this._loadModel().catch(() => {}); // failures are reported by _loadModel
      return;
    }
    this._cancelJobs();
    this.clip?.dispose?.();
    this.clipPromise = null;
    this._setModelSpec(spec); // the core forgets the old model, its labels and photos
    await this._restoreLibrary();
    await this._loadModel().catch(() => {});
  }

  /** The loaded model, loading it on first use. Throws with a message already shown. */
  _loadModel() {
    if (this.clip) return Promise.resolve(this.clip);
    if (this.clipPromise) return this.clipPromise;
    const spec = this.modelSpec;
    const $ = this.$;
    $.loadBtn.disabled = true;
    $.modelProgressBox.classList.remove('hidden');
    $.modelProgress.removeAttribute('value');
    $.modelProgressText.textContent = 'Starting…';
    $.modelName.textContent = `${spec.label} (loading…)`;
    const onProgress = (p) => {
      if (this.modelSpec !== spec) return;
      const { phase = 'model', loaded, total, file } = p || {};
      const what = `Loading ${file || phase}`;
      if (total > 0 && Number.isFinite(loaded)) {
        $.modelProgress.value = Math.min(1, loaded / total);
        $.modelProgressText.textContent = `${what}: ${fmtBytes(loaded)} of ${fmtBytes(total)} (${Math.floor(100 * loaded / total)} %)`;
      } else {
        $.modelProgress.removeAttribute('value');
        $.modelProgressText.textContent = `${what}${Number.isFinite(loaded) && loaded ? `: ${fmtBytes(loaded)}` : '…'}`;
      }
      const detail = { phase, file, loaded, total, text: $.modelProgressText.textContent };
      this.dispatchEvent(new CustomEvent('webclip-progress', { bubbles: true, detail }));
    };
    const t0 = performance.now();
    const promise = (async () => {
      const { Clip } = await this._package();
      return Clip.load({ model: spec.source, backend: this.backend, towers: 'both', worker: true, cache: true, onProgress });
    })();
    this.clipPromise = promise.then(
      (clip) => {
        if (this.modelSpec !== spec) { clip.dispose?.(); throw new Error('the model was switched while loading'); }
        this.core.clip = clip;
        $.loadBtn.disabled = false;
        $.modelProgressBox.classList.add('hidden');
        $.modelName.textContent = spec.label;
        const info = clip.backendInfo || {};
        const kind = clip.backend || info.kind;
        $.backend.textContent = kind === 'webgpu' ? `WebGPU${info.adapter ? ` (${info.adapter})` : ''}` : 'CPU (WebAssembly)';
        if (kind !== 'webgpu' && this.backend !== 'cpu') {
          // The first line of the reason says enough (a shader log can follow it).
          const reason = String(info.reason || '').split('\n')[0].slice(0, 240);
          const why = reason ? ` (${reason})` : '';
          this._warn(`This browser offers no usable WebGPU${why}, so the model runs on the CPU: it works the same, only slower.`);
        }
        this._info(`Model ${spec.label} ready in ${((performance.now() - t0) / 1000).toFixed(1)} s on ${kind === 'webgpu' ? 'WebGPU' : 'the CPU'}.`);
        this.dispatchEvent(new CustomEvent('webclip-ready', { detail: { backend: kind, backendInfo: info } }));
        return clip;
      },
      (e) => {
        if (this.modelSpec === spec) {
          this.clipPromise = null;
          $.loadBtn.disabled = false;
          $.modelProgressBox.classList.add('hidden');
          $.modelName.textContent = `${spec.label} (failed to load)`;
          const where = typeof spec.source === 'string' ? `from ${spec.source}` : 'from the chosen files';
          const hint = typeof spec.source === 'string'
            ? ' The address must be a folder holding config.json, model.safetensors and tokenizer.json (or spiece.model)' +
              ' (on the Hugging Face hub: https://huggingface.co/ORG/NAME/resolve/main/),' +
              ' and the server must allow cross-origin requests.'
            : '';
          this._error(`Could not load the model ${where}: ${errMessage(e)}.${hint}`);
        }
        throw e;
      },
    );
    return this.clipPromise;
  }

  async _package() {
    const url = this.getAttribute('package') || WebclipTagger.packageUrl;
    try {
      return await import(url);
    } catch (e) {
      throw new Error(`the webclip package could not be loaded from ${url} (${errMessage(e)})`);
    }
  }

  async _applyLabels(labelText, templateText, policyText = null) {
    if (!this.core) return; // it did not start, and said why
    let policy = this.core.policy;
    if (policyText !== null) {
      try {
        policy = parsePolicy(policyText);
      } catch (e) {
        this._error(`The review policy is not usable: ${errMessage(e)}. The previous labels and policy stay in use.`);
        return;
      }
    }
    const labels = parseLabels(labelText);
    if (!labels.length) {
      this._error('The label list is empty: give at least one label, one per line. The previous labels stay in use.');
      return;
    }
    let templates;
    try {
      templates = parseTemplates(templateText);
    } catch (e) {
      this._error(`The prompt templates are not usable: ${errMessage(e)}. The previous templates stay in use.`);
      return;
    }
    if (!templates.length) {
      this._error('The template list is empty: give at least one, such as "a photo of a {}." The previous templates stay in use.');
      return;
    }
    await this._setVocab(labels, templates);
    this._setPolicy(policy);
    this.store.put('settings', { key: 'vocab', labels, templates }).catch(() => {});
    this.store.put('settings', { key: 'policy', rules: policy }).catch(() => {});
    this._enqueue(() => this._retagAll());
  }

  _setPolicy(rules) {
    this.core.setPolicy(rules);
    this.$.policy.value = rules.map((r) => `${r.label} ${r.threshold}`).join('\n');
  }

  /**
   * The exact embeddings of photos `hashes` (null where unknown): the core's copy or the
   * record's own until they are indexed and saved, else read from storage in one transaction.
   */
  async _storedEmbeddings(hashes) {
    const out = hashes.map((h) => this.core.get(h)?.embedding ?? this.records.get(h)?.embedding ?? null);
    const read = hashes.flatMap((h, i) => (!out[i] && this.records.has(h) ? [i] : []));
    if (read.length) {
      const rows = await this.store.getMany('images', read.map((i) => this.records.get(hashes[i]).key)).catch(() => []);
      read.forEach((i, j) => { out[i] = rows[j]?.embedding ?? null; });
    }
    return out;
  }

  /**
   * Photo `r`'s embedding for its card when it is at hand (in memory, or read back lately);
   * else null, and it is read from storage with the other cards' of this task, then the card
   * is bound again.
   */
  _vectorOf(r) {
    const at = this.core.get(r.hash)?.embedding ?? r.embedding ?? this._vectors.get(r.hash);
    if (at) return at;
    if (this._vectorWanted.has(r.hash)) return null; // being read (or not in storage)
    this._vectorWanted.add(r.hash);
    this._vectorQueue.push(r.hash);
    if (this._vectorQueue.length === 1) {
      queueMicrotask(async () => {
        const hashes = this._vectorQueue.splice(0);
        const gen = this._libGen;
        const got = await this._storedEmbeddings(hashes);
        if (gen !== this._libGen) return;
        hashes.forEach((h, i) => {
          if (!got[i]) return; // not in storage: its stored tags are shown
          this._vectorWanted.delete(h);
          this._vectors.set(h, got[i]);
          // The most recently read ones stay (Map order is insertion order).
          if (this._vectors.size > VECTOR_CACHE) this._vectors.delete(this._vectors.keys().next().value);
          this.grid.refresh(h);
        });
      });
    }
    return null;
  }

  /**
   * The policy labels that flag this photo for review (`TaggerCore.review`), worked out from
   * its embedding when its card is shown or the library exported, and kept until the
   * vocabulary or the policy changes; [] until the policy's embeddings are ready.
   */
  _reviewOf(r, embedding = this._vectorOf(r)) {
    const { policy, vocab } = this.core;
    if (!policy.length) return [];
    const seen = this._reviewFresh.get(r);
    if (seen?.policy === policy && seen.vocab === vocab) return seen.list;
    if (!embedding || !this.core.policyReady()) return [];
    const list = this.core.review(embedding);
    this._reviewFresh.set(r, { policy, vocab, list });
    return list;
  }

  /**
   * Retags lazily: once the label and policy embeddings are ready, the cards are shown again,
   * and a photo whose tags are of another vocabulary gets new ones then (`_tagsOf`, saved
   * then; an export works out the rest). Nothing is rewritten up front, so a new vocabulary
   * costs the same at 100 photos or 100,000.
   */
  async _retagAll() {
    if (!this.core.size) return;
    const { signal } = this.jobs;
    this.core.top = this.topK;
    this.core.threshold = this.threshold;
    const vocab = this.vocab;
    await this._scoringReady();
    if (signal.aborted || vocab !== this.vocab) return; // another vocabulary: its own retag follows
    this.grid.refreshAll();
    this._info(`Retagged ${this.core.size} photos with ${vocab.labels.length} labels (each photo's tags are worked out as it is shown, so no record is rewritten).`);
  }

  /**
   * Saved photos tagged with another vocabulary: their cards work the tags out (`_tagsOf`)
   * once the label embeddings are ready.
   */
  async _tagStale() {
    const vocab = this.vocab;
    await this._scoringReady();
    if (vocab === this.vocab) this.grid.refreshAll();
  }

  /** The label and policy embeddings of the vocabulary and policy in use, at hand. */
  async _scoringReady() {
    if (this.core.size) await this.core.policyEmbeddings(); // the vocabulary's labels too
  }

  /**
   * A record's tags under the current vocabulary: its stored ones when they are of this
   * vocabulary, else worked out from its embedding (when the label embeddings are ready)
   * and, with `save`, written back soon.
   */
  _tagsOf(r, { save = true, embedding = undefined } = {}) {
    // The vocabulary's key names its labels and templates, and `top` and `threshold` are
    // fixed for the page: tags of the vocabulary in use are current.
    if (r.vocabKey === this.vocab?.key) return r.tags || [];
    if (!this.core.labelsReady()) return r.tags || [];
    if (embedding === undefined) embedding = this._vectorOf(r);
    if (!embedding) return r.tags || [];
    const tags = this.core.tagsFor(embedding);
    // Without `save` (an export) the record keeps its old tags, so that its card still
    // writes the new ones when it shows.
    if (!save) return tags;
    r.tags = tags;
    r.vocabKey = this.vocab.key;
    this._saveTagsSoon(r);
    return tags;
  }

  /** Tags worked out for shown cards go to storage in one write a moment later. */
  _saveTagsSoon(r) {
    this._tagsToSave.set(r.key, { key: r.key, tags: r.tags, vocabKey: r.vocabKey });
    if (this._tagSaveTimer) return;
    this._tagSaveTimer = setTimeout(() => {
      this._tagSaveTimer = null;
      const patches = [...this._tagsToSave.values()];
      this._tagsToSave.clear();
      this.store.patchAll('images', patches).catch((e) => this._warn(`Tags not saved: ${errMessage(e)}`));
    }, 300);
  }

  // -- library (saved photos of the current model)
  /**
   * Shows the photos saved with the current model: the first page at once (so a library of
   * any size opens in well under a second), the rest in batches that leave the page
   * responsive between them. Resolves after the first page; `_restoring` after the rest
   * (jobs wait for it).
   */
  async _restoreLibrary() {
    const gen = ++this._libGen;
    this.records.clear();
    this._thumbs.clear();
    this._vectors.clear();
    this._vectorWanted.clear();
    this.order = [];
    this.core.clear();
    this.hits = null;
    this.query = null;
    this.grid.setKeys(this.order);
    this._updateEmpty();
    const spec = this.modelSpec;
    let migrating = Promise.resolve();
    let page = RESTORE_FIRST;
    let after = null;
    let stale = 0;
    // One page: true when it was the last, null when more follow, false when stopped.
    const more = async () => {
      let records;
      try {
        ({ records, after } = await this.store.imagesPage(spec.id, after, page));
      } catch (e) {
        this._warn(`Saved photos could not be read: ${errMessage(e)}`);
        return false;
      }
      if (gen !== this._libGen) return false;
      const old = records.filter((r) => r.thumb);
      if (old.length) migrating = migrating.then(() => this.store.migrate(old)).catch(() => {});
      for (const r of records) {
        if (this.records.has(r.hash)) continue;
        this._addItem(r);
        // Old layout, first screenful: the thumbnail is at hand, used once, not read again.
        if (page === RESTORE_FIRST && r.thumb) this._thumbs.set(r.hash, r.thumb);
        if (r.vocabKey !== this.vocab.key) stale++;
      }
      if (!this.hits) this.grid.changed();
      this._updateEmpty();
      if (!after) return true;
      // No total: counting 100,000 photos keeps IndexedDB busy for over a second, and the
      // thumbnails of the first screenful would wait behind it.
      this._progress(null, null, `Loading saved photos: ${this.order.length} so far…`);
      if (this.query) this._searchSoon();
      page = RESTORE_BATCH;
      return null; // more to come
    };
    const first = await more();
    const finish = (ok) => {
      if (gen !== this._libGen) return;
      this._progressDone();
      const n = this.order.length;
      if (ok && n) this._info(`Restored ${n} photos indexed earlier with this model (nothing recomputed).`);
      this._showCutShortJob();
      if (this.query) this._search();
      // Tags of another vocabulary, or a review policy: scored as the cards are shown, once
      // the label embeddings are at hand.
      if (stale || this.core.policy.length) this._enqueue(() => this._tagStale());
    };
    // Jobs (indexing, retagging) wait for the rest and for the records being moved to the new
    // layout, which would otherwise overwrite what a job writes.
    const rest = (async () => {
      let ok = first;
      while (ok === null) ok = await more();
      finish(ok);
      await migrating;
    })();
    this._restoring = rest;
    rest.finally(() => { if (this._restoring === rest) this._restoring = null; });
  }

  /** A saved photo: into the core (embedding, tags) and the library (the grid shows it). */
  _addItem(record) {
    this.core.add(record.hash, record.embedding, { tags: record.tags, vocabKey: record.vocabKey });
    if (!this.records.has(record.hash)) this.order.push(record.hash);
    this.records.set(record.hash, pageRecord(record));
  }

  /** An unbound card: the grid binds it to a photo, and again to another as the page scrolls. */
  _newCard() {
    const card = document.createElement('li');
    card.className = 'card';
    const img = document.createElement('img');
    img.decoding = 'async';
    const body = document.createElement('div');
    body.className = 'body';
    const name = document.createElement('div');
    name.className = 'name';
    const sim = document.createElement('div');
    sim.className = 'sim';
    const tags = document.createElement('ul');
    tags.className = 'tags';
    tags.setAttribute('aria-label', 'Tags');
    const note = document.createElement('div');
    note.className = 'note';
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'secondary';
    btn.textContent = 'More like this';
    body.append(name, sim, tags, note, btn);
    card.append(img, body);
    card._parts = { img, name, sim, tags, note, btn };
    return card;
  }

  /**
   * Shows photo `hash` in `card`. Its thumbnail's object URL (about 0.4 ms each for a blob
   * read from IndexedDB, a call into the browser process) is made at once for a card in the
   * viewport, after the next frame for one in the overscan, so that a search or a jump through
   * the library paints its visible cards first.
   */
  _bindCard(card, hash, inView = true) {
    const r = this.records.get(hash);
    const { img, name, sim, tags, note, btn } = card._parts;
    if (card._hash !== hash) {
      card._hash = hash;
      card.dataset.hash = hash;
      card.dataset.name = r.name;
      if (card._url) URL.revokeObjectURL(card._url);
      card._url = null;
      img.removeAttribute('src');
      if (inView) this._showThumb(card);
      else this._thumbSoon(card);
      img.alt = r.name;
      name.textContent = r.name;
      note.textContent = r.note || '';
      note.title = r.note || '';
      note.classList.toggle('hidden', !r.note);
      btn.dataset.similar = hash;
      btn.setAttribute('aria-label', `More photos like ${r.name}`);
    }
    const also = r.copies?.length ? ` · also at ${r.copies.join(', ')}` : '';
    name.title = `${r.path} · ${r.width}×${r.height} · ${fmtBytes(r.size)}${also}`;
    const score = this.hits?.scores.get(hash);
    card.classList.toggle('hit', score !== undefined);
    const review = this._reviewOf(r);
    card.classList.toggle('flag', review.length > 0);
    const flag = review.length ? `review: ${review.map((f) => `${f.label} ${Math.round(f.score * 100)}%`).join(', ')}` : '';
    sim.textContent = [score !== undefined ? `similarity ${score.toFixed(3)}` : '', flag].filter(Boolean).join(' · ');
    sim.title = flag ? `Flagged for review by the policy (${review.map((f) => `${f.label}: ${f.score.toFixed(3)} ≥ ${f.threshold}`).join('; ')})` : '';
    const list = this._tagsOf(r);
    if (card._tags !== list) {
      card._tags = list;
      tags.replaceChildren(...list.map(({ label, score: p }) => {
        const li = document.createElement('li');
        li.dataset.label = label;
        li.append(label);
        const b = document.createElement('b');
        b.textContent = p < 0.005 ? '<1%' : `${Math.round(p * 100)}%`;
        li.append(b);
        li.title = `${label} ${b.textContent}`; // a long label is cut in the card
        return li;
      }));
    }
  }

  _showThumb(card) {
    if (card._url || !card._hash) return;
    const r = this.records.get(card._hash);
    const inline = this._thumbs.get(card._hash);
    if (inline) this._thumbs.delete(card._hash);
    if (inline || r.thumb) {
      card._url = URL.createObjectURL(inline || r.thumb);
      card._parts.img.src = card._url;
      return;
    }
    // From storage: the cards bound in this task are read in one transaction.
    (this._fetchQueue ??= []).push([card, card._hash, r.key]);
    if (this._fetchQueue.length > 1) return;
    queueMicrotask(async () => {
      const batch = this._fetchQueue;
      this._fetchQueue = [];
      const got = await this.store.thumbsOf(batch.map(([, , key]) => key)).catch(() => []);
      batch.forEach(([c, hash], i) => {
        const thumb = got[i];
        if (c._hash !== hash || c._url || !thumb) return; // bound to another photo meanwhile
        c._url = URL.createObjectURL(thumb);
        c._parts.img.src = c._url;
      });
    });
  }

  _thumbSoon(card) {
    (this._thumbQueue ??= new Set()).add(card);
    if (this._thumbTimer) return;
    // After the next frame: the cards in view are painted first.
    this._thumbTimer = requestAnimationFrame(() => setTimeout(() => {
      this._thumbTimer = null;
      const cards = [...this._thumbQueue];
      this._thumbQueue.clear();
      for (const c of cards) this._showThumb(c); // a card released meanwhile has no _hash
    }, 0));
  }

  _releaseCard(card) {
    if (card._url) URL.revokeObjectURL(card._url);
    card._url = null;
    card._hash = null;
    card._parts.img.removeAttribute('src');
  }

  /** The height of a card `width` wide: a hidden probe with every part, tags on two rows. */
  _cardHeight(width) {
    const probe = this._newCard();
    probe.classList.add('probe');
    probe.style.width = `${width}px`;
    const p = probe._parts;
    p.name.textContent = 'x';
    p.sim.textContent = 'similarity 0.000';
    p.note.textContent = 'x';
    this.$.grid.append(probe);
    const h = probe.getBoundingClientRect().height;
    probe.remove();
    return h;
  }

  _updateEmpty() {
    const n = this.records.size;
    this.$.empty.classList.toggle('hidden', n > 0);
    this.$.counts.textContent = `${this.stats.imagesComputed} computed, ${this.stats.imagesCached} from cache`;
  }

  async _forget() {
    const n = this.records.size;
    this._cancelJobs();
    await JobLog.forget(this.store, this.modelSpec.id).catch(() => {});
    await this.store.deleteImagesOf(this.modelSpec.id).catch((e) => this._error(`Could not delete saved photos: ${errMessage(e)}`));
    await this._restoreLibrary();
    this._search();
    this._info(`Forgot ${n} photos: their thumbnails, embeddings and tags are deleted from this browser.`);
  }

  // -- indexing
  _cancelJobs() {
    this.jobs.abort();
    this.jobs = new AbortController();
    this.resumeIndexing(); // a paused job wakes to see it is cancelled
  }

  _enqueue(job) {
    const guarded = async () => {
      if (!this.core) throw new Error('the tagger could not start (see the message above)');
      // A job sees the whole saved library (it may find a photo there).
      while (this._restoring) await this._restoring;
      return job();
    };
    const run = this.queue.then(guarded).catch((e) => this._error(errMessage(e)));
    this.queue = run;
    return run;
  }

  /** The progress bar: `done` of `total`, or moving without a value when `total` is null. */
  _progress(done, total, text) {
    this.$.indexBox.classList.remove('hidden');
    if (total == null) this.$.indexProgress.removeAttribute('value');
    else this.$.indexProgress.value = total ? done / total : 0;
    this.$.indexText.textContent = text;
  }

  _progressDone() { this.$.indexBox.classList.add('hidden'); }

  _skip(path, reason) {
    this.skipped.push({ path, reason });
    const li = document.createElement('li');
    li.textContent = `${path}: ${reason}`;
    this.$.skipped.append(li);
    if (this.$.skippedBox.classList.contains('hidden')) {
      this.$.skippedBox.classList.remove('hidden');
      this.$.skippedBox.open = true;
    }
    this.$.skippedSummary.textContent = `Skipped files (${this.skipped.length})`;
  }

  /** Adds photos ({file, path} or File); resolves when they are indexed. */
  addFiles(list) {
    const files = [...list].map((f) => (f instanceof Blob ? { file: f, path: f.name } : f));
    if (!files.length) return Promise.resolve();
    return this._enqueue(() => this._index(files));
  }

  async _index(files) {
    try {
      await this._withIndexLock(() => this._indexFiles(files));
    } finally {
      this._progressDone();
      this._updateEmpty();
      this._showStorage();
    }
  }

  /** The Web Lock that one tab at a time holds while it indexes photos of this model. */
  _indexLockName() { return `webclip-tagger index ${this.modelSpec.id}`; }

  /**
   * Runs `job` holding the index lock: a second tab indexing the same library waits for the
   * first (saying so; Cancel stops the wait), so the two never interleave their job records
   * and the second finds what the first saved. Without Web Locks the job just runs.
   */
  async _withIndexLock(job) {
    const locks = globalThis.navigator?.locks;
    if (!locks?.request) return job();
    const name = this._indexLockName();
    let ran = false;
    let result;
    await locks.request(name, { ifAvailable: true }, async (lock) => {
      if (!lock) return;
      ran = true;
      result = await job();
    });
    if (ran) return result;
    const { signal } = this.jobs;
    this._info('Another tab is indexing photos into this library: these start when it is done.');
    this._progress(null, null, 'waiting for the other tab…');
    this.$.cancelJob.classList.remove('hidden');
    try {
      return await locks.request(name, { signal }, () => {
        this.$.cancelJob.classList.add('hidden');
        return job();
      });
    } catch (e) {
      if (signal.aborted) {
        if (this._cancelled === signal) this._info('Cancelled before it started: nothing was indexed.');
        return undefined;
      }
      throw e;
    } finally {
      this.$.cancelJob.classList.add('hidden');
    }
  }

  // -- storage: what the library takes, and whether the browser may clear it
  async _showStorage() {
    const storage = globalThis.navigator?.storage;
    if (!storage?.estimate) {
      this.$.storage.textContent = 'not reported by this browser';
      return;
    }
    try {
      const [{ usage, quota }, kept] = await Promise.all([storage.estimate(), storage.persisted?.() ?? false]);
      this.$.storage.textContent = `${fmtBytes(usage)} used of ${fmtBytes(quota)} available · ${
        kept ? 'kept until you clear it' : 'the browser may clear it when space runs low'}`;
      this.$.persist.classList.toggle('hidden', kept || !storage.persist);
    } catch (e) {
      this.$.storage.textContent = `not reported (${errMessage(e)})`;
    }
  }

  async _persistStorage() {
    let kept = false;
    try {
      kept = await navigator.storage.persist();
    } catch (e) {
      this._warn(`Could not ask to keep the library: ${errMessage(e)}`);
    }
    if (!kept) {
      this._info('The browser did not agree to keep this library for good (it decides by how much the site is used; bookmarking or installing it helps). Photos stay saved unless the browser runs short of space.');
    }
    await this._showStorage();
  }

  async _indexFiles(files) {
    const { signal } = this.jobs;
    const spec = this.modelSpec;
    this.core.top = this.topK;
    this.core.threshold = this.threshold;
    const total = files.length;
    let done = 0;
    let skipped = 0;
    let cached = 0;
    let unchanged = 0;
    const copies = []; // [hash, path]: files whose content is a photo already here
    // This job replaces one cut short earlier: its files are among these, or were dropped.
    this.$.jobBox.classList.add('hidden');
    const job = new JobLog(this.store, spec.id, files);
    await job.start();
    // While paused, the batch already being embedded still reports: the line says paused.
    const step = (what) => this._progress(done, total, `${done} of ${total} files · ${this._pauseGate ? 'paused' : what}`);
    const tally = {
      step,
      skip: (path, reason) => { this._skip(path, reason); job.fail(path, reason); skipped++; done++; },
      cached: () => { this.core.stats.imagesCached++; cached++; done++; },
      unchanged: () => { this.core.stats.imagesCached++; unchanged++; done++; },
      copy: (hash, path) => copies.push([hash, path]),
      duplicate: (hash, path) => { copies.push([hash, path]); done++; },
    };
    // Photos embedded but refused by storage (`{ record, index }`): saved again on Resume.
    const unsaved = [];
    tally.resumed = async () => {
      if (!unsaved.length) return true;
      const batch = unsaved.splice(0);
      try {
        await this.store.putPhotos(batch.map((u) => u.record));
      } catch (e) {
        unsaved.unshift(...batch);
        this.pauseIndexing();
        this._warn(`Still not saved (${errMessage(e)}): indexing stays paused. Free some space, then press Resume.`);
        return false;
      }
      this._saved(batch, job);
      return true;
    };
    this.$.pauseJob.classList.remove('hidden');
    this.$.cancelJob.classList.remove('hidden');
    let result;
    try {
      result = await this.core.index(this._newPhotos(files, signal, tally, job), {
        signal,
        onBatch: (batch) => step(`embedding ${batch.length} photo${batch.length > 1 ? 's' : ''}…`),
        onFailed: (p, err) => {
          tally.skip(p.path, `the model could not read it (${errMessage(err)})`);
          job.settle(p.index);
        },
        onAdded: async (added, { msPerImage }) => {
          if (msPerImage != null) this._timing(msPerImage);
          const records = added.map(({ photo: p, entry, embedding }, i) => ({
            key: `${spec.id}\n${p.key}`, model: spec.id, hash: p.key, name: p.file.name, path: p.path,
            size: p.file.size, mtime: p.file.lastModified, type: p.file.type, width: p.decoded.width,
            height: p.decoded.height, thumb: p.decoded.thumb, note: p.decoded.note, embedding,
            tags: entry.tags, vocabKey: entry.vocabKey, added: Date.now() + i / 1000,
          }));
          done += records.length;
          for (const record of records) {
            if (!this.records.has(record.hash)) this.order.push(record.hash);
            this.records.set(record.hash, record);
          }
          if (!this.hits) this.grid.changed();
          const saved = await this.store.putPhotos(records).then(() => true, (e) => {
            // Full or failing storage: pause rather than go on with results that would be lost.
            unsaved.push(...added.map(({ photo }, i) => ({ record: records[i], index: photo.index })));
            this.pauseIndexing();
            this._warn(`The browser refused to save the results (${errMessage(e)}): indexing is paused, with ` +
              `${unsaved.length} photo${unsaved.length === 1 ? '' : 's'} kept in this page until saved. ` +
              'Free some disk space (or forget photos), then press Resume.');
            return false;
          });
          if (saved) this._saved(records.map((record, i) => ({ record, index: added[i].photo.index })), job);
          this._updateEmpty();
          if (this.query) this._searchSoon();
        },
      });
    } catch (e) {
      if (!(e instanceof ModelUnavailableError)) throw e;
      // The model's own message is already shown; say what it means for these photos.
      const n = total - done;
      await job.end();
      throw new Error(`${n} photo${n === 1 ? ' was' : 's were'} not indexed because the model is not loaded ` +
        `(${errMessage(e.cause)}). Load a model, then add them again.`);
    } finally {
      this._pauseGate?.resolve();
      this._pauseGate = null;
      this.$.pauseJob.textContent = 'Pause';
      this.$.pauseJob.classList.add('hidden');
      this.$.cancelJob.classList.add('hidden');
    }
    const copied = await this._addCopies(spec, copies);
    // Done or cancelled, the job is over: only a closed tab, or results storage refused to the
    // end, leave its record behind (those files are then left to do on the next visit).
    if (unsaved.length) {
      this._warn(`${unsaved.length} photo${unsaved.length === 1 ? ' is' : 's are'} indexed but not saved: ` +
        'they stay until the page closes. Free some space and add them again.');
    } else {
      await job.end();
    }
    if (signal.aborted) {
      if (this._cancelled === signal) {
        this._info(`Indexing cancelled: ${done} of ${total} files done. Add the rest again to go on; the files done are not read again.`);
      }
      return;
    }
    if (this.query) this._search();
    const { computed } = result;
    const parts = [`${computed} photo${computed === 1 ? '' : 's'} indexed`];
    if (unchanged) parts.push(`${unchanged} unchanged since indexed (not read again)`);
    if (cached) parts.push(`${cached} already known (from cache)`);
    if (copied.length) {
      const some = copied.slice(0, 3).map(([path, of]) => `${path} is ${of}`).join('; ');
      parts.push(`${copied.length} cop${copied.length === 1 ? 'y' : 'ies'} of photos here, kept with them: ${some}${copied.length > 3 ? '; …' : ''}`);
    }
    if (skipped) {
      const some = this.skipped.slice(-skipped).slice(0, 3).map((s) => `${s.path} (${s.reason})`);
      parts.push(`${skipped} skipped: ${some.join('; ')}${skipped > 3 ? '; … see the list' : ''}`);
    }
    this._message(skipped ? 'warn' : 'info', `${parts.join(', ')}.`);
    this.dispatchEvent(new CustomEvent('webclip-indexed', { detail: { count: total, computed, cached, unchanged, skipped, copies: copied.length } }));
  }

  /** `saved` (`{ record, index }`) are in storage: the job counts them, the page lets go of their thumbnails and embeddings. */
  _saved(saved, job) {
    // The thumbnails and embeddings are read back from storage when needed.
    for (const { record: r } of saved) if (this.records.get(r.hash) === r) this.records.set(r.hash, pageRecord(r));
    for (const { index } of saved) job.settle(index);
    job.save();
  }

  /**
   * The photos among `files` that need embedding, read, hashed and decoded one at a time as
   * the core asks for them; the others are skipped, or known: unchanged at their path since
   * they were indexed (same size and modification time: not read at all), or by content (in
   * the core or in storage). `job` follows which files are settled; a pause waits here.
   */
  async *_newPhotos(files, signal, tally, job) {
    const spec = this.modelSpec;
    const seen = new Map(); // hash -> the path it is known by
    // A known photo met at another path is a copy: its path is kept with the photo.
    const known = (hash, record, path) => {
      seen.set(hash, record.path);
      if (record.path !== path && !record.copies?.includes(path)) tally.copy(hash, path);
      tally.cached();
    };
    // Built once a job: the photos indexed with their file's modification time, by path.
    const byPath = new Map();
    for (const r of this.records.values()) if (r.mtime != null) byPath.set(r.path, r);
    const decoding = new Set(); // hashes a prepared file is being decoded for

    // What one file turns out to be. The file is read once: hashed, decoded for its thumbnail
    // and handed to the model from these bytes.
    const prepare = async ({ file, path }) => {
      const same = byPath.get(path);
      if (same && same.size === file.size && same.mtime === file.lastModified && this.core.has(same.hash)) {
        return { unchanged: same };
      }
      const reason = rejectReason(file);
      if (reason) return { skip: reason };
      let bytes;
      let hash;
      try {
        bytes = new Uint8Array(await file.arrayBuffer());
        hash = await sha256(bytes);
      } catch (e) {
        return { skip: `could not be read (${errMessage(e)})` };
      }
      if (this.core.has(hash)) return { hash };
      const saved = await this.store.get('images', `${spec.id}\n${hash}`).catch(() => null);
      if (saved) return { hash, saved };
      // The same content earlier in the window: decoded there (taken in order, this is a copy).
      if (decoding.has(hash)) return { hash, bytes };
      decoding.add(hash);
      try {
        return { hash, bytes, decoded: await decodePhoto(file, bytes, this.maxPixels) };
      } catch (e) {
        return { hash, bytes, failed: errMessage(e) };
      } finally {
        decoding.delete(hash);
      }
    };

    // A few files are prepared at once, so that their latencies (reading, the browser's
    // decoding and thumbnail encoding) overlap; their outcomes are taken in file order. The
    // window holds at least one file and at most PREPARE_AHEAD or PREPARE_BYTES of them.
    const ahead = [];
    let next = 0;
    let bytesAhead = 0;
    const fill = () => {
      while (next < files.length && ahead.length < PREPARE_AHEAD && (!ahead.length || bytesAhead < PREPARE_BYTES)) {
        const f = files[next++];
        const size = f.file.size;
        bytesAhead += size;
        const outcome = prepare(f).finally(() => { bytesAhead -= size; });
        outcome.catch(() => {});
        ahead.push(outcome);
      }
    };
    for (const [i, { file, path }] of files.entries()) {
      job.reach(i);
      // Paused (by the user, or by storage refusing results, which go first on Resume).
      while (this._pauseGate && !signal.aborted) {
        tally.step('paused');
        await this._pauseGate.promise;
        if (!signal.aborted && !(await tally.resumed())) continue;
      }
      if (signal.aborted) return;
      fill();
      const out = await ahead.shift();
      if (!this._pauseGate && !signal.aborted) fill();
      if (out.unchanged) {
        seen.set(out.unchanged.hash, path);
        tally.unchanged();
        continue;
      }
      tally.step(`reading ${path}`);
      if (!out.hash) { tally.skip(path, out.skip); continue; }
      const { hash } = out;
      if (seen.has(hash)) { tally.duplicate(hash, path); continue; }
      if (this.core.has(hash)) {
        const record = this.records.get(hash);
        if (record) known(hash, record, path);
        else tally.cached();
        continue;
      }
      if (out.saved) {
        known(hash, out.saved, path);
        this._addItem(out.saved);
        if (!this.hits) this.grid.changed();
        if (out.saved.vocabKey !== this.vocab.key) this._enqueue(() => this._tagStale());
        continue;
      }
      let { decoded } = out;
      if (out.failed) { tally.skip(path, out.failed); continue; }
      if (!decoded) {
        // Its content was being decoded for an earlier file that failed: try it here.
        try {
          decoded = await decodePhoto(file, out.bytes, this.maxPixels);
        } catch (e) {
          tally.skip(path, errMessage(e)); continue;
        }
      }
      if (decoded.note) this._warn(`${path}: ${decoded.note}.`);
      seen.set(hash, path);
      job.embedding(i);
      yield { key: hash, input: decoded.input, file, path, decoded, index: i };
    }
    job.finish();
  }

  // -- the indexing job: pause, resume, cancel; one cut short by a closed tab

  /** Pauses indexing after the photo being read (what is being embedded still finishes). */
  pauseIndexing() {
    if (this._pauseGate || this.$.pauseJob.classList.contains('hidden')) return;
    let resolve;
    const promise = new Promise((r) => { resolve = r; });
    this._pauseGate = { promise, resolve };
    this.$.pauseJob.textContent = 'Resume';
  }

  resumeIndexing() {
    const gate = this._pauseGate;
    this._pauseGate = null;
    this.$.pauseJob.textContent = 'Pause';
    gate?.resolve();
  }

  /** Stops the indexing job (and those queued): what is indexed stays. */
  cancelIndexing() {
    this._cancelled = this.jobs.signal;
    this._cancelJobs();
  }

  /** Says so when the last indexing job of this model was cut short (the tab was closed). */
  async _showCutShortJob() {
    const job = await JobLog.cutShort(this.store, this.modelSpec.id);
    // A job another tab is running is not cut short.
    const held = await globalThis.navigator?.locks?.query?.().catch(() => null);
    const running = held?.held?.some((l) => l.name === this._indexLockName());
    if (!job || running) { this.$.jobBox.classList.add('hidden'); return; }
    const left = job.total - job.settled;
    const some = job.left.slice(0, 3).join(', ');
    const failed = job.failed.length ? `, ${job.failed.length} failed (listed below)` : '';
    this.$.jobText.textContent = `Indexing of ${job.total} files was cut short when the page closed: ` +
      `${job.settled} done, ${left} left (${some}${left > 3 ? ', …' : ''})${failed}. ` +
      'Add the same files or folder again to finish; the ones done are not read again.';
    for (const { path, reason } of job.failed) this._skip(path, reason);
    this.$.jobBox.classList.remove('hidden');
  }

  async _forgetCutShortJob() {
    await JobLog.forget(this.store, this.modelSpec.id).catch((e) => this._warn(`Could not forget the job: ${errMessage(e)}`));
    this.$.jobBox.classList.add('hidden');
  }

  /**
   * Keeps the paths of `copies` ([hash, path]) with their photos (`copies` of the record,
   * saved). Resolves to `[path, path of the photo it copies]` for each path new to a photo.
   */
  async _addCopies(spec, copies) {
    const added = [];
    const patches = [];
    const byHash = new Map();
    for (const [hash, path] of copies) byHash.set(hash, [...(byHash.get(hash) ?? []), path]);
    for (const [hash, list] of byHash) {
      const r = this.records.get(hash);
      if (!r) continue; // its photo was not indexed after all (it failed): nothing to keep it with
      const paths = new Set(r.copies ?? []);
      for (const path of list) {
        if (path === r.path || paths.has(path)) continue;
        paths.add(path);
        added.push([path, r.path]);
      }
      if (paths.size === (r.copies?.length ?? 0)) continue;
      const updated = { ...r, copies: [...paths] };
      this.records.set(hash, updated);
      patches.push({ key: `${spec.id}\n${hash}`, copies: updated.copies });
      this.grid.refresh(hash);
    }
    if (patches.length) {
      await this.store.patchAll('images', patches).catch((e) =>
        this._warn(`The paths of copies were not saved (${errMessage(e)}); they stay until the page closes.`));
    }
    return added;
  }

  _timing(msPerImage) {
    this.lastMsPerImage = msPerImage;
    this.$.perImage.textContent = `${Math.round(msPerImage)} ms`;
  }

  // -- search
  /** Ranks photos by similarity to `text` (empty: back to insertion order). */
  search(text) {
    const t = String(text ?? '').trim();
    this.query = t ? { kind: 'text', text: t } : null;
    this._shown = this.searchTop;
    return this._search({ fresh: true });
  }

  /** Extends the search shown by `searchTop` more photos. */
  showMore() {
    if (!this.query) return Promise.resolve();
    this._shown += this.searchTop;
    return this._search();
  }

  /** Ranks photos by image similarity to the photo with this content hash. */
  moreLikeThis(hash) {
    if (!this.records.has(hash)) return Promise.resolve();
    this.query = { kind: 'image', hash };
    this.$.query.value = '';
    this._shown = this.searchTop;
    return this._search({ fresh: true }).then(() => {
      const i = this.hits?.keys.indexOf(hash) ?? -1;
      if (i >= 0) this.grid.focusIndex(i);
    });
  }

  /** Re-rank the search in the box soon, at most once per RERANK_WHILE_INDEXING_MS. */
  _searchSoon() {
    if (this._rerankTimer) return;
    this._rerankTimer = setTimeout(() => {
      this._rerankTimer = null;
      if (this.query) this._search();
    }, RERANK_WHILE_INDEXING_MS);
  }

  /** `fresh`: a new query (not a re-rank of the one shown): the results are scrolled into view. */
  async _search({ fresh = false } = {}) {
    const seq = ++this.querySeq;
    const q = this.query;
    const $ = this.$;
    $.clearSearch.disabled = !q;
    if (!this.core) return;
    if (!q) {
      this._arrange(null, null);
      $.searchInfo.textContent = '';
      $.moreBox.classList.add('hidden');
      return;
    }
    const top = this._shown;
    const of = this.records.size > top ? ` (the best ${top} of ${this.records.size})` : '';
    let ranking;
    if (q.kind === 'image') {
      $.searchInfo.textContent = `Photos most like ${this.records.get(q.hash)?.name}${of}`;
      ranking = await this.core.moreLikeThis(q.hash, { topK: top });
    } else if (!this.records.size) {
      $.searchInfo.textContent = 'No photos to search yet: add some first.';
      return;
    } else {
      let embedding;
      $.searchInfo.textContent = 'Searching…';
      try {
        embedding = await this.core.embedText(q.text);
      } catch (e) {
        if (seq === this.querySeq) $.searchInfo.textContent = `Search needs the model: ${errMessage(e)}`;
        return;
      }
      if (seq !== this.querySeq) return;
      $.searchInfo.textContent = `Photos ranked by likeness to "${q.text}"${of}`;
      ranking = await this.core.search(embedding, { topK: top });
    }
    if (seq !== this.querySeq || !ranking) return;
    this._arrange(ranking.map((r) => r.key), new Map(ranking.map((r) => [r.key, r.score])));
    const rest = this.records.size - ranking.length;
    $.moreBox.classList.toggle('hidden', rest <= 0);
    $.more.textContent = `Show ${Math.min(rest, this.searchTop)} more`;
    $.moreInfo.textContent = rest > 0 ? `${ranking.length} of ${this.records.size} shown` : '';
    // A new result starts at the top: bring the search box back into view if the page was
    // scrolled down the library (re-ranks while indexing leave the scroll alone).
    if (fresh && this.$.grid.getBoundingClientRect().top < 0) this.$.searchBox.scrollIntoView({ block: 'start' });
    this.lastRanking = ranking.map(({ key, score }) => ({ hash: key, name: this.records.get(key).name, score }));
    this.dispatchEvent(new CustomEvent('webclip-search', { detail: { query: q, ranking: this.lastRanking } }));
  }

  /**
   * Show the photos `hashes` in that order, with their scores; `null`: every photo in the
   * order added. The grid binds only the cards in view, so this costs the same whatever the
   * size of the library.
   */
  _arrange(hashes, scores) {
    this.hits = hashes ? { keys: hashes, scores } : null;
    this.$.grid.classList.toggle('ranked', !!hashes);
    this.grid.setKeys(hashes ?? this.order);
    this.grid.refreshAll(); // the scores shown (or no longer shown) on the cards kept
  }

  // -- export
  /**
   * `f(record, embedding)` of every photo in the order added. The embeddings that the tags
   * (another vocabulary's) or the review flags (a policy) need are read from storage a slice
   * at a time, so that an export of 100,000 photos never holds them all; null where unneeded.
   */
  async _exportRows(f) {
    const out = [];
    for (let i = 0; i < this.order.length; i += RESTORE_BATCH) {
      const slice = this.order.slice(i, i + RESTORE_BATCH).map((h) => this.records.get(h));
      const need = slice.filter((r) => this.core.policy.length || r.vocabKey !== this.vocab?.key);
      const got = need.length ? await this._storedEmbeddings(need.map((r) => r.hash)) : [];
      const vectors = new Map(need.map((r, j) => [r, got[j]]));
      for (const r of slice) out.push(f(r, vectors.get(r) ?? null));
    }
    return out;
  }

  /** The library as JSON (a Promise of the text): what `Export JSON` downloads. */
  async exportJson() {
    const rows = await this._exportRows((r, embedding) => ({
      file: r.path, copies: r.copies ?? [], sha256: r.hash, width: r.width, height: r.height,
      tags: this._tagsOf(r, { save: false, embedding }).map((t) => ({ label: t.label, score: Number(t.score.toFixed(4)) })),
      review: this._reviewOf(r, embedding).map((f) => ({ label: f.label, score: Number(f.score.toFixed(4)), threshold: f.threshold })),
    }));
    // What a review decision rests on, for an audit later: the model (its fingerprint: the
    // weights' header and config), the vocabulary and templates, the policy.
    return JSON.stringify({
      model: this.modelSpec.label, modelFingerprint: this.core.clip?.fingerprint ?? null,
      labels: this.vocab.labels, templates: this.vocab.templates, policy: this.core.policy, photos: rows,
    }, null, 2);
  }

  /** The library as CSV (a Promise of the text): what `Export CSV` downloads. */
  async exportCsv() {
    const k = this.topK;
    const cell = (v) => (/[",\n\r]/.test(String(v)) ? `"${String(v).replaceAll('"', '""')}"` : String(v));
    const head = ['file', 'sha256'];
    for (let i = 1; i <= k; i++) head.push(`tag${i}`, `score${i}`);
    head.push('copies'); // other paths of the same content, separated by |
    head.push('review'); // policy labels that flag the photo, label:score separated by |
    const lines = [head.join(',')];
    lines.push(...await this._exportRows((r, embedding) => {
      const row = [r.path, r.hash];
      const tags = this._tagsOf(r, { save: false, embedding });
      for (let i = 0; i < k; i++) {
        const t = tags[i];
        row.push(t ? t.label : '', t ? t.score.toFixed(4) : '');
      }
      row.push((r.copies ?? []).join('|'));
      row.push(this._reviewOf(r, embedding).map((f) => `${f.label}:${f.score.toFixed(4)}`).join('|'));
      return row.map(cell).join(',');
    }));
    return `${lines.join('\r\n')}\r\n`;
  }

  _download(name, type, text) {
    if (!this.records.size) { this._warn('There is nothing to export yet: add some photos first.'); return; }
    const url = URL.createObjectURL(new Blob([text], { type }));
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    this.shadowRoot.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }
}

if (globalThis.customElements && !customElements.get('webclip-tagger')) customElements.define('webclip-tagger', WebclipTagger);
