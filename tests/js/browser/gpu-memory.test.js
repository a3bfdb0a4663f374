// GPU memory under load and when a batch does not fit (headless Chromium, WebGPU on
// SwiftShader, the tiny fixture). The WebGPU engine counts every buffer it holds
// (`_gpuMemory()`: weights, pooled activations, the uniform arena, staging in flight) and
// destroys each once it is no longer needed, so GPU memory is flat across calls of the
// same shapes and `dispose()` frees all of it. A batch whose activations do not fit in
// GPU memory fails with a `gpu` error that says so, and the model stays usable.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './harness.js';
import { golden, assertParity } from '../common.js';

const NAME = 'tiny-quickgelu';
// Sustained rounds after warm-up; WEBCLIP_LOAD_COUNT raises it for a soak run.
const ROUNDS = Number(process.env.WEBCLIP_LOAD_COUNT ?? 6);

const env = useBrowser();

const run = (fn, arg) => env.browser.run(`${env.server.url}/pages/index.html`, fn, arg);

for (const worker of [false, true]) {
  test(`'webgpu'${worker ? ' in a worker' : ''}: GPU buffers stay flat over ${ROUNDS} rounds of images and texts, every result matches, and dispose frees them all`, async () => {
    const g = golden(NAME);
    const r = await run(async (h, { name, images, texts, worker, rounds }) => {
      // Count the page's own GPU buffers from outside the engine (not reachable in a worker).
      const live = new Set();
      const create = GPUDevice.prototype.createBuffer;
      const destroy = GPUBuffer.prototype.destroy;
      GPUDevice.prototype.createBuffer = function (...args) {
        const b = create.apply(this, args);
        live.add(b);
        return b;
      };
      GPUBuffer.prototype.destroy = function (...args) {
        live.delete(this);
        return destroy.apply(this, args);
      };
      try {
        const clip = await h.Clip.load({ model: h.model(name), backend: 'webgpu', worker });
        const loaded = await clip._gpuMemory();
        const blobs = await Promise.all(images.map((n) => h.imageBlob(n)));
        const round = async () => [h.plain(await clip.embedImages(blobs)), h.plain(await clip.embedTexts(texts))];
        await round(); // warm-up: fills the activation pool
        const warm = await clip._gpuMemory();
        const seen = [];
        let last;
        for (let i = 0; i < rounds; i++) {
          last = await round();
          seen.push(await clip._gpuMemory());
        }
        const pageLive = live.size;
        clip.dispose();
        // dispose() frees the model once the calls queued before it are done: a task later.
        // (The worker's device is gone with its worker.)
        await new Promise((r) => setTimeout(r, 50));
        return { loaded, warm, seen, pageLive, afterDispose: live.size, last };
      } finally {
        GPUDevice.prototype.createBuffer = create;
        GPUBuffer.prototype.destroy = destroy;
      }
    }, { name: NAME, images: g.images, texts: g.texts, worker, rounds: ROUNDS });

    const [buffers, bytes] = r.warm;
    console.log(`# ${worker ? 'worker' : 'page'}: after load ${r.loaded[0]} buffers / ${r.loaded[1]} bytes; after warm-up ${buffers} / ${bytes}; after ${ROUNDS} more rounds ${r.seen.at(-1)}`);
    assert.ok(r.loaded[0] > 0 && bytes > r.loaded[1], `activations counted: ${JSON.stringify(r)}`);
    for (const [i, s] of r.seen.entries()) assert.deepEqual(s, r.warm, `round ${i}: GPU buffers grew`);
    if (!worker) {
      assert.equal(r.pageLive, buffers, 'the engine counts every buffer the page holds on the device');
      assert.equal(r.afterDispose, 0, 'dispose destroys every GPU buffer');
    }
    assertParity(assert, r.last[0], g.imageEmbeds, g.images);
    assertParity(assert, r.last[1], g.textEmbeds, g.texts);
  });
}

test("'webgpu': a batch out of GPU memory fails with a 'gpu' error that says so; the model stays loaded and the next batch matches", async () => {
  const g = golden(NAME);
  const images = Array.from({ length: 8 }, (_, i) => g.images[i % g.images.length]);
  const r = await run(async (h, { name, images }) => {
    const clip = await h.Clip.load({ model: h.model(name), backend: 'webgpu', towers: 'vision' });
    const blobs = await Promise.all(images.map((n) => h.imageBlob(n)));
    await clip.embedImages(blobs.slice(0, 1)); // the pool holds batch-1 activations
    // The browser reports an allocation that does not fit as a GPUOutOfMemoryError in
    // the error scope around it: make every new activation buffer of the next call do so.
    const push = GPUDevice.prototype.pushErrorScope;
    const pop = GPUDevice.prototype.popErrorScope;
    const create = GPUDevice.prototype.createBuffer;
    const scopes = [];
    let injected = 0;
    GPUDevice.prototype.pushErrorScope = function (filter) {
      scopes.push({ filter, oom: false });
      return push.call(this, filter);
    };
    GPUDevice.prototype.createBuffer = function (desc) {
      const top = scopes.at(-1);
      if (top?.filter === 'out-of-memory' && desc?.label === 'activation') (top.oom = true), injected++;
      return create.call(this, desc);
    };
    GPUDevice.prototype.popErrorScope = function () {
      const s = scopes.pop();
      const real = pop.call(this);
      return s?.oom ? real.then(() => new GPUOutOfMemoryError('injected: the allocation does not fit')) : real;
    };
    let code = null;
    const failed = await clip.embedImages(blobs).then(() => null, (e) => ((code = e.code), e.message));
    GPUDevice.prototype.pushErrorScope = push;
    GPUDevice.prototype.popErrorScope = pop;
    GPUDevice.prototype.createBuffer = create;
    const next = h.plain(await clip.embedImages(blobs));
    const out = { failed, code, injected, next, backend: clip.backend };
    clip.dispose();
    return out;
  }, { name: NAME, images });
  assert.ok(r.injected > 0, 'the batch allocated new activations');
  assert.equal(r.code, 'gpu');
  assert.match(r.failed ?? 'the batch out of memory resolved', /out of GPU memory for this batch .*the model is still loaded, and smaller batches need less memory/);
  assert.equal(r.backend, 'webgpu');
  assertParity(assert, r.next, images.map((n) => g.imageEmbeds[g.images.indexOf(n)]), images);
});
