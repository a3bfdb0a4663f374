#!/usr/bin/env bash
# The GPU engine beside PyTorch on one GPU, for a machine with no network (an NVIDIA H200 is
# sometimes lent to this project for a few minutes). Two steps:
#
#   tests/gpu-bench/run.sh prepare [KIT]   on a machine with network: the release `webclip`
#                                          binary and the Vulkan loader's Debian packages
#                                          into KIT (default: gpu-bench-kit/, git-ignored)
#   tests/gpu-bench/run.sh run [KIT] [--batches 1,32,256] [--iterations 10] [--out DIR]
#                                          on the GPU machine (or here, on lavapipe)
#
# `run` unpacks the loader when the machine has none, checks the GPU kernels against the CPU
# engine there (the `gpu_kernels` test binary of the kit, the tensor-core matmul included
# where the adapter has cooperative matrices), writes ViT-B/32 random weights with
# `webclip gen-weights` (the generator and seed `webclip bench` uses, so both sides run the
# same weights), then runs, one process each: `webclip bench --backend gpu` with f32 and with
# f16 weight storage (f16 twice where tensor cores are used: with them and without), and
# PyTorch on the same weights and GPU (float32 with TF32 off, TF32, fp16 autocast; CPU float32
# where there is no CUDA; skipped where torch is missing). It prints one table and writes
# DIR/gpu-bench.json (default DIR: bench-out/gpu-bench/).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/gpu-bench"
step=${1:-}
shift || true
kit="$root/gpu-bench-kit"
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then kit=$(cd "$1" && pwd); shift; fi

case $step in
prepare)
  mkdir -p "$kit/debs"
  (cd "$root" && cargo build --release --bin webclip)
  cp "$root/target/release/webclip" "$kit/webclip"
  # The GPU kernel tests as one binary (cargo prints where it put it).
  tests=$(cd "$root" && cargo test --release --test gpu_kernels --no-run --message-format=json |
    python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
  cp "$tests" "$kit/gpu_kernels"
  # The loader and its GL/EGL companions for amd64, whatever this machine is (lists kept
  # apart from the system's own).
  lists=$(mktemp -d)
  apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
  mkdir -p "$lists/partial"
  apt-get "${apt_opts[@]}" update -qq
  (cd "$kit/debs" && apt-get "${apt_opts[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  rm -rf "$lists"
  echo "kit ready: $(du -sh "$kit" | cut -f1) in $kit"
  ;;
run)
  batches=1,32,256 iterations=10 out="$root/bench-out/gpu-bench"
  while [ $# -gt 0 ]; do
    case $1 in
    --batches) batches=$2; shift 2 ;;
    --iterations) iterations=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
  done
  bin="$kit/webclip"
  [ -x "$bin" ] || bin="$root/target/release/webclip"
  [ -x "$bin" ] || { echo "no webclip binary: run '$0 prepare' first" >&2; exit 1; }
  if ! ldconfig -p | grep -q 'libvulkan.so.1'; then
    [ -d "$kit/debs" ] || { echo "no Vulkan loader here and no $kit/debs to unpack" >&2; exit 1; }
    for f in "$kit"/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  # NVIDIA's driver folder, where the loader does not find its manifest by itself.
  nv=/usr/local/nvidia/share
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nv/vulkan/icd.d/nvidia_icd.json" ]; then
    export VK_DRIVER_FILES="$nv/vulkan/icd.d/nvidia_icd.json"
    export __EGL_VENDOR_LIBRARY_FILENAMES="$nv/glvnd/egl_vendor.d/10_nvidia.json"
  fi
  mkdir -p "$out"
  tests="$kit/gpu_kernels"
  if [ -x "$tests" ]; then
    echo "== the GPU kernels against the CPU engine" >&2
    # --nocapture keeps the tests' notes, such as why the tensor-core matmul was skipped.
    WEBCLIP_REQUIRE_GPU=1 "$tests" --test-threads 1 --nocapture > "$out/gpu-kernels.txt" 2>&1 ||
      echo "GPU kernel tests FAILED: $out/gpu-kernels.txt" >&2
    grep -E '^test result|skipping' "$out/gpu-kernels.txt" >&2 || true
  fi
  model=$(mktemp -d)
  trap 'rm -rf "$model"' EXIT
  "$bin" gen-weights --preset vit-b-32 --seed 0 --dtype f32 --out "$model" > /dev/null
  for w in f32 f16; do
    echo "== webclip bench --backend gpu --gpu-weights $w --batches $batches" >&2
    "$bin" bench --backend gpu --gpu-weights "$w" --batches "$batches" --iterations "$iterations" \
      | tee "$out/webclip-$w.txt" >&2
  done
  rm -f "$out/webclip-f16-plain.txt"
  if grep -q '^tensor cores: the' "$out/webclip-f16.txt"; then
    echo "== the same without tensor cores" >&2
    "$bin" bench --backend gpu --gpu-weights f16 --tensor-cores off --batches "$batches" \
      --iterations "$iterations" | tee "$out/webclip-f16-plain.txt" >&2
  fi
  echo "== PyTorch" >&2
  python3 "$here/torch_bench.py" "$model" --batches "$batches" --iterations "$iterations" \
    --out "$out/torch.json" >&2 || echo "PyTorch run failed (see above)" >&2
  python3 "$here/report.py" "$out"
  ;;
*)
  sed -n 2,16p "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
