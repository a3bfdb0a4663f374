// The model in this thread: initialises the wasm module, gathers the model files and
// hands them to `WasmClip`, turns images into what Rust takes. `index.js` uses it
// directly or, with `worker: true`, through `worker.js`.

import { codeOf, webclipError } from './errors.js';
import { checkPixels, checkRequestBytes } from './limits.js';
import { ByteCache, isNode, readWeights, readWhole, toSource } from './sources.js';
import { chooseBuild, loadWasm, loadedBuild, wasm, wasmMemoryBytes } from './wasm.js';

export { wasmMemoryBytes };

/**
 * Load this thread's wasm build once (js/wasm.js chooses it for `threads` and `backend`);
 * resolves to `{ name, features, threads, reason }`. A thread keeps its first build.
 */
export async function initWasm(wasmUrl, threads = 'auto', backend = 'auto') {
  return loadedBuild() ?? loadWasm(await chooseBuild(threads, { wasmUrl, backend }));
}

const MODEL_FILES = {
  config: 'config.json',
  weights: 'model.safetensors',
  tokenizer: 'tokenizer.json', // CLIP, SigLIP 2 (Gemma's)
  spiece: 'spiece.model', // SigLIP's SentencePiece model
  tokenizerConfig: 'tokenizer_config.json',
  preprocessor: 'preprocessor_config.json',
};

/**
 * `{ config, weights, tokenizer, spiece, tokenizerConfig, preprocessor }` sources from a
 * folder or an object. `folder`: the files were named by convention, so those a
 * repository may lack are optional (the preprocessor: the family's defaults apply; of the
 * tokenizer files, `tokenizer_config.json` says which one the model uses).
 */
function modelSources(model, towers) {
  let spec;
  let folder = false;
  if (typeof model === 'string' || model instanceof URL) {
    const base = String(model).endsWith('/') ? String(model) : `${model}/`;
    spec = {};
    for (const [k, name] of Object.entries(MODEL_FILES)) spec[k] = base + name;
    folder = true;
  } else if (model && typeof model === 'object') {
    spec = model;
  } else {
    throw webclipError(
      'bad-input',
      "webclip: `model` must be a folder URL (or path in Node.js) or { config, weights, tokenizer | spiece, tokenizerConfig?, preprocessor? }",
    );
  }
  for (const k of ['config', 'weights']) {
    if (spec[k] == null) throw webclipError('bad-input', `webclip: model.${k} (${MODEL_FILES[k]}) is required`);
  }
  if (towers !== 'vision' && spec.tokenizer == null && spec.spiece == null) {
    throw webclipError(
      'bad-tokenizer',
      "webclip: the text tower needs model.tokenizer (tokenizer.json) or, for SigLIP, model.spiece (spiece.model); pass towers: 'vision' to load only the image encoder",
    );
  }
  const src = (k) => (spec[k] == null ? null : toSource(spec[k], MODEL_FILES[k]));
  const text = towers !== 'vision';
  return {
    config: src('config'),
    weights: src('weights'),
    tokenizer: text ? src('tokenizer') : null,
    spiece: text ? src('spiece') : null,
    tokenizerConfig: text ? src('tokenizerConfig') : null,
    preprocessor: towers === 'text' ? null : src('preprocessor'),
    folder,
  };
}

/** `p`'s bytes, or null when the file is not there (a file a repository may lack). */
const optional = (p) =>
  p.catch((e) => {
    if (e?.code === 'not-found') return null;
    throw e;
  });

/**
 * The tokenizer files, as `WasmClip.load` takes them. From a folder URL only the files the
 * model uses are fetched: `tokenizer_config.json` first (optional), whose
 * `tokenizer_class` says `SiglipTokenizer` (spiece.model) or another (tokenizer.json);
 * without a class, tokenizer.json, then spiece.model if there is none. The Rust
 * tokenizer decides from the same class (`Tokenizer::kind_of`).
 */
