// Which build of the wasm module runs in this thread, loading it once, and the pool of
// workers that gives the threaded builds their threads.
//
// The package carries four builds of one crate (build.sh): `webclip` (simd128, the
// fallback), `webclip_relaxed` (+ relaxed SIMD's fused multiply-add), `webclip_mt` and
// `webclip_mt_relaxed` (+ threads over shared memory). The choice is made once per thread,
// by feature detection (validating tiny modules) before anything is downloaded.

import { webclipError } from './errors.js';

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

/** The chosen build's bindings (`WasmClip`, `WeightPlan`, ...), once `loadWasm` resolved. */
export let wasm = null;
let memory = null;

/** Bytes of this thread's wasm memory (it only grows): for the load tests. */
export const wasmMemoryBytes = () => memory?.buffer.byteLength ?? 0;

// (module (func (result v128) (v128.const 0) ... )): any simd128 instruction.
const SIMD_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 22, 1, 20, 0, 253, 12,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 11,
]);
// (func (result v128) (f32x4.relaxed_madd (v128.const 0) (v128.const 0) (v128.const 0))).
const RELAXED_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 61, 1, 59, 0,
  253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  253, 133, 2, 11,
]);
// (func (export "f") (result i32) (i32x4.extract_lane 0 (i32x4.relaxed_dot_i8x16_i7x16_add_s
//   (v128.const i8x16 -1 ...) (v128.const i8x16 2 ...) (v128.const i32x4 0 0 0 0)))): -8 where
// the first operand is the signed one, as the engine's int8 kernel expects (V8 before 11.4,
// Node.js 20 with --experimental-wasm-relaxed-simd, answers otherwise).
const RELAXED_DOT_PROBE = new Uint8Array([
  0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0,
  10, 64, 1, 62, 0,
  253, 12, ...new Array(16).fill(255),
  253, 12, ...new Array(16).fill(2),
  253, 12, ...new Array(16).fill(0),
  253, 147, 2, 253, 27, 0, 11,
]);
const relaxedDotWorks = () => {
  try {
    return new WebAssembly.Instance(new WebAssembly.Module(RELAXED_DOT_PROBE)).exports.f() === -8;
  } catch {
    return false;
  }
};
// (memory 1 1 shared): the threads proposal.
const THREADS_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 5, 4, 1, 3, 1, 1]);

const validates = (bytes) => {
  try {
    return typeof WebAssembly === 'object' && WebAssembly.validate(bytes);
  } catch {
    return false;
  }
};

/** What this runtime offers the module. */
export async function wasmFeatures() {
  const simd = validates(SIMD_PROBE);
  const relaxedSimd = simd && validates(RELAXED_PROBE);
  const relaxedDot = relaxedSimd && relaxedDotWorks();
  const atomics = validates(THREADS_PROBE) && typeof SharedArrayBuffer === 'function';
  // Browsers hand out SharedArrayBuffer (and shared wasm memory) only to cross-origin
  // isolated pages; Node.js always has it.
  const isolated = isNode || globalThis.crossOriginIsolated === true;
  const cores = isNode
    ? (await import(/* webpackIgnore: true */ 'node:os')).availableParallelism()
    : globalThis.navigator?.hardwareConcurrency || 1;
  return { simd, relaxedSimd, relaxedDot, threads: atomics && isolated, atomics, isolated, cores };
}

/** The most threads a model takes by default: beyond this the matmuls' panels get thin. */
export const DEFAULT_MAX_THREADS = 8;
/** The most threads a model may ask for (the Rust pool's own cap). */
export const MAX_THREADS = 32;

/**
 * The build for `threads` (`'auto'` or a number, validated by index.js) and why:
 * `{ name, threads, reason }`. Throws an `unsupported` Error, before any download,
 * where WebAssembly or its SIMD is missing.
 */
export async function chooseBuild(threads = 'auto', { wasmUrl, backend } = {}) {
  const f = await wasmFeatures();
  if (typeof WebAssembly !== 'object') {
    throw webclipError('unsupported', 'webclip: this browser has no WebAssembly, which webclip needs; use a current browser');
  }
  if (!f.simd) {
    throw webclipError(
      'unsupported',
      "webclip: this browser's WebAssembly lacks SIMD (simd128), which webclip's CPU engine needs; update the browser (Chrome 91, Firefox 89, Safari 16.4 and later have it)",
    );
  }
  const relaxed = f.relaxedSimd ? '_relaxed' : '';
  const fma = f.relaxedSimd ? 'relaxed SIMD (fused multiply-add)' : 'simd128 without relaxed SIMD (this runtime lacks it)';
  const wanted = threads === 'auto' ? Math.min(f.cores, DEFAULT_MAX_THREADS) : threads;
  const single = (why) => ({ name: `webclip${relaxed}`, threads: 1, reason: `1 thread: ${why}; ${fma}` });
  if (wasmUrl) return { name: 'webclip', wasmUrl, threads: 1, reason: '1 thread: wasmUrl names the single-thread simd128 build' };
  if (wanted <= 1) return single(threads === 'auto' ? 'this device reports one core' : 'threads: 1 was asked for');
  // The GPU engine records on one thread; its buffers need no shared memory.
  if (backend === 'webgpu') return single("backend 'webgpu' runs on the GPU");
  // Isolation first: a page that is not isolated has no SharedArrayBuffer at all.
  if (!f.isolated) {
    return single(
      'the page is not cross-origin isolated, so it has no SharedArrayBuffer (serve it with Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp)',
    );
  }
  if (!f.atomics) return single('this runtime has no shared WebAssembly memory (threads)');
  return { name: `webclip_mt${relaxed}`, threads: wanted, reason: `${wanted} threads; ${fma}` };
}

