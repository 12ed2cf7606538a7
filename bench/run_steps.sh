#!/usr/bin/env bash
# Step-loop benchmark (TARGETS.md, "Step loop"): persona against its targets
# and against Redis on the same machine, in the same run.
#
#   (a) saturation: closed loop, 64 connections, POST …/messages (durable
#       steps), steps/s, errors, p50/p99, steps per fsync
#   (b) open loop: 10,000 users × one step per 2 s (5,000 steps/s offered),
#       p50/p99 from the scheduled time, errors
#   (c) profile read: closed loop, 64 connections, GET …/profile
#   (e) the references (persona_ref_server): a bare Boost.Beast server on the
#       same threads and load answering a small fixed JSON, and the same with
#       one synced RocksDB WriteBatch per batch of pending requests → persona's
#       steps/s as a ratio to each (the limit this machine allows)
#   (d) redis-benchmark -t set,get -d SIZE -r 10000 -c 64 (no pipelining), SIZE
#       the size of the profile body persona returned in the same run, so each
#       GET reads a value of that size (with -t get alone every key is missing
#       and every reply is nil) → ratio (c)/(d GET)
#
# (a), (c) and (d) are repeated RUNS times (a fresh persona and data dir per
# run) and the medians reported; (b) runs once. Prints a markdown table and
# writes bench/results/steps.json.
#
# Builds nothing: needs build/src/persona and build/bench/persona_loadgen
# (override with PERSONA_BIN, LOADGEN_BIN). Knobs (env): RUNS=3 DURATION=10
# WARMUP=2 OPEN_DURATION=2*DURATION CONNECTIONS=64 OPEN_USERS=10000
# OPEN_RATE=0.5 OPEN_CONNECTIONS=512 OPEN_ARRIVAL=uniform REDIS_REQUESTS=200000
# LOADGEN_THREADS=1 OUT=bench/results/steps.json
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
LOADGEN_BIN=${LOADGEN_BIN:-$ROOT/build/bench/persona_loadgen}
REF_BIN=${REF_BIN:-$ROOT/build/bench/persona_ref_server}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
OPEN_DURATION=${OPEN_DURATION:-$(awk -v d="$DURATION" 'BEGIN { print 2 * d }')}
CONNECTIONS=${CONNECTIONS:-64}
SESSIONS_PER_CONN=${SESSIONS_PER_CONN:-4}
OPEN_USERS=${OPEN_USERS:-10000}
OPEN_RATE=${OPEN_RATE:-0.5}
OPEN_CONNECTIONS=${OPEN_CONNECTIONS:-512}
OPEN_ARRIVAL=${OPEN_ARRIVAL:-uniform}
REDIS_REQUESTS=${REDIS_REQUESTS:-200000}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
OUT=${OUT:-$ROOT/bench/results/steps.json}

for bin in "$PERSONA_BIN" "$LOADGEN_BIN"; do
  [[ -x $bin ]] || { echo "run_steps.sh: $bin not found; build first (make build)" >&2; exit 1; }
