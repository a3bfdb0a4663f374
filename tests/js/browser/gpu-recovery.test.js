// A GPU device lost while a model is loaded (headless Chromium, WebGPU on SwiftShader,
// the tiny fixture). The contract (js/README.md): the first call that runs after or
// during the loss rejects with an Error saying the device was lost and that the next call
// reloads; the next call reloads the model from its sources with the same backend choice
// ('webgpu': a new device; 'auto': the CPU backend when no GPU can be had) and runs;
// `backend` / `backendInfo` then describe the new engine and say it recovered.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './harness.js';
import { golden, assertParity } from '../common.js';

const NAME = 'tiny-quickgelu';
const LOST = /^webclip: the GPU device was lost \(Destroyed\b.*\); this call failed, and the next call will reload the model$/;

const env = useBrowser();

// How many requests for the weights the server has seen, for the page to note down.
const weightDownloads = () => env.server.requests(`/fixtures/${NAME}/model.safetensors`).length;
const run = (fn, arg) => env.browser.run(`${env.server.url}/pages/index.html`, fn, arg, { weightDownloads });

for (const worker of [false, true]) {
  test(`'webgpu'${worker ? ' in a worker' : ''}: a destroyed device fails the next call, the call after reloads onto a new device`, async () => {
    const g = golden(NAME);
    const r = await run(async (h, { name, texts, worker }) => {
      const clip = await h.Clip.load({ model: h.model(name), backend: 'webgpu', towers: 'text', worker });
      const before = { backend: clip.backend, info: clip.backendInfo };
      await clip.embedTexts(texts);
      await clip._loseDevice();
      const codes = {};
      const lost = await clip.embedTexts(texts).then(() => null, (e) => ((codes.lost = e.code), e.message));
      const afterLoss = clip.backendInfo;
      let noAdapter = null;
      if (!worker) {
        // No adapter for the reload: 'webgpu' does not fall back; the call after tries again.
        const request = navigator.gpu.requestAdapter;
        navigator.gpu.requestAdapter = async () => null;
        noAdapter = await clip.embedTexts(texts).then(() => null, (e) => ((codes.noAdapter = e.code), e.message));
        navigator.gpu.requestAdapter = request;
      }
      const n = await window.weightDownloads();
      const recovered = h.plain(await clip.embedTexts(texts));
      const reloadDownloads = (await window.weightDownloads()) - n;
      const out = { before, lost, codes, afterLoss, noAdapter, recovered, reloadDownloads, backend: clip.backend, info: clip.backendInfo };
      // And it keeps working on the new device.
      out.again = h.plain(await clip.embedTexts(texts.slice(0, 1)));
      clip.dispose();
      return out;
    }, { name: NAME, texts: g.texts, worker });

    assert.equal(r.before.backend, 'webgpu', JSON.stringify(r.before.info));
    assert.match(r.lost ?? 'the call after the loss resolved', LOST);
    assert.equal(r.codes.lost, 'device-lost');
    assert.deepEqual(r.afterLoss, r.before.info, 'backendInfo changes only once the model is reloaded');
    if (!worker) {
      assert.match(r.noAdapter ?? 'the reload without an adapter resolved', /^webclip: the GPU device was lost and reloading the model failed: could not load the model .*no WebGPU adapter/);
      assert.equal(r.codes.noAdapter, 'no-webgpu', 'a failed reload has the code of its failure');
    }
    assert.equal(r.backend, 'webgpu');
    assert.equal(r.info.kind, 'webgpu');
    assert.ok(r.info.adapter, 'adapter named');
    assert.match(r.info.reason, /^recovered after the GPU device was lost \(Destroyed\b.*\): the WebGPU backend was requested$/);
    assertParity(assert, r.recovered, g.textEmbeds, g.texts);
    assertParity(assert, r.again, g.textEmbeds.slice(0, 1), g.texts.slice(0, 1));
    // The cache is on (the default): the reload read the weights from Cache Storage.
    assert.equal(r.reloadDownloads, 0, 'weight requests during the reload');
  });
}

for (const worker of [false, true]) {
  test(`'webgpu'${worker ? ' in a worker' : ''}: a device lost in the middle of a batch of 8 images fails that batch; the next batch reloads and matches`, async () => {
    const g = golden(NAME);
    const images = Array.from({ length: 8 }, (_, i) => g.images[i % g.images.length]);
    const r = await run(async (h, { name, images, worker }) => {
      const clip = await h.Clip.load({ model: h.model(name), backend: 'webgpu', towers: 'vision', worker });
      const blobs = await Promise.all(images.map((n) => h.imageBlob(n)));
      await clip.embedImages(blobs.slice(0, 1));
      // Destroyed right after the batch submits its first work, while it waits for it.
      await clip._loseDevice({ duringNextCall: true });
      let code = null;
      const lost = await clip.embedImages(blobs).then(() => null, (e) => ((code = e.code), e.message));
      const recovered = h.plain(await clip.embedImages(blobs));
      const out = { lost, code, recovered, backend: clip.backend, info: clip.backendInfo };
      clip.dispose();
      return out;
    }, { name: NAME, images, worker });
    assert.match(r.lost ?? 'the batch during the loss resolved', LOST);
    assert.equal(r.code, 'device-lost');
    assert.equal(r.backend, 'webgpu');
    assert.match(r.info.reason, /^recovered after the GPU device was lost/);
    assertParity(assert, r.recovered, images.map((n) => g.imageEmbeds[g.images.indexOf(n)]), images);
  });
}

