// One build of the package in a process of its own (a process keeps the build its first
// load chose): embeds every fixture model's texts and images with `threads` from argv and
// prints `{ models: { name: { texts, images } }, backendInfo, poolStats }` as JSON.
// Run by threads.test.js, with --experimental-wasm-relaxed-simd for the relaxed builds.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Clip } from '../../../pkg/index.js';
import { wasm } from '../../../pkg/wasm.js';
import { MODELS, golden, fixturesDir } from '../common.js';

const threads = process.argv[2] === 'auto' ? 'auto' : Number(process.argv[2]);
const out = { models: {} };
for (const model of MODELS) {
  const g = golden(model);
  const clip = await Clip.load({ model: g.dir, backend: 'cpu', threads });
  const images = g.images.map((n) => new Uint8Array(readFileSync(path.join(fixturesDir, 'images', n))));
  out.models[model] = {
    texts: (await clip.embedTexts(g.texts)).map((e) => Array.from(e)),
    images: (await clip.embedImages(images)).map((e) => Array.from(e)),
  };
  out.backendInfo = clip.backendInfo;
  clip.dispose();
}
out.poolStats = Array.from(wasm.poolStats());
process.stdout.write(JSON.stringify(out));
