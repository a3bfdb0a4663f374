// Bad input rejects with an Error that says what went wrong (and the URL), and the
// instance stays usable where that makes sense. Every failure carries a stable `code`
// (js/README.md, "Errors"), from the JS layer and from Rust, with the wrapped failure as
// `cause`. A model folder path without preprocessor_config.json loads with CLIP's defaults.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Clip } from '../../../pkg/index.js';
import { ERROR_CODES } from '../../../pkg/errors.js';
import { golden, fixturesDir, pkgDir, cosine } from '../common.js';
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

// ---------------------------------------------------------------------------------------
// Error codes

const bytes = (s) => new TextEncoder().encode(s);

/** `promise` rejects with an Error of `code` whose message matches `message`; returns it. */
async function rejectsWith(promise, code, message) {
  let error;
  await assert.rejects(promise, (e) => {
    error = e;
    return true;
  });
  assert.ok(error instanceof Error, `an Error, not ${error}`);
  assert.equal(error.code, code, `code of: ${error.message}`);
  assert.ok(ERROR_CODES.includes(code), `${code} is a documented code`);
  if (message) assert.match(error.message, message);
  return error;
}

test('missing files: not-found, from HTTP and from a path', async () => {
  await rejectsWith(Clip.load({ model: `${server.url}/fixtures/no-such-model/` }), 'not-found', /config\.json not found at .*\(HTTP 404/);
  await rejectsWith(Clip.load({ model: files({ weights: `${server.url}/missing/fixtures/tiny-quickgelu/model.safetensors` }) }), 'not-found');
  const e = await rejectsWith(Clip.load({ model: path.join(fixturesDir, 'nothing-here') }), 'not-found', /cannot open config\.json/);
  assert.equal(e.cause?.code, 'ENOENT', 'the cause is the file system error');
});

test('downloads that fail: network', async () => {
  const closed = await startServer();
  const url = `${closed.url}/fixtures/tiny-quickgelu/`;
  await closed.close();
  const e = await rejectsWith(Clip.load({ model: url }), 'network', /could not download config\.json/);
  assert.ok(e.cause, 'the fetch failure is the cause');
  await rejectsWith(Clip.load({ model: files({ weights: `${server.url}/html/fixtures/tiny-quickgelu/model.safetensors` }) }), 'network', /returned an HTML page/);
  await rejectsWith(Clip.load({ model: files({ weights: `${server.url}/cut/fixtures/tiny-quickgelu/model.safetensors` }) }), 'network');
});

test('bad weights, config and tokenizer: the Rust error is the cause, with its code', async () => {
  await rejectsWith(Clip.load({ model: files({ weights: bytes('<!DOCTYPE html><html></html>') }) }), 'bad-weights', /not a safetensors file/);
  await rejectsWith(Clip.load({ model: files({ weights: `${server.url}/short/fixtures/tiny-quickgelu/model.safetensors` }) }), 'bad-weights', /is truncated/);
  const config = await rejectsWith(Clip.load({ model: files({ config: bytes('{"not": "a CLIP config"') }) }), 'bad-config', /could not load the model/);
  assert.equal(config.cause?.code, 'bad-config');
  assert.match(config.cause.message, /^invalid config: /);
  const tok = await rejectsWith(Clip.load({ model: files({ tokenizer: bytes('no tokenizer') }) }), 'bad-tokenizer');
  assert.equal(tok.cause?.code, 'bad-tokenizer');
  await rejectsWith(Clip.load({ model: { config: `${base}config.json`, weights: `${base}model.safetensors` } }), 'bad-tokenizer', /tokenizer\.json\) or, for SigLIP, model\.spiece/);
});

test('bad options and environment: bad-input, no-webgpu, unsupported', async () => {
  await rejectsWith(Clip.load({ model: base, backend: 'tpu' }), 'bad-input', /backend must be one of/);
  await rejectsWith(Clip.load({}), 'bad-input');
  await rejectsWith(Clip.load({ model: base, backend: 'webgpu' }), 'no-webgpu');
  await rejectsWith(Clip.load({ model: base, worker: true }), 'unsupported', /needs Web Workers/);
  assert.throws(() => Clip.cosine([1, 2], [1]), (e) => e.code === 'bad-input');
  assert.throws(() => new Clip({}), (e) => e.code === 'bad-input');
});

test('bad calls: bad-image, bad-input, tower-not-loaded, disposed', async () => {
  const clip = await Clip.load({ model: files(), backend: 'cpu' });
  await rejectsWith(clip.embedImages([bytes('GIF89a? no, plain text')]), 'bad-image', /^image: /);
  await rejectsWith(clip.embedImages(['cat.png']), 'bad-input', /unsupported input string/);
  await rejectsWith(clip.embedImages([{ width: 2, height: 2, data: new Uint8Array(3) }]), 'bad-input', /RGBA data/);
  const typeError = await rejectsWith(clip.embedTexts('a cat'), 'bad-input');
  assert.ok(typeError instanceof TypeError, 'argument errors stay TypeErrors');
  await rejectsWith(clip.classify(new Uint8Array(4), []), 'bad-input');
  clip.dispose();
  await rejectsWith(clip.embedTexts(['a cat']), 'disposed');

  const vision = await Clip.load({ model: files(), backend: 'cpu', towers: 'vision' });
  await rejectsWith(vision.embedTexts(['a cat']), 'tower-not-loaded', /text tower is not loaded/);
  vision.dispose();
  const text = await Clip.load({ model: files(), backend: 'cpu', towers: 'text' });
  await rejectsWith(text.embedImages([new Uint8Array(4)]), 'tower-not-loaded');
  text.dispose();
});

test('a model folder path without preprocessor_config.json loads with CLIP defaults', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'webclip-nopre-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) copyFileSync(path.join(g.dir, f), path.join(dir, f));
  const clip = await Clip.load({ model: dir, backend: 'cpu' });
  // The fixture's preprocessor_config.json is CLIP's defaults: the same embeddings.
  const i = g.images.findIndex((n) => n.endsWith('.png'));
  const [e] = await clip.embedImages([readFileSync(path.join(fixturesDir, 'images', g.images[i]))]);
  assert.ok(cosine(e, g.imageEmbeds[i]) > 0.9999, `${g.images[i]}: cosine ${cosine(e, g.imageEmbeds[i])}`);
  clip.dispose();
  // A missing config.json is still an error.
  rmSync(path.join(dir, 'config.json'));
  await rejectsWith(Clip.load({ model: dir }), 'not-found', /config\.json/);
});

test('the documented codes are the typed ones', () => {
  const readme = readFileSync(path.join(pkgDir, 'README.md'), 'utf8');
  const dts = readFileSync(path.join(pkgDir, 'index.d.ts'), 'utf8');
  const union = /export type WebclipErrorCode =([\s\S]*?);\n/.exec(dts)?.[1] ?? '';
  const typed = [...union.matchAll(/\|\s*'([a-z-]+)'/g)].map((m) => m[1]);
  assert.deepEqual([...typed].sort(), [...ERROR_CODES].sort(), 'index.d.ts WebclipErrorCode');
  const rows = new Set([...readme.matchAll(/^\| `([a-z-]+)` \|/gm)].map((m) => m[1]));
  for (const code of ERROR_CODES) assert.ok(rows.has(code), `README's table lists ${code}`);
});
