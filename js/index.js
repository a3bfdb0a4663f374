// webclip: CLIP image and text embeddings in the browser (WebGPU or a SIMD CPU backend in
// WebAssembly) and in Node.js. `Clip.load` downloads a Hugging Face CLIP checkpoint and
// returns a model whose calls run one at a time, here or in a dedicated Worker.

import { LocalEngine, initWasm } from './engine.js';
import { deserializeError, webclipError, withCode } from './errors.js';
import { checkImages, checkMaxBatch, checkTexts } from './limits.js';
import { ByteCache, isNode } from './sources.js';
import { MAX_THREADS } from './wasm.js';

const BACKENDS = ['auto', 'webgpu', 'cpu'];
const TOWERS = ['both', 'vision', 'text'];
const GPU_WEIGHTS = ['auto', 'f16', 'f32'];
const WEIGHTS = ['auto', 'int8'];

const badInput = (message) => webclipError('bad-input', message);
const badArgument = (message) => withCode(new TypeError(message), 'bad-input');

function validate(options) {
  if (!options || typeof options !== 'object') throw badInput('webclip: Clip.load needs an options object with a `model`');
  const o = {
    model: options.model,
    backend: options.backend ?? 'auto',
    towers: options.towers ?? 'both',
    worker: options.worker ?? false,
    cache: options.cache ?? true,
    maxBatch: options.maxBatch ?? 0,
    gpuWeights: options.gpuWeights ?? 'auto',
    threads: options.threads ?? 'auto',
    // Tests only: an earlier `auto` verdict ('cpu' | 'webgpu'), as the cache would give it.
    _preferBackend: options._preferBackend,
    weights: options.weights ?? 'auto',
    wasmUrl: options.wasmUrl == null ? undefined : String(options.wasmUrl), // URLs do not cross to a worker
    onProgress: options.onProgress,
  };
  if (o.backend === 'gpu') o.backend = 'webgpu';
  if (!BACKENDS.includes(o.backend)) throw badInput(`webclip: backend must be one of ${BACKENDS.join(', ')}, not ${JSON.stringify(options.backend)}`);
  if (!TOWERS.includes(o.towers)) throw badInput(`webclip: towers must be one of ${TOWERS.join(', ')}, not ${JSON.stringify(options.towers)}`);
  if (!WEIGHTS.includes(o.weights)) throw badInput(`webclip: weights must be one of ${WEIGHTS.join(', ')}, not ${JSON.stringify(options.weights)}`);
  if (!GPU_WEIGHTS.includes(o.gpuWeights)) throw badInput(`webclip: gpuWeights must be one of ${GPU_WEIGHTS.join(', ')}, not ${JSON.stringify(options.gpuWeights)}`);
  if (o.cache !== null && typeof o.cache === 'object') {
    const c = o.cache.chunkBytes;
    if (c !== undefined && !(Number.isInteger(c) && c > 0)) throw badInput('webclip: cache.chunkBytes must be a positive integer');
    o.cache = { chunkBytes: c };
  } else if (typeof o.cache !== 'boolean') throw badInput('webclip: cache must be true, false or { chunkBytes }');
  if (o.threads !== 'auto' && !(Number.isInteger(o.threads) && o.threads >= 1 && o.threads <= MAX_THREADS)) {
    throw badInput(`webclip: threads must be 'auto' or an integer from 1 to ${MAX_THREADS}, not ${JSON.stringify(options.threads)}`);
  }
  if (!Number.isInteger(o.maxBatch) || o.maxBatch < 0) throw badInput('webclip: maxBatch must be a non-negative integer');
  checkMaxBatch(o.maxBatch);
  if (o.onProgress != null && typeof o.onProgress !== 'function') throw badInput('webclip: onProgress must be a function');
  if (o.model == null) throw badInput('webclip: Clip.load needs `model`: a folder URL or { config, weights, tokenizer | spiece, tokenizerConfig?, preprocessor? }');
  return o;
}

/** Make relative URLs absolute against the page, so a worker resolves them the same way. */
function absolute(model) {
  if (isNode || typeof location === 'undefined') return model;
  const abs = (v) => (typeof v === 'string' || v instanceof URL ? new URL(String(v), location.href).href : v);
  if (typeof model === 'string' || model instanceof URL) return abs(model);
  const out = {};
  for (const [k, v] of Object.entries(model)) out[k] = abs(v);
  return out;
}

// ---------------------------------------------------------------------------------------
// Worker mode: the same engine in a dedicated module Worker, driven by messages.

