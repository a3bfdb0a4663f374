// The package in Node.js 20 (CPU backend, no navigator.gpu): fixture models read from
// file paths and over HTTP, embeddings matched against the PyTorch reference.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Clip } from '../../../pkg/index.js';
import { MODELS, SIGLIP_MODELS, golden, fixturesDir, assertParity, maxAbs, cosine } from '../common.js';
import { startServer } from '../server.js';

let server;
before(async () => {
  server = await startServer();
});
after(() => server.close());

const imageBytes = (name) => new Uint8Array(readFileSync(path.join(fixturesDir, 'images', name)));

for (const model of MODELS) {
  const g = golden(model);

  test(`${model}: texts and images from file paths match the reference`, async (t) => {
    const t0 = performance.now();
    const clip = await Clip.load({ model: g.dir, backend: 'auto' });
    assert.equal(clip.backend, 'cpu');
    assert.match(clip.backendInfo.reason, /WebGPU is not available/);
    assert.equal(clip.family, g.family);
    const texts = await clip.embedTexts(g.texts);
    t.diagnostic(`${model}: Clip.load to first embedding ${(performance.now() - t0).toFixed(0)} ms (Node, CPU)`);
    assertParity(assert, texts, g.textEmbeds, g.texts);
    texts.forEach((e) => assert.ok(Math.abs(Math.hypot(...e) - 1) < 1e-5, 'L2-normalised'));
    // Text has no slack: features before normalisation within 1e-3.
    const raw = await clip.embedTexts(g.texts, { normalize: false });
    raw.forEach((e, i) => assert.ok(maxAbs(e, g.textFeatures[i]) < 1e-3, `${g.texts[i]}: max abs ${maxAbs(e, g.textFeatures[i])}`));

    const images = await clip.embedImages(g.images.map(imageBytes));
    assertParity(assert, images, g.imageEmbeds, g.images);

    // classify: the reference's logits (logitScale * cosine + logitBias) and scores, a
    // softmax over the labels for CLIP, a sigmoid per label for SigLIP. PNG images only:
    // a JPEG's decoder slack is multiplied by logitScale.
    const png = g.images.findIndex((n) => n.endsWith('.png'));
    const labels = await clip.classify(imageBytes(g.images[png]), g.texts);
    assert.equal(labels.length, g.texts.length);
    for (const { label, score, logit } of labels) {
      const j = g.texts.indexOf(label);
      assert.ok(Math.abs(logit - g.logits[png][j]) < 1e-2, `${label}: logit ${logit} vs ${g.logits[png][j]}`);
      if (g.probs) assert.ok(Math.abs(score - g.probs[png][j]) < 1e-3, `${label}: sigmoid ${score} vs ${g.probs[png][j]}`);
    }
    const sum = labels.reduce((a, l) => a + l.score, 0);
    if (g.family === 'clip') assert.ok(Math.abs(sum - 1) < 1e-5, `softmax sums to ${sum}`);
    else assert.equal(clip.logitBias, -10, 'the fixtures keep SigLIP\'s initial logit_bias');
    clip.dispose();
  });
}

test('SigLIP over HTTP: the tokenizer files tokenizer_config.json names are the ones fetched', async () => {
  for (const model of SIGLIP_MODELS) {
    const g = golden(model);
    const events = [];
    const clip = await Clip.load({ model: `${server.url}/fixtures/${model}/`, towers: 'text', onProgress: (p) => events.push(p) });
    const files = [...new Set(events.filter((e) => /^tokenizer/.test(e.phase)).map((e) => e.file))].sort();
    const want = g.sizes['spiece.model'] != null ? ['spiece.model', 'tokenizer_config.json'] : ['tokenizer.json', 'tokenizer_config.json'];
    assert.deepEqual(files, want, model);
    assert.equal(events.filter((e) => e.phase === 'tokenizerConfig').at(-1).loaded, g.sizes['tokenizer_config.json']);
    const [e] = await clip.embedTexts([g.texts[0]]);
    assert.ok(cosine(e, g.textEmbeds[0]) > 0.9999, model);
    clip.dispose();
  }
});

test('tiny-quickgelu over HTTP with fetch: progress adds up to the file sizes', async () => {
  const g = golden('tiny-quickgelu');
  const events = [];
  const clip = await Clip.load({
    model: `${server.url}/fixtures/tiny-quickgelu/`,
    towers: 'text',
    onProgress: (p) => events.push(p),
  });
  const last = (phase) => events.filter((e) => e.phase === phase).at(-1);
  assert.equal(last('config').loaded, g.sizes['config.json']);
  assert.equal(last('tokenizer').loaded, g.sizes['tokenizer.json']);
  assert.equal(events.filter((e) => e.phase === 'preprocessor').length, 0, 'text tower needs no preprocessor');
  const w = last('weights');
  assert.equal(w.loaded, w.total);
  // The text tower only: header + its ranges, which is what the server sent.
  const served = server.requests('/tiny-quickgelu/model.safetensors').reduce((n, e) => n + e.bytes, 0);
  assert.equal(w.total, served);
  assert.ok(served < g.sizes['model.safetensors'], `${served} bytes fetched for one tower`);
  for (const phase of ['config', 'tokenizer', 'weights']) {
    const seq = events.filter((e) => e.phase === phase).map((e) => e.loaded);
    assert.deepEqual(seq, [...seq].sort((a, b) => a - b), `${phase}: loaded never goes back`);
  }
  const [e] = await clip.embedTexts([g.texts[0]]);
  assert.ok(cosine(e, g.textEmbeds[0]) > 0.9999);
  await assert.rejects(clip.embedImages([imageBytes('tiny-7x5.png')]), /vision tower is not loaded/);
  clip.dispose();
});

test('model given as { config, weights, tokenizer } buffers and Blobs', async () => {
  const g = golden('tiny-quickgelu');
  const f = (n) => readFileSync(path.join(g.dir, n));
  const clip = await Clip.load({
    model: { config: new Blob([f('config.json')]), weights: f('model.safetensors').buffer.slice(0), tokenizer: new Uint8Array(f('tokenizer.json')) },
    backend: 'cpu',
  });
  assert.equal(clip.backendInfo.reason.includes('requested'), true, clip.backendInfo.reason);
  const [e] = await clip.embedTexts([g.texts[2]]);
  assert.ok(cosine(e, g.textEmbeds[2]) > 0.9999);
  clip.dispose();
});

test('float16 weights (model.fp16.safetensors) load as they are', async () => {
  const g = golden('small-gelu');
  const clip = await Clip.load({
    model: {
      config: path.join(g.dir, 'config.json'),
      weights: path.join(g.dir, 'model.fp16.safetensors'),
      tokenizer: path.join(g.dir, 'tokenizer.json'),
      preprocessor: path.join(g.dir, 'preprocessor_config.json'),
    },
  });
  // Fixture README: float16 weights with float32 arithmetic stay above 0.9999.
  assertParity(assert, await clip.embedTexts(g.texts), g.textEmbeds, g.texts);
  const few = ['astronaut.png', 'rgba-200x256.png'];
  const want = few.map((n) => g.imageEmbeds[g.images.indexOf(n)]);
  assertParity(assert, await clip.embedImages(few.map(imageBytes)), want, few);
  clip.dispose();
});