done
REDIS_SERVER=$(command -v redis-server || true)
REDIS_BENCH=$(command -v redis-benchmark || true)
REDIS_CLI=$(command -v redis-cli || true)
command -v python3 >/dev/null || { echo "run_steps.sh: python3 is needed to write the results" >&2; exit 1; }
command -v curl >/dev/null || { echo "run_steps.sh: curl is needed" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/persona-bench.XXXXXX")
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[run_steps %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- persona

PERSONA_PID=
PERSONA_PORT=
PERSONA_LOG=
start_persona() {  # start_persona NAME
  local name=$1 dir="$WORK/$1"
  mkdir -p "$dir/data"
  PERSONA_LOG="$dir/persona.log"
  "$PERSONA_BIN" serve --http-listen 127.0.0.1:0 --data-dir "$dir/data" \
    --set limits.connections_per_address.rate=0 >"$PERSONA_LOG" 2>&1 &
  PERSONA_PID=$!
  PIDS+=("$PERSONA_PID")
  PERSONA_PORT=
  for _ in $(seq 200); do
    PERSONA_PORT=$(grep -o '"msg":"listening".*"http":"[^"]*:[0-9]*"' "$PERSONA_LOG" 2>/dev/null |
                   grep -o '"http":"[^"]*"' | grep -o '[0-9]*"$' | tr -d '"' | head -1 || true)
    [[ -n $PERSONA_PORT ]] && break
    kill -0 "$PERSONA_PID" 2>/dev/null || break
    sleep 0.05
  done
  if [[ -z $PERSONA_PORT ]]; then
    echo "run_steps.sh: persona did not start; log tail:" >&2
    tail -20 "$PERSONA_LOG" >&2
    exit 1
  fi
  log "persona ($name) pid $PERSONA_PID on 127.0.0.1:$PERSONA_PORT"
}

stop_persona() {  # stop_persona NAME → writes $WORK/NAME/server.json
  local name=$1 alive=true rc=0
  if ! kill -0 "$PERSONA_PID" 2>/dev/null; then alive=false; fi
  if $alive; then
    kill -TERM "$PERSONA_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$PERSONA_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PERSONA_PID" 2>/dev/null || true
  fi
  wait "$PERSONA_PID" 2>/dev/null || rc=$?
  local errs warns
  errs=$(grep -c '"level":"\(error\|critical\)"' "$PERSONA_LOG" || true)
  warns=$(grep -c '"level":"warn' "$PERSONA_LOG" || true)
  python3 - "$WORK/$name/server.json" "$alive" "$rc" "$errs" "$warns" "$PERSONA_LOG" <<'EOF'
import json, sys
path, alive, rc, errs, warns, logf = sys.argv[1:]
tail = open(logf, errors="replace").read().splitlines()[-15:]
json.dump({"alive_at_end": alive == "true", "exit_status": int(rc), "log_errors": int(errs),
           "log_warnings": int(warns), "log_tail": tail}, open(path, "w"))
EOF
  if [[ $alive == false ]]; then
    log "WARNING: persona ($name) died during the run; log tail:"
    tail -20 "$PERSONA_LOG" >&2
  fi
}

scrape() {  # scrape FILE: the two store counters as JSON
  curl -s --max-time 10 "http://127.0.0.1:$PERSONA_PORT/metrics" |
    awk '/^persona_store_appends_total[ {]/ { a += $NF } /^persona_store_fsyncs_total[ {]/ { f += $NF }
         END { printf "{\"appends\":%s,\"fsyncs\":%s}\n", (a == "" ? "null" : a), (f == "" ? "null" : f) }' >"$1" ||
    echo '{"appends":null,"fsyncs":null}' >"$1"
}

CMDS="$WORK/commands.txt"
: >"$CMDS"
loadgen() {  # loadgen OUTFILE ARGS… (never fails the script)
  local out=$1; shift
  echo "$LOADGEN_BIN $*" >>"$CMDS"
  if ! "$LOADGEN_BIN" "$@" >"$out" 2>"$out.err"; then
    log "loadgen exited non-zero: $(cat "$out" "$out.err" | head -5)"
  fi
  [[ -s $out ]] || echo '{"fatal":"no output from loadgen"}' >"$out"
}

# ---------------------------------------------------------------- redis

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_redis() {  # run_redis NAME SIZE → $WORK/NAME/redis.csv
  local name=$1 size=$2 dir="$WORK/$1/redis"
  mkdir -p "$dir"
  if [[ -z $REDIS_SERVER || -z $REDIS_BENCH ]]; then
    log "redis-server/redis-benchmark not installed: skipping the Redis comparison"
    return
  fi
  local port pid
  port=$(free_port)
  (cd "$dir" && exec "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
     --daemonize no --dir "$dir" >"$dir/redis.log" 2>&1) &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do
    if [[ -n $REDIS_CLI ]]; then
      "$REDIS_CLI" -p "$port" ping 2>/dev/null | grep -q PONG && break
    else
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    fi
    sleep 0.05
  done
  local cmd=("$REDIS_BENCH" -p "$port" -t set,get -d "$size" -r 10000 -c "$CONNECTIONS"
             -n "$REDIS_REQUESTS" -q --csv)
  echo "${cmd[*]}" >>"$CMDS"
  timeout 120 "${cmd[@]}" >"$WORK/$name/redis.csv" 2>"$WORK/$name/redis.err" ||
    log "redis-benchmark failed: $(head -3 "$WORK/$name/redis.err")"
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

run_ref() {  # run_ref NAME MODE → $WORK/NAME/ref_MODE.json
  local name=$1 mode=$2 port pid
  [[ -x $REF_BIN ]] || { log "no $REF_BIN: skipping the reference servers"; return; }
  port=$(free_port)
  mkdir -p "$WORK/$name/ref_$mode"
  "$REF_BIN" --port "$port" --mode "$mode" --data "$WORK/$name/ref_$mode/data" \
    >"$WORK/$name/ref_$mode/log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do grep -q listening "$WORK/$name/ref_$mode/log" 2>/dev/null && break; sleep 0.05; done
  loadgen "$WORK/$name/ref_$mode.json" closed --url "http://127.0.0.1:$port" \
    --connections "$CONNECTIONS" --duration "$DURATION" --warmup "$WARMUP" \
    --sessions-per-conn "$SESSIONS_PER_CONN" --threads "$LOADGEN_THREADS" --mode step
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------- runs

START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$(date +%s)
log "work dir $WORK; RUNS=$RUNS DURATION=${DURATION}s WARMUP=${WARMUP}s OPEN_DURATION=${OPEN_DURATION}s"

for i in $(seq "$RUNS"); do
  name="run$i"
  start_persona "$name"
  url="http://127.0.0.1:$PERSONA_PORT"
  log "run $i/$RUNS: (a) saturation, $CONNECTIONS connections, step"
  scrape "$WORK/$name/metrics_before.json"
  loadgen "$WORK/$name/step.json" closed --url "$url" --connections "$CONNECTIONS" \
    --duration "$DURATION" --warmup "$WARMUP" --sessions-per-conn "$SESSIONS_PER_CONN" \
    --threads "$LOADGEN_THREADS" --mode step
  scrape "$WORK/$name/metrics_after.json"
  log "run $i/$RUNS: $(head -c 300 "$WORK/$name/step.json")"
  log "run $i/$RUNS: (c) profile read, $CONNECTIONS connections"
  loadgen "$WORK/$name/profile.json" closed --url "$url" --connections "$CONNECTIONS" \
    --duration "$DURATION" --warmup "$WARMUP" --sessions-per-conn "$SESSIONS_PER_CONN" \
    --threads "$LOADGEN_THREADS" --mode profile
  log "run $i/$RUNS: $(head -c 300 "$WORK/$name/profile.json")"
  # The size of a profile body as persona returns it: a session with the
  # facts the load generator's steps tell.
  sid=$(curl -s -X POST "$url/v1/sessions" -H 'content-type: application/json' \
        -d '{"user_id":"size-probe"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["session_id"])')
  curl -s -o /dev/null -X POST "$url/v1/sessions/$sid/messages" -H 'content-type: application/json' \
    -d '{"text":"Hi, I am Alice Kim, 34 years old, and I work as a nurse in Seoul."}'
  PROFILE_BYTES=$(curl -s "$url/v1/sessions/$sid/profile" | wc -c)
  echo "$PROFILE_BYTES" >"$WORK/$name/profile_bytes"
  stop_persona "$name"
  log "run $i/$RUNS: (d) redis-benchmark -t set,get -d $PROFILE_BYTES -r 10000 -c $CONNECTIONS -n $REDIS_REQUESTS"
  run_redis "$name" "$PROFILE_BYTES"
  log "run $i/$RUNS: (e) reference servers: bare Beast, then with a durable write"
  run_ref "$name" plain
  run_ref "$name" durable
  log "run $i/$RUNS: refs $(head -c 120 "$WORK/$name/ref_plain.json" 2>/dev/null) / $(head -c 120 "$WORK/$name/ref_durable.json" 2>/dev/null)"
  log "run $i/$RUNS: redis $(tr '\n' ' ' <"$WORK/$name/redis.csv" 2>/dev/null | head -c 200)"
done

name=open
start_persona "$name"
log "(b) open loop: $OPEN_USERS users × $OPEN_RATE steps/s, ${OPEN_DURATION}s, pool $OPEN_CONNECTIONS"
scrape "$WORK/$name/metrics_before.json"
loadgen "$WORK/$name/open.json" open --url "http://127.0.0.1:$PERSONA_PORT" --users "$OPEN_USERS" \
  --rate-per-user "$OPEN_RATE" --duration "$OPEN_DURATION" --warmup "$WARMUP" \
  --connections "$OPEN_CONNECTIONS" --arrival "$OPEN_ARRIVAL"
scrape "$WORK/$name/metrics_after.json"
log "open: $(head -c 300 "$WORK/$name/open.json")"
stop_persona "$name"

# ---------------------------------------------------------------- report

mkdir -p "$(dirname "$OUT")"
WALL=$(( $(date +%s) - T0 ))
PERSONA_VERSION=$("$PERSONA_BIN" --version 2>/dev/null | head -1 || true)
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)
GIT_DIRTY=$(git --no-optional-locks -C "$ROOT" status --porcelain 2>/dev/null | head -1 | wc -l || true)
export WORK OUT RUNS START_TS WALL PERSONA_VERSION GIT_REV GIT_DIRTY CONNECTIONS OPEN_USERS OPEN_RATE \
  DURATION WARMUP OPEN_DURATION REDIS_REQUESTS
python3 - <<'EOF'
import csv, json, os, platform, statistics, subprocess

W = os.environ["WORK"]
runs = int(os.environ["RUNS"])

def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return default if default is not None else {}

def redis_rps(path):
    try:
        with open(path) as f:
            for row in csv.reader(f):
                if row and row[0].upper().startswith("GET"):
                    return float(row[1])
    except Exception:
        pass
    return None

def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None

per_run = []
for i in range(1, runs + 1):
    d = f"{W}/run{i}"
    step, prof = load(f"{d}/step.json"), load(f"{d}/profile.json")
    mb, ma = load(f"{d}/metrics_before.json"), load(f"{d}/metrics_after.json")
    whole = None
    try:
        whole = (ma["appends"] - mb["appends"]) / (ma["fsyncs"] - mb["fsyncs"])
    except Exception:
        pass
    rr = redis_rps(f"{d}/redis.csv")
    ref_plain, ref_durable = load(f"{d}/ref_plain.json"), load(f"{d}/ref_durable.json")
    try:
        size = int(open(f"{d}/profile_bytes").read().strip())
    except Exception:
        size = None
    pr = prof.get("rps")
    per_run.append({
        "step": step, "profile": prof, "redis_get_rps": rr, "redis_value_bytes": size,
        "ref_plain_steps_per_s": ref_plain.get("rps"), "ref_durable_steps_per_s": ref_durable.get("rps"),
        "vs_ref_plain": (step.get("rps") / ref_plain["rps"]) if step.get("rps") and ref_plain.get("rps") else None,
        "vs_ref_durable": (step.get("rps") / ref_durable["rps"]) if step.get("rps") and ref_durable.get("rps") else None,
        "metrics_before": mb, "metrics_after": ma,
        "steps_per_fsync_window": step.get("appends_per_fsync"),
        "steps_per_fsync_whole_phase": whole,
        "profile_vs_redis": (pr / rr) if (pr and rr) else None,
        "server": load(f"{d}/server.json"),
    })

openr = load(f"{W}/open/open.json")
omb, oma = load(f"{W}/open/metrics_before.json"), load(f"{W}/open/metrics_after.json")
try:
    open_spf = (oma["appends"] - omb["appends"]) / (oma["fsyncs"] - omb["fsyncs"])
except Exception:
    open_spf = None

m = {
    "saturation_steps_per_s": med([r["step"].get("rps") for r in per_run]),
    "saturation_errors": med([(r["step"].get("errors") or 0) + (r["step"].get("non_2xx") or 0) for r in per_run]),
    "saturation_errors_max": max([(r["step"].get("errors") or 0) + (r["step"].get("non_2xx") or 0)
                                  for r in per_run] or [0]),
    "saturation_p50_ms": med([r["step"].get("p50_ms") for r in per_run]),
    "saturation_p99_ms": med([r["step"].get("p99_ms") for r in per_run]),
    "steps_per_fsync": med([r["steps_per_fsync_window"] for r in per_run]),
    "steps_per_fsync_whole_phase": med([r["steps_per_fsync_whole_phase"] for r in per_run]),
    "profile_get_per_s": med([r["profile"].get("rps") for r in per_run]),
    "profile_p50_ms": med([r["profile"].get("p50_ms") for r in per_run]),
    "profile_p99_ms": med([r["profile"].get("p99_ms") for r in per_run]),
    "profile_errors_max": max([(r["profile"].get("errors") or 0) + (r["profile"].get("non_2xx") or 0)
                               for r in per_run] or [0]),
    "redis_get_per_s": med([r["redis_get_rps"] for r in per_run]),
    "redis_value_bytes": med([r["redis_value_bytes"] for r in per_run]),
    "ref_plain_steps_per_s": med([r["ref_plain_steps_per_s"] for r in per_run]),
    "ref_durable_steps_per_s": med([r["ref_durable_steps_per_s"] for r in per_run]),
    "vs_ref_plain_ratio": med([r["vs_ref_plain"] for r in per_run]),
    "vs_ref_durable_ratio": med([r["vs_ref_durable"] for r in per_run]),
    "profile_vs_redis_ratio": med([r["profile_vs_redis"] for r in per_run]),
    "open_p50_ms": openr.get("p50_ms"),
    "open_p99_ms": openr.get("p99_ms"),
    "open_errors": (openr.get("errors") or 0) + (openr.get("non_2xx") or 0) if openr else None,
    "open_throughput_rps": openr.get("throughput_rps"),
    "open_steps_per_fsync": openr.get("appends_per_fsync"),
}

m = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in m.items()}

def check(v, op, t):
    if v is None:
        return None
    return v >= t if op == ">=" else v <= t

targets = [
    # key, label, op, target, anchor text
    ("saturation_steps_per_s", "saturation, 64 closed-loop connections: durable steps/s", ">=", 20000),
    ("saturation_errors_max", "saturation: errors (max over runs)", "<=", 0),
    ("open_p50_ms", "open loop 10,000 users × 1 step/2 s: p50 ms", "<=", 2),
    ("open_p99_ms", "open loop: p99 ms", "<=", 10),
    ("open_errors", "open loop: errors", "<=", 0),
    ("steps_per_fsync", "steps per fsync at saturation", ">=", 20),
    ("profile_vs_redis_ratio", "profile GET / redis GET of the same size (64 conns)", ">=", 0.8),
    ("vs_ref_plain_ratio", "steps/s / the bare Beast server's (same load, same run)", ">=", 0.35),
]
target_rows = [{"figure": label, "key": k, "value": m.get(k), "target": f"{op} {t}", "pass": check(m.get(k), op, t)}
               for k, label, op, t in targets]

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        return ""

commands = open(f"{W}/commands.txt").read().splitlines()
result = {
    "benchmark": "step_loop",
    "started_at": os.environ["START_TS"],
    "wall_s": int(os.environ["WALL"]),
    "machine": {
        "nproc": os.cpu_count(), "uname_r": platform.release(), "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"),
        "mem": sh("free -g | awk '/^Mem:/ {print $2 \" GiB\"}'"),
        "redis": sh("redis-server --version"),
    },
    "persona": {"version": os.environ.get("PERSONA_VERSION"), "git_rev": os.environ.get("GIT_REV"),
                "git_dirty": os.environ.get("GIT_DIRTY") == "1"},
    "config": {k.lower(): os.environ[k] for k in ["RUNS", "DURATION", "WARMUP", "OPEN_DURATION", "CONNECTIONS",
                                                  "OPEN_USERS", "OPEN_RATE", "REDIS_REQUESTS"]},
    "medians": m,
    "targets": target_rows,
    "targets_source": "/work/shared/TARGETS.md (Step loop)",
    "runs": per_run,
    "open_loop": {"result": openr, "metrics_before": omb, "metrics_after": oma,
                  "steps_per_fsync_whole_phase": open_spf, "server": load(f"{W}/open/server.json")},
    "commands": commands,
    "notes": [
        "Each run starts a fresh persona with an empty data dir; the loadgen creates sessions first "
        "(setup, not measured), then warms up, then measures.",
        "steps/s counts 2xx answers completed in the measured window; errors count transport errors, "
        "timeouts and non-2xx during warmup and window.",
        "steps_per_fsync = Δpersona_store_appends_total / Δpersona_store_fsyncs_total over the measured "
        "window (scraped by the loadgen); *_whole_phase is the same over the whole phase including "
        "session creation, scraped by this script.",
        "open loop latency is measured from each request's scheduled time (coordinated-omission "
        "correct); requests unanswered at the drain deadline count as errors and enter the "
        "percentiles with their latency so far.",
        "profile_vs_redis_ratio is the median of per-run ratios (persona and redis-benchmark in the same run).",
    ],
}
out = os.environ["OUT"]
# Keep what the other scripts merged into the same file (run_async.sh,
# run_llm.sh): this script owns only its own keys.
try:
    previous = json.load(open(out))
    for k in ("async_and_cache", "llm_overhead"):
        if k in previous and k not in result:
            result[k] = previous[k]
except Exception:
    pass
with open(out + ".tmp", "w") as f:
    json.dump(result, f, indent=2, ensure_ascii=False)
    f.write("\n")
os.replace(out + ".tmp", out)

def f(v, nd=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"

print()
print(f"## Step loop — {result['machine']['date']}, {result['machine']['nproc']} cores, "
      f"kernel {result['machine']['uname_r']}, persona {result['persona']['version'] or '?'} "
      f"({result['persona']['git_rev'] or '?'}), {runs} run(s)")
print()
print("| run | steps/s | err | p50 ms | p99 ms | steps/fsync (window / phase) | profile GET/s | p99 ms | redis GET/s | ratio |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for i, r in enumerate(per_run, 1):
    s, p = r["step"], r["profile"]
    print(f"| {i} | {f(s.get('rps'))} | {(s.get('errors') or 0) + (s.get('non_2xx') or 0)} | "
          f"{f(s.get('p50_ms'), 2)} | {f(s.get('p99_ms'), 2)} | {f(r['steps_per_fsync_window'], 2)} / "
          f"{f(r['steps_per_fsync_whole_phase'], 2)} | {f(p.get('rps'))} | {f(p.get('p99_ms'), 2)} | "
          f"{f(r['redis_get_rps'])} | {f(r['profile_vs_redis'], 3)} |")
print(f"| **median** | **{f(m['saturation_steps_per_s'])}** | {f(m['saturation_errors'], 0)} | "
      f"{f(m['saturation_p50_ms'], 2)} | {f(m['saturation_p99_ms'], 2)} | **{f(m['steps_per_fsync'], 2)}** / "
      f"{f(m['steps_per_fsync_whole_phase'], 2)} | **{f(m['profile_get_per_s'])}** | {f(m['profile_p99_ms'], 2)} | "
      f"**{f(m['redis_get_per_s'])}** | **{f(m['profile_vs_redis_ratio'], 3)}** |")
print()
o = openr
print(f"References (same load): bare Beast {f(m['ref_plain_steps_per_s'])} steps/s, with a durable "
      f"write {f(m['ref_durable_steps_per_s'])}; persona / bare = {f(m['vs_ref_plain_ratio'], 3)}, "
      f"persona / durable = {f(m['vs_ref_durable_ratio'], 3)}")
print()
print(f"Open loop: {os.environ['OPEN_USERS']} users × {os.environ['OPEN_RATE']} steps/s "
      f"({f(o.get('offered_rps'))} offered, {o.get('arrival', '?')}), pool {o.get('connections', '?')}: "
      f"answered {f(o.get('throughput_rps'))}/s in the window, p50 {f(o.get('p50_ms'), 2)} ms, p90 {f(o.get('p90_ms'), 2)} ms, "
      f"p99 {f(o.get('p99_ms'), 2)} ms, p99.9 {f(o.get('p999_ms'), 2)} ms, max {f(o.get('max_ms'), 2)} ms, "
      f"errors {o.get('errors', 'n/a')} (timeouts {o.get('timeouts', 'n/a')}, of which never sent for want of a "
      f"free connection {o.get('timeouts_unsent', 'n/a')}), max queued {o.get('max_queue', 'n/a')}, "
      f"non-2xx {o.get('non_2xx', 'n/a')}, "
      f"steps/fsync {f(o.get('appends_per_fsync'), 2)}" + (f" — FATAL: {o['fatal']}" if o.get("fatal") else ""))
print()
print("| target (TARGETS.md) | measured | target | pass |")
print("|---|---:|---:|:---:|")
for t in target_rows:
    v = t["value"]
    print(f"| {t['figure']} | {f(v, 2) if isinstance(v, float) else f(v)} | {t['target']} | "
          f"{'n/a' if t['pass'] is None else ('yes' if t['pass'] else 'NO')} |")
servers = [("run%d" % i, r["server"]) for i, r in enumerate(per_run, 1)] + [("open", result["open_loop"]["server"])]
for nm, sv in servers:
    if sv and (not sv.get("alive_at_end", True) or sv.get("log_errors")):
        print(f"\nWARNING persona ({nm}): alive_at_end={sv.get('alive_at_end')} exit={sv.get('exit_status')} "
              f"log_errors={sv.get('log_errors')}; log tail:")
        for line in sv.get("log_tail", []):
            print("    " + line)
print(f"\nwrote {out} (wall {result['wall_s']} s)")
EOF
