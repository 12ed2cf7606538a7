#!/usr/bin/env bash
# Where a step's CPU goes: persona under the saturation load of run_steps.sh
# (closed loop, 64 connections, POST …/messages with the built-in AI and sync
# durable writes), sampled with `perf record` (user and kernel, every thread
# of the process), then the samples split by component: the kernel, RocksDB,
# the C library, the allocator, Boost.JSON, Beast's HTTP, Asio, the built-in
# AI (its regexes included), persona's own code, and the rest. Prints a
# markdown table and writes bench/results/profile.json, with the top symbols.
#
# The split is by the symbol a sample landed in (self time, no call graphs:
# the build has no frame pointers), so a memcpy called by JSON code counts as
# the C library. Needs perf (linux-perf) and root or perf_event_paranoid ≤ 1.
#
# Builds nothing: needs build/src/persona and build/bench/persona_loadgen.
# Knobs (env): DURATION=10 WARMUP=2 CONNECTIONS=64 SESSIONS_PER_CONN=4
# FREQ=1999 OUT=bench/results/profile.json
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
LOADGEN_BIN=${LOADGEN_BIN:-$ROOT/build/bench/persona_loadgen}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
SESSIONS_PER_CONN=${SESSIONS_PER_CONN:-4}
FREQ=${FREQ:-1999}
OUT=${OUT:-$ROOT/bench/results/profile.json}

for bin in "$PERSONA_BIN" "$LOADGEN_BIN"; do
  [[ -x $bin ]] || { echo "profile_steps.sh: $bin not found; build first (make build)" >&2; exit 1; }
done
command -v perf >/dev/null || { echo "profile_steps.sh: perf is needed (apt-get install linux-perf)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/persona-profile.XXXXXX")
PID=
cleanup() {
  [[ -n $PID ]] && kill -9 "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
log() { echo "[profile_steps $(date -u +%H:%M:%S)] $*" >&2; }

mkdir -p "$WORK/data"
"$PERSONA_BIN" serve --http-listen 127.0.0.1:0 --data-dir "$WORK/data" \
  --set limits.connections_per_address.rate=0 >"$WORK/persona.log" 2>&1 &
PID=$!
PORT=
for _ in $(seq 200); do
  PORT=$(grep -o '"msg":"listening".*"http":"[^"]*:[0-9]*"' "$WORK/persona.log" 2>/dev/null |
         grep -o '"http":"[^"]*"' | grep -o '[0-9]*"$' | tr -d '"' | head -1 || true)
  [[ -n $PORT ]] && break
  sleep 0.05
done
[[ -n $PORT ]] || { echo "profile_steps.sh: persona did not start" >&2; tail "$WORK/persona.log" >&2; exit 1; }
log "persona pid $PID on 127.0.0.1:$PORT; load for $((WARMUP + DURATION)) s, perf for the last $DURATION s"

"$LOADGEN_BIN" closed --url "http://127.0.0.1:$PORT" --connections "$CONNECTIONS" \
  --duration "$DURATION" --warmup "$WARMUP" --sessions-per-conn "$SESSIONS_PER_CONN" \
  --mode step >"$WORK/load.json" 2>"$WORK/load.err" &
LOAD=$!
sleep "$WARMUP"
perf record -q -F "$FREQ" -p "$PID" -o "$WORK/perf.data" -- sleep "$DURATION" 2>"$WORK/perf.err" || true
wait "$LOAD" || true
kill -TERM "$PID" 2>/dev/null || true
wait "$PID" 2>/dev/null || true
PID=

perf report -i "$WORK/perf.data" --no-children --sort dso,sym --stdio -q --percent-limit 0 \
  2>/dev/null >"$WORK/report.txt" || true

GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)
GIT_DIRTY=$(git --no-optional-locks -C "$ROOT" status --porcelain 2>/dev/null | head -1 | wc -l || true)
python3 - "$WORK/report.txt" "$WORK/load.json" "$OUT" "$GIT_REV" "$GIT_DIRTY" "$DURATION" "$CONNECTIONS" <<'EOF'
import json, re, sys, datetime
report, load_path, out, rev, dirty, duration, conns = sys.argv[1:]
load = json.load(open(load_path)) if open(load_path).read().strip() else {}

# component ← the first rule that matches "dso symbol"
RULES = [
    ("kernel", lambda d, s: d.startswith("[kernel") or d == "[unknown]" and s.startswith("0xffff")),
    ("rocksdb", lambda d, s: "rocksdb" in d or "rocksdb::" in s),
    ("allocator", lambda d, s: "jemalloc" in d or s.startswith(("je_", "malloc", "free", "operator new", "operator delete", "_int_", "tcache", "arena_"))),
    ("boost_json", lambda d, s: "boost_json" in d or "boost::json" in s),
    ("http_beast", lambda d, s: "beast::" in s or "boost_url" in d),
    ("asio", lambda d, s: "asio::" in s),
    ("builtin_ai", lambda d, s: "boost_regex" in d or "persona::ai" in s or "re_detail" in s or "fasttext" in s.lower()),
    ("libc", lambda d, s: d.startswith("libc") or d.startswith("libstdc++") or d.startswith("libm")),
    ("persona", lambda d, s: "persona" in s or d == "persona"),
]
comp = {}
syms = []
total = 0.0
for line in open(report):
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.kug]\]\s+(.*)$", line)
    if not m:
        continue
    pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
    total += pct
    name = next((c for c, f in RULES if f(dso, sym)), "other")
    comp[name] = comp.get(name, 0.0) + pct
    syms.append((pct, dso, sym, name))
syms.sort(reverse=True)
steps = load.get("rps")
order = [c for c, _ in RULES] + ["other"]
result = {
    "benchmark": "step_profile",
    "date": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
    "git_rev": rev, "git_dirty": dirty not in ("", "0"),
    "duration_s": int(duration), "connections": int(conns),
    "steps_per_s_during_profile": steps,
    "load": {k: load.get(k) for k in ("rps", "errors", "p50_ms", "p99_ms") if k in load},
    "samples_percent_total": round(total, 2),
    "components_percent": {c: round(comp.get(c, 0.0), 2) for c in order},
    "top_symbols": [{"percent": p, "dso": d, "symbol": s[:160], "component": c} for p, d, s, c in syms[:40]],
}
json.dump(result, open(out, "w"), indent=2)
print(f"| component | share of persona's CPU samples |")
print(f"|---|---:|")
for c in order:
    print(f"| {c} | {comp.get(c, 0.0):.1f} % |")
print(f"\nsteps/s during the profile: {steps}; top symbols:")
for p, d, s, c in syms[:15]:
    print(f"  {p:5.2f} %  {c:10s}  {d:22s} {s[:90]}")
print(f"\nwrote {out}")
EOF
