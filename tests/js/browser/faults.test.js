// Fault injection in headless Chromium (issue: robustness). A download dropped halfway
// rejects with `network` and leaves nothing half-written in Cache Storage, and a retry at
// the same URL loads; a full disk (QuotaExceededError from Cache Storage) still loads the
// model, from memory, with a warning and `clip.cacheNotice` saying why; dispose()
// with calls pending lets each one settle and rejects later calls with `disposed`, here
// and in a worker. (A damaged cache entry: browser.test.js; a GPU device destroyed during
// calls: gpu-recovery.test.js.)

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './harness.js';
import { golden, cosine } from '../common.js';

const NAME = 'tiny-quickgelu';
const env = useBrowser();
const run = (fn, arg) => env.browser.run(`${env.server.url}/pages/index.html`, fn, arg);
const g = golden(NAME);

test('a weight download dropped halfway: `network`, nothing cached for it, the retry loads', async () => {
  const weights = `/fixtures/${NAME}/model.safetensors`;
  for (const towers of ['both', 'text']) {
    await run(async () => caches.delete('webclip-v1'));
    // The next weights request with a body over 64 KiB (the whole file, or the text tower's
    // largest range, not the 8-byte header probe) is cut halfway.
    env.server.cutNext(weights, 65536);
    env.server.clearLog();
    const r = await run(async (h, { name, towers, text }) => {
      const load = () => h.Clip.load({ model: h.model(name), backend: 'cpu', towers, cache: true });
      const failed = await load().then(() => null, (e) => ({ code: e.code, message: e.message }));
      const cache = await caches.open('webclip-v1');
      // Every entry left holds whole, checked bytes (others, such as config.json, may be there).
      const keys = (await cache.keys()).map((k) => k.url);
      const left = [];
      for (const k of keys) {
        const res = await cache.match(k);
        const bytes = new Uint8Array(await res.arrayBuffer());
        left.push({ url: k, ok: bytes.length === Number(res.headers.get('x-webclip-length')) });
      }
      const clip = await load();
      const e = h.plain(await clip.embedTexts([text]));
      clip.dispose();
      return { failed, left, e };
    }, { name: NAME, towers, text: g.texts[0] });
    assert.ok(r.failed, `${towers}: the cut download rejects`);
    assert.equal(r.failed.code, 'network', r.failed.message);
    assert.match(r.failed.message, /model\.safetensors/);
    const cut = env.server.log.filter((e) => e.fault === 'cut');
    assert.equal(cut.length, 1, `${towers}: one request was cut`);
    // The cut request's bytes were never stored: no entry of the weights is incomplete, and
    // the cut range (the whole file, or that part) is not among them.
    assert.ok(r.left.every((l) => l.ok), JSON.stringify(r.left));
    const cutKey = towers === 'both' ? /model\.safetensors$/ : null;
    if (cutKey) assert.ok(!r.left.some((l) => cutKey.test(l.url)), `no entry for the dropped file: ${JSON.stringify(r.left)}`);
    assert.ok(cosine(r.e[0], g.textEmbeds[0]) > 0.9999, `${towers}: the retry gives the right numbers`);
  }
});

test('a full disk: QuotaExceededError from Cache Storage; the model loads from memory and says so', async () => {
  const r = await run(async (h, { name, text }) => {
    await caches.delete('webclip-v1');
    const put = Cache.prototype.put;
    Cache.prototype.put = async function () {
      throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
    };
    const warnings = [];
    const warn = console.warn;
    console.warn = (...a) => {
      warnings.push(a.join(' '));
      warn(...a);
    };
    try {
      const clip = await h.Clip.load({ model: h.model(name), backend: 'cpu', cache: true });
      const e = h.plain(await clip.embedTexts([text]));
      const notice = clip.cacheNotice;
      clip.dispose();
      const cached = (await (await caches.open('webclip-v1')).keys()).length;
      // With room again, the next load caches, and says nothing was skipped.
      Cache.prototype.put = put;
      const again = await h.Clip.load({ model: h.model(name), backend: 'cpu', cache: true });
      const skippedAfter = again.cacheNotice;
      again.dispose();
      return { e, notice, cached, warnings, skippedAfter };
    } finally {
      Cache.prototype.put = put;
      console.warn = warn;
    }
  }, { name: NAME, text: g.texts[0] });
  assert.ok(cosine(r.e[0], g.textEmbeds[0]) > 0.9999, 'the model works from memory');
  assert.match(r.notice, /^webclip: could not store http\S+ in Cache Storage \(QuotaExceededError: The quota has been exceeded\.\); the model is kept in memory/);
  assert.equal(r.cached, 0, 'nothing was stored');
  assert.ok(r.warnings.some((w) => /could not store .* in Cache Storage \(QuotaExceededError: The quota has been exceeded/.test(w)), r.warnings.join('\n'));
  assert.equal(r.skippedAfter, null);
});

for (const worker of [false, true]) {
  test(`dispose() with calls pending${worker ? ' in a worker' : ''}: each settles, later calls reject with 'disposed'`, async () => {
    const r = await run(async (h, { name, texts, worker }) => {
      const clip = await h.Clip.load({ model: h.model(name), backend: 'cpu', worker });
      const calls = texts.map((t) => clip.embedTexts([t]));
      const imageCall = clip.embedImages([await h.imageBlob('tiny-7x5.png')]);
      clip.dispose();
      const settled = await Promise.race([
        Promise.allSettled([...calls, imageCall]),
        new Promise((r) => setTimeout(() => r('timeout'), 30000)),
      ]);
      if (settled === 'timeout') return { settled };
      const later = await clip.embedTexts(['a cat']).then(() => null, (e) => e.code);
      return {
        settled: settled.map((s) => (s.status === 'fulfilled' ? { ok: h.plain(s.value)[0] } : { code: s.reason.code })),
        later,
        disposed: clip.disposed,
      };
    }, { name: NAME, texts: g.texts.slice(0, 4), worker });
    assert.notEqual(r.settled, 'timeout', 'every pending call settles');
    assert.equal(r.settled.length, 5);
    r.settled.slice(0, 4).forEach((s, i) => {
      if (s.ok) assert.ok(cosine(s.ok, g.textEmbeds[i]) > 0.9999, `call ${i} resolved with its own text's embedding`);
      else assert.equal(s.code, 'disposed', `call ${i}`);
    });
    const last = r.settled[4];
    if (!last.ok) assert.equal(last.code, 'disposed');
    assert.equal(r.later, 'disposed');
    assert.equal(r.disposed, true);
  });
}