async function readTokenizer(srcs, read) {
  if (!srcs.folder) {
    const [tokenizer, spiece, tokenizerConfig] = await Promise.all(
      ['tokenizer', 'spiece', 'tokenizerConfig'].map((k) => (srcs[k] ? read(k, srcs[k]) : null)),
    );
    return { tokenizer, spiece, tokenizerConfig };
  }
  const tokenizerConfig = await optional(read('tokenizerConfig', srcs.tokenizerConfig));
  let tokenizerClass = null;
  try {
    tokenizerClass = tokenizerConfig && JSON.parse(new TextDecoder().decode(tokenizerConfig)).tokenizer_class;
  } catch {
    // Rust reads it again and reports what is wrong with it.
  }
  if (tokenizerClass === 'SiglipTokenizer') {
    return { tokenizer: null, spiece: await read('spiece', srcs.spiece), tokenizerConfig };
  }
  const tokenizer = await optional(read('tokenizer', srcs.tokenizer));
  if (tokenizer || tokenizerClass) return { tokenizer, spiece: null, tokenizerConfig };
  const spiece = await optional(read('spiece', srcs.spiece));
  if (!spiece) {
    throw webclipError(
      'not-found',
      `webclip: the model has no tokenizer: neither ${srcs.tokenizer.url ?? srcs.tokenizer.path} nor spiece.model was found (pass towers: 'vision' to load only the image encoder)`,
    );
  }
  return { tokenizer: null, spiece, tokenizerConfig };
}

/** What the browser tells of its adapter (wgpu on the web leaves the name empty). */
async function adapterName() {
  try {
    const a = await navigator.gpu.requestAdapter();
    const i = a?.info ?? (await a?.requestAdapterInfo?.());
    const name = [i?.vendor, i?.architecture, i?.device, i?.description].filter(Boolean).join(' ');
    return name || 'WebGPU adapter';
  } catch {
    return 'WebGPU adapter';
  }
}

const hasWebGpu = () => typeof navigator !== 'undefined' && !!navigator.gpu;

/**
 * `auto`'s verdicts ('cpu' | 'webgpu') by model fingerprint and adapter, in Cache Storage
 * where there is one (pages and workers alike), else for this thread only. A failure to
 * read or write one only means measuring again.
 */
const autoVerdicts = {
  memory: new Map(),
  url: (key) => `https://webclip.invalid/auto-backend/${encodeURIComponent(key)}`,
  async get(key) {
    if (this.memory.has(key)) return this.memory.get(key);
    try {
      const hit = await (await globalThis.caches?.open('webclip-auto-v1'))?.match(this.url(key));
      const verdict = hit ? await hit.text() : null;
      return verdict === 'cpu' || verdict === 'webgpu' ? verdict : null;
    } catch {
      return null;
    }
  },
  async set(key, verdict) {
    this.memory.set(key, verdict);
    try {
      await (await globalThis.caches?.open('webclip-auto-v1'))?.put(this.url(key), new Response(verdict));
    } catch {
      // measured again next time
    }
  },
};

/**
 * The model's identity for an index (`ClipIndex`): a hash of the safetensors header and
 * `config.json` (src/index/mod.rs), the same wherever the files are served from.
 */
function fingerprintOf(weights, config) {
  const first = weights.segments[0]?.[1];
  if (!first || weights.segments[0][0] !== 0) return null;
  const len = wasm.WeightPlan.headerLength(first.subarray(0, 8));
  return wasm.modelFingerprint(first.subarray(0, len), config);
}

