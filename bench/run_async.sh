#!/usr/bin/env bash
# Async writes and the profile cache (TARGETS.md "async write", issue 4).
#
#   (e) sync vs async (Prefer: respond-async) steps, closed loop, at 64 and at
#       10,000 concurrent connections: answers/s, p50/p99, errors, and for
#       async how many were applied in the window and how many still wait
#   (f) GET …/profile, 64 connections over 6,400 sessions: all in memory;
#       and with at most 500 in memory, answered by the in-process cache, by
#       Redis (a redis-server started here), or by loading from RocksDB
#
# Each case runs on a fresh persona and data dir. Prints a markdown table and
# merges its results into bench/results/steps.json under "async_and_cache".
# Knobs (env): DURATION=10 WARMUP=2 CONNECTIONS=64 BIG_CONNECTIONS=10000
# OUT=bench/results/steps.json
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
LOADGEN_BIN=${LOADGEN_BIN:-$ROOT/build/bench/persona_loadgen}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
BIG_CONNECTIONS=${BIG_CONNECTIONS:-10000}
OUT=${OUT:-$ROOT/bench/results/steps.json}
for bin in "$PERSONA_BIN" "$LOADGEN_BIN"; do
  [[ -x $bin ]] || { echo "run_async.sh: $bin not found; build first (make build)" >&2; exit 1; }
done
REDIS_SERVER=$(command -v redis-server || true)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/persona-bench-async.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '[run_async %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PERSONA_PID=
PERSONA_PORT=
start_persona() {  # start_persona NAME [--set k=v …]
  local name=$1; shift
  local dir="$WORK/$name"
  mkdir -p "$dir/data"
  "$PERSONA_BIN" serve --http-listen 127.0.0.1:0 --mqtt-listen off --data-dir "$dir/data" \
    --schemas-dir "$ROOT/schemas" --set limits.connections_per_address.rate=0 "$@" \
    >"$dir/persona.log" 2>&1 &
  PERSONA_PID=$!
  PIDS+=("$PERSONA_PID")
  PERSONA_PORT=
  for _ in $(seq 200); do
    PERSONA_PORT=$(grep -o '"http":"[^"]*:[0-9]*"' "$dir/persona.log" 2>/dev/null |
                   grep -o '[0-9]*"$' | tr -d '"' | head -1 || true)
    [[ -n $PERSONA_PORT ]] && break
    kill -0 "$PERSONA_PID" 2>/dev/null || break
    sleep 0.05
  done
  [[ -n $PERSONA_PORT ]] || { echo "persona did not start:" >&2; tail "$dir/persona.log" >&2; exit 1; }
}
stop_persona() {  # stop_persona NAME: SIGTERM, record RSS first
  local name=$1
  ps -o rss= -p "$PERSONA_PID" >"$WORK/$name/rss_kb" 2>/dev/null || true
  kill -TERM "$PERSONA_PID" 2>/dev/null || true
  for _ in $(seq 150); do kill -0 "$PERSONA_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$PERSONA_PID" 2>/dev/null || true
  wait "$PERSONA_PID" 2>/dev/null || true
}
CMDS="$WORK/commands.txt"
: >"$CMDS"
loadgen() {  # loadgen OUTFILE ARGS…
  local out=$1; shift
  echo "$LOADGEN_BIN $*" >>"$CMDS"
  "$LOADGEN_BIN" "$@" >"$out" 2>"$out.err" || log "loadgen exited non-zero: $(head -c 300 "$out.err")"
  [[ -s $out ]] || echo '{"fatal":"no output from loadgen"}' >"$out"
  log "$(basename "$(dirname "$out")")/$(basename "$out"): $(head -c 240 "$out")"
}

START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$(date +%s)

