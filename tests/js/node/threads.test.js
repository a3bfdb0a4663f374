// The four wasm builds (js/wasm.js) in Node.js: each chosen by feature detection, each on
// the fixtures' reference outputs. Node.js 20 has shared memory but no relaxed SIMD unless
// asked for (--experimental-wasm-relaxed-simd), so both halves can be run here. Every case
// runs in a process of its own: a process keeps the build its first load chose.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Clip } from '../../../pkg/index.js';
import { MODELS, golden, assertParity } from '../common.js';

const child = fileURLToPath(new URL('./threads-child.mjs', import.meta.url));

function run(threads, relaxed) {
  const flags = relaxed ? ['--experimental-wasm-relaxed-simd'] : [];
  const out = execFileSync(process.execPath, [...flags, child, String(threads)], { maxBuffer: 1 << 28, timeout: 300e3 });
  return JSON.parse(out);
}

const cases = [
  { threads: 2, relaxed: false, build: 'webclip_mt', features: ['simd128', 'threads'] },
  { threads: 1, relaxed: false, build: 'webclip', features: ['simd128'] },
  { threads: 2, relaxed: true, build: 'webclip_mt_relaxed', features: ['simd128', 'relaxed-simd', 'threads'] },
  { threads: 1, relaxed: true, build: 'webclip_relaxed', features: ['simd128', 'relaxed-simd'] },
];

for (const c of cases) {
  test(`${c.build} (threads: ${c.threads}${c.relaxed ? ', relaxed SIMD offered' : ''}) matches every fixture's reference`, () => {
    const r = run(c.threads, c.relaxed);
    const { build, threads } = r.backendInfo;
    assert.equal(build.name, c.build, build.reason);
    assert.deepEqual(build.features, c.features);
    assert.equal(threads, c.threads);
    if (c.threads > 1) {
      assert.match(build.reason, /^2 threads/);
      // The pool's workers ran tasks: the threads are real, not only reported.
      const [loops, tasks] = r.poolStats;
      assert.ok(loops > 0 && tasks > 0, `pool stats ${r.poolStats}`);
    } else {
      assert.match(build.reason, /threads: 1 was asked for/);
      assert.deepEqual(r.poolStats, [0, 0]);
    }
    assert.match(build.reason, c.relaxed ? /relaxed SIMD \(fused multiply-add\)/ : /without relaxed SIMD/);
    for (const model of MODELS) {
      const g = golden(model);
      assertParity(assert, r.models[model].texts, g.textEmbeds, g.texts.map((t) => `${model} ${build.name}: ${t}`));
      assertParity(assert, r.models[model].images, g.imageEmbeds, g.images.map((n) => `${model} ${build.name}: ${n}`));
    }
  });
}

test("threads other than 'auto' or 1..32 are refused before anything loads", async () => {
  const g = golden('tiny-quickgelu');
  for (const threads of [0, -1, 1.5, 33, 'many', '2']) {
    await assert.rejects(Clip.load({ model: g.dir, threads }), (e) => {
      assert.equal(e.code, 'bad-input');
      assert.match(e.message, /threads must be 'auto' or an integer from 1 to 32/);
      return true;
    }, String(threads));
  }
});
