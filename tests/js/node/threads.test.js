// The four wasm builds (js/wasm.js) in Node.js: each chosen by feature detection, each on
// the fixtures' reference outputs. Node.js 20 has shared memory but no relaxed SIMD unless
// asked for (--experimental-wasm-relaxed-simd), so both halves can be run here. Every case
// runs in a process of its own: a process keeps the build its first load chose.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Clip } from '../../../pkg/index.js';
import { MODELS, golden, assertParity, cosine, fixturesDir, readSafetensors, repoRoot } from '../common.js';

const child = fileURLToPath(new URL('./threads-child.mjs', import.meta.url));

// int8 copies of every fixture model (`webclip convert`), and the native engine's embeddings
// of them: on x86-64 with AVX2 the native int8 matmul runs on integer dot products, the same
// arithmetic as the relaxed-SIMD builds' (7-bit activation codes, exact integer sums).
const cli = path.join(repoRoot, 'target', 'debug', 'webclip');
const int8 = existsSync(cli) ? mkdtempSync(path.join(tmpdir(), 'webclip-threads-int8-')) : null;
const native = {};
if (int8) {
  after(() => rmSync(int8, { recursive: true, force: true }));
  for (const model of MODELS) {
    const g = golden(model);
    const dir = path.join(int8, model);
    mkdirSync(path.dirname(dir), { recursive: true });
    execFileSync(cli, ['convert', '--model', g.dir, '--dtype', 'int8', '--out', dir], { stdio: 'pipe' });
    const feats = path.join(int8, `${model.replace(/\//g, '_')}.safetensors`);
    const inputs = [...g.images.flatMap((n) => ['--image', path.join(fixturesDir, 'images', n)]), ...g.texts.flatMap((t) => ['--text', t])];
    execFileSync(cli, ['embed', '--model', dir, '--backend', 'cpu', ...inputs, '--out', feats], { stdio: 'pipe' });
    const t = readSafetensors(feats);
    const rows = (x) => Array.from({ length: x.shape[0] }, (_, i) => x.data.subarray(i * x.shape[1], (i + 1) * x.shape[1]));
    native[model] = { images: rows(t.image_features), texts: rows(t.text_features) };
  }
}

function run(threads, relaxed) {
  const flags = relaxed ? ['--experimental-wasm-relaxed-simd'] : [];
  const args = [...flags, child, String(threads), ...(int8 ? [int8] : [])];
  const out = execFileSync(process.execPath, args, { maxBuffer: 1 << 28, timeout: 300e3 });
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
    // int8 on relaxed SIMD's dot product where the runtime answers it as specified (Node.js
    // 20's experimental relaxed SIMD does not: js/wasm.js probes it), else on simd128's.
    const relaxedDot = c.relaxed && JSON.parse(execFileSync(process.execPath, ['--experimental-wasm-relaxed-simd', '--input-type=module', '-e',
      `import { wasmFeatures } from ${JSON.stringify(path.join(repoRoot, 'pkg', 'wasm.js'))}; process.stdout.write(JSON.stringify((await wasmFeatures()).relaxedDot))`]));
    assert.equal(build.integerDot, relaxedDot ? 'i32x4.relaxed_dot_i8x16_i7x16_add' : 'i32x4.dot_i16x8_s');
    for (const model of MODELS) {
      const g = golden(model);
      assertParity(assert, r.models[model].texts, g.textEmbeds, g.texts.map((t) => `${model} ${build.name}: ${t}`));
      assertParity(assert, r.models[model].images, g.imageEmbeds, g.images.map((n) => `${model} ${build.name}: ${n}`));
      if (!int8) continue;
      // int8: every build within the fidelity goal of float32, and with the native engine's
      // integer arithmetic on the same 7-bit codes (float rounding that differs between the
      // engines moves a code by one step now and then: cosine 0.9998 on small-gelu's texts;
      // a wrong kernel lands far below).
      for (const kind of ['texts', 'images']) {
        const got = r.int8[model][kind];
        const f32 = kind === 'texts' ? g.textEmbeds : g.imageEmbeds;
        const least = (want) => Math.min(...got.map((e, i) => cosine(e, want[i])));
        assert.ok(least(f32) >= 0.995, `${model} ${build.name} int8 ${kind}: cosine ${least(f32)} to float32`);
        if (build.integerDot && process.arch === 'x64') {
          assert.ok(least(native[model][kind]) >= 0.999, `${model} ${build.name} int8 ${kind}: cosine ${least(native[model][kind])} to the native engine`);
        }
      }
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
