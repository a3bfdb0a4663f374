// The built package in headless Chromium, served from 127.0.0.1: parity with the
// reference on the CPU backend and on WebGPU (SwiftShader), downloads (progress, Range
// requests for one tower, Cache Storage), the worker, and errors.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { useBrowser } from './harness.js';
import { MODELS, golden, assertParity, cosine, maxAbs } from '../common.js';

const env = useBrowser();

/** A fresh page at /pages/<page>; `run(page, fn, arg)` evaluates with helpers `h` imported. */
async function page(name = 'index.html') {
  const p = await env.browser.page(`${env.server.url}/pages/${name}`);
  return {
    run: (fn, arg) => p.evaluate(async ([src, arg]) => {
      const h = await import('/pages/helpers.js');
      // eslint-disable-next-line no-new-func
      return new Function('h', 'arg', `return (${src})(h, arg);`)(h, arg);
    }, [fn.toString(), arg]),
    close: () => p.close(),
  };
}

const weightRequests = (name, prefix = '') =>
  env.server.log.filter((e) => e.path === `/fixtures/${name}/model.safetensors` && (e.fault ?? '') === prefix);

/** Embed every golden text and image of `name` on `backend` in the page. */
async function embedAll(p, name, backend, extra = {}, onlyImages = null) {
  return p.run(async (h, { name, backend, extra, onlyImages }) => {
    const g = await (await fetch(`${h.FIXTURES}/${name}/golden.json`)).json();
    if (onlyImages) g.images = onlyImages;
    const t0 = performance.now();
    let clip;
    try {
      clip = await h.Clip.load({ model: h.model(name), backend, ...extra });
    } catch (e) {
      return { error: e.message };
    }
    const texts = await clip.embedTexts(g.texts);
    const firstMs = performance.now() - t0;
    const rawTexts = await clip.embedTexts(g.texts, { normalize: false });
    let images;
    let imageError = null;
    try {
      images = h.plain(await clip.embedImages(await Promise.all(g.images.map(h.imageBlob))));
    } catch (e) {
      imageError = e.message;
    }
    const out = { backend: clip.backend, info: clip.backendInfo, firstMs, texts: h.plain(texts), rawTexts: h.plain(rawTexts), images, imageError, logitScale: clip.logitScale };
    clip.dispose();
    return out;
  }, { name, backend, extra, onlyImages });
}

function checkParity(name, r, t, onlyImages = null) {
  const g = golden(name);
  if (onlyImages) {
    g.imageEmbeds = onlyImages.map((n) => g.imageEmbeds[g.images.indexOf(n)]);
    g.images = onlyImages;
  }
  assert.equal(r.error, undefined, r.error);
  t.diagnostic(`${name} on ${r.backend}: Clip.load to first embedding ${r.firstMs.toFixed(0)} ms`);
  assertParity(assert, r.texts, g.textEmbeds, g.texts);
  r.rawTexts.forEach((e, i) => assert.ok(maxAbs(e, g.textFeatures[i]) < 1e-3, `${g.texts[i]}: features max abs ${maxAbs(e, g.textFeatures[i])}`));
  assert.equal(r.imageError, null, r.imageError);
  assertParity(assert, r.images, g.imageEmbeds, g.images);
}

for (const name of MODELS) {
  test(`${name}: CPU backend in the browser matches the reference`, async (t) => {
    const p = await page();
    const r = await embedAll(p, name, 'cpu');
    await p.close();
    assert.equal(r.backend, 'cpu');
    checkParity(name, r, t);
  });

  // SwiftShader runs about 1 GFLOP/s: every image on the tiny model, a few on the larger.
  const few = name === 'tiny-quickgelu' ? null : ['astronaut.png', 'chelsea.jpg', 'rgba-200x256.png'];
  test(`${name}: WebGPU backend (SwiftShader) matches the reference`, async (t) => {
    const p = await page();
    const r = await embedAll(p, name, 'webgpu', {}, few);
    await p.close();
    assert.equal(r.error, undefined, r.error);
    assert.equal(r.backend, 'webgpu');
    assert.ok(r.info.adapter, 'adapter named');
    t.diagnostic(`adapter: ${r.info.adapter}`);
    checkParity(name, r, t, few);
  });
}

