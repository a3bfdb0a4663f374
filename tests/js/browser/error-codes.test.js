// Error codes survive the worker hop (headless Chromium): an Error rebuilt on the main
// thread has the worker's code, message and cause chain, for errors from Rust and from the
// JS layer; a worker that cannot start rejects with `worker`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './harness.js';

const env = useBrowser();

test('codes, messages and causes cross from the worker', async () => {
  const r = await env.browser.run(`${env.server.url}/pages/index.html`, async (h) => {
    const describe = (e) => e && { message: e.message, code: e.code, isError: e instanceof Error, cause: describe(e.cause) };
    const err = (promise) => promise.then(() => 'resolved', describe);
    const base = h.model('tiny-quickgelu');
    const files = (over) => ({ config: `${base}config.json`, weights: `${base}model.safetensors`, tokenizer: `${base}tokenizer.json`, ...over });
    const out = {};
    for (const worker of [false, true]) {
      const o = {};
      // From Rust, wrapped by the JS layer: bad-config with the Rust error as its cause.
      o.config = await err(h.Clip.load({ model: files({ config: new TextEncoder().encode('{ not json') }), worker, backend: 'cpu' }));
      // From the JS layer in the worker.
      o.notFound = await err(h.Clip.load({ model: h.model('no-such-model'), worker, backend: 'cpu' }));
      const clip = await h.Clip.load({ model: base, worker, backend: 'cpu' });
      // From Rust, unwrapped: the image decoder.
      o.image = await err(clip.embedImages([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3])]));
      o.blob = await err(clip.embedImages([new Blob(['not an image'], { type: 'text/plain' })]));
      // A call in flight when the model is disposed.
      const inFlight = err(clip.embedTexts(['a photo of a cat']));
      clip.dispose();
      o.inFlight = await inFlight;
      o.disposed = await err(clip.embedTexts(['a photo of a cat']));
      out[worker ? 'worker' : 'local'] = o;
    }
    // A worker script that cannot be loaded.
    const Real = globalThis.Worker;
    globalThis.Worker = class extends Real {
      constructor(url, options) {
        super(new URL('/pkg/no-such-worker.js', location.href), options);
      }
    };
    out.noWorker = await err(h.Clip.load({ model: base, worker: true }));
    globalThis.Worker = Real;
    return out;
  });

  for (const where of ['local', 'worker']) {
    const o = r[where];
    const at = (what) => `${where}: ${what}: ${JSON.stringify(o[what])}`;
    assert.equal(o.config.code, 'bad-config', at('config'));
    assert.equal(o.config.isError, true, at('config'));
    assert.match(o.config.message, /^webclip: could not load the model .*: invalid config: /, at('config'));
    assert.equal(o.config.cause?.code, 'bad-config', at('config'));
    assert.match(o.config.cause?.message ?? '', /^invalid config: /, at('config'));
    assert.equal(o.notFound.code, 'not-found', at('notFound'));
    assert.match(o.notFound.message, /config\.json not found at .*no-such-model\/config\.json/, at('notFound'));
    assert.equal(o.image.code, 'bad-image', at('image'));
    assert.match(o.image.message, /^image: /, at('image'));
    assert.equal(o.blob.code, 'bad-image', at('blob'));
    assert.match(o.blob.message, /unsupported image type text\/plain/, at('blob'));
    assert.equal(o.disposed.code, 'disposed', at('disposed'));
    // The call made before dispose() runs to its end.
    assert.equal(o.inFlight, 'resolved', at('inFlight'));
  }
  // Across the hop, the same as on the main thread.
  for (const what of ['config', 'notFound', 'image', 'disposed']) {
    assert.deepEqual(r.worker[what], r.local[what], `${what}: worker vs main thread`);
  }
  assert.equal(r.noWorker.code, 'worker', JSON.stringify(r.noWorker));
  assert.match(r.noWorker.message, /^webclip: the worker failed/);
});