test("'auto': a device lost during a call fails it; with no adapter left the next call reloads onto the CPU backend", async () => {
  const g = golden(NAME);
  const image = 'chelsea.png';
  const r = await run(async (h, { name, texts, image }) => {
    // 'auto' passes over software adapters (SwiftShader): make this one look like hardware.
    for (const proto of [globalThis.GPUAdapterInfo?.prototype, globalThis.GPUAdapter?.prototype]) {
      if (proto && 'isFallbackAdapter' in proto) Object.defineProperty(proto, 'isFallbackAdapter', { get: () => false, configurable: true });
    }
    const n0 = await window.weightDownloads();
    // SwiftShader measures slower than the CPU: a kept 'webgpu' verdict (as an earlier
    // measurement on real hardware would leave) makes 'auto' take it without measuring.
    const clip = await h.Clip.load({ model: h.model(name), backend: 'auto', cache: false, _preferBackend: 'webgpu' });
    const loadDownloads = (await window.weightDownloads()) - n0;
    const before = { backend: clip.backend, info: clip.backendInfo };
    await clip.embedTexts(texts.slice(0, 1));

    // Destroy the device in the middle of the next forward pass, as a driver reset would.
    const create = GPUDevice.prototype.createCommandEncoder;
    let armed = true;
    GPUDevice.prototype.createCommandEncoder = function (...args) {
      if (armed) {
        armed = false;
        this.destroy();
      }
      return create.apply(this, args);
    };
    const blob = await h.imageBlob(image);
    let lostCode = null;
    const lost = await clip.embedImages([blob]).then(() => null, (e) => ((lostCode = e.code), e.message));
    GPUDevice.prototype.createCommandEncoder = create;

    // The GPU is gone for good: no adapter for the reload.
    navigator.gpu.requestAdapter = async () => null;
    const n1 = await window.weightDownloads();
    const images = h.plain(await clip.embedImages([blob]));
    const reloadDownloads = (await window.weightDownloads()) - n1;
    const textsOut = h.plain(await clip.embedTexts(texts));
    const out = { before, armed, lost, lostCode, loadDownloads, reloadDownloads, images, texts: textsOut, backend: clip.backend, info: clip.backendInfo };
    clip.dispose();
    return out;
  }, { name: NAME, texts: g.texts, image });

  assert.equal(r.before.backend, 'webgpu', `'auto' took the GPU: ${JSON.stringify(r.before.info)}`);
  assert.match(r.before.info.reason, /measured faster than the CPU for this model earlier/);
  assert.equal(r.armed, false, 'the device was destroyed during the call');
  assert.match(r.lost ?? 'the call during the loss resolved', LOST);
  assert.equal(r.lostCode, 'device-lost');
  assert.equal(r.backend, 'cpu');
  assert.equal(r.info.kind, 'cpu');
  assert.equal(r.info.adapter, null);
  assert.match(r.info.reason, /^recovered after the GPU device was lost \(Destroyed\b.*\): WebGPU is unavailable: GPU: no WebGPU adapter/);
  assertParity(assert, r.images, [g.imageEmbeds[g.images.indexOf(image)]], [image]);
  assertParity(assert, r.texts, g.textEmbeds, g.texts);
  // cache: false: the reload downloaded the weights again, as the load did.
  assert.ok(r.loadDownloads > 0, 'the load downloaded the weights');
  assert.equal(r.reloadDownloads, r.loadDownloads, 'weight requests: the reload as the load');
});

test("'auto' with a (seemingly) hardware adapter measures both engines once, keeps the faster, and reuses the verdict", async () => {
  const g = golden(NAME);
  const r = await run(async (h, { name, text }) => {
    for (const proto of [globalThis.GPUAdapterInfo?.prototype, globalThis.GPUAdapter?.prototype]) {
      if (proto && 'isFallbackAdapter' in proto) Object.defineProperty(proto, 'isFallbackAdapter', { get: () => false, configurable: true });
    }
    await h.Clip.clearCache(); // no verdict from an earlier test
    const first = await h.Clip.load({ model: h.model(name), backend: 'auto', cache: false });
    const [e] = h.plain(await first.embedTexts([text]));
    const out = { first: first.backendInfo, e };
    first.dispose();
    const again = await h.Clip.load({ model: h.model(name), backend: 'auto', cache: false });
    out.again = again.backendInfo;
    again.dispose();
    return out;
  }, { name: NAME, text: g.texts[0] });
  const m = r.first.measured;
  assert.ok(m && m.what === 'image' && m.cpuMs > 0 && m.gpuMs > 0, JSON.stringify(r.first));
  assert.equal(r.first.kind, m.gpuMs <= m.cpuMs ? 'webgpu' : 'cpu');
  assert.match(r.first.reason, /^auto: .* measured faster \(one image: CPU [\d.]+ ms, WebGPU/);
  assertParity(assert, [r.e], [g.textEmbeds[0]], [g.texts[0]]);
  // The verdict was kept (Cache Storage): the reload takes it without measuring.
  assert.equal(r.again.measured, null);
  assert.equal(r.again.kind, r.first.kind);
  assert.match(r.again.reason, /earlier/);
});
