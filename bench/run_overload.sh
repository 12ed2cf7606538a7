#!/usr/bin/env bash
# Overload and the cost of auth (TARGETS.md, "Reliability and security"; issue 9).
#
#   (a) saturation: closed loop, 64 connections over ~10,000 sessions (the
#       same sessions as the open loops), durable steps/s
#   (b) half load: open loop, 10,000 users offering 0.5 × (a): p99 of the
#       2xx answers (the baseline)
#   (c) overload: open loop offering MULT × (a) for each MULT in MULTS
#       (default "3"): admitted (2xx) per second, admitted p99, sheds by
#       status (429/503), time to a shed answer (p50/p99/max, measured from
#       the request's scheduled time, so a refusal that waits is counted),
#       requests still queued at the load generator, RSS at start and end
#   (c') the highest MULT again with admission control off (limits.admission.
#       enabled=false), as the reference: what queueing everything does
#   (e) what a refusal costs: closed loop, 64 connections, with the admission
#       limit pinned at 1 (all but one step in flight refused), refusals/s,
#       beside profile reads/s (a cheap answer) on the same server build
#   (d) the cost of auth: closed loop, 64 connections, steps/s with auth on
#       (every request verified, every session checked) and off, alternating,
#       AUTH_RUNS times each; the medians and their ratio
#
# The load generator shares the 2 cores with persona: at MULT × saturation it
# spends CPU offering the load, and every refusal costs persona CPU too.
# Prints a table and writes bench/results/overload.json.
#
# Builds nothing: needs build/src/persona and build/bench/persona_loadgen.
# Knobs (env): DURATION=10 WARMUP=2 USERS=10000 MULTS="3" OVER_CONNECTIONS=4096
# HALF_CONNECTIONS=512 AUTH_RUNS=3 OUT=bench/results/overload.json
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
LOADGEN_BIN=${LOADGEN_BIN:-$ROOT/build/bench/persona_loadgen}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
USERS=${USERS:-10000}
MULTS=${MULTS:-3}
OVER_CONNECTIONS=${OVER_CONNECTIONS:-4096}
HALF_CONNECTIONS=${HALF_CONNECTIONS:-512}
AUTH_RUNS=${AUTH_RUNS:-3}
OUT=${OUT:-$ROOT/bench/results/overload.json}
SECRET="bench-secret-0123456789abcdef-0123456789"

for bin in "$PERSONA_BIN" "$LOADGEN_BIN"; do
  [[ -x $bin ]] || { echo "run_overload.sh: $bin not found; build first (make build)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/persona-overload.XXXXXX")
PERSONA_PID=
cleanup() {
  if [[ -n $PERSONA_PID ]] && kill -0 "$PERSONA_PID" 2>/dev/null; then
    kill "$PERSONA_PID" 2>/dev/null || true
    sleep 1
    kill -9 "$PERSONA_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '[run_overload %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PERSONA_PID/status" 2>/dev/null || echo 0; }

start_persona() {  # start_persona NAME [persona args…]
  local name=$1; shift
  mkdir -p "$WORK/$name"
  # The load generator opens thousands of connections from one address.
  "$PERSONA_BIN" serve --http-listen 127.0.0.1:0 --mqtt-listen off --data-dir "$WORK/$name/data" \
    --schemas-dir "$ROOT/schemas" --set limits.connections_per_address.rate=0 \
    "$@" >"$WORK/$name/persona.log" 2>&1 &
  PERSONA_PID=$!
  PORT=
  for _ in $(seq 200); do
    PORT=$(grep -o '"http":"[^"]*:[0-9]*"' "$WORK/$name/persona.log" 2>/dev/null | grep -o '[0-9]*"$' |
           tr -d '"' | head -1 || true)
    [[ -n $PORT ]] && break
    sleep 0.05
  done
  [[ -n $PORT ]] || { echo "persona did not start:"; cat "$WORK/$name/persona.log"; exit 1; } >&2
  URL="http://127.0.0.1:$PORT"
}
stop_persona() {
  kill -TERM "$PERSONA_PID" 2>/dev/null || true
  wait "$PERSONA_PID" 2>/dev/null || true
  PERSONA_PID=
}
loadgen() {  # loadgen OUT args… (never fails the script)
  local out=$1; shift
  echo "$LOADGEN_BIN $*" >>"$WORK/commands.txt"
  "$LOADGEN_BIN" "$@" >"$out" 2>"$out.err" || log "loadgen exited non-zero: $(head -c 300 "$out" "$out.err")"
  [[ -s $out ]] || echo '{"fatal":"no output"}' >"$out"
}
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))" "$1" "$2"; }

