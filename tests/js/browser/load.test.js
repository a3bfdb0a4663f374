// Sustained load and concurrency through the worker API (headless Chromium, CPU backend, the
// smallest fixture model). Every result is checked against a direct computation of the
// same input (a second Clip on the page's thread); no call may reject; wasm memory in the
// worker must stay flat after warm-up (printed: start, after warm-up, end).
//
//   WEBCLIP_LOAD_COUNT=2000 node --test tests/js/browser/load.test.js   the full run
//
// CI (./build.sh test) runs 200 images and 200 texts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './harness.js';

const NAME = 'tiny-quickgelu';
const COUNT = Number(process.env.WEBCLIP_LOAD_COUNT ?? 200);
const env = useBrowser();
const run = (fn, arg) => env.browser.run(`${env.server.url}/pages/index.html`, fn, arg);

// In the page: the i-th image (distinct 24x24 RGBA pixels) and text.
const INPUTS = `
  const image = (i) => {
    const data = new Uint8ClampedArray(24 * 24 * 4);
    for (let j = 0; j < data.length; j++) data[j] = (j & 3) === 3 ? 255 : (i * 131 + j * 7 + ((j >> 6) * (i % 17))) & 255;
    return new ImageData(data, 24, 24);
  };
  const WORDS = ['cat', 'dog', 'rocket', 'coffee', 'astronaut', 'camera', 'tree', 'boat'];
  const text = (i) => 'a photo of ' + WORDS[i % 8] + ' number ' + i + (i % 3 ? ' in the rain' : '');
`;

test(`sustained: ${COUNT} images and ${COUNT} texts in a row through a worker, each checked, memory flat`, { timeout: 30 * 60 * 1000 }, async () => {
  const r = await run(async (h, { name, count, inputs }) => {
    const { image, text } = new Function(`${inputs}; return { image, text };`)();
    const maxAbs = (a, b) => a.reduce((m, v, k) => Math.max(m, Math.abs(v - b[k])), 0);
    const direct = await h.Clip.load({ model: h.model(name), backend: 'cpu' });
    const clip = await h.Clip.load({ model: h.model(name), backend: 'cpu', worker: true });
    const batch = 8;
    const memory = { start: await clip._memory() };
    let worst = 0;
    let checked = 0;
    const rejected = [];
    const t0 = performance.now();
    for (let at = 0; at < count; at += batch) {
      const ids = Array.from({ length: Math.min(batch, count - at) }, (_, k) => at + k);
      let got;
      try {
        got = [await clip.embedImages(ids.map(image)), await clip.embedTexts(ids.map(text))];
      } catch (e) {
        rejected.push(`${at}: ${e.code} ${e.message}`);
        continue;
      }
      const want = [await direct.embedImages(ids.map(image)), await direct.embedTexts(ids.map(text))];
      for (let s = 0; s < 2; s++) {
        ids.forEach((_, k) => {
          worst = Math.max(worst, maxAbs(got[s][k], want[s][k]));
          checked++;
        });
      }
      // Warm-up: the first tenth of the run (every batch size and buffer seen once).
      if (memory.warm === undefined && at + batch >= count / 10) memory.warm = await clip._memory();
    }
    const seconds = (performance.now() - t0) / 1000;
    memory.end = await clip._memory();
    clip.dispose();
    direct.dispose();
    return { memory, worst, checked, rejected, seconds };
  }, { name: NAME, count: COUNT, inputs: INPUTS });
  const mib = (b) => (b / 2 ** 20).toFixed(1);
  console.log(
    `load: ${COUNT} images + ${COUNT} texts in ${r.seconds.toFixed(1)} s; worker wasm memory ` +
      `start ${mib(r.memory.start)} MiB, after warm-up ${mib(r.memory.warm)} MiB, end ${mib(r.memory.end)} MiB; ` +
      `max |worker - direct| ${r.worst.toExponential(2)}`,
  );
  assert.deepEqual(r.rejected, [], 'no call rejected');
  assert.equal(r.checked, 2 * COUNT, 'every result checked');
  // The same wasm on the same input: equal up to float summation order (batches differ).
  assert.ok(r.worst < 1e-5, `results match the direct computation (max abs ${r.worst})`);
  // wasm memory never shrinks; after warm-up it may grow by at most 4 MiB (64 pages).
  assert.ok(r.memory.end - r.memory.warm <= 4 * 2 ** 20, `memory flat after warm-up: ${mib(r.memory.warm)} -> ${mib(r.memory.end)} MiB`);
});

