#!/usr/bin/env bash
# webclip build entry point.
#   ./build.sh          build the npm package into pkg/
#   ./build.sh demo     build pkg/ and serve the demo page (www/) on http://127.0.0.1:8080
#   ./build.sh test     install what the tests need, then run every test (Rust, Node, browser)
#   ./build.sh deps     only install the toolchain pieces (idempotent)
#   ./build.sh bench    CPU and GPU benchmarks on random ViT-B/32 weights
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
  if [ ! -d tests/js/node_modules ]; then
    log "npm ci (test tools)"
    (cd tests/js && npm ci --no-audit --no-fund)
  fi
}

case "${1:-pkg}" in
  deps) install_deps ;;
  *) echo "unknown command: $1" >&2; exit 2 ;;
esac