: >"$WORK/commands.txt"
START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
SPC=$(( (USERS + 63) / 64 ))

# (a) and (b) on one server; each (c) on a fresh one, so that its sessions
# are created before the overload starts.
start_persona load
echo "$(rss_kb)" >"$WORK/rss_start"
log "(a) saturation: 64 connections over $((SPC * 64)) sessions"
loadgen "$WORK/sat.json" closed --url "$URL" --connections 64 --duration "$DURATION" --warmup "$WARMUP" \
  --sessions-per-conn "$SPC"
SAT=$(field "$WORK/sat.json" rps)
log "saturation: $SAT steps/s"
HALF_RATE=$(python3 -c "print($SAT * 0.5 / $USERS)")
log "(b) half load: $USERS users offering $(python3 -c "print(round($SAT * 0.5))")/s"
loadgen "$WORK/half.json" open --url "$URL" --users "$USERS" --rate-per-user "$HALF_RATE" \
  --duration "$DURATION" --warmup "$WARMUP" --connections "$HALF_CONNECTIONS"
log "half: $(head -c 300 "$WORK/half.json")"
echo "$(rss_kb)" >"$WORK/rss_half"
stop_persona
for m in $MULTS; do
  start_persona "over$m"
  echo "$(rss_kb)" >"$WORK/rss_start$m"
  rate=$(python3 -c "print($SAT * $m / $USERS)")
  log "(c) overload ×$m: offering $(python3 -c "print(round($SAT * $m))")/s over $OVER_CONNECTIONS connections"
  loadgen "$WORK/over$m.json" open --url "$URL" --users "$USERS" --rate-per-user "$rate" \
    --duration "$DURATION" --warmup "$WARMUP" --connections "$OVER_CONNECTIONS"
  curl -s "$URL/metrics" | grep -E '^persona_admission' >"$WORK/over$m.metrics" || true
  log "over×$m: $(head -c 400 "$WORK/over$m.json")"
  echo "$(rss_kb)" >"$WORK/rss_end$m"
  stop_persona
done

# (c') the reference: the same overload with admission control off.
REF_MULT=${MULTS##* }
start_persona "ref" --set limits.admission.enabled=false
rate=$(python3 -c "print($SAT * $REF_MULT / $USERS)")
log "(c') reference ×$REF_MULT with admission control off"
loadgen "$WORK/ref.json" open --url "$URL" --users "$USERS" --rate-per-user "$rate" \
  --duration "$DURATION" --warmup "$WARMUP" --connections "$OVER_CONNECTIONS"
log "ref: $(head -c 400 "$WORK/ref.json")"
stop_persona

# (e) the cost of a refusal.
start_persona refuse --set limits.admission.min_limit=1 --set limits.admission.max_limit=1 \
  --set limits.admission.initial_limit=1
loadgen "$WORK/refuse.json" closed --url "$URL" --connections 64 --duration "$DURATION" \
  --warmup "$WARMUP" --setup-concurrency 1
stop_persona
start_persona reads
loadgen "$WORK/reads.json" closed --url "$URL" --connections 64 --duration "$DURATION" \
  --warmup "$WARMUP" --mode profile
stop_persona
log "refusals: $(head -c 300 "$WORK/refuse.json")"

# (d) the cost of auth, alternating.
ADMIN=$(PERSONA_AUTH__JWT__HS256_SECRET=$SECRET "$PERSONA_BIN" token --user bench-admin --admin --ttl 2h)
USER_TOKEN=$(PERSONA_AUTH__JWT__HS256_SECRET=$SECRET "$PERSONA_BIN" token --user bench-user --ttl 2h)
for i in $(seq "$AUTH_RUNS"); do
  order="off on"
  (( i % 2 == 0 )) && order="on off"  # alternate which goes first
  for mode in $order; do
    if [[ $mode == on ]]; then
      PERSONA_AUTH__JWT__HS256_SECRET=$SECRET start_persona "auth$mode$i" --set auth.enabled=true \
        --set limits.http_per_user.rate=0
      loadgen "$WORK/auth_$mode$i.json" closed --url "$URL" --connections 64 --duration "$DURATION" \
        --warmup "$WARMUP" --token "$USER_TOKEN" --admin-token "$ADMIN"
    else
      start_persona "auth$mode$i"
      loadgen "$WORK/auth_$mode$i.json" closed --url "$URL" --connections 64 --duration "$DURATION" \
        --warmup "$WARMUP"
    fi
    stop_persona
    log "auth $mode, run $i: $(field "$WORK/auth_$mode$i.json" rps) steps/s, status $(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('status_counts'))" "$WORK/auth_$mode$i.json")"
  done