export class LocalEngine {
  /** `options` as `Clip.load` takes them, already validated by index.js. */
  static async load(options) {
    const { towers, backend } = options;
    const report = options.onProgress;
    // A throwing callback must not break the download.
    const onProgress = (p) => {
      try {
        report?.(p);
      } catch (e) {
        console.error('webclip: onProgress threw', e);
      }
    };
    const srcs = modelSources(options.model, towers);
    if (backend === 'webgpu' && !hasWebGpu()) {
      throw webclipError(
        'no-webgpu',
        "webclip: backend 'webgpu' was requested but WebGPU is not available here (no navigator.gpu); use backend: 'auto' or 'cpu'",
      );
    }
    // `cache: { chunkBytes }` sets the chunk size of large entries (tests use small ones).
    const cache = await ByteCache.open(options.cache, typeof options.cache === 'object' ? options.cache : {});
    // Compile the wasm while the small files download; the weights' header needs it.
    // Chosen before any download: a runtime without SIMD fails here, at once.
    const build = loadedBuild() ?? loadWasm(await chooseBuild(options.threads, { wasmUrl: options.wasmUrl, backend }));
    const progress = (phase, src) => (loaded, total) =>
      onProgress({ phase, loaded, total, file: src.what, url: src.url ?? src.path ?? null });

    // Progress phases: 'config', 'tokenizerConfig', 'tokenizer' (tokenizer.json or
    // spiece.model: `file` says which), 'preprocessor', 'weights'.
    const phaseOf = { spiece: 'tokenizer' };
    const read = (key, src) => readWhole(src, progress(phaseOf[key] ?? key, src), cache);
    const small = (key, mayLack = false) => {
      const src = srcs[key];
      if (!src) return null;
      return mayLack ? optional(read(key, src)) : read(key, src);
    };
    const text = towers !== 'vision';
    const pending = [
      small('config'),
      text ? readTokenizer(srcs, read) : null,
      small('preprocessor', srcs.folder),
      build.then(() => readWeights(srcs.weights, towers, progress('weights', srcs.weights), cache)),
    ];
    // All start at once, but a failure is reported in this order (config.json first: a
    // wrong folder or URL fails there), not in whichever order the requests happen to fail.
    for (const p of pending) p?.catch(() => {});
    const [config, tokenizerFiles, preprocessor, weights] = [
      await pending[0], await pending[1], await pending[2], await pending[3],
    ];
    const { tokenizer = null, spiece = null, tokenizerConfig = null } = tokenizerFiles ?? {};

    const runs = await build;
    // `auto` with a WebGPU adapter measures both engines at load; the verdict is kept per
    // model and adapter, so a reload takes it without measuring again.
    const fingerprint = fingerprintOf(weights, config);
    const verdictKey = backend === 'auto' && hasWebGpu() && fingerprint ? `${fingerprint}|${await adapterName()}` : null;
    const prefer = options._preferBackend ?? (verdictKey ? await autoVerdicts.get(verdictKey) : null);
    const bytes = new wasm.WeightBytes();
    for (const [offset, seg] of weights.segments) bytes.add(offset, seg);
    // Without navigator.gpu 'auto' cannot find a GPU: say so, rather than let wgpu fail.
    const rustBackend = backend === 'auto' && !hasWebGpu() ? 'cpu' : backend;
    let clip;
    try {
      clip = await wasm.WasmClip.load(bytes, {
        config,
        tokenizer,
        spiece,
        tokenizerConfig,
        preprocessor,
        backend: rustBackend,
        towers,
        maxBatch: options.maxBatch ?? 0,
        gpuWeights: options.gpuWeights ?? 'auto',
        threads: runs.threads,
        prefer: prefer ?? undefined,
        // 'int8': quantise a float checkpoint at load (an int8 file is int8 either way).
        weights: options.weights ?? 'auto',
      });
    } catch (e) {
      const where = srcs.weights.url ?? srcs.weights.path;
      throw webclipError(codeOf(e), `webclip: could not load the model${where ? ` (${where})` : ''}: ${e?.message ?? e}`, e);
    }
    const measured = clip.backendMeasured ?? null;
    if (verdictKey && measured) await autoVerdicts.set(verdictKey, clip.backendKind);
    let adapter = clip.backendAdapter || null;
    if (clip.backendKind === 'webgpu' && !adapter) adapter = await adapterName();
    const reason =
      rustBackend !== backend
        ? `WebGPU is not available here (no navigator.gpu${isNode ? ' in Node.js' : ''}), so the CPU engine runs`
        : clip.backendReason;
    // What a reload after a lost GPU device needs: the sources (URLs, paths, or the
    // caller's own Blobs and buffers), never a copy of the weights' bytes.
    const reload = { ...options, onProgress: undefined };
    return new LocalEngine(clip, {
      fingerprint,
      // Why a downloaded file could not be cached (quota): the next visit downloads it again.
      cacheNotice: cache?.notice ?? null,
      backend: clip.backendKind,
      // `weights`: how the engine holds the matrices: 'int8' (an int8 checkpoint, read from
      // its header, or `weights: 'int8'`), else 'f16' or 'f32' (the CPU engine expands f16).
      backendInfo: {
        kind: clip.backendKind,
        adapter,
        reason,
        weights: clip.backendWeights ?? null,
        // Threads the CPU engine runs on (null on the GPU), and the wasm build with why
        // it was chosen (not cross-origin isolated, no relaxed SIMD, ...).
        threads: clip.backendThreads ?? null,
        build: runs,
        // `auto`'s timing of one warm pass on each engine ({ what, cpuMs, gpuMs }); null
        // when it did not measure (no adapter, a software one, or a verdict kept from before).
        measured,
      },
      dim: clip.dim,
      imageSize: clip.imageSize,
      logitScale: clip.logitScale,
      logitBias: clip.logitBias,
      family: clip.family,
      towers: clip.towers,
    }, reload);
  }

