// The wasm layer's raw-input methods (what the peer benchmark page feeds): the reference's
// own pixel_values and padded input_ids give the reference features, and malformed token
// arrays reject instead of trapping.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import init, { WasmClip, WeightBytes } from '../../../pkg/webclip.js';
import { golden, maxAbs, pkgDir, readSafetensors } from '../common.js';

test('pixelFeatures and tokenFeatures match the reference on its own inputs', async () => {
  await init({ module_or_path: readFileSync(path.join(pkgDir, 'webclip_bg.wasm')) });
  const g = golden('tiny-quickgelu');
  const ref = readSafetensors(path.join(g.dir, 'golden.safetensors'));
  const weights = new WeightBytes();
  weights.add(0, new Uint8Array(readFileSync(path.join(g.dir, 'model.safetensors'))));
  const clip = await WasmClip.load(weights, { config: readFileSync(path.join(g.dir, 'config.json')), backend: 'cpu' });

  // Padded to 77 with the end token, as CLIPTokenizer pads: each row is cut after its end token.
  const ids = Uint32Array.from(ref.input_ids.data);
  const n = ref.input_ids.shape[0];
  const text = await clip.tokenFeatures(ids, n, false);
  for (let i = 0; i < n; i++) {
    const row = text.subarray(i * clip.dim, (i + 1) * clip.dim);
    assert.ok(maxAbs(row, g.textFeatures[i]) < 1e-3, `text ${i}: max abs ${maxAbs(row, g.textFeatures[i])}`);
  }

  const pixels = ref[`pixel_values.${g.images[0]}`].data;
  const image = await clip.pixelFeatures(pixels, 1, false);
  assert.ok(maxAbs(image, g.imageFeatures[0]) < 1e-3, `image: max abs ${maxAbs(image, g.imageFeatures[0])}`);

  assert.equal((await clip.tokenFeatures(new Uint32Array(0), 0, true)).length, 0);
  await assert.rejects(clip.tokenFeatures(new Uint32Array(0), 3, true), /do not split into 3 equal rows/);
  await assert.rejects(clip.tokenFeatures(new Uint32Array(10), 3, true), /do not split into 3 equal rows/);
  await assert.rejects(clip.pixelFeatures(new Float32Array(10), 1, true), /pixel buffer/);
  // Rust's errors arrive as JS Errors with the ClipError's code.
  await assert.rejects(clip.tokenFeatures(new Uint32Array(10), 3, true), (e) => e instanceof Error && e.code === 'bad-input');
  // No tokenizer was given: the text tower cannot encode strings.
  await assert.rejects(clip.textFeatures(['a cat'], true), (e) => e.code === 'bad-tokenizer' && /tokenizer/.test(e.message));
  clip.free();

  // One options object, checked: a bad choice or a missing config is a bad-input Error.
  const again = () => {
    const w = new WeightBytes();
    w.add(0, new Uint8Array(readFileSync(path.join(g.dir, 'model.safetensors'))));
    return w;
  };
  const config = readFileSync(path.join(g.dir, 'config.json'));
  await assert.rejects(WasmClip.load(again(), { config, backend: 'tpu' }), (e) => e.code === 'bad-input' && /tpu/.test(e.message));
  await assert.rejects(WasmClip.load(again(), { backend: 'cpu' }), (e) => e.code === 'bad-input' && /config/.test(e.message));
  const vision = await WasmClip.load(again(), { config, backend: 'cpu', towers: 'vision' });
  await assert.rejects(vision.tokenFeatures(ids, n, true), (e) => e.code === 'tower-not-loaded');
  vision.free();
});