done

GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git --no-optional-locks -C "$ROOT" status --porcelain 2>/dev/null | head -1 | wc -l || true)
export WORK OUT START_TS GIT_REV GIT_DIRTY MULTS AUTH_RUNS DURATION WARMUP USERS OVER_CONNECTIONS HALF_CONNECTIONS
python3 - <<'EOF'
import json, os, statistics
W = os.environ["WORK"]
load = lambda p: json.load(open(p))
sat, half = load(f"{W}/sat.json"), load(f"{W}/half.json")
rd = lambda n: int(open(f"{W}/{n}").read().strip() or 0)
rss0, rss_half = rd("rss_start"), rd("rss_half")
over = {}
for m in os.environ["MULTS"].split():
    r = load(f"{W}/over{m}.json")
    sc = r.get("status_counts", {})
    over[m] = {
        "offered_rps": r.get("offered_rps"), "issued": r.get("issued"),
        "admitted_rps": r.get("throughput_rps"), "admitted_vs_saturation": round((r.get("throughput_rps") or 0) / sat["rps"], 3) if sat.get("rps") else None,
        "admitted_p50_ms": r.get("p50_ms"), "admitted_p99_ms": r.get("p99_ms"),
        "admitted_p99_vs_half_p99": round(r["p99_ms"] / half["p99_ms"], 2) if half.get("p99_ms") else None,
        "shed_429": sc.get("429", 0), "shed_503": sc.get("503", 0), "other_status": {k: v for k, v in sc.items() if k not in ("200", "429", "503")},
        "shed_p50_ms": r.get("shed_p50_ms"), "shed_p99_ms": r.get("shed_p99_ms"), "shed_max_ms": r.get("shed_max_ms"),
        "timeouts": r.get("timeouts"), "queued_at_loadgen_max": r.get("max_queue"),
        "server_admission": open(f"{W}/over{m}.metrics").read().split("\n") if os.path.exists(f"{W}/over{m}.metrics") else [],
        "rss_kb_start": rd(f"rss_start{m}"), "rss_kb_end": rd(f"rss_end{m}"),
        "raw": r,
    }
ref = load(f"{W}/ref.json")
ref_row = {"mult": os.environ["MULTS"].split()[-1], "admitted_rps": ref.get("throughput_rps"),
           "admitted_p50_ms": ref.get("p50_ms"), "admitted_p99_ms": ref.get("p99_ms"),
           "status_counts": ref.get("status_counts"), "timeouts": ref.get("timeouts"),
           "queued_at_loadgen_max": ref.get("max_queue"), "raw": ref}
refuse, reads = load(f"{W}/refuse.json"), load(f"{W}/reads.json")
dur = float(os.environ["DURATION"]) + float(os.environ["WARMUP"])  # status counts include the warm-up
refusals = {"refused_per_s": round(refuse.get("status_counts", {}).get("503", 0) / dur, 1),
            "answered_per_s": round(sum(refuse.get("status_counts", {}).values()) / dur, 1),
            "shed_p50_ms": refuse.get("shed_p50_ms"), "shed_p99_ms": refuse.get("shed_p99_ms"),
            "profile_reads_per_s": reads.get("rps"), "steps_per_s_at_saturation": sat.get("rps")}