  constructor(clip, info, options) {
    this.clip = clip;
    this.info = info;
    this.options = options;
    /** Why the GPU device is gone, once it is: the next call reloads the model. */
    this.lost = null;
  }

  /**
   * Run `fn(wasmClip)`. A GPU device lost before or during it fails this call with a
   * `device-lost` Error and frees the model; the next call reloads it (same backend
   * choice: 'webgpu' opens a new device, 'auto' may fall back to the CPU engine) and runs.
   */
  async guard(fn) {
    if (this.lost) await this.recover();
    try {
      return await fn(this.clip);
    } catch (e) {
      // A call the loss broke may fail with another GPU error before the browser reports
      // the loss: ask the device too.
      const lost = e?.code === 'device-lost' || (this.info.backend === 'webgpu' && (await this.deviceLost()));
      if (!lost) throw e;
      const why = this.clip.deviceLostReason;
      this.lost = why ?? 'lost';
      this.clip.free();
      this.clip = null;
      throw webclipError(
        'device-lost',
        `webclip: the GPU device was lost${why ? ` (${why})` : ''}; this call failed, and the next call will reload the model`,
        e,
      );
    }
  }

  /** Whether the device is gone; the browser reports a loss asynchronously, so wait a little. */
  async deviceLost() {
    for (let i = 0; i < 5; i++) {
      if (this.clip.deviceLost) return true;
      await new Promise((r) => setTimeout(r, 10 * i));
    }
    return this.clip.deviceLost;
  }

  async recover() {
    let next;
    try {
      next = await LocalEngine.load(this.options);
    } catch (e) {
      // this.lost stays set: the call after this one tries again. The code says why the
      // reload failed (`no-webgpu`, `network`, ...).
      throw webclipError(
        codeOf(e),
        `webclip: the GPU device was lost and reloading the model failed: ${String(e?.message ?? e).replace(/^webclip: /, '')}`,
        e,
      );
    }
    const info = next.info.backendInfo;
    this.clip = next.clip;
    this.info = {
      ...next.info,
      backendInfo: { ...info, reason: `recovered after the GPU device was lost (${this.lost}): ${info.reason}` },
    };
    this.lost = null;
  }