test('worker: true on WebGPU (tiny model) matches the reference; a throwing onProgress is harmless', async () => {
  const g = golden('tiny-quickgelu');
  const p = await page();
  const r = await p.run(async (h) => {
    const clip = await h.Clip.load({
      model: h.model('tiny-quickgelu'),
      backend: 'webgpu',
      worker: true,
      onProgress: () => {
        throw new Error('a buggy progress bar');
      },
    });
    const texts = h.plain(await clip.embedTexts(['a photo of a cat', 'a cup of coffee']));
    const images = h.plain(await clip.embedImages([await h.imageBlob('chelsea.png')]));
    clip.dispose();
    return { backend: clip.backend, texts, images };
  });
  await p.close();
  assert.equal(r.backend, 'webgpu');
  assertParity(assert, r.texts, [g.textEmbeds[0], g.textEmbeds[2]], [g.texts[0], g.texts[2]]);
  assertParity(assert, r.images, [g.imageEmbeds[g.images.indexOf('chelsea.png')]], ['chelsea.png']);
});

test("'auto' without navigator.gpu falls back to the CPU with a reason; 'webgpu' refuses", async () => {
  const p = await page('nogpu.html');
  const r = await p.run(async (h) => {
    const clip = await h.Clip.load({ model: h.model('tiny-quickgelu'), towers: 'text' });
    const [e] = await clip.embedTexts(['a photo of a cat']);
    const gpu = await h.Clip.load({ model: h.model('tiny-quickgelu'), backend: 'webgpu' }).then(() => 'loaded', (err) => err.message);
    return { gpu: 'gpu' in navigator, backend: clip.backend, info: clip.backendInfo, e: Array.from(e), webgpu: gpu };
  });
  await p.close();
  assert.equal(r.gpu, false);
  assert.equal(r.backend, 'cpu');
  assert.match(r.info.reason, /WebGPU is not available here \(no navigator\.gpu\)/);
  assert.ok(cosine(r.e, golden('tiny-quickgelu').textEmbeds[0]) > 0.9999);
  assert.match(r.webgpu, /backend 'webgpu' was requested but WebGPU is not available/);
});

test("'auto' with WebGPU present picks an engine and says why", async () => {
  const p = await page();
  const r = await p.run(async (h) => {
    const clip = await h.Clip.load({ model: h.model('tiny-quickgelu'), towers: 'text' });
    return clip.backendInfo;
  });
  await p.close();
  assert.ok(['webgpu', 'cpu'].includes(r.kind));
  assert.ok(r.reason.length > 0);
  if (r.kind === 'webgpu') assert.ok(r.adapter);
});

test('progress events arrive and add up to the file sizes', async () => {
  const g = golden('tiny-quickgelu');
  const p = await page();
  const events = await p.run(async (h) => {
    const events = [];
    const clip = await h.Clip.load({ model: h.model('tiny-quickgelu'), backend: 'cpu', cache: false, onProgress: (e) => events.push(e) });
    clip.dispose();
    return events;
  });
  await p.close();
  const files = { config: 'config.json', weights: 'model.safetensors', tokenizer: 'tokenizer.json', preprocessor: 'preprocessor_config.json' };
  for (const [phase, file] of Object.entries(files)) {
    const ev = events.filter((e) => e.phase === phase);
    assert.ok(ev.length > 0, `${phase} events`);
    assert.equal(ev.at(-1).loaded, g.sizes[file], `${phase}: last loaded`);
    assert.equal(ev.at(-1).total, g.sizes[file], `${phase}: total`);
    assert.ok(ev.every((e, i) => i === 0 || e.loaded >= ev[i - 1].loaded), `${phase}: monotonic`);
    assert.ok(ev.every((e) => e.url.endsWith(`/tiny-quickgelu/${file}`)), `${phase}: url`);
  }
  assert.ok(events.filter((e) => e.phase === 'weights').length > 2, 'weights progress comes in chunks');
});