runs = int(os.environ["AUTH_RUNS"])
off = [load(f"{W}/auth_off{i}.json").get("rps", 0) for i in range(1, runs + 1)]
on = [load(f"{W}/auth_on{i}.json").get("rps", 0) for i in range(1, runs + 1)]
on_status = [load(f"{W}/auth_on{i}.json").get("status_counts", {}) for i in range(1, runs + 1)]
med_off, med_on = statistics.median(off), statistics.median(on)
result = {
    "benchmark": "overload_and_auth",
    "started_at": os.environ["START_TS"],
    "persona": {"git_rev": os.environ["GIT_REV"], "git_dirty": os.environ["GIT_DIRTY"] == "1"},
    "config": {k.lower(): os.environ[k] for k in ["DURATION", "USERS", "MULTS", "OVER_CONNECTIONS", "HALF_CONNECTIONS", "AUTH_RUNS"]},
    "saturation": {"steps_per_s": sat.get("rps"), "p99_ms": sat.get("p99_ms"), "errors": sat.get("errors"), "sessions": sat.get("sessions")},
    "half_load": {"offered_rps": half.get("offered_rps"), "answered_rps": half.get("throughput_rps"), "p50_ms": half.get("p50_ms"),
                  "p99_ms": half.get("p99_ms"), "errors": half.get("errors"), "status_counts": half.get("status_counts")},
    "overload": over,
    "reference_admission_off": ref_row,
    "refusal_cost": refusals,
    "rss_kb": {"start": rss0, "after_saturation_and_half_load": rss_half},
    "auth_cost": {"steps_per_s_off": off, "steps_per_s_on": on, "median_off": med_off, "median_on": med_on,
                  "on_vs_off": round(med_on / med_off, 3) if med_off else None, "status_counts_on": on_status},
    "commands": open(f"{W}/commands.txt").read().splitlines(),
}
os.makedirs(os.path.dirname(os.environ["OUT"]), exist_ok=True)
json.dump(result, open(os.environ["OUT"], "w"), indent=2)
print("\n| figure | measured | target |\n|---|---:|---|")
print(f"| saturation (closed loop, 64 conns) | {sat.get('rps')} steps/s | |")
print(f"| half load {half.get('offered_rps')}/s: p99 | {half.get('p99_ms')} ms ({half.get('errors')} errors) | baseline |")
for m, o in over.items():
    print(f"| ×{m} ({o['offered_rps']}/s offered): admitted | {o['admitted_rps']}/s = {o['admitted_vs_saturation']}× saturation | ≥ 0.9× |")
    print(f"| ×{m}: admitted p99 | {o['admitted_p99_ms']} ms = {o['admitted_p99_vs_half_p99']}× half-load p99 | ≤ 2× |")
    print(f"| ×{m}: shed 503 / 429 | {o['shed_503']} / {o['shed_429']} | |")
    print(f"| ×{m}: time to a shed answer p50 / p99 / max | {o['shed_p50_ms']} / {o['shed_p99_ms']} / {o['shed_max_ms']} ms | ≤ 50 ms |")
print(f"| reference ×{ref_row['mult']}, admission off: answered 2xx | {ref_row['admitted_rps']}/s, p50 {ref_row['admitted_p50_ms']} ms, p99 {ref_row['admitted_p99_ms']} ms, {ref_row['timeouts']} unanswered at the end | |")
print(f"| all refused (limit pinned at 1), 64 conns: refusals/s | {refusals['refused_per_s']} (profile reads: {refusals['profile_reads_per_s']}/s) | |")
print(f"| RSS, saturation + half-load server: start → end | {rss0} → {rss_half} KiB | |")
for m, o in over.items():
    print(f"| RSS, ×{m} server: start → end | {o['rss_kb_start']} → {o['rss_kb_end']} KiB | bounded |")
print(f"| auth on / off (median of {runs}) | {med_on} / {med_off} steps/s = {result['auth_cost']['on_vs_off']} | ≥ 0.95 |")
print(f"\nwrote {os.environ['OUT']}")
EOF