class WorkerEngine {
  static async load(options) {
    if (typeof Worker === 'undefined') {
      throw webclipError('unsupported', 'webclip: worker: true needs Web Workers (a browser); in Node.js use worker: false');
    }
    const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module', name: 'webclip' });
    const engine = new WorkerEngine(worker);
    const { onProgress, ...rest } = options;
    try {
      engine.info = await engine.call('load', [{ ...rest, onProgress: undefined }], onProgress);
    } catch (e) {
      worker.terminate();
      throw e;
    }
    return engine;
  }

  constructor(worker) {
    this.worker = worker;
    this.pending = new Map();
    this.next = 1;
    worker.onmessage = ({ data }) => {
      const p = this.pending.get(data.id);
      if (!p) return;
      if (data.progress) return p.onProgress?.(data.progress);
      this.pending.delete(data.id);
      if (data.info) this.info = data.info;
      if (data.ok) p.resolve(data.result);
      else p.reject(deserializeError(data.error));
    };
    /** Every pending and later call rejects with `error()` (a fresh Error each). */
    const fail = (error) => {
      for (const p of this.pending.values()) p.reject(error());
      this.pending.clear();
      this.dead = error;
    };
    worker.onerror = (e) => {
      e.preventDefault?.();
      const why = e.message || 'it could not be started (is worker.js served next to index.js?)';
      fail(() => webclipError('worker', `webclip: the worker failed: ${why}`));
    };
    worker.onmessageerror = () => fail(() => webclipError('worker', 'webclip: a message from the worker could not be read'));
  }

  call(method, args, onProgress, transfer = []) {
    if (this.dead) return Promise.reject(this.dead());
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      try {
        this.worker.postMessage({ id, method, args }, transfer);
      } catch (e) {
        // A DataCloneError: something in `args` cannot cross to a worker.
        this.pending.delete(id);
        reject(webclipError('bad-input', `webclip: ${method}: its arguments cannot be sent to the worker: ${e?.message ?? e}`, e));
      }
    });
  }

  async embedImages(images, normalize) {
    // DOM elements cannot cross to a worker; bitmaps of them can.
    const items = [];
    for (let i = 0; i < images.length; i++) items.push(await cloneable(images[i], i));
    return this.call('embedImages', [items, normalize]);
  }

  embedTexts(texts, normalize) {
    return this.call('embedTexts', [texts, normalize]);
  }

  loseDevice(options) {
    return this.call('loseDevice', [options]);
  }

  gpuMemory() {
    return this.call('gpuMemory', []);
  }

  memory() {
    return this.call('memory', []);
  }

  dispose() {
    this.worker.terminate();
    const disposed = () => webclipError('disposed', 'webclip: this Clip was disposed');
    for (const p of this.pending.values()) p.reject(disposed());
    this.pending.clear();
    this.dead = disposed;
  }
}

async function cloneable(img, i) {
  const dom = ['HTMLImageElement', 'HTMLCanvasElement', 'HTMLVideoElement', 'SVGImageElement'].some(
    (n) => typeof globalThis[n] !== 'undefined' && img instanceof globalThis[n],
  );
  if (!dom) return img;
  if (img instanceof HTMLImageElement && (!img.complete || !img.naturalWidth)) {
    try {
      await img.decode();
    } catch (e) {
      throw webclipError('bad-image', `webclip: image ${i}: the <img> (${img.currentSrc || img.src}) could not be loaded or decoded`, e);
    }
  }
  try {
    return await createImageBitmap(img);
  } catch (e) {
    throw webclipError('bad-image', `webclip: image ${i}: cannot read its pixels: ${e?.message ?? e}`, e);
  }
}

// ---------------------------------------------------------------------------------------

/** A loaded CLIP model. Calls on one instance run one after another, in call order. */
export class Clip {
  /**
   * Download (or read) a model and set up its engine; see index.d.ts for the options.
   * @returns {Promise<Clip>}
   */
  static async load(options) {
    const o = validate(options);
    o.model = absolute(o.model);
    if (o.wasmUrl && !isNode && typeof location !== 'undefined') o.wasmUrl = new URL(o.wasmUrl, location.href).href;
    const engine = o.worker ? await WorkerEngine.load(o) : await LocalEngine.load(o);
    return new Clip(engine);
  }

  /**
   * Delete every model file webclip keeps in Cache Storage (`webclip-v1`); resolves to
   * whether there was a cache to delete. The next `load` downloads again.
   * @returns {Promise<boolean>}
   */
  static clearCache() {
    return ByteCache.clear();
  }

  /**
   * Instantiate the wasm module ahead of `load` (optional; `load` does it too): resolves to
   * the build that runs, `{ name, features, threads, reason }`.
   */
  static init(wasmUrl, threads = 'auto') {
    return initWasm(wasmUrl, threads);
  }

