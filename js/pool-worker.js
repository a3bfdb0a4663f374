// One thread of the CPU engine's pool (the threaded builds, js/wasm.js): a Web Worker, or
// a worker thread in Node.js. It instantiates the module its parent compiled over the
// parent's shared memory, says it is ready, then serves the Rust pool's parallel loops
// (`poolWorkerMain` never returns; the parent terminates the worker).

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
  post({ ready: true });
  try {
    bindings.poolWorkerMain();
  } catch (e) {
    // Only where the build has no threads; the parent has already counted this worker,
    // and the pool never hands work to a worker that did not join.
    console.error('webclip pool worker:', e?.message ?? e);
  }
}

if (isNode) {
  const { parentPort, workerData } = await import('node:worker_threads');
  start(workerData, (m) => parentPort.postMessage(m));
} else {
  self.onmessage = (e) => start(e.data, (m) => self.postMessage(m));
}
