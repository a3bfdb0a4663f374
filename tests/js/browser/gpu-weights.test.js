// `gpuWeights` (headless Chromium, WebGPU on SwiftShader, the tiny fixture): 'f16' stores
// the matrices as f16 on any adapter and stays within the fixtures README's f16 bound
// (cosine above 0.999 to the reference); 'auto' follows the adapter's `shader-f16`
// feature, which SwiftShader lacks, so it keeps f32; backendInfo.weights says which.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './harness.js';
import { golden, assertParity } from '../common.js';

const NAME = 'tiny-quickgelu';
const IMAGES = ['chelsea.png', 'coffee.png'];

const env = useBrowser();

const run = (fn, arg) => env.browser.run(`${env.server.url}/pages/index.html`, fn, arg);

test("gpuWeights 'f16': f16 storage on WebGPU, embeddings within the f16 bound", async () => {
  const g = golden(NAME);
  const r = await run(async (h, { name, texts, images }) => {
    const clip = await h.Clip.load({ model: h.model(name), backend: 'webgpu', gpuWeights: 'f16' });
    const blobs = await Promise.all(images.map((i) => h.imageBlob(i)));
    const out = {
      info: clip.backendInfo,
      images: h.plain(await clip.embedImages(blobs)),
      texts: h.plain(await clip.embedTexts(texts)),
    };
    clip.dispose();
    return out;
  }, { name: NAME, texts: g.texts, images: IMAGES });

  assert.equal(r.info.kind, 'webgpu', JSON.stringify(r.info));
  assert.equal(r.info.weights, 'f16');
  // Fixtures README: f16 weights, cosine above 0.999 (0.9999 with f32 arithmetic).
  const want = IMAGES.map((i) => g.imageEmbeds[g.images.indexOf(i)]);
  assertParity(assert, r.images, want, IMAGES, { min: 0.999 });
  assertParity(assert, r.texts, g.textEmbeds, g.texts, { min: 0.999 });
});

test("gpuWeights 'auto' follows shader-f16 (SwiftShader: none, so f32), in a worker too; the CPU ignores it", async () => {
  const r = await run(async (h, { name }) => {
    const adapter = await navigator.gpu.requestAdapter();
    const out = { shaderF16: adapter.features.has('shader-f16') };
    for (const [key, opts] of [
      ['auto', { backend: 'webgpu', gpuWeights: 'auto' }],
      ['default', { backend: 'webgpu' }],
      ['workerF16', { backend: 'webgpu', gpuWeights: 'f16', worker: true }],
      ['workerAuto', { backend: 'webgpu', worker: true }],
      ['cpu', { backend: 'cpu', gpuWeights: 'f16' }],
    ]) {
      const clip = await h.Clip.load({ model: h.model(name), towers: 'text', ...opts });
      out[key] = clip.backendInfo;
      clip.dispose();
    }
    out.bad = await h.Clip.load({ model: h.model(name), gpuWeights: 'f8' }).then(() => 'loaded', (e) => e.message);
    return out;
  }, { name: NAME });

  assert.equal(r.shaderF16, false, 'SwiftShader offers no shader-f16');
  const expect = r.shaderF16 ? 'f16' : 'f32';
  assert.equal(r.auto.kind, 'webgpu');
  assert.equal(r.auto.weights, expect);
  assert.equal(r.default.weights, expect);
  assert.equal(r.workerF16.weights, 'f16');
  assert.equal(r.workerAuto.weights, expect);
  assert.equal(r.cpu.kind, 'cpu');
  assert.equal(r.cpu.weights, 'f32'); // the CPU engine expands float weights to f32
  assert.match(r.bad, /^webclip: gpuWeights must be one of auto, f16, f32, not "f8"$/);
});
