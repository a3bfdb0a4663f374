#!/usr/bin/env bash
# Times webclip beside onnxruntime-web, in one run of the peer harness (../shared/bench), on
# the same ViT-B/32 weights and inputs, in the same headless Chromium.
#   tests/js/bench/run_peer.sh [run_ort.mjs options]
#   e.g. tests/js/bench/run_peer.sh --configs wasm-t1,wasm-t2,webclip-cpu --rounds 3
# Needs pkg/ (./build.sh) and the exported models (../shared/bench/README.md: export_onnx.py,
# a Python venv with torch and transformers); pass --models-dir if they are not in
# bench-out/peer/models. webclip configs: webclip-cpu-t1 and webclip-cpu-t2 (the CPU engine on 1
# or 2 threads, with relaxed SIMD where Chromium has it; webclip-cpu is webclip-cpu-t1), webclip-webgpu.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
work="$root/bench-out/peer"
if [ ! -f "$work/run_ort.mjs" ]; then
  mkdir -p "$root/bench-out"
  cp -r "$root/../shared/bench" "$work"
  chmod -R u+w "$work"
fi
[ -d "$work/node_modules" ] || (cd "$work" && npm ci --no-audit --no-fund)
[ -f "$root/pkg/webclip_bg.wasm" ] || { echo "pkg/ is not built: run ./build.sh first" >&2; exit 1; }
ln -sfn "$root/pkg" "$work/webclip-pkg"
cp "$root/tests/js/bench/webclip.html" "$work/"
# Register our page with the harness (its CONFIGS table is how other libraries join a run).
grep -q "'webclip-cpu-t2'" "$work/run_ort.mjs" || sed -i "s|^const CONFIGS = {|const CONFIGS = {\n  'webclip-cpu': { page: 'webclip.html', ep: 'cpu', threads: 1 },\n  'webclip-cpu-t1': { page: 'webclip.html', ep: 'cpu', threads: 1 },\n  'webclip-cpu-t2': { page: 'webclip.html', ep: 'cpu', threads: 2 },\n  'webclip-webgpu': { page: 'webclip.html', ep: 'webgpu', threads: 1 },|" "$work/run_ort.mjs"
cd "$work"
exec node run_ort.mjs "$@"
