#!/usr/bin/env bash
# webclip build entry point.
#   ./build.sh          build the npm package into pkg/
#   ./build.sh demo     build pkg/ and serve the demo page (www/) on http://127.0.0.1:8080
#   ./build.sh test     install what the tests need, then run every test (Rust, Node, browser)
#   ./build.sh deps     only install the toolchain pieces (idempotent)
#   ./build.sh bench    CPU and GPU benchmarks on random ViT-B/32 weights
#   ./build.sh fuzz [SECONDS [TARGET...]]   run the cargo-fuzz targets (fuzz/run.sh)
set -euo pipefail
cd "$(dirname "$0")"

WASM_BINDGEN_VERSION=$(grep -A2 'name = "wasm-bindgen"' Cargo.lock 2>/dev/null | sed -n 's/^version = "\(.*\)"/\1/p' | head -1 || true)
WASM_BINDGEN_VERSION=${WASM_BINDGEN_VERSION:-0.2.130}

log() { printf '\n== %s\n' "$*" >&2; }

install_deps() {
  local apt_pkgs=()
  command -v chromium >/dev/null || apt_pkgs+=(chromium)
  [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || apt_pkgs+=(mesa-vulkan-drivers)
  ldconfig -p | grep -q libvulkan.so.1 || apt_pkgs+=(libvulkan1)
  command -v node >/dev/null || apt_pkgs+=(nodejs npm)
  if [ ${#apt_pkgs[@]} -gt 0 ]; then
    log "apt-get install ${apt_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
  fi
  rustup target list --installed | grep -q wasm32-unknown-unknown || { log "rustup target add wasm32-unknown-unknown"; rustup target add wasm32-unknown-unknown; }
  rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt || true
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
    log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
    # --locked pins what the CLI was released with; if the registry no longer serves one of
    # those exact versions, let cargo resolve compatible ones instead.
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked ||
      cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
  fi
  npm_tools
  fuzz_tools
}

# cargo-fuzz (libFuzzer) needs a nightly toolchain: -Z sanitizer=address and the fuzzer's
# coverage instrumentation are nightly-only flags. The version is pinned for reproducible runs.
CARGO_FUZZ_VERSION=0.13.2
fuzz_tools() {
  rustup toolchain list | grep -q '^nightly' || { log "rustup toolchain install nightly"; rustup toolchain install nightly --profile minimal; }
  if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
    log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked ||
      cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION"
  fi
}

# tests/js/package-lock.json pins playwright-core (drives Debian's chromium; it downloads
# no browser), binaryen (wasm-opt) and typescript (checks index.d.ts).
npm_tools() {
  if [ ! -x tests/js/node_modules/.bin/wasm-opt ] || [ ! -d tests/js/node_modules/playwright-core ] ||
    [ tests/js/package-lock.json -nt tests/js/node_modules/.package-lock.json ]; then
    log "npm ci (build and test tools)"
    (cd tests/js && npm ci --no-audit --no-fund)
  fi
}

# Only what building pkg/ needs (no browser): the wasm target, wasm-bindgen, wasm-opt.
build_tools() {
  rustup target list --installed | grep -q wasm32-unknown-unknown || { log "rustup target add wasm32-unknown-unknown"; rustup target add wasm32-unknown-unknown; }
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
    log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --locked ||
      cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
  fi
  # wasm-opt from the npm `binaryen` package pinned in tests/js (Debian's binaryen 108 is
  # too old for the wasm features Rust emits by default).
  npm_tools
}

# The features Rust's wasm32 target enables by default, plus simd128 (our RUSTFLAGS).
WASM_OPT_FEATURES=(--enable-simd --enable-bulk-memory --enable-sign-ext --enable-mutable-globals
  --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue)

build_pkg() {
  build_tools
  local target_dir=${WEBCLIP_WASM_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
  log "cargo build --release --target wasm32-unknown-unknown (simd128)"
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+simd128" CARGO_TARGET_DIR="$target_dir" \
    cargo build --release --lib --target wasm32-unknown-unknown
  rm -rf pkg && mkdir -p pkg
  log "wasm-bindgen --target web"
  wasm-bindgen --target web --no-typescript --out-dir pkg --out-name webclip \
    "$target_dir/wasm32-unknown-unknown/release/webclip.wasm"
  log "wasm-opt ${WASM_OPT_LEVEL:--O3}"
  tests/js/node_modules/.bin/wasm-opt "${WASM_OPT_LEVEL:--O3}" "${WASM_OPT_FEATURES[@]}" \
    pkg/webclip_bg.wasm -o pkg/webclip_bg.opt.wasm
  mv pkg/webclip_bg.opt.wasm pkg/webclip_bg.wasm
  cp js/index.js js/engine.js js/errors.js js/limits.js js/sources.js js/worker.js js/clip-index.js js/index-storage.js js/index.d.ts pkg/
  cp js/README.md pkg/README.md
  local version
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
  sed "s/@VERSION@/$version/" js/package.json > pkg/package.json
  local raw gz
  raw=$(stat -c %s pkg/webclip_bg.wasm)
  gz=$(gzip -9c pkg/webclip_bg.wasm | wc -c)
  log "pkg/ ready: webclip_bg.wasm $raw bytes, $gz gzipped"
}

# Every suite runs even when an earlier one fails; the exit status says whether all passed.
run_tests() {
  install_deps
  local failed=()
  log "cargo test (native; GPU tests on lavapipe)"
  WEBCLIP_REQUIRE_GPU=1 cargo test --no-fail-fast || failed+=("cargo test")
  # Every fuzz target briefly (WEBCLIP_FUZZ_SECONDS each; 0 skips); the long runs are
  # `./build.sh fuzz 1800`.
  if [ "${WEBCLIP_FUZZ_SECONDS:-20}" != 0 ]; then
    log "fuzz: each target for ${WEBCLIP_FUZZ_SECONDS:-20} s"
    fuzz/run.sh "${WEBCLIP_FUZZ_SECONDS:-20}" || failed+=("fuzz")
  fi
  build_pkg
  log "node --test: Node.js 20 and headless Chromium against pkg/"
  node --test --test-concurrency=1 tests/js/node/ tests/js/browser/ tests/js/demo.test.mjs || failed+=("node --test")
  if [ ${#failed[@]} -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    return 1
  fi
  log "all tests passed"
}

serve_demo() {
  build_pkg
  [ -d www ] || echo "note: www/ (the demo page) is not there yet; serving pkg/ and the fixtures only" >&2
  echo "demo: http://127.0.0.1:${PORT:-8080}/   (Ctrl-C stops it)" >&2
  exec node tests/js/server.js --port "${PORT:-8080}" --log $([ -d www ] && echo --www www)
}

case "${1:-pkg}" in
  deps) install_deps ;;
  pkg) build_pkg ;;
  test) run_tests ;;
  demo) serve_demo ;;
  bench) shift; cargo run --release --bin webclip -- bench "$@" ;;
  fuzz) shift; fuzz_tools; fuzz/run.sh "${@:-60}" ;;
  *) echo "unknown command: $1" >&2; exit 2 ;;
esac
