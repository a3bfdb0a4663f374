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

# The threaded wasm builds rebuild std with atomics: nightly and its rust-src.
nightly_wasm_tools() {
  rustup toolchain list | grep -q '^nightly' || { log "rustup toolchain install nightly"; rustup toolchain install nightly --profile minimal; }
  rustup component list --installed --toolchain nightly 2>/dev/null | grep -q '^rust-src' ||
    { log "rustup component add rust-src --toolchain nightly"; rustup component add rust-src --toolchain nightly; }
}

# Only what building pkg/ needs (no browser): the wasm targets, wasm-bindgen, wasm-opt.
build_tools() {
  rustup target list --installed | grep -q wasm32-unknown-unknown || { log "rustup target add wasm32-unknown-unknown"; rustup target add wasm32-unknown-unknown; }
  nightly_wasm_tools
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

# The package carries four builds of one crate; js/wasm.js picks one per thread at load:
#   webclip             simd128                      every browser with SIMD (the fallback)
#   webclip_relaxed     + relaxed SIMD (FMA)         Chromium; Node.js 20 lacks relaxed SIMD
#   webclip_mt          + threads (shared memory)    cross-origin isolated pages, Node.js
#   webclip_mt_relaxed  + threads + relaxed SIMD
# The threaded ones need nightly: std itself must be rebuilt with atomics (-Z build-std).
WASM_BUILDS=(webclip webclip_relaxed webclip_mt webclip_mt_relaxed)
# Shared memory is imported (each worker instantiates over the same one) and bounded (a
# shared memory must declare its maximum): 4 GiB, all that wasm32 can address.
THREAD_LINK_ARGS="-C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 \
-C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"

# Build one flavour into pkg/ as NAME.js + NAME_bg.wasm.
build_wasm() {
  local name=$1 target_dir=$2 features=+simd128 toolchain=() std=() link=""
  case $name in *relaxed*) features+=",+relaxed-simd" ;; esac
  case $name in *_mt*)
    features+=",+atomics,+bulk-memory,+mutable-globals"
    toolchain=(+nightly)
    std=(-Z build-std=std,panic_abort)
    link=$THREAD_LINK_ARGS
    ;;
  esac
  local dir="$target_dir/wasm-$name"
  log "cargo ${toolchain[*]} build --release --target wasm32-unknown-unknown ($name: $features)"
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=$features $link" CARGO_TARGET_DIR="$dir" \
    cargo "${toolchain[@]}" build --release --lib --target wasm32-unknown-unknown "${std[@]}"
  wasm-bindgen --target web --no-typescript --out-dir pkg --out-name "$name" \
    "$dir/wasm32-unknown-unknown/release/webclip.wasm"
  local opt_features=("${WASM_OPT_FEATURES[@]}")
  case $name in *relaxed*) opt_features+=(--enable-relaxed-simd) ;; esac
  case $name in *_mt*) opt_features+=(--enable-threads) ;; esac
  tests/js/node_modules/.bin/wasm-opt "${WASM_OPT_LEVEL:--O3}" "${opt_features[@]}" \
    "pkg/${name}_bg.wasm" -o "pkg/${name}_bg.opt.wasm"
  mv "pkg/${name}_bg.opt.wasm" "pkg/${name}_bg.wasm"
}

build_pkg() {
  build_tools
  local target_dir=${WEBCLIP_WASM_TARGET_DIR:-${CARGO_TARGET_DIR:-target}}
  rm -rf pkg && mkdir -p pkg
  # WEBCLIP_WASM_BUILDS="webclip" builds only the fallback (quick iterations; js/wasm.js
  # falls back to the builds that are there).
  local builds=(${WEBCLIP_WASM_BUILDS:-${WASM_BUILDS[*]}})
  for name in "${builds[@]}"; do build_wasm "$name" "$target_dir"; done
  cp js/index.js js/engine.js js/errors.js js/limits.js js/sources.js js/worker.js js/wasm.js js/pool-worker.js js/clip-index.js js/index-storage.js js/index.d.ts pkg/
  cp js/README.md pkg/README.md
  local version
  version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
  sed "s/@VERSION@/$version/" js/package.json > pkg/package.json
  for name in "${builds[@]}"; do
    log "pkg/${name}_bg.wasm: $(stat -c %s "pkg/${name}_bg.wasm") bytes, $(gzip -9c "pkg/${name}_bg.wasm" | wc -c) gzipped"
  done
}

# Every suite runs even when an earlier one fails; the exit status says whether all passed.
run_tests() {
  install_deps
  local failed=()
  log "cargo test (native; GPU tests on lavapipe)"
  WEBCLIP_REQUIRE_GPU=1 cargo test --no-fail-fast || failed+=("cargo test")
  # Every fuzz target briefly (WEBCLIP_FUZZ_SECONDS each; 0 skips), one per core; the long
  # runs are `./build.sh fuzz 1800`.
  if [ "${WEBCLIP_FUZZ_SECONDS:-20}" != 0 ]; then
    log "fuzz: each target for ${WEBCLIP_FUZZ_SECONDS:-20} s"
    FUZZ_JOBS=${FUZZ_JOBS:-$(nproc)} fuzz/run.sh "${WEBCLIP_FUZZ_SECONDS:-20}" || failed+=("fuzz")
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
  exec node tests/js/server.js --port "${PORT:-8080}" --log --isolated $([ -d www ] && echo --www www)
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
