// Large model files go into Cache Storage in chunks (headless Chromium; `cache:
// { chunkBytes }` makes the fixture's weights many chunks): a reload makes no request, a
// damaged or missing chunk drops the entry and downloads it again, a write the browser
// refuses (QuotaExceededError) leaves no partial entry and a notice on the Clip, and
// Clip.clearCache() empties the cache.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './harness.js';

const env = useBrowser();
const CHUNK = 1 << 20;

test('weights cached in verified chunks; quota refusal falls back to memory with a notice', async () => {
  const weights = () => env.server.log.filter((e) => e.path === '/fixtures/tiny-quickgelu/model.safetensors');
  const r = await env.browser.run(`${env.server.url}/pages/index.html`, async (h, CHUNK) => {
    const out = {};
    await h.Clip.clearCache();
    const load = async () => {
      const clip = await h.Clip.load({ model: h.model('tiny-quickgelu'), backend: 'cpu', cache: { chunkBytes: CHUNK } });
      const [e] = await clip.embedTexts(['a photo of a cat']);
      clip.dispose();
      return { e: Array.from(e), notice: clip.cacheNotice };
    };
    const keys = async () => (await (await caches.open('webclip-v1')).keys()).map((r) => r.url);
    const first = await load();
    out.chunks = (await keys()).filter((u) => u.includes('model.safetensors') && u.includes('webclip-chunk=')).length;
    await window.mark('first');
    const second = await load();
    out.same = JSON.stringify(first.e) === JSON.stringify(second.e);
    await window.mark('second');
    // Damage chunk 2: flip a byte, keep its headers.
    const cache = await caches.open('webclip-v1');
    const url = (await keys()).find((u) => u.includes('model.safetensors') && u.endsWith('webclip-chunk=2'));
    const res = await cache.match(url);
    const bytes = new Uint8Array(await res.arrayBuffer());
    bytes[7] ^= 0x40;
    await cache.put(url, new Response(bytes, { headers: res.headers }));
    const third = await load();
    out.sameAfterDamage = JSON.stringify(first.e) === JSON.stringify(third.e);
    await window.mark('damaged');
    // The browser refuses the fourth chunk as a full disk would.
    await h.Clip.clearCache();
    const put = Cache.prototype.put;
    let n = 0;
    Cache.prototype.put = function (req, resp) {
      const u = String(req.url ?? req);
      if (u.includes('model.safetensors') && u.includes('webclip-chunk=') && ++n === 4) return Promise.reject(new DOMException('quota', 'QuotaExceededError'));
      return put.call(this, req, resp);
    };
    const refused = await load();
    Cache.prototype.put = put;
    out.refusedNotice = refused.notice;
    out.sameRefused = JSON.stringify(first.e) === JSON.stringify(refused.e);
    out.leftOver = (await keys()).filter((u) => u.includes('model.safetensors'));
    out.cleared = await h.Clip.clearCache();
    out.cachesAfter = await caches.keys();
    return out;
  }, CHUNK, {
    mark: async (what) => {
      env.marks ??= {};
      env.marks[what] = weights().length;
      env.server.clearLog();
    },
  });
  assert.ok(r.chunks >= 4, `${r.chunks} chunks`);
  assert.equal(env.marks.first, 1, 'first load downloads the weights once');
  assert.equal(env.marks.second, 0, 'second load reads every chunk from the cache');
  assert.equal(r.same, true);
  assert.equal(env.marks.damaged, 1, 'a damaged chunk: the weights are downloaded again');
  assert.equal(r.sameAfterDamage, true);
  assert.ok(env.browser.console.some((m) => /cached copy of .*model\.safetensors is damaged \(chunk 2 of/.test(m)), 'a warning names the chunk');
  assert.match(r.refusedNotice, /could not store .*model\.safetensors in Cache Storage \(QuotaExceededError: quota\); the model is kept in memory/);
  assert.equal(r.sameRefused, true, 'the model still loads from memory');
  assert.deepEqual(r.leftOver, [], 'no partial entry is left');
  assert.equal(r.cleared, true);
  assert.ok(!r.cachesAfter.includes('webclip-v1'));
});
