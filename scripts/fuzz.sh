#!/usr/bin/env bash
# cargo-fuzz targets of fuzz/ (issue 12 item 5): the FTP LIST and MLSD parsers, name checks and
# local paths, configuration loading (TOML and FTPL_ variables).
#
#   scripts/fuzz.sh --ci               every target for a fixed number of executions
#                                      (FUZZ_RUNS, default 20000): scripts/test.sh runs this
#   scripts/fuzz.sh [TARGET] [SECONDS] long runs: TARGET (default: all, one after the other)
#                                      for SECONDS each (default 300)
#   scripts/fuzz.sh --list             the targets
#
# libFuzzer without a sanitizer (`-s none`): the machine has only a stable toolchain, and
# AddressSanitizer needs nightly; the code is safe Rust, so panics (debug assertions and
# overflow checks on: `-a`) are what is looked for. Inputs found go to fuzz/corpus/TARGET
# (gitignored), the committed seeds are read from fuzz/seeds/TARGET; a crash is saved under
# fuzz/artifacts/TARGET and the script fails. Reproduce one with
#   (cd fuzz && cargo fuzz run -s none -a TARGET artifacts/TARGET/crash-...)
# and turn it into a unit test in the crate it is in.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

TARGETS=(list_parser mlsd_parser names config)
FLAGS=(-s none -a)

if [ "${1:-}" = --list ]; then
  printf '%s\n' "${TARGETS[@]}"
  exit 0
fi

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

libfuzzer_args() {
  local target=$1
  local args=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  [ -f "$target.dict" ] && args+=("-dict=$target.dict")
  printf '%s\n' "${args[@]}"
}

# run TARGET LIBFUZZER-ARGS...: one target over its corpus and seeds; output in a log file,
# its summary printed.
run() {
  local target=$1 log rc=0
  shift
  mkdir -p "corpus/$target" "artifacts/$target"
  log=$(mktemp)
  local start=$SECONDS
  mapfile -t extra < <(libfuzzer_args "$target")
  cargo fuzz run "${FLAGS[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    "${extra[@]}" "$@" >"$log" 2>&1 || rc=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ "$rc" -ne 0 ]; then
    echo "fuzz $target: FAILED (exit $rc) after ${execs:-?} executions; the fuzzer's last lines:"
    grep -v '^#[0-9]' "$log" | tail -40
    ls "artifacts/$target" 2>/dev/null | sed 's/^/  saved: fuzz\/artifacts\/'"$target"'\//'
    rm -f "$log"
    return 1
  fi
  echo "fuzz $target: ${execs:-?} executions, $((SECONDS - start)) s, no crash, corpus $(ls "corpus/$target" | wc -l) inputs"
  rm -f "$log"
}

build() {
  echo "== fuzz: building the targets"
  local log
  log=$(mktemp)
  if ! cargo fuzz build "${FLAGS[@]}" >"$log" 2>&1; then
    tail -60 "$log"
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

if [ "${1:-}" = --ci ]; then
  build
  passed=0 failed=0
  for t in "${TARGETS[@]}"; do
    # -max_total_time only bounds a pathological slow run; -runs is what CI counts.
    # A fixed seed: the same executions every run (CI starts from the seeds only).
    if run "$t" "-runs=${FUZZ_RUNS:-20000}" -seed=1 -max_total_time=120; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
    fi
  done
  echo "fuzz: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
fi

target=${1:-all} seconds=${2:-300}
if [ "$target" = all ]; then
  selected=("${TARGETS[@]}")
elif printf '%s\n' "${TARGETS[@]}" | grep -qx "$target"; then
  selected=("$target")
else
  echo "unknown target '$target'; targets: ${TARGETS[*]}" >&2
  exit 2
fi
build
status=0
for t in "${selected[@]}"; do
  run "$t" "-max_total_time=$seconds" || status=1
done
exit "$status"