  constructor(engine) {
    if (!(engine instanceof LocalEngine || engine instanceof WorkerEngine)) {
      throw badInput('webclip: use `await Clip.load({ model })` to make a Clip');
    }
    this._engine = engine;
    this._queue = Promise.resolve();
    this._labels = new Map();
    const info = engine.info;
    /** `'webgpu'` or `'cpu'`. */
    this.backend = info.backend;
    /**
     * `{ kind, adapter, reason, weights, threads, build }`: which backend runs, on which
     * adapter, why, how the engine holds the matrices ('int8', 'f16' or 'f32'), the CPU engine's threads, and the wasm
     * build (`{ name, features, threads, reason }`: why threads or relaxed SIMD are missing).
     */
    this.backendInfo = info.backendInfo;
    /** Length of each embedding. */
    this.dim = info.dim;
    /** Input side of the vision tower in pixels. */
    this.imageSize = info.imageSize;
    /** `exp(logit_scale)`: logits = logitScale * cosine + logitBias. */
    this.logitScale = info.logitScale;
    /** SigLIP's `logit_bias`; 0 for CLIP. */
    this.logitBias = info.logitBias ?? 0;
    /**
     * `'clip'` or `'siglip'`: CLIP's `classify` scores are a softmax over the labels,
     * SigLIP's a sigmoid per label (independent probabilities).
     */
    this.family = info.family ?? 'clip';
    /** Which encoders are loaded: `'both'`, `'vision'` or `'text'`. */
    this.towers = info.towers;
    /** The model's identity (hash of the weights header and config.json): what a ClipIndex is keyed by. */
    this.fingerprint = info.fingerprint;
    /** Why the model could not be stored in Cache Storage this time (null when it was, or caching is off). */
    this.cacheNotice = info.cacheNotice ?? null;
    this.worker = engine instanceof WorkerEngine;
  }

  get disposed() {
    return this._engine === null;
  }

  /** Run `fn` after every earlier call on this instance has settled. */
  _run(fn) {
    // The engine is taken now: a call made before dispose() still runs.
    const engine = this._engine;
    if (!engine) return Promise.reject(webclipError('disposed', 'webclip: this Clip was disposed; load the model again to use it'));
    const run = async () => {
      try {
        return await fn(engine);
      } finally {
        // A reload after a lost GPU device may have changed the backend.
        this.backend = engine.info.backend;
        this.backendInfo = engine.info.backendInfo;
      }
    };
    const p = this._queue.then(run, run);
    this._queue = p.catch(() => {});
    return p;
  }

  /**
   * Destroy the GPU device as a driver reset would, and wait until the browser reports it
   * lost: for tests of the recovery path. `{ duringNextCall: true }` instead destroys it
   * right after the next call submits its first work (a loss in the middle of a batch).
   * Not part of the API.
   * @param {{ duringNextCall?: boolean }} [options]
   * @returns {Promise<void>}
   */
  _loseDevice(options) {
    return this._run((e) => e.loseDevice(options));
  }

  /**
   * `[buffers, bytes]` the WebGPU engine holds on its device (weights, activations,
   * staging), or undefined on the CPU engine: for tests and benchmarks that GPU memory
   * stays flat under load. Not part of the API.
   * @returns {Promise<[number, number] | undefined>}
   */
  _gpuMemory() {
    return this._run((e) => e.gpuMemory());
  }

  /**
   * Bytes of wasm memory where the model runs (in its worker with `worker: true`), queued
   * like a call: for tests that memory stays flat under load. Not part of the API.
   * @returns {Promise<number>}
   */
  _memory() {
    return this._run((e) => e.memory());
  }

  /**
   * One embedding per image, L2-normalised unless `{ normalize: false }`.
   * @returns {Promise<Float32Array[]>}
   */
  embedImages(images, { normalize = true } = {}) {
    if (!Array.isArray(images)) return Promise.reject(badArgument('webclip: embedImages takes an array of images'));
    if (this.towers === 'text') return Promise.reject(webclipError('tower-not-loaded', "webclip: the vision tower is not loaded (towers: 'text')"));
    if (images.length === 0) return Promise.resolve([]);
    try {
      checkImages(images);
    } catch (e) {
      return Promise.reject(e);
    }
    return this._run((e) => e.embedImages(images, !!normalize));
  }

  /** @returns {Promise<Float32Array>} */
  async embedImage(image, options) {
    return (await this.embedImages([image], options))[0];
  }

