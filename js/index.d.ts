// Type declarations for webclip (hand-written; the runtime is index.js).

/** A file of the model: a URL, a file path (Node.js), or its bytes. */
export type ModelFile = string | URL | Blob | ArrayBuffer | ArrayBufferView;

/** The files of a Hugging Face CLIP or SigLIP repository, one by one. */
export interface ModelFiles {
  /** `config.json` */
  config: ModelFile;
  /** `model.safetensors` (float32, float16 or bfloat16) */
  weights: ModelFile;
  /** `tokenizer.json` (CLIP, SigLIP 2); it or `spiece` is required unless `towers: 'vision'` */
  tokenizer?: ModelFile;
  /** `spiece.model` (SigLIP's SentencePiece tokenizer) */
  spiece?: ModelFile;
  /** `tokenizer_config.json`, when the repository has one (special tokens, padding side) */
  tokenizerConfig?: ModelFile;
  /** `preprocessor_config.json`; the family's defaults when absent */
  preprocessor?: ModelFile;
}

/** `'clip'` (OpenAI CLIP and its kind) or `'siglip'` (SigLIP and SigLIP 2). */
export type Family = 'clip' | 'siglip';

export type Backend = 'webgpu' | 'cpu';
export type Towers = 'both' | 'vision' | 'text';

export interface Progress {
  /** Which file: `'config' | 'weights' | 'tokenizerConfig' | 'tokenizer'` (`tokenizer.json` or `spiece.model`) ` | 'preprocessor'`. */
  phase: 'config' | 'weights' | 'tokenizerConfig' | 'tokenizer' | 'preprocessor';
  /** Bytes of this file received so far (from the network, cache, disk or memory). */
  loaded: number;
  /**
   * Bytes this file will take: its size, or for `towers: 'vision' | 'text'` the header
   * plus that tower's byte ranges; 0 while unknown (no Content-Length).
   */
  total: number;
  /** `'model.safetensors'`, ... */
  file: string;
  /** The URL or path read, or null for Blobs and buffers. */
  url: string | null;
}

export type GpuWeights = 'auto' | 'f16' | 'f32';

export interface LoadOptions {
  /**
   * A folder (URL, or path in Node.js) in the Hugging Face layout: config.json,
   * model.safetensors, tokenizer.json, preprocessor_config.json; or the files one by one.
   */
  model: string | URL | ModelFiles;
  /** `'auto'` (default): WebGPU when available, else the CPU backend. */
  backend?: 'auto' | Backend;
  /**
   * Which encoders to load (default `'both'`). With one tower over HTTP only that tower's
   * bytes of model.safetensors are downloaded (Range requests).
   */
  towers?: Towers;
  /** Run everything in a dedicated module Worker (browsers; default false). Same API. */
  worker?: boolean;
  /**
   * Keep downloaded files in Cache Storage and read them from there next time (default true;
   * browsers only). Files above `chunkBytes` (default 32 MiB) are stored in chunks, each
   * checked when read.
   */
  cache?: boolean | { chunkBytes?: number };
  /** Images or texts per forward pass (bounds memory); 0 or absent: the default. */
  maxBatch?: number;
  /**
   * How the WebGPU backend stores the matrices of linear layers (arithmetic stays f32).
   * `'f16'` halves their GPU memory and bandwidth, with embeddings within cosine 0.9999
   * of f32 storage on the test models; `'auto'` (default) takes f16 when the adapter
   * offers the `shader-f16` feature, else f32. Ignored by the CPU backend.
   */
  gpuWeights?: GpuWeights;
  /**
   * Threads of the CPU engine (default `'auto'`: every core up to 8). More than one needs
   * shared memory: a cross-origin isolated page (`Cross-Origin-Opener-Policy: same-origin`,
   * `Cross-Origin-Embedder-Policy: require-corp`) or Node.js; elsewhere one thread runs
   * and `backendInfo.build.reason` says why. An integer from 1 to 32. A page (or worker)
   * keeps the build its first `load` chose.
   */
  threads?: 'auto' | number;
  /**
   * `'int8'`: quantise a float checkpoint's matrices to int8 while loading (the layout
   * `webclip convert --dtype int8` writes), for about a quarter of their memory on either
   * engine; the download is unchanged. `'auto'` (default): as the checkpoint is. An int8
   * checkpoint (detected from its header) is int8 either way.
   */
  weights?: 'auto' | 'int8';
  /**
   * Where webclip_bg.wasm (the single-thread simd128 build) is, when a bundler moves it;
   * with it, the other builds (threads, relaxed SIMD) are not used.
   */
  wasmUrl?: string | URL;
  onProgress?: (progress: Progress) => void;
}

