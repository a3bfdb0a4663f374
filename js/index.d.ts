// Type declarations for webclip (hand-written; the runtime is index.js).

/** A file of the model: a URL, a file path (Node.js), or its bytes. */
export type ModelFile = string | URL | Blob | ArrayBuffer | ArrayBufferView;

/** The files of a Hugging Face CLIP repository, one by one. */
export interface ModelFiles {
  /** `config.json` */
  config: ModelFile;
  /** `model.safetensors` (float32, float16 or bfloat16) */
  weights: ModelFile;
  /** `tokenizer.json`; required unless `towers: 'vision'` */
  tokenizer?: ModelFile;
  /** `preprocessor_config.json`; CLIP's defaults when absent */
  preprocessor?: ModelFile;
}

export type Backend = 'webgpu' | 'cpu';
export type Towers = 'both' | 'vision' | 'text';

export interface Progress {
  /** Which file: `'config' | 'weights' | 'tokenizer' | 'preprocessor'`. */
  phase: 'config' | 'weights' | 'tokenizer' | 'preprocessor';
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
  /** Keep downloaded files in Cache Storage and read them from there next time (default true; browsers only). */
  cache?: boolean;
  /** Images or texts per forward pass (bounds memory); 0 or absent: the default. */
  maxBatch?: number;
  /**
   * How the WebGPU backend stores the matrices of linear layers (arithmetic stays f32).
   * `'f16'` halves their GPU memory and bandwidth, with embeddings within cosine 0.9999
   * of f32 storage on the test models; `'auto'` (default) takes f16 when the adapter
   * offers the `shader-f16` feature, else f32. Ignored by the CPU backend.
   */
  gpuWeights?: GpuWeights;
  /** Where webclip_bg.wasm is, when a bundler moves it. */
  wasmUrl?: string | URL;
  onProgress?: (progress: Progress) => void;
}

export interface BackendInfo {
  kind: Backend;
  /** The GPU adapter, on WebGPU. */
  adapter: string | null;
  /** Why this backend runs (for `'auto'`: why not the GPU, when not). */
  reason: string;
  /** How the WebGPU backend stores matrices (`gpuWeights` resolved); null on the CPU backend. */
  weights: GpuWeights | null;
  /** Why a downloaded file could not be kept in Cache Storage (a full disk:
   * `QuotaExceededError: …`); null when every file was cached or caching is off. */
  cacheSkipped: string | null;
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
  /** Softmax probability over the labels given. */
  score: number;
  /** `logitScale * cosine(image, prompt)` */
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
  /** Instantiate the wasm module ahead of time (optional). */
  static init(wasmUrl?: string | URL): Promise<void>;
  /** Cosine similarity of two vectors of the same length. */
  static cosine(a: ArrayLike<number>, b: ArrayLike<number>): number;
  /** `embeddings` sorted by cosine similarity to `query`, best first. */
  static rank(query: ArrayLike<number>, embeddings: ArrayLike<number>[], options?: { topK?: number }): Ranked[];
  /** Softmax of `logits` (as `classify` scores them: pass `logitScale * cosine` per label). */
  static softmax(logits: ArrayLike<number>): number[];

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
  /** `exp(logit_scale)`: logits = logitScale * cosine (100 for OpenAI's CLIP). */
  readonly logitScale: number;
  readonly towers: Towers;
  /** Whether the model runs in a Worker. */
  readonly worker: boolean;
  readonly disposed: boolean;

  /** One embedding per image, in order. */
  embedImages(images: ImageInput[], options?: EmbedOptions): Promise<Float32Array[]>;
  embedImage(image: ImageInput, options?: EmbedOptions): Promise<Float32Array>;
  /** One embedding per text, in order (truncated to the model's 77 tokens). */
  embedTexts(texts: string[], options?: EmbedOptions): Promise<Float32Array[]>;
  embedText(text: string, options?: EmbedOptions): Promise<Float32Array>;
  /**
   * Zero-shot classification: softmax of `logitScale * cosine` over the labels, each
   * turned into a prompt by `template` (`{}` = the label; default `'{}'`), best first.
   */
  classify(image: ImageInput, labels: string[], options?: { template?: string }): Promise<Label[]>;
  /** `embeddings` sorted by cosine similarity to `query`, best first. */
  rank(query: ArrayLike<number>, embeddings: ArrayLike<number>[], options?: { topK?: number }): Ranked[];
  /** Free the model (and its worker) once the calls already made have settled; later calls reject. */
  dispose(): void;
}

export default Clip;
