#!/usr/bin/env bash
# Run webclip's fuzz targets (cargo-fuzz, libFuzzer) for SECONDS each and print, per
# target, executions, coverage (libFuzzer's cov = edges, ft = features), corpus size and
# crashes; exits 1 if any target crashed.
#   fuzz/run.sh SECONDS [TARGET...]     default: every target
#   FUZZ_JOBS=N fuzz/run.sh ...          N targets at once (default 1; each one a process)
#   ./build.sh fuzz SECONDS [TARGET...] the same, after installing nightly and cargo-fuzz
# Seeds come from ../shared/fixtures (or WEBCLIP_FIXTURES) at run time, into fuzz/seeds/;
# what the fuzzer finds accumulates in fuzz/corpus/<target>/ across runs (both ignored by
# git); a crashing input is written to fuzz/artifacts/<target>/. Reproduce one with
#   fuzz/target/x86_64-unknown-linux-gnu/release/<target> fuzz/artifacts/<target>/crash-...
# and turn it into a regression test in tests/fuzz_regressions.rs.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
ALL=(safetensors config preprocessor_config image tokenize tokenizer_json spiece tokenizer_config checkpoint)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
FIXTURES=${WEBCLIP_FIXTURES:-$(cd .. && pwd)/../shared/fixtures}
[ -d "$FIXTURES" ] || { echo "fuzz/run.sh: no fixtures at $FIXTURES (set WEBCLIP_FIXTURES)" >&2; exit 2; }
export WEBCLIP_FIXTURES=$FIXTURES
command -v cargo-fuzz >/dev/null || { echo "fuzz/run.sh: cargo-fuzz is missing; run ./build.sh deps" >&2; exit 2; }

# Release with debug assertions (integer overflow panics), AddressSanitizer (the default).
cargo +nightly fuzz build --debug-assertions >&2
BIN=target/x86_64-unknown-linux-gnu/release

rm -rf seeds && python3 seeds.py "$FIXTURES" seeds

# Per target: the longest input, and a dictionary of the tokens its format is made of.
opts() {
  case $1 in
    safetensors) echo "-max_len=65536 -dict=dict/json.dict" ;;
    config | preprocessor_config | tokenizer_config) echo "-max_len=8192 -dict=dict/json.dict" ;;
    tokenizer_json) echo "-max_len=262144 -dict=dict/json.dict" ;;
    image) echo "-max_len=65537 -dict=dict/image.dict" ;;
    spiece) echo "-max_len=300000" ;;
    tokenize) echo "-max_len=4096" ;;
    checkpoint) echo "-max_len=2048" ;;
    *) echo "fuzz/run.sh: unknown target $1 (targets: ${ALL[*]})" >&2; exit 2 ;;
  esac
}

# One target: fuzz it, then write its row of the table to artifacts/<target>/row and its
# exit status to artifacts/<target>/rc (so several can run at once and be collected after).
fuzz_one() {
  local t=$1 o log before rc=0 execs speed last cov ft corp after
  o=$(opts "$t")
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  log="artifacts/$t/last-run.log"
  before=$(ls "artifacts/$t" | grep -c -E '^(crash|oom|timeout|leak|slow-unit)-' || true)
  echo "== fuzz $t for ${SECONDS_EACH}s" >&2
  # -malloc_limit_mb: one allocation over 1 GiB is a finding (a limit is missing), not a
  # slow success; -timeout: one input over 20 s is a hang.
  # shellcheck disable=SC2086
  "$BIN/$t" "corpus/$t" "seeds/$t" $o -max_total_time="$SECONDS_EACH" -timeout=20 \
    -rss_limit_mb=3072 -malloc_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep 'cov:' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  after=$(ls "artifacts/$t" | grep -c -E '^(crash|oom|timeout|leak|slow-unit)-' || true)
  printf '%-20s %6ss %12s %8s %7s %7s %6s %7s\n' "$t" "$SECONDS_EACH" "${execs:-?}" "${speed:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$((after - before))" >"artifacts/$t/row"
  echo "$rc" >"artifacts/$t/rc"
}

JOBS=${FUZZ_JOBS:-1}
for t in "${TARGETS[@]}"; do
  opts "$t" >/dev/null # an unknown target stops the run before any fuzzing
  rm -f "artifacts/$t/row" "artifacts/$t/rc"
done
for t in "${TARGETS[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  fuzz_one "$t" &
done
wait

failed=()
rows=()
for t in "${TARGETS[@]}"; do
  rc=$(cat "artifacts/$t/rc" 2>/dev/null || echo 1)
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "-- $t failed (exit $rc); the end of artifacts/$t/last-run.log:" >&2
    tail -40 "artifacts/$t/last-run.log" >&2 || true
  fi
  rows+=("$(cat "artifacts/$t/row" 2>/dev/null || echo "$t ?")")
done

printf '\n%-20s %7s %12s %8s %7s %7s %6s %7s\n' target time executions exec/s cov ft corpus crashes
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets, no crash"