  /**
   * One embedding per text, L2-normalised unless `{ normalize: false }`.
   * @returns {Promise<Float32Array[]>}
   */
  embedTexts(texts, { normalize = true } = {}) {
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== 'string')) {
      return Promise.reject(badArgument('webclip: embedTexts takes an array of strings'));
    }
    if (this.towers === 'vision') return Promise.reject(webclipError('tower-not-loaded', "webclip: the text tower is not loaded (towers: 'vision')"));
    if (texts.length === 0) return Promise.resolve([]);
    try {
      checkTexts(texts);
    } catch (e) {
      return Promise.reject(e);
    }
    return this._run((e) => e.embedTexts(texts, !!normalize));
  }

  /** @returns {Promise<Float32Array>} */
  async embedText(text, options) {
    return (await this.embedTexts([text], options))[0];
  }

  /**
   * Zero-shot classification, sorted by score. `logit = logitScale * cosine(image, prompt)
   * + logitBias`; `score` is, for CLIP, the softmax of the logits over the labels (they sum
   * to 1) and, for SigLIP (`family === 'siglip'`), the sigmoid of each logit: the
   * probability that the label applies, independent of the other labels (they need not sum
   * to 1). `template` turns a label into a prompt (`{}` = the label).
   * @returns {Promise<{label: string, score: number, logit: number}[]>}
   */
  async classify(image, labels, { template = '{}' } = {}) {
    if (!Array.isArray(labels) || labels.length === 0 || labels.some((l) => typeof l !== 'string')) {
      throw badArgument('webclip: classify takes a non-empty array of label strings');
    }
    if (typeof template !== 'string' || !template.includes('{}')) {
      throw badArgument("webclip: template must be a string with a {} where the label goes, e.g. 'a photo of a {}'");
    }
    const prompts = labels.map((l) => template.replaceAll('{}', l));
    const known = new Map(prompts.filter((p) => this._labels.has(p)).map((p) => [p, this._labels.get(p)]));
    const missing = [...new Set(prompts.filter((p) => !known.has(p)))];
    const [imageEmb, textEmbs] = await Promise.all([this.embedImage(image), this.embedTexts(missing)]);
    // Prompt embeddings are kept for the next call (labels repeat); bounded, not an LRU.
    if (this._labels.size + missing.length > 4096) this._labels.clear();
    missing.forEach((p, i) => {
      known.set(p, textEmbs[i]);
      this._labels.set(p, textEmbs[i]);
    });
    const logits = prompts.map((p) => this.logitScale * dot(imageEmb, known.get(p)) + this.logitBias);
    const scores = this.family === 'siglip' ? logits.map(Clip.sigmoid) : Clip.softmax(logits);
    return labels
      .map((label, i) => ({ label, score: scores[i], logit: logits[i] }))
      .sort((a, b) => b.score - a.score);
  }

  /**
   * Rank `embeddings` by cosine similarity to `query` (an image or text embedding).
   * @returns {{index: number, score: number}[]} best first, at most `topK`
   */
  rank(query, embeddings, { topK = Infinity } = {}) {
    return Clip.rank(query, embeddings, { topK });
  }

  static rank(query, embeddings, { topK = Infinity } = {}) {
    const scored = embeddings.map((e, index) => ({ index, score: Clip.cosine(query, e) }));
    scored.sort((a, b) => b.score - a.score);
    return scored.slice(0, topK);
  }

  /** Cosine similarity of two vectors of the same length. */
  static cosine(a, b) {
    if (a.length !== b.length) throw badInput(`webclip: cosine of vectors of lengths ${a.length} and ${b.length}`);
    let ab = 0;
    let aa = 0;
    let bb = 0;
    for (let i = 0; i < a.length; i++) {
      ab += a[i] * b[i];
      aa += a[i] * a[i];
      bb += b[i] * b[i];
    }
    return ab / (Math.sqrt(aa * bb) || 1);
  }

  /** The logistic sigmoid `1 / (1 + e^-x)`: SigLIP's probability for one logit. */
  static sigmoid(x) {
    return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
  }

  /** Softmax of `logits` (the maximum is subtracted first, so large logits do not overflow). */
  static softmax(logits) {
    const xs = Array.from(logits);
    const max = xs.reduce((m, l) => (l > m ? l : m), -Infinity);
    const exps = xs.map((l) => Math.exp(l - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    return exps.map((e) => e / sum);
  }

  /**
   * Free the model (and its worker) once the calls already made have settled; calls
   * made after this reject.
   */
  dispose() {
    const engine = this._engine;
    this._engine = null;
    this._labels.clear();
    if (engine) this._queue.then(() => engine.dispose());
  }
}

function dot(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

export { ClipIndex } from './clip-index.js';
export { MemoryStorage, IndexedDbStorage } from './index-storage.js';
export default Clip;