let loading = null; // Promise<{ name, features, threads, reason }> of this thread's build

/**
 * Load and instantiate this thread's build once; with a threaded build, start its pool
 * (`threads - 1` workers). Resolves to what runs: `{ name, features, threads, reason }`.
 * Later calls get the first call's build (one per thread); `threads` beyond the first
 * call's count are not added.
 */
export function loadWasm(choice) {
  loading ??= (async () => {
    const glue = new URL(`./${choice.name}.js`, import.meta.url);
    const file = new URL(`./${choice.name}_bg.wasm`, import.meta.url);
    const bindings = await import(/* webpackIgnore: true */ glue.href);
    let module;
    if (choice.wasmUrl) module = await (await fetch(choice.wasmUrl)).arrayBuffer();
    else if (isNode) {
      const fs = await import(/* webpackIgnore: true */ 'node:fs/promises');
      module = await fs.readFile(file);
    } else {
      const res = await fetch(file);
      if (!res.ok) throw new Error(`${res.status} ${res.statusText} fetching ${file}`);
      module = await res.arrayBuffer();
    }
    // Compiled once: the pool's workers instantiate the same Module.
    module = await WebAssembly.compile(module);
    const exports = await bindings.default({ module_or_path: module });
    wasm = bindings;
    memory = exports.memory;
    // The int8 matmuls use relaxed SIMD's dot product only where it answers as specified.
    bindings.setRelaxedDot(relaxedDotWorks());
    let { threads, reason } = choice;
    if (threads > 1) {
      const started = await startPool(glue.href, module, exports.memory, threads - 1);
      if (started < threads - 1) {
        reason = `${started + 1} of ${threads} threads: ${threads - 1 - started} worker(s) did not start (${lastPoolError}); ${reason.replace(/^\d+ threads; /, '')}`;
        threads = started + 1;
      }
    }
    return { name: choice.name, features: bindings.buildFeatures(), threads, reason, integerDot: bindings.integerDot() ?? null };
  })().catch((e) => {
    loading = null; // let a later call try again
    throw webclipError('wasm', `webclip: could not load ${choice.name}_bg.wasm: ${e?.message ?? e}`, e);
  });
  return loading;
}

/** The build this thread loaded (null before `loadWasm`). */
export const loadedBuild = () => loading;

let lastPoolError = 'no error';
/** The pool's workers, kept so that `terminatePool` can end them. */
const poolWorkers = [];

/**
 * Start `count` pool workers (js/pool-worker.js: Web Workers, or worker threads in
 * Node.js), each instantiating `module` over the shared `memory` and joining the Rust
 * pool. Resolves to how many joined within the time limit; never rejects.
 */
async function startPool(glue, module, memory, count, timeoutMs = 20000) {
  const url = new URL('./pool-worker.js', import.meta.url);
  const one = async () => {
    let worker;
    let timer;
    try {
      const data = { glue, module, memory };
      if (isNode) {
        const { Worker } = await import(/* webpackIgnore: true */ 'node:worker_threads');
        worker = new Worker(url, { workerData: data });
      } else {
        worker = new Worker(url, { type: 'module', name: 'webclip-pool' });
      }
      poolWorkers.push(worker);
      await new Promise((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
        const done = (m) => (m?.ready ? resolve() : reject(new Error(m?.error ?? 'the worker failed')));
        if (isNode) {
          worker.on('message', done);
          worker.on('error', reject);
        } else {
          worker.onmessage = (e) => done(e.data);
          worker.onerror = (e) => reject(new Error(e.message || 'the worker script failed to load'));
          worker.postMessage(data);
        }
      });
      if (isNode) {
        // A pool worker never ends on its own: it must not keep Node.js alive (listeners
        // hold a reference too).
        worker.removeAllListeners('message');
        worker.removeAllListeners('error');
        worker.unref();
      }
      return 1;
    } catch (e) {
      lastPoolError = e?.message ?? String(e);
      worker?.terminate();
      return 0;
    } finally {
      clearTimeout(timer);
    }
  };
  const results = await Promise.all(Array.from({ length: count }, one));
  return results.reduce((a, b) => a + b, 0);
}
