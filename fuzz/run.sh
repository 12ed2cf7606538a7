#!/usr/bin/env bash
# Builds the fuzz targets, then runs each one (one at a time) and prints a table.
#
# Usage: fuzz/run.sh [options] [target ...]          (default: every target)
#   -runs N        stop a target after N executions (default 10000000)
#   -time S        stop a target after S seconds (default 240; 0 = no time cap)
#   -jobs N        libFuzzer -fork=N instead of one process (default: one process)
#   -fresh         start from the checked-in seeds only (drop the accumulated corpus)
#   -nobuild       do not run fuzz/build.sh first
# A target stops at whichever of -runs / -time comes first. Extra libFuzzer flags can be
# passed in FUZZ_FLAGS. FUZZ_STRICT=1 makes the known findings the harnesses skip, and their
# soft findings, crash again (see fuzz/README.md).
#
# Corpus:    build-fuzz/corpus/<target>/   (seeded from fuzz/seeds/<target>/, grows over runs)
# Crashes:   build-fuzz/artifacts/<target>/crash-* (also timeout-*, oom-*, leak-*)
# Logs:      build-fuzz/logs/<target>.log
# Exit status: 0 when no target crashed, 1 otherwise (2 on a usage or build error).
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-build-fuzz}"
RUNS=10000000
TIME=240
FRESH=0
BUILD=1
JOBS=0
TARGETS=()
ALL=(mqtt_codec_fuzz event_json_fuzz http_request_fuzz aws_event_stream_fuzz model_output_fuzz jwt_fuzz)

while [[ $# -gt 0 ]]; do
  case "$1" in
    -runs) RUNS="$2"; shift 2 ;;
    -time) TIME="$2"; shift 2 ;;
    -jobs) JOBS="$2"; shift 2 ;;
    -fresh) FRESH=1; shift ;;
    -nobuild) BUILD=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=("${ALL[@]}")

if [[ $BUILD == 1 ]]; then
  fuzz/build.sh "${TARGETS[@]}" || exit 2
fi

# Per-target input size limits: the HTTP target may grow past the 16 KiB header limit.
max_len() {
  case "$1" in
    http_request_fuzz) echo 20000 ;;
    *) echo 4096 ;;
  esac
}

mkdir -p "$OUT/logs"
ROWS=()
FAILED=0
for t in "${TARGETS[@]}"; do
  bin="$OUT/$t"
  corpus="$OUT/corpus/$t"
  artifacts="$OUT/artifacts/$t"
  log="$OUT/logs/$t.log"
  [[ -x "$bin" ]] || { echo "missing $bin" >&2; exit 2; }
  [[ $FRESH == 1 ]] && rm -rf "$corpus"
  mkdir -p "$corpus" "$artifacts"
  [[ -d "fuzz/seeds/$t" ]] && cp -n "fuzz/seeds/$t"/* "$corpus"/ 2>/dev/null
  args=(-runs="$RUNS" -max_len="$(max_len "$t")" -timeout=25 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$artifacts/")
  [[ "$TIME" != 0 ]] && args+=(-max_total_time="$TIME")
  [[ "$JOBS" != 0 ]] && args+=(-fork="$JOBS" -ignore_crashes=0)
  # shellcheck disable=SC2206
  args+=(${FUZZ_FLAGS:-})
  echo "=== $t: $bin ${args[*]} $corpus" >&2
  touch "$log.start"
  sleep 0.01
  start=$(date +%s.%N)
  "$bin" "${args[@]}" "$corpus" >"$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  # Executions: the final stats line, else the "Done N runs" line, else the last status line.
  execs=$(grep -m1 '^stat::number_of_executed_units:' "$log" | awk '{print $2}')
  [[ -z "$execs" ]] && execs=$(grep -Eo '^Done [0-9]+ runs' "$log" | awk '{print $2}' | tail -1)
  [[ -z "$execs" ]] && execs=$(grep -Eo '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  [[ -z "$execs" ]] && execs=0
  eps=$(awk -v n="$execs" -v s="$secs" 'BEGIN { if (s > 0) printf "%d", n / s; else print 0 }')
  crashes=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o \
            -name 'oom-*' -o -name 'leak-*' \) -newer "$log.start" 2>/dev/null | wc -l)
  soft=$(grep -c '^SOFT-FINDING' "$log")
  corpus_n=$(find "$corpus" -type f | wc -l)
  if [[ $rc != 0 ]]; then
    [[ $crashes == 0 ]] && crashes=1  # a crash without an artifact (e.g. in the fork driver)
    FAILED=1
    echo "!!! $t exited with $rc; see $log" >&2
    grep -m1 -E 'ERROR: (AddressSanitizer|libFuzzer|UndefinedBehaviorSanitizer)|runtime error|FUZZ_CHECK failed' "$log" >&2
  fi
  ROWS+=("$(printf '%-22s %12s %9s %8s %8s %6s %7s' "$t" "$execs" "$eps" "$secs" "$crashes" "$soft" "$corpus_n")")
done

printf '\n%-22s %12s %9s %8s %8s %6s %7s\n' target executions exec/s time_s crashes soft corpus
for r in "${ROWS[@]}"; do echo "$r"; done
exit $FAILED