export interface BackendInfo {
  kind: Backend;
  /** The GPU adapter, on WebGPU. */
  adapter: string | null;
  /** Why this backend runs (for `'auto'`: why not the GPU, when not). */
  reason: string;
  /**
   * How the engine holds the matrices: `'int8'` (an int8 checkpoint, or `weights: 'int8'`),
   * else `'f16'` or `'f32'` (`gpuWeights` resolved on WebGPU; the CPU engine expands float
   * weights to f32).
   */
  weights: 'int8' | 'f16' | 'f32';
  /** Threads the CPU engine runs on; null on WebGPU. */
  threads: number | null;
  /** The wasm build this thread runs, and why (no relaxed SIMD, not cross-origin isolated, ...). */
  build: WasmBuild;
}

export interface WasmBuild {
  /** `'webclip'`, `'webclip_relaxed'`, `'webclip_mt'` or `'webclip_mt_relaxed'`. */
  name: string;
  /** What it was built with: `'simd128'`, `'relaxed-simd'`, `'threads'`. */
  features: string[];
  /** Threads its pool has (the calling thread included). */
  threads: number;
  reason: string;
  /** The instruction its int8 matmuls multiply with (`'i32x4.relaxed_dot_i8x16_i7x16_add'`
   * with relaxed SIMD, else `'i32x4.dot_i16x8_s'`), on 7-bit activation codes. */
  integerDot: string | null;
}

/**
 * An image: encoded file bytes or a Blob (PNG, JPEG, WebP, GIF; in browsers any type
 * they decode), or decoded pixels: ImageData, `{ width, height, data }` RGBA, ImageBitmap,
 * an `<img>`, `<canvas>`, `<video>`, OffscreenCanvas or VideoFrame.
 */
export type ImageInput =
  | ArrayBuffer
  | ArrayBufferView
  | Blob
  | ImageData
  | { width: number; height: number; data: Uint8Array | Uint8ClampedArray }
  | ImageBitmap
  | HTMLImageElement
  | HTMLCanvasElement
  | HTMLVideoElement
  | OffscreenCanvas
  | VideoFrame;

export interface EmbedOptions {
  /** L2-normalise (default true); false gives the projected features as the model outputs them. */
  normalize?: boolean;
}

export interface Label {
  label: string;
  /**
   * CLIP: the softmax probability over the labels given (they sum to 1). SigLIP: the
   * sigmoid of `logit`, the probability that this label applies, independent of the others.
   */
  score: number;
  /** `logitScale * cosine(image, prompt) + logitBias` */
  logit: number;
}

export interface Ranked {
  /** Index into the embeddings given. */
  index: number;
  /** Cosine similarity to the query. */
  score: number;
}

/**
 * What went wrong, as the `code` of every Error webclip rejects with (see README, "Errors").
 * Match on it, never on the message, which may change.
 */
export type WebclipErrorCode =
  /** A file that is not there (HTTP 404, no such path). */
  | 'not-found'
  /** A download that failed: no connection, a dropped one, an HTTP error, an HTML page instead of the file. */
  | 'network'
  /** A local file that could not be read. */
  | 'io'
  /** `config.json` or `preprocessor_config.json` is invalid. */
  | 'bad-config'
  /** `model.safetensors` is not safetensors, truncated, or lacks or misshapes a tensor. */
  | 'bad-weights'
  /** `tokenizer.json` is invalid, or missing for the text tower. */
  | 'bad-tokenizer'
  /** A wrong option or argument. */
  | 'bad-input'
  /** Bytes that are no decodable image, or an image whose pixels cannot be read. */
  | 'bad-image'
  /** The call needs a tower that `towers` did not load. */
  | 'tower-not-loaded'
  /** A call after `dispose()`. */
  | 'disposed'
  /** No WebGPU here, or no adapter or device can be had (`backend: 'webgpu'`). */
  | 'no-webgpu'
  /** The GPU device was lost; the next call reloads the model. */
  | 'device-lost'
  /** A failure on a working GPU device: a limit too small for the model, out of memory. */
  | 'gpu'
  /** Valid input this build or environment cannot run (`worker: true` in Node.js, ...). */
  | 'unsupported'
  /** `webclip_bg.wasm` could not be fetched or instantiated. */
  | 'wasm'
  /** The Worker could not be started or failed. */
  | 'worker'
  /** Index storage failed: full (`QuotaExceededError` as the cause), blocked, closed. */
  | 'storage'
  /** A stored index made with another model (fingerprint), dimension, precision or format. */
  | 'index-mismatch'
  /** A bug in webclip. */
  | 'internal';

