// The CPU engine's builds in Chromium (js/wasm.js): on a cross-origin isolated page the
// threaded build with relaxed SIMD runs its pool of Web Workers (also inside `worker:
// true`); on a page that is not isolated the single-thread build runs and says why. Every
// build meets the fixtures' reference outputs.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './harness.js';
import { MODELS, golden, assertParity, cosine } from '../common.js';

const env = useBrowser();

/** In a page under `prefix` ('' or '/isolated'), load every fixture model with `options`
 * and embed its golden texts and images; also the build, its threads and the pool stats. */
async function embedEverywhere(prefix, options) {
  const page = await env.browser.page(`${env.server.url}${prefix}/pages/index.html`);
  try {
    return await page.evaluate(async ({ prefix, options, models }) => {
      const { Clip } = await import(`${prefix}/pkg/index.js`);
      const builds = await import(`${prefix}/pkg/wasm.js`); // `builds.wasm` is set by the first load
      const out = { isolated: crossOriginIsolated, models: {} };
      for (const name of models) {
        const base = `${location.origin}${prefix}/fixtures/${name}/`;
        const g = await (await fetch(`${base}golden.json`)).json();
        const clip = await Clip.load({ model: base, backend: 'cpu', cache: false, ...options });
        const blobs = await Promise.all(g.images.map(async (n) => (await fetch(`${location.origin}${prefix}/fixtures/images/${n}`)).blob()));
        out.models[name] = {
          texts: (await clip.embedTexts(g.texts)).map((e) => Array.from(e)),
          images: (await clip.embedImages(blobs)).map((e) => Array.from(e)),
        };
        out.backendInfo = clip.backendInfo;
        clip.dispose();
      }
      // In worker mode the pool lives in the worker: this thread never loaded a build.
      out.poolStats = builds.wasm ? Array.from(builds.wasm.poolStats()) : null;
      return out;
    }, { prefix, options, models: MODELS });
  } finally {
    await page.close();
  }
}

function assertAllParity(r, what) {
  for (const model of MODELS) {
    const g = golden(model);
    assertParity(assert, r.models[model].texts, g.textEmbeds, g.texts.map((t) => `${what} ${model}: ${t}`));
    assertParity(assert, r.models[model].images, g.imageEmbeds, g.images.map((n) => `${what} ${model}: ${n}`));
  }
}

test('a cross-origin isolated page runs the threaded relaxed-SIMD build on 2 threads', async () => {
  const r = await embedEverywhere('/isolated', { threads: 2 });
  assert.equal(r.isolated, true);
  const { build, threads } = r.backendInfo;
  assert.equal(build.name, 'webclip_mt_relaxed', build.reason);
  assert.deepEqual(build.features, ['simd128', 'relaxed-simd', 'threads']);
  assert.equal(threads, 2);
  const [loops, tasks] = r.poolStats;
  assert.ok(loops > 0 && tasks > 0, `the pool's Web Workers ran no task: ${r.poolStats}`);
  assertAllParity(r, build.name);
});

// The int8 matmuls on relaxed SIMD's integer dot product, on 1 and 2 threads: within the
// fidelity goal of float32 (a wrong dot product gives cosines near 0).
for (const [prefix, build] of [['/isolated', 'webclip_mt_relaxed'], ['', 'webclip_relaxed']]) {
  test(`${build}: int8 weights run on integer dot products and stay within cosine 0.995 of float32`, async () => {
    const r = await embedEverywhere(prefix, { threads: 2, weights: 'int8' });
    assert.equal(r.backendInfo.build.name, build, r.backendInfo.build.reason);
    assert.equal(r.backendInfo.build.integerDot, 'i32x4.relaxed_dot_i8x16_i7x16_add');
    assert.equal(r.backendInfo.weights, 'int8');
    for (const model of MODELS) {
      const g = golden(model);
      for (const [got, want, what] of [[r.models[model].texts, g.textEmbeds, 'texts'], [r.models[model].images, g.imageEmbeds, 'images']]) {
        const least = Math.min(...got.map((e, i) => cosine(e, want[i])));
        assert.ok(least >= 0.995, `${build} int8 ${model} ${what}: cosine ${least}`);
      }
    }
  });
}

test('threads work inside worker: true too', async () => {
  const r = await embedEverywhere('/isolated', { threads: 2, worker: true });
  assert.equal(r.backendInfo.build.name, 'webclip_mt_relaxed', r.backendInfo.build.reason);
  assert.equal(r.backendInfo.threads, 2);
  assertAllParity(r, 'worker');
});

test('a page that is not cross-origin isolated runs one thread and says why', async () => {
  const r = await embedEverywhere('', { threads: 2 });
  assert.equal(r.isolated, false);
  const { build, threads } = r.backendInfo;
  assert.equal(build.name, 'webclip_relaxed');
  assert.equal(threads, 1);
  assert.match(build.reason, /not cross-origin isolated.*Cross-Origin-Opener-Policy: same-origin/);
  assert.deepEqual(r.poolStats, [0, 0]);
  assertAllParity(r, build.name);
});
