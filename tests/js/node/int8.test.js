// Compact checkpoints in the package (Node.js, CPU engine): a folder converted by
// `webclip convert --dtype int8` loads as int8 (read from its header), and so does a float
// folder with `weights: 'int8'`; both stay within the fidelity goal of float32.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Clip } from '../../../pkg/index.js';
import { MODELS, golden, fixturesDir, repoRoot, cosine } from '../common.js';

const cli = path.join(repoRoot, 'target', 'debug', 'webclip');
const imageBytes = (name) => new Uint8Array(readFileSync(path.join(fixturesDir, 'images', name)));

const least = (a, b) => Math.min(...a.map((e, i) => cosine(e, b[i])));

for (const model of MODELS) {
  test(`${model}: an int8 folder and weights: 'int8' match float32 within cosine 0.995`, { skip: !existsSync(cli) && 'the webclip command is not built (cargo build)' }, async () => {
    const g = golden(model);
    const out = mkdtempSync(path.join(tmpdir(), 'webclip-int8-'));
    try {
      execFileSync(cli, ['convert', '--model', g.dir, '--dtype', 'int8', '--out', out], { stdio: 'pipe' });
      const f32Size = statSync(path.join(g.dir, 'model.safetensors')).size;
      assert.ok(statSync(path.join(out, 'model.safetensors')).size < 0.3 * f32Size, 'int8 file under 30 % of f32');
      const images = g.images.map(imageBytes);
      const base = await Clip.load({ model: g.dir });
      assert.equal(base.backendInfo.weights, 'f32');
      const want = { t: await base.embedTexts(g.texts), i: await base.embedImages(images) };
      base.dispose();
      for (const options of [{ model: out }, { model: g.dir, weights: 'int8' }]) {
        const clip = await Clip.load(options);
        assert.equal(clip.backendInfo.weights, 'int8', JSON.stringify(options));
        const t = await clip.embedTexts(g.texts);
        const i = await clip.embedImages(images);
        assert.ok(least(t, want.t) >= 0.995, `texts: cosine ${least(t, want.t)}`);
        assert.ok(least(i, want.i) >= 0.995, `images: cosine ${least(i, want.i)}`);
        clip.dispose();
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
}

test("weights must be 'auto' or 'int8'", async () => {
  await assert.rejects(
    Clip.load({ model: path.join(fixturesDir, 'tiny-quickgelu'), weights: 'int4' }),
    (e) => e.code === 'bad-input' && /weights must be one of auto, int8/.test(e.message),
  );
});
