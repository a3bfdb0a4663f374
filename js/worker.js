// The Worker side of `Clip.load({ worker: true })`: one model per worker, driven by
// `{ id, method, args }` messages from index.js; replies `{ id, ok, result | error }`,
// and `{ id, progress }` while loading. `error` is `{ message, code, cause? }`
// (errors.js), which index.js turns back into an Error with the same code.

import { LocalEngine } from './engine.js';
import { serializeError, webclipError } from './errors.js';

let engine = null;

const methods = {
  // `options` as index.js validated them (backend, towers, maxBatch, gpuWeights, ...).
  async load(options, id) {
    if (engine) throw webclipError('internal', 'webclip: this worker already holds a model');
    engine = await LocalEngine.load({
      ...options,
      onProgress: (progress) => self.postMessage({ id, progress }),
    });
    return [engine.info, []];
  },
  async embedImages(images, normalize) {
    const out = await loaded().embedImages(images, normalize);
    return [out, out.map((e) => e.buffer)];
  },
  async embedTexts(texts, normalize) {
    const out = await loaded().embedTexts(texts, normalize);
    return [out, out.map((e) => e.buffer)];
  },
  async memory() {
    return [loaded().memory(), []];
  },
  async gpuMemory() {
    return [loaded().gpuMemory(), []];
  },
  async loseDevice(options) {
    await loaded().loseDevice(options);
    return [undefined, []];
  },
};

function loaded() {
  if (!engine) throw webclipError('internal', 'webclip: the worker has no model loaded');
  return engine;
}

// Messages are handled one at a time, in order (index.js queues calls too).
let queue = Promise.resolve();
self.onmessage = ({ data: { id, method, args } }) => {
  queue = queue.then(async () => {
    try {
      const fn = methods[method];
      if (!fn) throw webclipError('internal', `webclip: unknown worker method ${method}`);
      const [result, transfer] = await fn(...args, id);
      self.postMessage({ id, ok: true, result, info: engine?.info }, transfer);
    } catch (e) {
      // `info` too: a reload after a lost GPU device may have changed the engine.
      self.postMessage({ id, ok: false, error: serializeError(e), info: engine?.info });
    }
  });
};