/** The Error every rejected promise (and every throw) of webclip carries. */
export interface WebclipError extends Error {
  code: WebclipErrorCode;
  /** The failure this one wraps, when there is one (an Error from Rust, `fetch`, ...). */
  cause?: unknown;
}

/**
 * A loaded CLIP model. Calls on one instance run one after another, in call order. Every
 * failure rejects with a {@link WebclipError}.
 */
export declare class Clip {
  /** Download (or read) a model and start its engine. */
  static load(options: LoadOptions): Promise<Clip>;
  /** Delete every model file kept in Cache Storage; resolves to whether there was one. */
  static clearCache(): Promise<boolean>;
  /** Instantiate the wasm module ahead of time (optional); resolves to the build that runs. */
  static init(wasmUrl?: string | URL, threads?: 'auto' | number): Promise<WasmBuild>;
  /** Cosine similarity of two vectors of the same length. */
  static cosine(a: ArrayLike<number>, b: ArrayLike<number>): number;
  /** `embeddings` sorted by cosine similarity to `query`, best first. */
  static rank(query: ArrayLike<number>, embeddings: ArrayLike<number>[], options?: { topK?: number }): Ranked[];
  /** Softmax of `logits` (as `classify` scores CLIP's: pass `logitScale * cosine` per label). */
  static softmax(logits: ArrayLike<number>): number[];
  /** The logistic sigmoid (as `classify` scores SigLIP's logits). */
  static sigmoid(logit: number): number;

  private constructor();

  /**
   * The backend that runs the calls. After a lost GPU device the next call reloads the
   * model, which may change it ('auto' falls back to the CPU when no device can be had).
   */
  readonly backend: Backend;
  /** Which backend runs and why; after a reload, `reason` starts with `recovered after the GPU device was lost`. */
  readonly backendInfo: BackendInfo;
  /** Length of each embedding (`projection_dim`). */
  readonly dim: number;
  /** Side of the model's square input, in pixels. */
  readonly imageSize: number;
  /** `exp(logit_scale)`: logits = logitScale * cosine + logitBias (100 for OpenAI's CLIP). */
  readonly logitScale: number;
  /** SigLIP's `logit_bias`, added to every logit; 0 for CLIP. */
  readonly logitBias: number;
  /** Which model family: CLIP scores labels with a softmax, SigLIP with a sigmoid each. */
  readonly family: Family;
  readonly towers: Towers;
  /**
   * The model's identity: a hash of the weights' safetensors header and config.json (32 hex
   * digits), the same wherever the files are served from. A {@link ClipIndex} is keyed by it.
   */
  readonly fingerprint: string | null;
  /**
   * Why a downloaded file could not be stored in Cache Storage (out of quota: the model is
   * kept in memory for this session and downloaded again next time); null when it was.
   */
  readonly cacheNotice: string | null;
  /** Whether the model runs in a Worker. */
  readonly worker: boolean;
  readonly disposed: boolean;

