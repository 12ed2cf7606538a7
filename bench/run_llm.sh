#!/usr/bin/env bash
# What persona adds to a step answered by a model (issue 5's goal: with a
# provider that answers in 300 ms, persona adds ≤ 2 ms p99 of its own).
#
# A fake OpenAI-compatible server (tests/integration/fake_openai.py) answers
# every chat completion after DELAY_MS; persona calls it for every step; the
# load generator runs a closed loop of CONNECTIONS. persona's own time is
# what persona measures within each step: the step (queue, prompt,
# validation, the durable commit) without its provider call
# (persona_ai_step_own_seconds, read from /metrics after the run; bucket
# bounds of 0.1 ms up to 5 ms). The client's step latency and the fake alone
# are reported too, but not subtracted from each other (two percentiles
# do not subtract). Prints a table and merges the result into
# bench/results/steps.json under "llm_overhead".
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
LOADGEN_BIN=${LOADGEN_BIN:-$ROOT/build/bench/persona_loadgen}
DELAY_MS=${DELAY_MS:-300}
CONNECTIONS=${CONNECTIONS:-32}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
OUT=${OUT:-$ROOT/bench/results/steps.json}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/persona-bench-llm.XXXXXX")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

python3 "$ROOT/tests/integration/fake_openai.py" --delay-ms "$DELAY_MS" >"$WORK/fake.out" 2>"$WORK/fake.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q port "$WORK/fake.out" 2>/dev/null && break; sleep 0.05; done
FAKE_PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$WORK/fake.out")
cat >"$WORK/persona.yaml" <<YAML
ai:
  deadline_ms: 5000
  providers:
    - {name: primary, kind: openai, base_url: "http://127.0.0.1:$FAKE_PORT/v1", model: fake,
       timeout_ms: 4000, price_in_per_mtok: 0.15, price_out_per_mtok: 0.60}
    - {name: offline, kind: builtin}
YAML
"$PERSONA_BIN" serve --config "$WORK/persona.yaml" --http-listen 127.0.0.1:0 --mqtt-listen off \
  --data-dir "$WORK/data" --schemas-dir "$ROOT/schemas" --set limits.connections_per_address.rate=0 \
  >"$WORK/persona.log" 2>&1 &
PIDS+=($!)
PORT=
for _ in $(seq 200); do
  PORT=$(grep -o '"http":"[^"]*:[0-9]*"' "$WORK/persona.log" 2>/dev/null | grep -o '[0-9]*"$' | tr -d '"' | head -1 || true)
  [[ -n $PORT ]] && break
  sleep 0.05
done
[[ -n $PORT ]] || { echo "persona did not start" >&2; cat "$WORK/persona.log" >&2; exit 1; }
CMD=("$LOADGEN_BIN" closed --url "http://127.0.0.1:$PORT" --connections "$CONNECTIONS" \
     --sessions-per-conn 1 --prefill 0 --duration "$DURATION" --warmup "$WARMUP" --mode step)
"${CMD[@]}" >"$WORK/result.json" 2>"$WORK/loadgen.err" || true
curl -s "http://127.0.0.1:$PORT/metrics" >"$WORK/metrics.txt" || true
# Baseline: the fake alone, called directly with the same concurrency and a
# request of the same size (a Python client: its own overhead is included).
python3 - "$FAKE_PORT" "$CONNECTIONS" "$DURATION" >"$WORK/direct.json" <<'PYB'
import http.client, json, sys, threading, time
port, conns, dur = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
body = json.dumps({"model": "fake", "messages": [{"role": "system", "content": "x" * 3000},
                                                 {"role": "user", "content": "hi"}]})
lat, stop = [], time.time() + dur
def w():
    c = http.client.HTTPConnection("127.0.0.1", port)
    while time.time() < stop:
        t = time.time()
        c.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
        c.getresponse().read()
        lat.append((time.time() - t) * 1000)
ts = [threading.Thread(target=w) for _ in range(conns)]
[t.start() for t in ts]; [t.join() for t in ts]
lat.sort()
print(json.dumps({"n": len(lat), "p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99)]}))
PYB

export WORK OUT DELAY_MS CONNECTIONS CMD_STR="${CMD[*]}"
python3 - <<'PY'
import json, os, re
W = os.environ["WORK"]
r = json.load(open(f"{W}/result.json"))
delay = float(os.environ["DELAY_MS"])
m = open(f"{W}/metrics.txt").read()
def counter(pat):
    return sum(float(x) for x in re.findall(pat + r" ([0-9.e+]+)", m))
llm = counter(r'persona_ai_llm_answers_total')
fallback = counter(r'persona_ai_fallback_answers_total')
direct = json.load(open(f"{W}/direct.json"))
buckets = [(float("inf") if le == "+Inf" else float(le), int(n)) for le, n in
           re.findall(r'persona_ai_step_own_seconds_bucket\{le="([^"]+)"\} (\d+)', m)]
total = buckets[-1][1] if buckets else 0
def q(p):
    return next((round(le * 1000, 2) for le, n in buckets if total and n >= p * total), None)
own = {"steps": total, "p50_ms_at_most": q(0.5), "p99_ms_at_most": q(0.99), "p999_ms_at_most": q(0.999)}
res = {"provider_delay_ms": delay, "provider_alone": direct, "connections": int(os.environ["CONNECTIONS"]),
       "steps_per_s": r.get("rps"), "p50_ms": r.get("p50_ms"), "p99_ms": r.get("p99_ms"),
       "max_ms": r.get("max_ms"), "errors": (r.get("errors") or 0) + (r.get("non_2xx") or 0),
       "own": own,
       "answered_by_model": llm, "answered_by_fallback": fallback,
       "command": os.environ["CMD_STR"], "raw": r,
       "note": "own = persona_ai_step_own_seconds: each model-answered step's time in persona "
               "(from its start in the engine to its durable commit) without the provider call, "
               "measured within the step; p50/p99 are histogram bucket upper bounds."}
out = os.environ["OUT"]
try:
    doc = json.load(open(out))
except Exception:
    doc = {}
doc["llm_overhead"] = res
with open(out + ".tmp", "w") as f:
    json.dump(doc, f, indent=2)
    f.write("\n")
os.replace(out + ".tmp", out)
print(f"\n## Steps answered by a model that takes {delay:.0f} ms ({res['connections']} connections, closed loop)\n")
print("| steps/s | step p50 / p99 ms (client) | provider alone p50 / p99 ms | persona's own time p50 / p99 ms (within each step) | errors | model / fallback answers |")
print("|---:|---:|---:|---:|---:|---:|")
print(f"| {res['steps_per_s']} | {res['p50_ms']:.1f} / {res['p99_ms']:.1f} | {direct['p50_ms']:.1f} / {direct['p99_ms']:.1f} | "
      f"≤ {own['p50_ms_at_most']} / ≤ {own['p99_ms_at_most']} ({own['steps']} steps) | {res['errors']} | {llm:.0f} / {fallback:.0f} |")
PY
