// Errors of the JS API: every one carries a stable `code` that programs match instead of
// the message (js/README.md lists them; index.d.ts types them as `WebclipErrorCode`). The
// Rust layer's codes (`ClipError::code`) arrive on the Errors wasm throws; the JS layer
// adds its own (`network`, `worker`, ...), keeps a wrapped error's code, and carries
// code, message and cause across the worker's postMessage.

/** Every code an Error of webclip can carry. */
export const ERROR_CODES = [
  // files and downloads
  'not-found', // a file that is not there (HTTP 404, no such path)
  'network', // a download that failed: no connection, a dropped one, an HTTP error, an HTML page
  'io', // a local file that could not be read
  // the model's files
  'bad-config', // config.json or preprocessor_config.json
  'bad-weights', // model.safetensors: not safetensors, truncated, missing or misshaped tensors
  'bad-tokenizer', // tokenizer.json, or no tokenizer for the text tower
  // calls
  'bad-input', // a wrong option or argument
  'bad-image', // bytes that are no decodable image, an image that cannot be read
  'tower-not-loaded', // the text or vision tower was not loaded (`towers`)
  'disposed', // a call after dispose()
  // the machine
  'no-webgpu', // no WebGPU here, or no adapter or device can be had
  'device-lost', // the GPU device was lost (the next call reloads the model)
  'gpu', // a failure on a working GPU device: limits, out of memory, validation
  'unsupported', // valid input this build or browser cannot run (a Worker in Node.js, ...)
  'wasm', // webclip_bg.wasm could not be fetched or instantiated
  'worker', // the Worker could not start or failed
  // the index
  'storage', // index storage failed: full (QuotaExceededError), blocked, closed
  'index-mismatch', // a stored index made with another model, dimension, precision or format
  'internal', // a bug in webclip
];

const KNOWN = new Set(ERROR_CODES);

/** An `Error` with `code` (and `cause` when given). */
export function webclipError(code, message, cause) {
  return withCode(cause === undefined ? new Error(message) : new Error(message, { cause }), code);
}

/** `error` with `code` set (a TypeError stays a TypeError). */
export function withCode(error, code) {
  error.code = code;
  return error;
}

/** The webclip code of `e`, or `fallback` for anything else (a callback's own Error, a bug). */
export function codeOf(e, fallback = 'internal') {
  return KNOWN.has(e?.code) ? e.code : fallback;
}

/**
 * `e` as a plain object for postMessage: `{ message, code, cause? }`, causes a few deep
 * (a cause that is not webclip's has no code).
 */
export function serializeError(e, depth = 0) {
  const out = { message: String(e?.message ?? e), code: codeOf(e, depth ? undefined : 'internal') };
  if (e?.cause !== undefined && depth < 4) out.cause = serializeError(e.cause, depth + 1);
  return out;
}

/** The Error that `serializeError` described, with the same code and causes. */
export function deserializeError(d) {
  const cause = d.cause === undefined ? undefined : deserializeError(d.cause);
  const e = cause === undefined ? new Error(d.message) : new Error(d.message, { cause });
  if (d.code !== undefined) e.code = d.code;
  return e;
}