  /** One embedding per image, in order. */
  embedImages(images: ImageInput[], options?: EmbedOptions): Promise<Float32Array[]>;
  embedImage(image: ImageInput, options?: EmbedOptions): Promise<Float32Array>;
  /** One embedding per text, in order (truncated to the model's context: 77 tokens for CLIP, 64 for SigLIP). */
  embedTexts(texts: string[], options?: EmbedOptions): Promise<Float32Array[]>;
  embedText(text: string, options?: EmbedOptions): Promise<Float32Array>;
  /**
   * Zero-shot classification of the labels, each turned into a prompt by `template` (`{}`
   * = the label; default `'{}'`), best first: CLIP's scores are a softmax over the labels,
   * SigLIP's the sigmoid of each label's logit (see `Label.score`).
   */
  classify(image: ImageInput, labels: string[], options?: { template?: string }): Promise<Label[]>;
  /** `embeddings` sorted by cosine similarity to `query`, best first. */
  rank(query: ArrayLike<number>, embeddings: ArrayLike<number>[], options?: { topK?: number }): Ranked[];
  /** Free the model (and its worker) once the calls already made have settled; later calls reject. */
  dispose(): void;
}

/** How a ClipIndex stores its rows in memory: 2, 1 (+4) or 4 bytes per value. */
export type IndexPrecision = 'f16' | 'i8' | 'f32';

/** Metadata of an entry: anything structured-cloneable (plain objects, strings, numbers, ...). */
export type IndexMetadata = any;

/** One field condition of a filter: a value (===), one of an array, or a range. */
export type FieldCondition =
  | string
  | number
  | boolean
  | null
  | Array<string | number | boolean | null>
  | { gt?: number | string; gte?: number | string; lt?: number | string; lte?: number | string; ne?: unknown };

export type IndexFilter<M = IndexMetadata> = ((metadata: M, key: IndexKey) => boolean) | Record<string, FieldCondition>;

export type IndexKey = string | number;

/** A stored row as a storage sees it. */
export interface StoredRow {
  key: IndexKey;
  /** The compact row (its encoding depends on the precision). */
  code: Uint8Array;
  metadata: IndexMetadata;
  /** The exact, L2-normalised embedding (absent when rows are read for loading). */
  exact?: Float32Array;
}

export interface IndexMeta {
  version: number;
  fingerprint: string | null;
  dim: number;
  precision: IndexPrecision;
}

/** Where a ClipIndex keeps its entries (implement it for OPFS, a server, tests). Every failure rejects with code `storage`. */
export interface IndexStorage {
  open(): Promise<IndexMeta | null>;
  writeMeta(meta: IndexMeta): Promise<void>;
  /** Rows in key order with keys after `after` (undefined: from the first), at most `limit`. */
  rows(after: IndexKey | undefined, limit: number): Promise<StoredRow[]>;
  /** All rows in one transaction, or none. */
  put(rows: Required<StoredRow>[]): Promise<void>;
  delete(keys: IndexKey[]): Promise<void>;
  exact(keys: IndexKey[]): Promise<(Float32Array | null)[]>;
  clear(): Promise<void>;
  close(): void;
}

export declare class MemoryStorage implements IndexStorage {
  /** `exact: false` keeps no exact embeddings (no re-scoring; less memory). */
  constructor(options?: { exact?: boolean });
  open(): Promise<IndexMeta | null>;
  writeMeta(meta: IndexMeta): Promise<void>;
  rows(after: IndexKey | undefined, limit: number): Promise<StoredRow[]>;
  put(rows: Required<StoredRow>[]): Promise<void>;
  delete(keys: IndexKey[]): Promise<void>;
  exact(keys: IndexKey[]): Promise<(Float32Array | null)[]>;
  clear(): Promise<void>;
  close(): void;
}

/** IndexedDB database `webclip-index:<name>`. */
export declare class IndexedDbStorage implements IndexStorage {
  constructor(name: string);
  static destroy(name: string): Promise<void>;
  open(): Promise<IndexMeta | null>;
  writeMeta(meta: IndexMeta): Promise<void>;
  rows(after: IndexKey | undefined, limit: number): Promise<StoredRow[]>;
  put(rows: Required<StoredRow>[]): Promise<void>;
  delete(keys: IndexKey[]): Promise<void>;
  exact(keys: IndexKey[]): Promise<(Float32Array | null)[]>;
  clear(): Promise<void>;
  close(): void;
}