# (e) sync vs async, 64 and 10,000 connections. The async runs may queue up
# to a million requests so the window measures acceptance, not the bound.
for conns in "$CONNECTIONS" "$BIG_CONNECTIONS"; do
  spc=4
  [[ $conns -gt 1000 ]] && spc=1
  for mode in sync async; do
    name="${mode}_${conns}"
    extra=()
    [[ $mode == async ]] && extra=(--prefer-async)
    start_persona "$name" --set async.max_pending=1000000
    log "(e) $mode, $conns connections"
    loadgen "$WORK/$name/result.json" closed --url "http://127.0.0.1:$PERSONA_PORT" \
      --connections "$conns" --sessions-per-conn "$spc" --prefill 0 --duration "$DURATION" \
      --warmup "$WARMUP" --setup-concurrency 256 --mode step "${extra[@]}"
    stop_persona "$name"
  done
done

# (f) profile reads with each cache.
REDIS_PID=
if [[ -n $REDIS_SERVER ]]; then
  RPORT=$(free_port)
  mkdir -p "$WORK/redis"
  "$REDIS_SERVER" --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$WORK/redis" >"$WORK/redis/log" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  sleep 0.5
fi
# 64 × PROFILE_SESSIONS_PER_CONN sessions. "resident": all in memory (reads
# answer from the session state). The others keep at most COLD_CAP sessions
# in memory, so most reads find the session not in memory: "memory" and
# "redis" then answer from the warm cache, "none" loads the session from
# RocksDB every time.
PROFILE_SESSIONS_PER_CONN=${PROFILE_SESSIONS_PER_CONN:-100}
COLD_CAP=${COLD_CAP:-500}
for cache in resident memory redis none; do
  name="profile_$cache"
  small=(--set "engine.max_cached_sessions=$COLD_CAP")
  case $cache in
    resident) args=() ;;
    memory) args=("${small[@]}") ;;
    redis)
      [[ -n $REDIS_PID ]] || { log "no redis-server: skipping"; continue; }
      args=("${small[@]}" --set cache.backend=redis --set "cache.url=redis://127.0.0.1:$RPORT") ;;
    none) args=("${small[@]}" --set cache.backend=none) ;;
  esac
  start_persona "$name" "${args[@]}"
  log "(f) profile GET, cache $cache"
  loadgen "$WORK/$name/result.json" closed --url "http://127.0.0.1:$PERSONA_PORT" \
    --connections "$CONNECTIONS" --sessions-per-conn "$PROFILE_SESSIONS_PER_CONN" --prefill 1 \
    --duration "$DURATION" --warmup "$WARMUP" --mode profile
  curl -s "http://127.0.0.1:$PERSONA_PORT/metrics" | grep -E '^persona_cache_(hits|misses)_total' \
    >"$WORK/$name/cache_metrics.txt" || true
  stop_persona "$name"
done

export WORK OUT START_TS DURATION WARMUP CONNECTIONS BIG_CONNECTIONS
export WALL=$(( $(date +%s) - T0 ))
python3 - <<'EOF'
import json, os

W = os.environ["WORK"]
def load(p):
    try:
        return json.load(open(p))
    except Exception:
        return {}
def rss(name):
    try:
        return int(open(f"{W}/{name}/rss_kb").read().strip()) * 1024
    except Exception:
        return None
def cache_counts(name):
    out = {}
    try:
        for line in open(f"{W}/{name}/cache_metrics.txt"):
            k = "hits" if "hits" in line else "misses"
            out[k] = out.get(k, 0) + float(line.rsplit(" ", 1)[1])
    except Exception:
        pass
    return out

conns = [int(os.environ["CONNECTIONS"]), int(os.environ["BIG_CONNECTIONS"])]
writes = {}
for c in conns:
    for mode in ("sync", "async"):
        r = load(f"{W}/{mode}_{c}/result.json")
        writes[f"{mode}_{c}"] = {
            "connections": c, "mode": mode, "answered_per_s": r.get("rps"),
            "p50_ms": r.get("p50_ms"), "p99_ms": r.get("p99_ms"),
            "errors": (r.get("errors") or 0) + (r.get("non_2xx") or 0),
            "status_counts": r.get("status_counts"),
            "applied_in_window": r.get("window_async_applied"),
            "applied_per_s": (r.get("window_async_applied") or 0) / float(os.environ["DURATION"]),
            "intake_depth_end": r.get("intake_depth_end"),
            "rss_bytes_end": rss(f"{mode}_{c}"), "raw": r}
