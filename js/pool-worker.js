// One thread of the CPU engine's pool (the threaded builds, js/wasm.js): a Web Worker, or
// a worker thread in Node.js. It instantiates the module its parent compiled over the
// parent's shared memory, joins the Rust pool, says it is ready, then serves the pool's
// parallel loops (`poolWorkerServe` never returns; the parent terminates the worker).
// Joining first: once the parent has heard from every worker, the pool counts them all.

const isNode = typeof process !== 'undefined' && !!process.versions?.node && typeof self === 'undefined';

async function start({ glue, module, memory }, post) {
  let bindings;
  try {
    bindings = await import(glue);
    await bindings.default({ module_or_path: module, memory });
  } catch (e) {
    post({ error: `could not instantiate the module: ${e?.message ?? e}` });
    return;
  }
  let index;
  try {
    index = bindings.poolWorkerJoin();
  } catch (e) {
    // Only where the build has no threads: the parent counts this worker out.
    post({ error: e?.message ?? String(e) });
    return;
  }
  post({ ready: true });
  bindings.poolWorkerServe(index);
}

if (isNode) {
  const { parentPort, workerData } = await import('node:worker_threads');
  start(workerData, (m) => parentPort.postMessage(m));
} else {
  self.onmessage = (e) => start(e.data, (m) => self.postMessage(m));
}