test("towers: 'vision' / 'text' fetch only that tower's byte ranges; a server without Range sends it all", async () => {
  const g = golden('tiny-quickgelu');
  const full = g.sizes['model.safetensors'];
  const p = await page();
  const served = {};
  for (const towers of ['vision', 'text']) {
    env.server.clearLog();
    const r = await p.run(async (h, towers) => {
      const events = [];
      const clip = await h.Clip.load({ model: h.model('tiny-quickgelu'), towers, cache: false, backend: 'cpu', onProgress: (e) => events.push(e) });
      const out = towers === 'text' ? await clip.embedTexts(['a photo of a cat']) : null;
      const wrong = await (towers === 'text' ? clip.embedImages([new Uint8Array(8)]) : clip.embedTexts(['x'])).then(() => null, (e) => e.message);
      clip.dispose();
      return { last: events.filter((e) => e.phase === 'weights').at(-1), out: out && h.plain(out), wrong };
    }, towers);
    const reqs = weightRequests('tiny-quickgelu');
    served[towers] = reqs.reduce((n, e) => n + e.bytes, 0);
    assert.equal(reqs[0].range, 'bytes=0-7', 'the first request reads the header length');
    assert.ok(reqs.every((e) => e.status === 206 && e.range), 'only range requests');
    assert.ok(served[towers] < full, `${towers}: ${served[towers]} of ${full} bytes`);
    assert.equal(r.last.loaded, served[towers], 'progress counts what was fetched');
    assert.equal(r.last.total, served[towers]);
    assert.match(r.wrong, new RegExp(`${towers === 'text' ? 'vision' : 'text'} tower is not loaded`));
    if (r.out) assert.ok(cosine(r.out[0], g.textEmbeds[0]) > 0.9999);
  }
  // Both towers' requests tile the file: each fetched the header and logit_scale (4 bytes).
  const headerLen = 8 + Number(readFileSync(path.join(g.dir, 'model.safetensors')).readBigUInt64LE(0));
  assert.equal(served.vision + served.text, full + headerLen + 4, 'no byte fetched twice within a tower, none missed');
  env.server.clearLog();
  const r = await p.run(async (h) => {
    const clip = await h.Clip.load({ model: h.model('tiny-quickgelu', '/norange'), towers: 'text', cache: false, backend: 'cpu' });
    return h.plain(await clip.embedTexts(['a photo of a cat']));
  });
  await p.close();
  const reqs = weightRequests('tiny-quickgelu', 'norange');
  assert.equal(reqs.length, 1, 'one request, answered with the whole file');
  assert.equal(reqs[0].status, 200);
  assert.equal(reqs[0].bytes, full);
  assert.ok(cosine(r[0], g.textEmbeds[0]) > 0.9999);
});

test('Cache Storage: a second load makes no request; a damaged entry is found and downloaded again', async () => {
  const g = golden('tiny-quickgelu');
  const p = await page();
  const load = (towers = 'both') =>
    p.run(async (h, towers) => {
      const clip = await h.Clip.load({ model: h.model('tiny-quickgelu'), towers, backend: 'cpu', cache: true });
      const e = h.plain(await clip.embedTexts(['a photo of a cat']));
      clip.dispose();
      return e;
    }, towers);
  await p.run(async () => caches.delete('webclip-v1'));
  const files = ['config.json', 'model.safetensors', 'tokenizer.json', 'preprocessor_config.json'];
  const fetched = () => env.server.log.filter((e) => files.some((f) => e.path === `/fixtures/tiny-quickgelu/${f}`));

  env.server.clearLog();
  await load();
  assert.equal(weightRequests('tiny-quickgelu').length, 1, 'first load downloads');
  env.server.clearLog();
  const again = await load();
  assert.deepEqual(fetched(), [], 'second load: no request at all');
  assert.ok(cosine(again[0], g.textEmbeds[0]) > 0.9999);

  for (const how of ['flip', 'truncate']) {
    await p.run((h, how) => h.damageCacheEntry(`${h.model('tiny-quickgelu')}model.safetensors`, how), how);
    env.server.clearLog();
    const e = await load();
    const reqs = weightRequests('tiny-quickgelu');
    assert.equal(reqs.length, 1, `${how}: the damaged entry is downloaded again`);
    assert.equal(reqs[0].bytes, g.sizes['model.safetensors']);
    assert.ok(cosine(e[0], g.textEmbeds[0]) > 0.9999, `${how}: right numbers after the re-download`);
    assert.ok(env.browser.console.some((m) => /cached copy of .*model\.safetensors is damaged/.test(m)), 'a warning says so');
  }

  // One tower: its ranges are cached too.
  await p.run(async () => caches.delete('webclip-v1'));
  env.server.clearLog();
  await load('text');
  assert.ok(weightRequests('tiny-quickgelu').length >= 2);
  env.server.clearLog();
  await load('text');
  assert.deepEqual(fetched(), [], 'second text-tower load: no request');
  await p.close();
});

