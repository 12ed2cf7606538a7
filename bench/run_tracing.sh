#!/usr/bin/env bash
# What tracing costs (issue 13's goal: ≤ 2 % of steps/s): the step loop's
# saturation run (closed loop, CONNECTIONS connections, durable steps, the
# built-in AI) with tracing off, on with every trace sampled, and on with a
# tenth sampled (tracing.sample_ratio), alternately, RUNS times each, a fresh
# persona each time. With tracing on, spans go to a local OTLP/HTTP sink that
# reads and discards each batch (so the collector's own CPU stays small on
# these 2 cores); persona's counters say how many were exported or dropped.
# Prints a table; writes bench/results/tracing.json.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
LOADGEN_BIN=${LOADGEN_BIN:-$ROOT/build/bench/persona_loadgen}
RUNS=${RUNS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
OUT=${OUT:-$ROOT/bench/results/tracing.json}
for b in "$PERSONA_BIN" "$LOADGEN_BIN"; do
  [[ -x $b ]] || { echo "run_tracing.sh: $b not found; build first (make build)" >&2; exit 1; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/persona-bench-tracing.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

python3 - "$WORK/sink.port" <<'PY' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"{}")
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_address[1]))
s.serve_forever()
PY
PIDS+=($!)
for _ in $(seq 100); do [[ -s $WORK/sink.port ]] && break; sleep 0.05; done
SINK="http://127.0.0.1:$(cat "$WORK/sink.port")/v1/traces"

run() {  # run NAME [extra persona args…]
  local name=$1; shift
  mkdir -p "$WORK/$name"
  "$PERSONA_BIN" serve --http-listen 127.0.0.1:0 --mqtt-listen off --data-dir "$WORK/$name/data" \
    --schemas-dir "$ROOT/schemas" --set limits.connections_per_address.rate=0 \
    --set limits.http_per_user.rate=0 "$@" >"$WORK/$name/log" 2>&1 &
  local pid=$!
  local port=
  for _ in $(seq 200); do
    port=$(grep -o '"http":"[^"]*:[0-9]*"' "$WORK/$name/log" 2>/dev/null | grep -o '[0-9]*"$' | tr -d '"' | head -1 || true)
    [[ -n $port ]] && break
    sleep 0.05
  done
  "$LOADGEN_BIN" closed --url "http://127.0.0.1:$port" --connections "$CONNECTIONS" \
    --sessions-per-conn 4 --duration "$DURATION" --warmup "$WARMUP" --mode step \
    >"$WORK/$name/result.json" 2>"$WORK/$name/loadgen.err" || true
  sleep 1.5  # the last batch of spans
  curl -s "http://127.0.0.1:$port/metrics" >"$WORK/$name/metrics.txt" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
for i in $(seq "$RUNS"); do
  echo "run $i/$RUNS: tracing off" >&2; run "off$i"
  echo "run $i/$RUNS: tracing on, all sampled" >&2; run "on$i" --set "tracing.otlp_endpoint=$SINK"
  echo "run $i/$RUNS: tracing on, 10 % sampled" >&2
  run "tenth$i" --set "tracing.otlp_endpoint=$SINK" --set tracing.sample_ratio=0.1
done
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git --no-optional-locks -C "$ROOT" status --porcelain 2>/dev/null | head -1 | wc -l || true)
export WORK OUT RUNS GIT_REV GIT_DIRTY CONNECTIONS DURATION
python3 - <<'PY'
import json, os, re, statistics, time
W, runs = os.environ["WORK"], int(os.environ["RUNS"])
def counter(text, name):
    return sum(float(v) for v in re.findall(re.escape(name) + r" ([0-9.e+]+)", text))
rows = []
for i in range(1, runs + 1):
    row = {}
    for mode in ("off", "on", "tenth"):
        r = json.load(open(f"{W}/{mode}{i}/result.json"))
        m = open(f"{W}/{mode}{i}/metrics.txt").read()
        row[mode] = {"steps_per_s": r.get("rps"),
                     "errors": (r.get("errors") or 0) + (r.get("non_2xx") or 0),
                     "spans_exported": counter(m, 'persona_tracing_spans_total{outcome="exported"}'),
                     "spans_dropped": counter(m, 'persona_tracing_spans_total{outcome="dropped"}'),
                     "spans_failed": counter(m, 'persona_tracing_spans_total{outcome="export_failed"}')}
    rows.append(row)
med = lambda mode: statistics.median([r[mode]["steps_per_s"] for r in rows])
cost = {mode: round(1 - med(mode) / med("off"), 4) for mode in ("on", "tenth")}
res = {"benchmark": "tracing", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
       "persona": {"git_rev": os.environ["GIT_REV"], "git_dirty": os.environ["GIT_DIRTY"] == "1"},
       "connections": int(os.environ["CONNECTIONS"]), "duration_s": int(os.environ["DURATION"]),
       "runs": rows, "median_steps_per_s": {m: med(m) for m in ("off", "on", "tenth")},
       "cost": {"all_sampled": cost["on"], "tenth_sampled": cost["tenth"]}, "goal": "cost <= 0.02"}
os.makedirs(os.path.dirname(os.environ["OUT"]), exist_ok=True)
json.dump(res, open(os.environ["OUT"], "w"), indent=2)
print("| run | off steps/s | all sampled: steps/s, spans exported / dropped | 10 % sampled: steps/s, exported / dropped |")
print("|---:|---:|---:|---:|")
for i, r in enumerate(rows, 1):
    print(f"| {i} | {r['off']['steps_per_s']:,.0f} | {r['on']['steps_per_s']:,.0f}, "
          f"{r['on']['spans_exported']:,.0f} / {r['on']['spans_dropped']:,.0f} | "
          f"{r['tenth']['steps_per_s']:,.0f}, {r['tenth']['spans_exported']:,.0f} / "
          f"{r['tenth']['spans_dropped']:,.0f} |")
print(f"| median | {med('off'):,.0f} | {med('on'):,.0f} (cost {100 * cost['on']:.1f} %) | "
      f"{med('tenth'):,.0f} (cost {100 * cost['tenth']:.1f} %) |  (goal ≤ 2 %)")
print("wrote " + os.environ["OUT"])
PY