export interface IndexOpenOptions {
  /** A loaded model: gives `dim` and `fingerprint`, and lets `search` take texts and images. */
  clip?: Clip;
  /** Embedding length (when no `clip`). */
  dim?: number;
  /** The model's fingerprint (when no `clip`); a stored index with another one is refused. */
  fingerprint?: string | null;
  /** Row storage in memory (default `'i8'`; the best candidates are re-scored exactly). */
  precision?: IndexPrecision;
  /** `'memory'` (default without `name`), `'indexeddb'` (default with `name`), or your own. */
  storage?: 'memory' | 'indexeddb' | IndexStorage;
  /** The IndexedDB index's name. */
  name?: string;
  /** Candidates per result re-scored with the exact embedding (default 4; 0: none). */
  rescore?: number;
  /** A stored index of another model, dimension or precision: `'throw'` (default, code `index-mismatch`) or `'reset'` (empty it). */
  onMismatch?: 'throw' | 'reset';
  /** Called after each batch of stored rows is loaded. */
  onProgress?: (p: { loaded: number }) => void;
  wasmUrl?: string | URL;
}

export interface IndexHit<M = IndexMetadata> {
  key: IndexKey;
  /** Cosine similarity to the query (exact after re-scoring). */
  score: number;
  metadata: M;
}

export interface IndexSearchOptions<M = IndexMetadata> {
  /** How many (default 10). */
  k?: number;
  filter?: IndexFilter<M>;
  /** Only hits scoring at least this. */
  minScore?: number;
}

/** A searchable library of embeddings with metadata, in WebAssembly, stored in memory or IndexedDB. */
export declare class ClipIndex<M = IndexMetadata> {
  static open<M = IndexMetadata>(options: IndexOpenOptions): Promise<ClipIndex<M>>;
  /** Delete the IndexedDB index `name`. */
  static deleteStored(name: string): Promise<void>;
  private constructor();
  /** Resolves when every stored row is loaded (searches before see those loaded so far). */
  readonly ready: Promise<void>;
  readonly loaded: boolean;
  readonly closed: boolean;
  readonly dim: number;
  readonly precision: IndexPrecision;
  readonly fingerprint: string | null;
  readonly rescore: number;
  /** Entries in memory. */
  readonly size: number;
  /** Bytes of the compact rows in WebAssembly. */
  readonly memoryBytes: number;
  readonly bytesPerRow: number;
  /** Stored rows that could not be read back, skipped on load. */
  readonly damaged: { key: IndexKey; error: string }[];
  has(key: IndexKey): boolean;
  /** The entry, with its compact embedding decoded. */
  get(key: IndexKey): { key: IndexKey; metadata: M; embedding: Float32Array } | undefined;
  keys(): IndexKey[];
  /** Add or replace one entry. */
  add(key: IndexKey, embedding: ArrayLike<number>, metadata?: M): Promise<number>;
  /** Add or replace entries in one storage transaction (all or none). */
  addMany(entries: { key: IndexKey; embedding: ArrayLike<number>; metadata?: M }[]): Promise<number>;
  setMetadata(key: IndexKey, metadata: M): Promise<void>;
  /** Remove entries; resolves to how many there were. */
  remove(...keys: (IndexKey | IndexKey[])[]): Promise<number>;
  clear(): Promise<void>;
  /** Top `k` by cosine similarity to an embedding (or, with `clip`, a text or an image). */
  search(query: ArrayLike<number> | string | ImageInput, options?: IndexSearchOptions<M>): Promise<IndexHit<M>[]>;
  /** Groups of keys whose embeddings are near-duplicates (cosine >= threshold, default 0.95). */
  duplicates(options?: { threshold?: number; filter?: IndexFilter<M> }): IndexKey[][];
  /**
   * Add the entries of an index file (written by `webclip index DIR --model M --out FILE` or
   * `exportFile`); a file of another model rejects with `index-mismatch`. Resolves to the entries read.
   */
  importFile(file: Uint8Array | ArrayBuffer | Blob, options?: { batch?: number; onProgress?: (p: { loaded: number; total: number }) => void }): Promise<number>;
  /** The whole index as an index file (safetensors: `embeddings` F32 [n, dim], keys and metadata). */
  exportFile(): Promise<Uint8Array>;
  stats(): { size: number; dim: number; precision: IndexPrecision; bytesPerRow: number; memoryBytes: number; fingerprint: string | null; loaded: boolean; damaged: number };
  close(): Promise<void>;
}

export default Clip;