test('worker: true gives the same numbers without blocking the main thread', async (t) => {
  const p = await page();
  const r = await p.run(async (h) => {
    const texts = Array.from({ length: 128 }, (_, i) => `a photo of thing number ${i}`);
    const local = await h.Clip.load({ model: h.model('small-gelu'), towers: 'text', backend: 'cpu' });
    const want = h.plain(await local.embedTexts(texts));
    local.dispose();
    const events = [];
    const clip = await h.Clip.load({ model: h.model('small-gelu'), worker: true, backend: 'cpu', onProgress: (e) => events.push(e) });
    // Repeat for at least 400 ms, however fast the engine gets, so the ticks mean something.
    const run = await h.whileTicking(async () => {
      const t0 = performance.now();
      let out;
      do out = await clip.embedTexts(texts);
      while (performance.now() - t0 < 400);
      return out;
    });
    let images = null;
    try {
      const [img, bmp] = [await h.imageElement('astronaut.png'), await createImageBitmap(await h.imageBlob('coffee.png'))];
      images = h.plain(await clip.embedImages([img, bmp, await h.imageBlob('chelsea.png')]));
    } catch (e) {
      images = e.message;
    }
    const bad = await clip.embedImages([new Blob(['not an image'], { type: 'text/plain' })]).then(() => null, (e) => e.message);
    const after = h.plain(await clip.embedTexts(texts.slice(0, 1)));
    clip.dispose();
    const disposed = await clip.embedTexts(['x']).then(() => null, (e) => e.message);
    return { want, got: h.plain(run.result), ms: run.ms, ticks: run.ticks, maxGap: run.maxGap, worker: clip.worker, progress: events.length, images, bad, after, disposed };
  });
  await p.close();
  t.diagnostic(`worker: batches of 128 texts for ${r.ms.toFixed(0)} ms, ${r.ticks} ticks, longest gap ${r.maxGap.toFixed(0)} ms`);
  assert.equal(r.worker, true);
  assert.ok(r.progress > 0, 'progress events cross from the worker');
  assert.deepEqual(r.got, r.want, 'bit-identical to the main thread');
  assert.ok(r.ticks >= r.ms / 10 / 3, `${r.ticks} ticks in ${r.ms} ms`);
  // On the main thread the CPU backend would block for the whole call (r.ms).
  assert.ok(r.maxGap < Math.max(200, r.ms / 2), `main thread blocked for ${r.maxGap} ms of ${r.ms}`);
  assert.match(r.bad, /unsupported image type text\/plain/);
  assert.deepEqual(r.after[0], r.want[0], 'usable after an error');
  assert.match(r.disposed, /disposed/);
  const g = golden('small-gelu');
  assert.equal(typeof r.images, 'object', `images through the worker: ${r.images}`);
  const idx = (n) => g.images.indexOf(n);
  assertParity(assert, r.images, [g.imageEmbeds[idx('astronaut.png')], g.imageEmbeds[idx('coffee.png')], g.imageEmbeds[idx('chelsea.png')]], ['astronaut.png', 'coffee.png', 'chelsea.png']);
});