test('concurrency: overlapping embedImages/embedTexts/classify on two worker Clips and one on the page', { timeout: 10 * 60 * 1000 }, async () => {
  const r = await run(async (h, { name, inputs }) => {
    const { image, text } = new Function(`${inputs}; return { image, text };`)();
    const maxAbs = (a, b) => a.reduce((m, v, k) => Math.max(m, Math.abs(v - b[k])), 0);
    const reference = await h.Clip.load({ model: h.model(name), backend: 'cpu' });
    const clips = [
      await h.Clip.load({ model: h.model(name), backend: 'cpu', worker: true }),
      await h.Clip.load({ model: h.model(name), backend: 'cpu', worker: true }),
      await h.Clip.load({ model: h.model(name), backend: 'cpu' }),
    ];
    const labels = ['cat', 'dog', 'rocket'];
    // 60 calls fired at once, none awaited before the next: each knows its inputs.
    const calls = [];
    for (let i = 0; i < 60; i++) {
      const clip = clips[i % 3];
      const ids = [i, i + 100, i + 200].slice(0, 1 + (i % 3));
      if (i % 3 === 0) calls.push({ kind: 'images', ids, p: clip.embedImages(ids.map(image)) });
      else if (i % 3 === 1) calls.push({ kind: 'texts', ids, p: clip.embedTexts(ids.map(text)) });
      else calls.push({ kind: 'classify', ids: [i], p: clip.classify(image(i), labels, { template: 'a photo of a {}' }) });
    }
    const settled = await Promise.allSettled(calls.map((c) => c.p));
    let worst = 0;
    const problems = [];
    const prompts = await reference.embedTexts(labels.map((l) => `a photo of a ${l}`));
    for (let c = 0; c < calls.length; c++) {
      const { kind, ids } = calls[c];
      const s = settled[c];
      if (s.status !== 'fulfilled') {
        problems.push(`${c} ${kind} rejected: ${s.reason?.code} ${s.reason?.message}`);
        continue;
      }
      if (kind === 'classify') {
        const [img] = await reference.embedImages([image(ids[0])]);
        const logits = prompts.map((p) => reference.logitScale * p.reduce((acc, v, k) => acc + v * img[k], 0));
        const want = labels.map((label, k) => ({ label, logit: logits[k] })).sort((a, b) => b.logit - a.logit);
        s.value.forEach((got, k) => {
          if (got.label !== want[k].label) problems.push(`${c} classify: rank ${k} ${got.label}, want ${want[k].label}`);
          worst = Math.max(worst, Math.abs(got.logit - want[k].logit) / 100);
        });
      } else {
        const want = kind === 'images' ? await reference.embedImages(ids.map(image)) : await reference.embedTexts(ids.map(text));
        if (s.value.length !== ids.length) problems.push(`${c} ${kind}: ${s.value.length} results for ${ids.length} inputs`);
        s.value.forEach((e, k) => (worst = Math.max(worst, maxAbs(e, want[k]))));
      }
    }
    for (const clip of [...clips, reference]) clip.dispose();
    return { problems, worst, calls: calls.length };
  }, { name: NAME, inputs: INPUTS });
  assert.deepEqual(r.problems, []);
  assert.equal(r.calls, 60);
  assert.ok(r.worst < 1e-5, `every result is the one for its own inputs (max abs ${r.worst})`);
});
