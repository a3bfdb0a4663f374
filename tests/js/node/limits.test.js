// The limits of js/README.md ("Limits"): each one refused with a clear `bad-input` or
// `bad-image` before the large copy it guards, and the instance usable afterwards. The same
// numbers are checked again inside wasm (src/limits.rs, whose test compares them with
// js/limits.js).

import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';
import { Clip } from '../../../pkg/index.js';
import * as L from '../../../pkg/limits.js';
import { fixturesDir } from '../common.js';

const model = path.join(fixturesDir, 'tiny-quickgelu');
let clip;
before(async () => {
  clip = await Clip.load({ model, backend: 'cpu' });
});

const code = (c, re) => (e) => {
  assert.equal(e.code, c, e.message);
  if (re) assert.match(e.message, re);
  return true;
};

/** A PNG whose header declares `width x height`, with `rows` rows of (black) data. */
function png(width, height, rows = height) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const sig = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return new Uint8Array(Buffer.concat([sig, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(rows * (1 + width * 3)))), chunk('IEND', Buffer.alloc(0))]));
}

test('maxBatch over the limit is refused at load', async () => {
  await assert.rejects(Clip.load({ model, backend: 'cpu', maxBatch: L.MAX_BATCH + 1 }), code('bad-input', /maxBatch 257 is over the limit of 256/));
  const ok = await Clip.load({ model, backend: 'cpu', maxBatch: L.MAX_BATCH });
  ok.dispose();
});

test('a text over the length limit, in bytes of UTF-8', async () => {
  await assert.rejects(clip.embedTexts(['fine', 'x'.repeat(L.MAX_TEXT_BYTES + 1)]), code('bad-input', /text 1 is 65537 bytes long, over the limit of 65536/));
  // 'é' is two bytes: fewer characters than the limit, more bytes.
  await assert.rejects(clip.embedTexts(['é'.repeat(L.MAX_TEXT_BYTES / 2 + 1)]), code('bad-input', /text 0 is 65538 bytes/));
  // At the limit it runs (the tokenizer keeps the first 77 tokens).
  const [e] = await clip.embedTexts(['cat '.repeat(L.MAX_TEXT_BYTES / 4)]);
  assert.equal(e.length, clip.dim);
});

test('too many texts, and too many bytes of text, in one call', async () => {
  await assert.rejects(clip.embedTexts(new Array(L.MAX_ITEMS_PER_CALL + 1).fill('a')), code('bad-input', /65537 texts in one call, over the limit of 65536/));
  const big = 'y'.repeat(L.MAX_TEXT_BYTES);
  const n = L.MAX_REQUEST_BYTES / L.MAX_TEXT_BYTES + 1;
  await assert.rejects(clip.embedTexts(new Array(n).fill(big)), code('bad-input', /bytes of input, over the limit of 536870912 bytes per call/));
});

test('too many bytes of images in one call, refused before any is read', async () => {
  // One 64 MiB buffer given nine times: 576 MiB counted, 64 MiB held.
  const data = new Uint8Array(64 << 20);
  const img = { width: 4096, height: 4096, data };
  await assert.rejects(clip.embedImages(new Array(9).fill(img)), code('bad-input', /over the limit of 536870912 bytes per call/));
  await assert.rejects(clip.embedImages(new Array(L.MAX_ITEMS_PER_CALL + 1).fill(new Uint8Array(1))), code('bad-input', /65537 images in one call/));
});

test('an image whose header declares too many pixels is refused before decoding', async () => {
  const huge = png(20000, 20000, 1); // 400 M pixels, a few hundred bytes of file
  assert.ok(huge.length < 1000, `${huge.length} bytes`);
  await assert.rejects(clip.embedImages([huge]), code('bad-image', /20000x20000 = 400000000 pixels, more than the limit of 100000000/));
  // Under the limit but with one row of data: a decode error, not a crash.
  await assert.rejects(clip.embedImages([png(3000, 3000, 1)]), code('bad-image'));
  // The instance is still usable.
  const [e] = await clip.embedImages([png(8, 8)]);
  assert.equal(e.length, clip.dim);
});