test('decoded pixels (ImageData, <img>, canvas, ImageBitmap) match the reference like the file bytes', async () => {
  const g = golden('tiny-quickgelu');
  const p = await page();
  const r = await p.run(async (h) => {
    const clip = await h.Clip.load({ model: h.model('tiny-quickgelu'), towers: 'vision', backend: 'cpu' });
    const img = await h.imageElement('rocket.png');
    const canvas = document.getElementById('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const bitmap = await createImageBitmap(img);
    const off = new OffscreenCanvas(img.naturalWidth, img.naturalHeight);
    off.getContext('2d').drawImage(img, 0, 0);
    try {
      return h.plain(await clip.embedImages([img, canvas, data, bitmap, off, await h.imageBlob('rocket.png')]));
    } catch (e) {
      return e.message;
    }
  });
  await p.close();
  assert.equal(typeof r, 'object', r);
  const want = g.imageEmbeds[g.images.indexOf('rocket.png')];
  r.forEach((e, i) => assert.ok(cosine(e, want) > 0.9999, `input kind ${i}: ${cosine(e, want)}`));
});

test('bad input in the browser rejects with clear messages', async () => {
  const p = await page();
  const r = await p.run(async (h) => {
    const err = (promise) => promise.then(() => 'resolved', (e) => e.message);
    const base = h.model('tiny-quickgelu');
    const files = (weights) => ({ config: `${base}config.json`, tokenizer: `${base}tokenizer.json`, weights });
    const out = {
      notFound: await err(h.Clip.load({ model: h.model('no-such-model') })),
      html: await err(h.Clip.load({ model: files(h.model('tiny-quickgelu', '/html') + 'model.safetensors'), cache: false })),
      cut: await err(h.Clip.load({ model: files(h.model('tiny-quickgelu', '/cut') + 'model.safetensors'), cache: false })),
      short: await err(h.Clip.load({ model: files(h.model('tiny-quickgelu', '/short') + 'model.safetensors'), cache: false })),
      badWorker: await err(h.Clip.load({ model: h.model('no-such-model'), worker: true })),
    };
    const clip = await h.Clip.load({ model: base, backend: 'cpu' });
    out.svg = await err(clip.embedImages([new Blob(['<svg xmlns="http://www.w3.org/2000/svg"/>'], { type: 'image/svg+xml' })]));
    out.garbage = await err(clip.embedImages([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3])]));
    out.element = await err(clip.embedImages([document.body]));
    out.after = h.plain(await clip.embedTexts(['a photo of a cat']));
    clip.dispose();
    out.disposed = await err(clip.embedTexts(['a photo of a cat']));
    return out;
  });
  await p.close();
  assert.match(r.notFound, /config\.json not found at http:\/\/127\.0\.0\.1:\d+\/fixtures\/no-such-model\/config\.json \(HTTP 404/);
  assert.match(r.html, /\/html\/fixtures\/tiny-quickgelu\/model\.safetensors returned an HTML page/);
  assert.match(r.cut, /model\.safetensors from http:.*\/cut\/fixtures\/tiny-quickgelu\/model\.safetensors (failed after \d+ of 14294196 bytes|truncated download)/);
  assert.match(r.short, /\/short\/fixtures\/tiny-quickgelu\/model\.safetensors is truncated: 7147098 bytes, but its header describes 14294196/);
  assert.match(r.badWorker, /config\.json not found at .*no-such-model\/config\.json/);
  assert.match(r.svg, /^webclip: image: unsupported image type image\/svg\+xml|^image: /);
  assert.match(r.garbage, /^image: /);
  assert.match(r.element, /unsupported input HTMLBodyElement/);
  assert.ok(cosine(r.after[0], golden('tiny-quickgelu').textEmbeds[0]) > 0.9999, 'usable after the errors');
  assert.match(r.disposed, /this Clip was disposed/);
});