  /**
   * Destroy the GPU device and wait until the browser reports it lost (tests only). With
   * `duringNextCall`, return at once: the device goes right after the next call submits
   * its first work, while that call waits for the GPU.
   */
  async loseDevice({ duringNextCall = false } = {}) {
    if (this.info.backend !== 'webgpu' || !this.clip) throw webclipError('unsupported', 'webclip: _loseDevice: the model is not on a WebGPU device');
    this.clip.loseDeviceForTesting(duringNextCall);
    if (duringNextCall) return;
    for (let waited = 0; !this.clip.deviceLost; waited += 10) {
      if (waited > 5000) throw webclipError('gpu', 'webclip: _loseDevice: the device-lost callback did not fire within 5 s');
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** `[buffers, bytes]` the GPU engine holds on its device, or undefined (tests). */
  gpuMemory() {
    const b = this.clip?.gpuBuffers();
    return b && Array.from(b);
  }

  /** Bytes of wasm memory (tests: memory stays flat under load). */
  memory() {
    return wasmMemoryBytes();
  }

  /** One `Float32Array(dim)` per image. */
  async embedImages(images, normalize) {
    // Before the batch exists: a failed reload must not leave it unfreed.
    if (this.lost) await this.recover();
    const batch = new wasm.ImageBatch();
    try {
      let total = 0;
      for (let i = 0; i < images.length; i++) {
        const img = await toPixels(images[i], images.length > 1 ? `image ${i}` : 'image');
        // Counted as read (a Blob's or canvas' size is only known now), before the copy.
        total += (img.encoded ?? img.data).byteLength;
        checkRequestBytes(total);
        if (img.encoded) batch.pushEncoded(img.encoded);
        else batch.pushRgba(img.width, img.height, img.data);
      }
    } catch (e) {
      batch.free();
      throw e;
    }
    return this.split(await this.guard((clip) => clip.imageFeatures(batch, normalize)));
  }

  async embedTexts(texts, normalize) {
    return this.split(await this.guard((clip) => clip.textFeatures(texts, normalize)));
  }

  split(flat) {
    const out = [];
    for (let at = 0; at < flat.length; at += this.info.dim) out.push(flat.slice(at, at + this.info.dim));
    return out;
  }

  dispose() {
    this.clip?.free();
    this.clip = null;
  }
}

// ---------------------------------------------------------------------------------------
// Images: file bytes go to Rust as they are (the `image` crate decodes PNG, JPEG, WebP and
// GIF); pixels the browser already decoded (ImageData, ImageBitmap, <img>, canvases,
// video) are drawn onto a canvas and read back as RGBA.

const RUST_TYPES = /^image\/(png|jpeg|jpg|webp|gif)$/i;

function bytesOf(v) {
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return null;
}

const is = (v, name) => typeof globalThis[name] !== 'undefined' && v instanceof globalThis[name];

/** `{ encoded }` or `{ width, height, data }` for one image input. */
export async function toPixels(img, what = 'image') {
  const bytes = bytesOf(img);
  if (bytes) return { encoded: bytes };
  if (is(img, 'Blob')) {
    // Types the browser decodes but Rust does not (AVIF, BMP, SVG, ...) go via a bitmap.
    if (!img.type || RUST_TYPES.test(img.type) || typeof createImageBitmap === 'undefined') {
      return { encoded: new Uint8Array(await img.arrayBuffer()) };
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(img);
    } catch (e) {
      throw webclipError('bad-image', `webclip: ${what}: unsupported image type ${img.type} (use PNG, JPEG, WebP or GIF)`, e);
    }
    try {
      return draw(bitmap, bitmap.width, bitmap.height, what);
    } finally {
      bitmap.close();
    }
  }
  if (is(img, 'ImageData') || (img && typeof img === 'object' && 'data' in img && 'width' in img && 'height' in img)) {
    const data = bytesOf(img.data);
    if (!data) throw webclipError('bad-input', `webclip: ${what}: { width, height, data } needs data as a Uint8Array or Uint8ClampedArray of RGBA`);
    return { width: img.width, height: img.height, data };
  }
  if (is(img, 'HTMLImageElement')) {
    if (!img.complete || !img.naturalWidth) {
      try {
        await img.decode();
      } catch (e) {
        throw webclipError('bad-image', `webclip: ${what}: the <img> (${img.currentSrc || img.src}) could not be loaded or decoded`, e);
      }
    }
    return draw(img, img.naturalWidth, img.naturalHeight, what);
  }
  if (is(img, 'HTMLVideoElement')) return draw(img, img.videoWidth, img.videoHeight, what);
  if (is(img, 'VideoFrame')) return draw(img, img.displayWidth, img.displayHeight, what);
  if (is(img, 'ImageBitmap') || is(img, 'HTMLCanvasElement') || is(img, 'OffscreenCanvas')) {
    return draw(img, img.width, img.height, what);
  }
  throw webclipError(
    'bad-input',
    `webclip: ${what}: unsupported input ${img === null ? 'null' : typeof img === 'object' ? img.constructor?.name ?? 'object' : typeof img}; pass a Blob, bytes, ImageData, ImageBitmap, <img>, <canvas> or OffscreenCanvas`,
  );
}

function draw(source, width, height, what) {
  if (!width || !height) throw webclipError('bad-image', `webclip: ${what} has no pixels (${width}x${height}); is it loaded?`);
  checkPixels(width, height, what);
  let canvas;
  if (typeof OffscreenCanvas !== 'undefined') canvas = new OffscreenCanvas(width, height);
  else if (typeof document !== 'undefined') {
    canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
  } else throw webclipError('unsupported', `webclip: ${what}: no canvas here to read its pixels; pass the file bytes instead`);
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(source, 0, 0);
  try {
    const data = ctx.getImageData(0, 0, width, height).data;
    return { width, height, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
  } catch (e) {
    throw webclipError(
      'bad-image',
      `webclip: ${what} is cross-origin without CORS, so its pixels cannot be read; serve it with CORS and set crossOrigin = 'anonymous', or pass the file as a Blob`,
      e,
    );
  }
}