reads = {}
for cache in ("resident", "memory", "redis", "none"):
    r = load(f"{W}/profile_{cache}/result.json")
    if r:
        reads[cache] = {"get_per_s": r.get("rps"), "p50_ms": r.get("p50_ms"), "p99_ms": r.get("p99_ms"),
                        "errors": (r.get("errors") or 0) + (r.get("non_2xx") or 0),
                        "cache": cache_counts(f"profile_{cache}"), "raw": r}

def ratio(a, b):
    return round(a / b, 3) if a and b else None
targets = []
for c in conns:
    s, a = writes[f"sync_{c}"], writes[f"async_{c}"]
    targets.append({"figure": f"202 p50 / sync p50 at {c} connections", "value": ratio(a["p50_ms"], s["p50_ms"]),
                    "target": "<= 0.5"})
    targets.append({"figure": f"accepted writes/s at {c} connections", "value": a["answered_per_s"],
                    "target": ">= 30000"})
    targets.append({"figure": f"errors at {c} connections (sync + async)", "value": s["errors"] + a["errors"],
                    "target": "0"})
result = {"benchmark": "async_and_cache", "started_at": os.environ["START_TS"], "wall_s": int(os.environ["WALL"]),
          "duration_s": float(os.environ["DURATION"]), "writes": writes, "profile_reads": reads,
          "targets": targets, "commands": open(f"{W}/commands.txt").read().splitlines(),
          "notes": ["Closed loop: every connection sends its next request when the previous one is answered.",
                    "async: answered = 202 Accepted (durable in the intake); applied_in_window = requests the "
                    "applier finished during the measured window; intake_depth_end = still waiting at its end.",
                    "Profile reads cycle over 64 x 100 sessions. resident: every session in memory, reads "
                    "answer from its state. memory, redis, none: engine.max_cached_sessions=500, so most reads "
                    "find the session not in memory; memory and redis answer from the warm cache (plus a "
                    "RocksDB read of the version), none loads the session (snapshot + tail) from RocksDB."]}
out = os.environ["OUT"]
try:
    doc = json.load(open(out))
except Exception:
    doc = {}
doc["async_and_cache"] = result
with open(out + ".tmp", "w") as f:
    json.dump(doc, f, indent=2, ensure_ascii=False)
    f.write("\n")
os.replace(out + ".tmp", out)

def f(v, nd=1):
    if v is None:
        return "n/a"
    return f"{v:,.{nd}f}" if isinstance(v, float) else f"{v:,}"
print()
print(f"## Async writes — {result['started_at']}, {os.environ['DURATION']} s windows")
print()
print("| connections | mode | answered/s | p50 ms | p99 ms | errors | applied/s in window | intake at end | RSS MiB |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for k, w in writes.items():
    print(f"| {w['connections']:,} | {w['mode']} | {f(w['answered_per_s'])} | {f(w['p50_ms'], 2)} | "
          f"{f(w['p99_ms'], 2)} | {w['errors']} | {f(w['applied_per_s']) if w['mode'] == 'async' else '—'} | "
          f"{f(w['intake_depth_end'], 0) if w['mode'] == 'async' else '—'} | "
          f"{f((w['rss_bytes_end'] or 0) / 2**20, 0)} |")
print()
print("## Profile reads, 64 connections")
print()
print("| sessions / cache | GET/s | p50 ms | p99 ms | errors | hits | misses |")
print("|---|---:|---:|---:|---:|---:|---:|")
for k, r in reads.items():
    print(f"| {k} | {f(r['get_per_s'])} | {f(r['p50_ms'], 2)} | {f(r['p99_ms'], 2)} | {r['errors']} | "
          f"{f(r['cache'].get('hits'), 0)} | {f(r['cache'].get('misses'), 0)} |")
print()
for t in targets:
    print(f"- {t['figure']}: {t['value']} (target {t['target']})")
EOF
