// One build of the package in a process of its own (a process keeps the build its first
// load chose): embeds every fixture model's texts and images with `threads` from argv and
// prints `{ models: { name: { texts, images } }, int8: { name: { texts, images } },
// backendInfo, poolStats }` as JSON; `int8` holds the same inputs through the int8 copies of
// the models in the folder given as the second argument (one folder per model), if any.
// Run by threads.test.js, with --experimental-wasm-relaxed-simd for the relaxed builds.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Clip } from '../../../pkg/index.js';
import { wasm } from '../../../pkg/wasm.js';
import { MODELS, golden, fixturesDir } from '../common.js';

const threads = process.argv[2] === 'auto' ? 'auto' : Number(process.argv[2]);
const int8Dir = process.argv[3];
const out = { models: {}, int8: {} };
for (const model of MODELS) {
  const g = golden(model);
  const images = g.images.map((n) => new Uint8Array(readFileSync(path.join(fixturesDir, 'images', n))));
  const embed = async (dir, into) => {
    const clip = await Clip.load({ model: dir, backend: 'cpu', threads });
    into[model] = {
      texts: (await clip.embedTexts(g.texts)).map((e) => Array.from(e)),
      images: (await clip.embedImages(images)).map((e) => Array.from(e)),
    };
    out.backendInfo = clip.backendInfo;
    clip.dispose();
  };
  await embed(g.dir, out.models);
  if (int8Dir) await embed(path.join(int8Dir, model), out.int8);
}
out.poolStats = Array.from(wasm.poolStats());
process.stdout.write(JSON.stringify(out));
