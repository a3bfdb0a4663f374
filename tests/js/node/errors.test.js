// Bad input rejects with an Error that says what went wrong (and the URL), and the
// instance stays usable where that makes sense.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Clip } from '../../../pkg/index.js';
import { golden, fixturesDir, cosine } from '../common.js';
import { startServer } from '../server.js';

let server;
let base;
before(async () => {
  server = await startServer();
  base = `${server.url}/fixtures/tiny-quickgelu/`;
});
after(() => server.close());

const g = golden('tiny-quickgelu');
const files = (over) => ({
  config: `${base}config.json`,
  weights: `${base}model.safetensors`,
  tokenizer: `${base}tokenizer.json`,
  ...over,
});

test('404 names the file and the URL', async () => {
  await assert.rejects(Clip.load({ model: `${server.url}/fixtures/no-such-model/` }), (e) => {
    assert.match(e.message, /config\.json not found at http:\/\/127\.0\.0\.1:\d+\/fixtures\/no-such-model\/config\.json \(HTTP 404/);
    return true;
  });
  await assert.rejects(Clip.load({ model: files({ weights: `${server.url}/missing/fixtures/tiny-quickgelu/model.safetensors` }) }), /model\.safetensors not found at .*\/missing\/fixtures/);
});

test('network error names the URL', async () => {
  // A port nothing listens on: connection refused.
  const closed = await startServer();
  const url = `${closed.url}/fixtures/tiny-quickgelu/`;
  await closed.close();
  await assert.rejects(Clip.load({ model: url }), new RegExp(`could not download config\\.json from ${url.replace(/[.]/g, '\\.')}config\\.json`));
});

test('an HTML page instead of weights', async () => {
  await assert.rejects(
    Clip.load({ model: files({ weights: `${server.url}/html/fixtures/tiny-quickgelu/model.safetensors` }) }),
    /\/html\/fixtures\/tiny-quickgelu\/model\.safetensors returned an HTML page, not model\.safetensors/,
  );
  // Served as octet-stream, the bytes themselves give it away.
  const html = new TextEncoder().encode('<!DOCTYPE html><html><body>hello</body></html>');
  await assert.rejects(Clip.load({ model: files({ weights: html }) }), /model\.safetensors is not a safetensors file: .*implausible/);
});

test('a truncated download and a truncated file', async () => {
  await assert.rejects(
    Clip.load({ model: files({ weights: `${server.url}/cut/fixtures/tiny-quickgelu/model.safetensors` }) }),
    /model\.safetensors from http:.*\/cut\/.* (failed after \d+ of 14294196 bytes|truncated download.*got \d+ of 14294196 bytes)/,
  );
  for (const towers of ['both', 'vision']) {
    await assert.rejects(
      Clip.load({ model: files({ weights: `${server.url}/short/fixtures/tiny-quickgelu/model.safetensors` }), towers }),
      /model\.safetensors from http:.*\/short\/.* is truncated: 7147098 bytes, but its header describes 14294196/,
    );
  }
});

test('unsupported images reject; the instance stays usable', async () => {
  const clip = await Clip.load({ model: files(), backend: 'cpu' });
  await assert.rejects(clip.embedImages([new TextEncoder().encode('GIF89a? no, plain text')]), /^Error: image: /);
  await assert.rejects(clip.embedImages(['cat.png']), /image: unsupported input string/);
  await assert.rejects(clip.embedImages([{ width: 2, height: 2, data: new Uint8Array(3) }]), /RGBA data of a 2x2 image must hold 16 bytes, not 3/);
  await assert.rejects(clip.embedTexts('a cat'), /embedTexts takes an array of strings/);
  await assert.rejects(clip.classify(new Uint8Array(4), ['cat'], { template: 'no placeholder' }), /template must be a string with a \{\}/);
  const [e] = await clip.embedTexts([g.texts[0]]);
  assert.ok(cosine(e, g.textEmbeds[0]) > 0.9999, 'still works after the errors');
  clip.dispose();
});

test('dispose, then a call', async () => {
  const clip = await Clip.load({ model: files(), towers: 'text' });
  const inFlight = clip.embedTexts([g.texts[1]]);
  clip.dispose();
  // The call already started finishes; the next one is refused.
  assert.ok(cosine((await inFlight)[0], g.textEmbeds[1]) > 0.9999);
  await assert.rejects(clip.embedTexts(['a cat']), /this Clip was disposed/);
  assert.equal(clip.disposed, true);
  clip.dispose(); // twice is harmless
});

test('concurrent calls are serialised and give the same numbers; a failing load beside a good one', async () => {
  const [clip, bad] = await Promise.allSettled([
    Clip.load({ model: files(), towers: 'text' }),
    Clip.load({ model: files({ config: `${base}nope.json` }) }),
  ]);
  assert.equal(bad.status, 'rejected');
  assert.match(bad.reason.message, /config\.json not found at .*nope\.json/);
  const c = clip.value;
  const calls = g.texts.map((t) => c.embedTexts([t]));
  calls.push(c.embedTexts(g.texts));
  const got = await Promise.all(calls);
  g.texts.forEach((t, i) => {
    assert.ok(cosine(got[i][0], g.textEmbeds[i]) > 0.9999, t);
    assert.deepEqual(Array.from(got[i][0]), Array.from(got.at(-1)[i]), 'batch = one by one');
  });
  c.dispose();
});

test('bad options', async () => {
  await assert.rejects(Clip.load({ model: base, backend: 'tpu' }), /backend must be one of auto, webgpu, cpu, not "tpu"/);
  await assert.rejects(Clip.load({ model: base, towers: 'audio' }), /towers must be one of both, vision, text/);
  await assert.rejects(Clip.load({}), /needs `model`/);
  await assert.rejects(Clip.load({ model: base, backend: 'webgpu' }), /WebGPU is not available here \(no navigator\.gpu\)/);
  await assert.rejects(Clip.load({ model: base, worker: true }), /worker: true needs Web Workers/);
  await assert.rejects(Clip.load({ model: path.join(fixturesDir, 'nothing-here') }), /cannot open config\.json at .*nothing-here\/config\.json/);
  assert.throws(() => new Clip({}), /use `await Clip.load/);
});

test('rank and cosine', () => {
  const q = [1, 0, 0];
  const r = Clip.rank(q, [[0, 1, 0], [1, 1, 0], [2, 0, 0], [-1, 0, 0]], { topK: 3 });
  assert.deepEqual(r.map((x) => x.index), [2, 1, 0]);
  assert.ok(Math.abs(r[1].score - Math.SQRT1_2) < 1e-12);
  assert.throws(() => Clip.cosine([1, 2], [1]), /lengths 2 and 1/);
});
