#!/usr/bin/env bash
# Real-time sync benchmark (TARGETS.md, "Real-time sync (MQTT)"): persona's embedded MQTT
# 3.1.1 broker against Mosquitto 2.0 and nats-server 2.9 (MQTT mode, JetStream on), the same
# scenarios against each, in the same run. `make bench-realtime`.
#
# Peers (Debian packages): apt-get install -y mosquitto mosquitto-clients nats-server
# Every broker gets the same in-flight window as persona's mqtt.max_inflight (64): Mosquitto's
# max_inflight_messages, NATS's mqtt.max_ack_pending. NATS is a durable-log broker: its MQTT
# QoS 1 goes through JetStream (a stream and a consumer per subscription); it runs with the
# consumers in memory (mqtt.consumer_memory_storage, as its documentation suggests when the
# consumers' state need not survive a restart: Mosquitto runs without persistence too).
#
# Scenarios, each against a freshly started broker (bench/mqtt_loadgen.cc documents the
# load generator):
#   (a) fanout   QoS 1 deliveries/s at saturation: FANOUT_PUBLISHERS publishers, each with up
#                to FANOUT_WINDOW unacked PUBLISHes, FANOUT_SUBSCRIBERS subscribers, every
#                message to FANOUT subscribers. RUNS times (fresh broker each), median.
#   (b) latency  LAT_SESSIONS sessions × LAT_DEVICES devices, each device its own subscribed
#                (QoS 1) connection, LAT_RATE updates/s open loop: publish→deliver p50/p99.
#   (c) idle     IDLE_CONNS idle subscribed connections: broker ΔVmRSS / IDLE_CONNS.
#   (d) resume   RESUME_SESSIONS × RESUME_DEVICES persistent sessions (clean_session=0);
#                every device connection reset (RST) at RESUME_KILL_AT s while updates flow,
#                reconnected RESUME_DOWN s later: lost / reordered / duplicate, resume time.
#
# File descriptors: a process here may hold at most 20,000. Connections are therefore spread
# over several load-generator processes (`--shard i/n`, at most SHARD_CONNS = 5,000 each,
# publisher in its own process), and the largest population (15,000 device connections +
# 4 publishers) stays below the broker's own 20,000 limit.
#
# Writes bench/results/realtime.json ({"persona": {…}, "mosquitto": {…}, "nats": {…}, plus
# ratios, targets, machine, commands}) and prints a markdown table. A system that is not
# installed or does not answer MQTT (e.g. persona before its broker lands) is skipped with a
# note; the others still run.
#
# Builds nothing: needs build/bench/persona_mqtt_loadgen and build/src/persona (override with
# LOADGEN_BIN, PERSONA_BIN). Knobs (env), defaults keep the whole run near 5 minutes:
#   SYSTEMS="persona mosquitto nats" SCENARIOS="fanout latency idle resume" RUNS=3 DURATION=6 WARMUP=2 FANOUT_PUBLISHERS=4
#   FANOUT_SUBSCRIBERS=64 FANOUT_TOPICS=64 FANOUT=8 FANOUT_WINDOW=64 PAYLOAD=64
#   LOADGEN_THREADS=1 LAT_SESSIONS=5000 LAT_DEVICES=3 LAT_RATE=5000 LAT_DURATION=12
#   LAT_WARMUP=2 LAT_DRAIN=5 PUB_CONNS=4 IDLE_CONNS=5000 IDLE_SETTLE=3 RESUME_SESSIONS=1000
#   RESUME_DEVICES=3 RESUME_RATE=500 RESUME_DURATION=8 RESUME_KILL_AT=3 RESUME_DOWN=1
#   RESUME_DRAIN=35 SHARD_CONNS=5000 NICE=-10 SETUP_TIMEOUT=120 OUT=bench/results/realtime.json
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
LOADGEN_BIN=${LOADGEN_BIN:-$ROOT/build/bench/persona_mqtt_loadgen}
SYSTEMS=${SYSTEMS:-persona mosquitto nats}
SCENARIOS=${SCENARIOS:-fanout latency idle resume}
RUNS=${RUNS:-3}
DURATION=${DURATION:-6}
WARMUP=${WARMUP:-2}
FANOUT_PUBLISHERS=${FANOUT_PUBLISHERS:-4}
FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-64}
FANOUT_TOPICS=${FANOUT_TOPICS:-64}
FANOUT=${FANOUT:-8}
FANOUT_WINDOW=${FANOUT_WINDOW:-64}
PAYLOAD=${PAYLOAD:-64}
LOADGEN_THREADS=${LOADGEN_THREADS:-1}
LAT_SESSIONS=${LAT_SESSIONS:-5000}
LAT_DEVICES=${LAT_DEVICES:-3}
LAT_RATE=${LAT_RATE:-5000}
LAT_DURATION=${LAT_DURATION:-12}
LAT_WARMUP=${LAT_WARMUP:-2}
LAT_DRAIN=${LAT_DRAIN:-5}
PUB_CONNS=${PUB_CONNS:-4}
IDLE_CONNS=${IDLE_CONNS:-5000}
IDLE_SETTLE=${IDLE_SETTLE:-3}
RESUME_SESSIONS=${RESUME_SESSIONS:-1000}
RESUME_DEVICES=${RESUME_DEVICES:-3}
RESUME_RATE=${RESUME_RATE:-500}
RESUME_DURATION=${RESUME_DURATION:-8}
RESUME_KILL_AT=${RESUME_KILL_AT:-3}
RESUME_DOWN=${RESUME_DOWN:-1}
RESUME_DRAIN=${RESUME_DRAIN:-35}
SHARD_CONNS=${SHARD_CONNS:-5000}
# Brokers and load generators run under `nice -n $NICE` (all alike), so that on a shared machine
# other people's work disturbs the comparison less; without the privilege nice warns and runs
# them at normal priority.
NICE=${NICE:--10}
SETUP_TIMEOUT=${SETUP_TIMEOUT:-120}
OUT=${OUT:-$ROOT/bench/results/realtime.json}

[[ -x $LOADGEN_BIN ]] || {
  echo "run_realtime.sh: $LOADGEN_BIN not found; build first (ninja -C build persona_mqtt_loadgen)" >&2
  exit 1
}
command -v python3 >/dev/null || { echo "run_realtime.sh: python3 is needed to write the results" >&2; exit 1; }
MOSQUITTO=$(command -v mosquitto || true)
[[ -z $MOSQUITTO && -x /usr/sbin/mosquitto ]] && MOSQUITTO=/usr/sbin/mosquitto
NATS=$(command -v nats-server || true)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/persona-bench-rt.XXXXXX")
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

log() { printf '[run_realtime %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLK_TCK=$(getconf CLK_TCK)
cpu_s() {  # cpu_s PID: user+system CPU seconds so far
  awk -v t="$CLK_TCK" '{ printf "%.2f\n", ($14 + $15) / t }' "/proc/$1/stat" 2>/dev/null || echo null
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo null; }

CMDS="$WORK/commands.txt"
: >"$CMDS"
note() { echo "$*" >>"$WORK/$SYS/notes.txt"; }

# ---------------------------------------------------------------- brokers

BROKER_PID=
BROKER_PORT=
BROKER_LOG=
# start_broker SYS DIR: starts a fresh broker, waits until an MQTT probe (connect, subscribe,
# QoS 1 round trip) succeeds. Returns 1 (and records why) when it does not.
start_broker() {
  local sys=$1 dir=$2
  mkdir -p "$dir"
  BROKER_PORT=$(free_port)
  BROKER_LOG="$dir/broker.log"
  case $sys in
    persona)
      [[ -x $PERSONA_BIN ]] || { echo "persona binary $PERSONA_BIN not found" >"$dir/why"; return 1; }
      mkdir -p "$dir/data"
      nice -n "$NICE" "$PERSONA_BIN" serve --mqtt-listen "127.0.0.1:$BROKER_PORT" --http-listen 127.0.0.1:0 \
        --data-dir "$dir/data" --set limits.connections_per_address.rate=0 >"$BROKER_LOG" 2>&1 &
      BROKER_PID=$!
      echo "$PERSONA_BIN serve --mqtt-listen 127.0.0.1:PORT --http-listen 127.0.0.1:0 --data-dir DIR" >"$WORK/$sys/broker_cmd"
      ;;
    mosquitto)
      [[ -n $MOSQUITTO ]] || { echo "mosquitto not installed (apt-get install -y mosquitto)" >"$dir/why"; return 1; }
      cat >"$dir/mosquitto.conf" <<EOF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
max_queued_messages 1000
max_inflight_messages 64
persistence false
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
connection_messages false
EOF
      nice -n "$NICE" "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$BROKER_LOG" 2>&1 &
      BROKER_PID=$!
      { echo "$MOSQUITTO -c mosquitto.conf  # mosquitto.conf:"; sed 's/^/    /' "$dir/mosquitto.conf"; } >"$WORK/$sys/broker_cmd"
      ;;
    nats)
      [[ -n $NATS ]] || { echo "nats-server not installed (apt-get install -y nats-server)" >"$dir/why"; return 1; }
      cat >"$dir/nats.conf" <<EOF
server_name: persona_bench
listen: 127.0.0.1:$(free_port)
jetstream { store_dir: "$dir/js" }
mqtt {
  listen: 127.0.0.1:$BROKER_PORT
  max_ack_pending: 64
  consumer_memory_storage: true
}
EOF
      nice -n "$NICE" "$NATS" -c "$dir/nats.conf" >"$BROKER_LOG" 2>&1 &
      BROKER_PID=$!
      { echo "$NATS -c nats.conf  # nats.conf:"; sed 's/^/    /' "$dir/nats.conf"; } >"$WORK/$sys/broker_cmd"
      ;;
  esac
  PIDS+=("$BROKER_PID")
  cut -d' ' -f1-3 /proc/loadavg >"$dir/loadavg_start"
  local i
  for i in $(seq 100); do
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
      { echo "$sys exited at start; log tail:"; tail -5 "$BROKER_LOG"; } >"$dir/why"
      return 1
    fi
    if "$LOADGEN_BIN" probe --port "$BROKER_PORT" --setup-timeout 2 >"$dir/probe.json" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  { echo "$sys MQTT not available on 127.0.0.1:$BROKER_PORT: $(cat "$dir/probe.json" 2>/dev/null)"
    echo "log tail:"; tail -5 "$BROKER_LOG"; } >"$dir/why"
  stop_broker "$dir"
  return 1
}

stop_broker() {  # stop_broker DIR → DIR/broker.json
  local dir=$1 alive=true rc=0
  [[ -n $BROKER_PID ]] || return 0
  cut -d' ' -f1-3 /proc/loadavg >"$dir/loadavg_end"
  kill -0 "$BROKER_PID" 2>/dev/null || alive=false
  if $alive; then
    kill -TERM "$BROKER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$BROKER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$BROKER_PID" 2>/dev/null || true
  fi
  wait "$BROKER_PID" 2>/dev/null || rc=$?
  printf '{"alive_at_end": %s, "exit_status": %d}\n' "$alive" "$rc" >"$dir/broker.json"
  [[ $alive == true ]] || log "WARNING: $SYS died during $(basename "$dir"); log tail: $(tail -3 "$BROKER_LOG" | tr '\n' ' ')"
  BROKER_PID=
}

lg() {  # lg OUT ARGS…: runs the load generator in the foreground (never fails the script)
  local out=$1; shift
  echo "$(basename "$LOADGEN_BIN") $* --port PORT" >>"$CMDS"
  nice -n "$NICE" "$LOADGEN_BIN" "$@" --port "$BROKER_PORT" >"$out" 2>"$out.err" || log "loadgen exited non-zero: $(tail -c 300 "$out.err")"
  [[ -s $out ]] || echo '{"fatal":"no output from loadgen"}' >"$out"
}

# run_sharded MODE DIR SESSIONS DEVICES PUB_ARGS… : device connections in ceil(n/SHARD_CONNS)
# sub processes; once all are subscribed, the publisher (for idle: the RSS sample) runs; the
# subs then drain and report. Writes DIR/sub.I.json, DIR/pub.json.
run_sharded() {
  local mode=$1 dir=$2 sessions=$3 devices=$4; shift 4
  local total=$((sessions * devices)) shards i sub_pids=() extra=()
  shards=$(((total + SHARD_CONNS - 1) / SHARD_CONNS))
  mkdir -p "$dir"
  rm -f "$dir"/ready.* "$dir/done" "$dir/kill"
  [[ $mode == resume ]] && extra=(--drain "$RESUME_DRAIN") || extra=(--drain "$LAT_DRAIN")
  echo "$(basename "$LOADGEN_BIN") $mode --role sub --shard I/$shards --sessions $sessions --devices $devices ${extra[*]} --setup-timeout $SETUP_TIMEOUT --ready-file R --done-file D --kill-file K --port PORT  # I = 0..$((shards - 1)), one process each" >>"$CMDS"
  for ((i = 0; i < shards; i++)); do
    nice -n "$NICE" "$LOADGEN_BIN" "$mode" --role sub --shard "$i/$shards" --sessions "$sessions" --devices "$devices" \
      "${extra[@]}" --setup-timeout "$SETUP_TIMEOUT" --ready-file "$dir/ready.$i" --done-file "$dir/done" \
      --kill-file "$dir/kill" --port "$BROKER_PORT" --max-time 600 >"$dir/sub.$i.json" 2>"$dir/sub.$i.err" &
    sub_pids+=($!)
    PIDS+=($!)
  done
  # Wait until every shard is subscribed (or one gave up).
  local t0=$SECONDS ok=false n
  while ((SECONDS - t0 < SETUP_TIMEOUT + 10)); do
    n=$(find "$dir" -maxdepth 1 -name 'ready.*' ! -name '*.tmp' | wc -l)
    ((n == shards)) && { ok=true; break; }
    for i in "${sub_pids[@]}"; do kill -0 "$i" 2>/dev/null || break 2; done
    sleep 0.1
  done
  echo "$((SECONDS - t0))" >"$dir/setup_wall_s"
  if $ok; then
    log "$SYS $mode: $total connections subscribed ($shards processes) in $((SECONDS - t0)) s"
    if [[ $mode == idle ]]; then
      sleep "$IDLE_SETTLE"
      rss_kb "$BROKER_PID" >"$dir/rss_after_kb"
      echo 0 >"$dir/done"
    else
      local c0 c1
      c0=$(cpu_s "$BROKER_PID")
      lg "$dir/pub.json" "$mode" --role pub --sessions "$sessions" --devices "$devices" --pub-conns "$PUB_CONNS" \
        --done-file "$dir/done" --kill-file "$dir/kill" --payload "$PAYLOAD" "$@"
      c1=$(cpu_s "$BROKER_PID")
      echo "{\"broker_cpu_s\": $(python3 -c "print(round($c1 - $c0, 2))" 2>/dev/null || echo null)}" >"$dir/cpu.json"
      [[ -f $dir/done ]] || echo 0 >"$dir/done"
    fi
  else
    log "$SYS $mode: setup did not complete in time: $(cat "$dir"/sub.*.err | tail -3 | tr '\n' ' ')"
    echo 0 >"$dir/done"
  fi
  for i in "${sub_pids[@]}"; do wait "$i" 2>/dev/null || true; done
  for ((i = 0; i < shards; i++)); do
    [[ -s $dir/sub.$i.json ]] || echo '{"fatal":"no output from loadgen"}' >"$dir/sub.$i.json"
  done
}

# ---------------------------------------------------------------- runs

START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$(date +%s)
log "work dir $WORK; systems: $SYSTEMS; RUNS=$RUNS"

for SYS in $SYSTEMS; do
  mkdir -p "$WORK/$SYS"
  : >"$WORK/$SYS/notes.txt"
  if ! start_broker "$SYS" "$WORK/$SYS/probe"; then
    why=$(head -3 "$WORK/$SYS/probe/why" | tr '\n' ' ')
    [[ $SYS == persona ]] && why="persona MQTT not available: $why"
    log "skipping $SYS: $why"
    note "skipped: $why"
    touch "$WORK/$SYS/skipped"
    continue
  fi
  stop_broker "$WORK/$SYS/probe"

  has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
  has fanout && for i in $(seq "$RUNS"); do
    d="$WORK/$SYS/fanout$i"
    start_broker "$SYS" "$d" || { log "$SYS did not start for fanout run $i"; continue; }
    c0=$(cpu_s "$BROKER_PID")
    lg "$d/fanout.json" fanout --publishers "$FANOUT_PUBLISHERS" --subscribers "$FANOUT_SUBSCRIBERS" \
      --topics "$FANOUT_TOPICS" --fanout "$FANOUT" --window "$FANOUT_WINDOW" --payload "$PAYLOAD" \
      --duration "$DURATION" --warmup "$WARMUP" --threads "$LOADGEN_THREADS" --setup-timeout "$SETUP_TIMEOUT"
    c1=$(cpu_s "$BROKER_PID")
    echo "{\"broker_cpu_s\": $(python3 -c "print(round($c1 - $c0, 2))" 2>/dev/null || echo null)}" >"$d/cpu.json"
    stop_broker "$d"
    log "$SYS fanout run $i/$RUNS: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d.get("deliveries_per_s"), "deliveries/s, ratio", d.get("delivery_ratio"), d.get("fatal", ""))' "$d/fanout.json" 2>/dev/null)"
  done

  d="$WORK/$SYS/latency"
  if has latency && start_broker "$SYS" "$d"; then
    run_sharded latency "$d" "$LAT_SESSIONS" "$LAT_DEVICES" --rate "$LAT_RATE" --duration "$LAT_DURATION" \
      --warmup "$LAT_WARMUP" --drain "$LAT_DRAIN"
    stop_broker "$d"
  fi

  d="$WORK/$SYS/idle"
  if has idle && start_broker "$SYS" "$d"; then
    sleep 1
    rss_kb "$BROKER_PID" >"$d/rss_before_kb"
    run_sharded idle "$d" "$IDLE_CONNS" 1
    stop_broker "$d"
    log "$SYS idle: VmRSS $(cat "$d/rss_before_kb") kB → $(cat "$d/rss_after_kb" 2>/dev/null) kB with $IDLE_CONNS connections"
  fi

  d="$WORK/$SYS/resume"
  if has resume && start_broker "$SYS" "$d"; then
    run_sharded resume "$d" "$RESUME_SESSIONS" "$RESUME_DEVICES" --rate "$RESUME_RATE" \
      --duration "$RESUME_DURATION" --warmup 0 --kill-at "$RESUME_KILL_AT" --down "$RESUME_DOWN" --drain 15
    stop_broker "$d"
  fi
done

# ---------------------------------------------------------------- report

mkdir -p "$(dirname "$OUT")"
WALL=$(($(date +%s) - T0))
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)
MOSQ_VERSION=$([[ -n $MOSQUITTO ]] && "$MOSQUITTO" -h 2>/dev/null | head -1 || true)
NATS_VERSION=$([[ -n $NATS ]] && "$NATS" --version 2>/dev/null | head -1 || true)
PERSONA_VERSION=$([[ -x $PERSONA_BIN ]] && "$PERSONA_BIN" --version 2>/dev/null | head -1 || true)
export WORK OUT START_TS WALL GIT_REV MOSQ_VERSION NATS_VERSION PERSONA_VERSION SYSTEMS RUNS DURATION WARMUP \
  FANOUT_PUBLISHERS FANOUT_SUBSCRIBERS FANOUT_TOPICS FANOUT FANOUT_WINDOW PAYLOAD LOADGEN_THREADS LAT_SESSIONS \
  SCENARIOS LAT_DEVICES LAT_RATE LAT_DURATION LAT_WARMUP LAT_DRAIN PUB_CONNS IDLE_CONNS IDLE_SETTLE RESUME_SESSIONS \
  RESUME_DEVICES RESUME_RATE RESUME_DURATION RESUME_KILL_AT RESUME_DOWN RESUME_DRAIN SHARD_CONNS NICE
python3 - <<'EOF'
import glob, json, math, os, platform, statistics, subprocess

W = os.environ["WORK"]
E = os.environ

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:
        return {}

def read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except Exception:
        return default

def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None

def rnd(v, nd=3):
    return round(v, nd) if isinstance(v, float) else v

def merge_hist(subs):
    b = {}
    for s in subs:
        for lo, hi, n in s.get("hist_ns", []):
            b[(lo, hi)] = b.get((lo, hi), 0) + n
    return sorted((lo, hi, n) for (lo, hi), n in b.items())

def quantile(h, q):
    total = sum(n for _, _, n in h)
    if not total:
        return None
    want = max(1, math.ceil(q * total))
    cum = 0
    for lo, hi, n in h:
        cum += n
        if cum >= want:
            return (lo + hi) / 2 / 1e6
    return h[-1][1] / 1e6

def sharded(d):
    subs = [load(p) for p in sorted(glob.glob(f"{d}/sub.*.json"))]
    pub = load(f"{d}/pub.json")
    ssum = lambda k: sum(s.get(k) or 0 for s in subs) if subs else None
    h = merge_hist(subs)
    for s in subs:
        s.pop("hist_ns", None)
    return subs, pub, ssum, h

result = {}
for sysname in E["SYSTEMS"].split():
    base = f"{W}/{sysname}"
    notes = (read(f"{base}/notes.txt", "") or "").splitlines()
    if os.path.exists(f"{base}/skipped"):
        result[sysname] = {"available": False, "note": " ".join(notes)}
        continue
    r = {"available": True}
    # (a) fanout
    runs = []
    for p in sorted(glob.glob(f"{base}/fanout*/fanout.json")):
        d = os.path.dirname(p)
        fr = load(p)
        fr["broker_cpu_s"] = load(f"{d}/cpu.json").get("broker_cpu_s")
        fr["broker"] = load(f"{d}/broker.json")
        fr["loadavg"] = [read(f"{d}/loadavg_start"), read(f"{d}/loadavg_end")]
        runs.append(fr)
    r["deliveries_per_s"] = rnd(med([x.get("deliveries_per_s") for x in runs]), 1)
    r["publishes_acked_per_s"] = rnd(med([x.get("publishes_acked_per_s") for x in runs]), 1)
    r["fanout_delivery_ratio"] = rnd(med([x.get("delivery_ratio") for x in runs]), 4)
    r["fanout_p99_ms"] = rnd(med([x.get("p99_ms") for x in runs]), 3)
    # (b) latency
    d = f"{base}/latency"
    subs, pub, ssum, h = sharded(d)
    lat = {"subs": subs, "pub": pub, "cpu": load(f"{d}/cpu.json"), "broker": load(f"{d}/broker.json"),
           "setup_wall_s": read(f"{d}/setup_wall_s"),
           "loadavg": [read(f"{d}/loadavg_start"), read(f"{d}/loadavg_end")]}
    r["p50_ms"] = rnd(quantile(h, 0.50), 4)
    r["p99_ms"] = rnd(quantile(h, 0.99), 4)
    r["p999_ms"] = rnd(quantile(h, 0.999), 4)
    r["latency_max_ms"] = rnd(max([s.get("max_ms") or 0 for s in subs] or [0]) or None, 4)
    r["latency_samples"] = sum(n for _, _, n in h)
    r["latency_connections"] = ssum("connections")
    r["latency_updates_sent"] = pub.get("sent")
    r["latency_rate_sent"] = pub.get("rate_sent")
    # Load-generator health: how late the open-loop publisher sent (scheduled → actual). Above
    # several milliseconds the machine was too busy for the latency figures to mean much.
    r["latency_pub_send_lag_p99_ms"] = pub.get("send_lag_p99_ms")
    r["latency_loadavg"] = lat["loadavg"]
    r["latency_expected"] = ssum("expected")
    r["latency_delivered"] = ssum("delivered_distinct")
    r["latency_missing"] = ssum("missing")
    r["latency_setup_ok"] = all(s.get("setup_ok") for s in subs) if subs else False
    # (c) idle
    d = f"{base}/idle"
    before, after = read(f"{d}/rss_before_kb"), read(f"{d}/rss_after_kb")
    isubs = [load(p) for p in sorted(glob.glob(f"{d}/sub.*.json"))]
    for s in isubs:
        s.pop("hist_ns", None)
    n_idle = sum(s.get("ready_at_end") or 0 for s in isubs)
    try:
        r["rss_per_conn_bytes"] = round((int(after) - int(before)) * 1024 / int(E["IDLE_CONNS"]))
    except Exception:
        r["rss_per_conn_bytes"] = None
    r["idle_rss_before_kb"] = int(before) if before and before.isdigit() else None
    r["idle_rss_after_kb"] = int(after) if after and after.isdigit() else None
    r["idle_connections_subscribed"] = n_idle
    # (d) resume
    d = f"{base}/resume"
    rsubs, rpub, rsum, rh = sharded(d)
    r["resume_lost"] = rsum("missing")
    r["resume_reordered"] = rsum("reordered")
    r["resume_duplicates"] = rsum("duplicates")
    r["resume_dup_flagged"] = rsum("dup_flagged")
    r["resume_devices"] = rsum("connections")
    r["resume_resumed"] = rsum("resumed")
    r["resume_session_present_missing"] = rsum("session_present_missing")
    rs = [s.get("resume_s") for s in rsubs]
    r["resume_s"] = rnd(max(rs), 3) if rsubs and all(isinstance(x, (int, float)) for x in rs) else None
    kr = [s.get("kill_to_resumed_s") for s in rsubs]
    r["resume_kill_to_all_resumed_s"] = rnd(max(kr), 3) if rsubs and all(isinstance(x, (int, float)) for x in kr) else None
    bl = [s.get("backlog_delivered_s") for s in rsubs if isinstance(s.get("backlog_delivered_s"), (int, float))]
    r["resume_backlog_delivered_s"] = rnd(max(bl), 3) if bl else None
    r["resume_updates_sent"] = rpub.get("sent")
    r["resume_expected"] = rsum("expected")
    r["details"] = {"fanout_runs": runs, "latency": lat,
                    "idle": {"subs": isubs, "broker": load(f"{base}/idle/broker.json")},
                    "resume": {"subs": rsubs, "pub": rpub, "broker": load(f"{d}/broker.json")},
                    "broker_command": read(f"{base}/broker_cmd")}
    if notes:
        r["notes"] = notes
    result[sysname] = r

def ratio(a, b, key):
    try:
        return round(result[a][key] / result[b][key], 3)
    except Exception:
        return None

ratios = {
    "deliveries_per_s_persona_vs_mosquitto": ratio("persona", "mosquitto", "deliveries_per_s"),
    "deliveries_per_s_persona_vs_nats": ratio("persona", "nats", "deliveries_per_s"),
    "rss_per_conn_persona_vs_mosquitto": ratio("persona", "mosquitto", "rss_per_conn_bytes"),
    "rss_per_conn_persona_vs_nats": ratio("persona", "nats", "rss_per_conn_bytes"),
    "p99_persona_vs_mosquitto": ratio("persona", "mosquitto", "p99_ms"),
    "p99_persona_vs_nats": ratio("persona", "nats", "p99_ms"),
}

pr = result.get("persona", {})
def chk(v, op, t):
    if not isinstance(v, (int, float)):
        return None
    return v >= t if op == ">=" else v <= t
targets = [
    {"figure": "QoS 1 deliveries/s, persona / mosquitto", "value": ratios["deliveries_per_s_persona_vs_mosquitto"], "target": ">= 1.5"},
    {"figure": "QoS 1 deliveries/s, persona / nats", "value": ratios["deliveries_per_s_persona_vs_nats"], "target": ">= 1.0"},
    {"figure": "publish→deliver p50 ms (5,000 × 3 at 5,000/s)", "value": pr.get("p50_ms"), "target": "<= 1"},
    {"figure": "publish→deliver p99 ms", "value": pr.get("p99_ms"), "target": "<= 5"},
    {"figure": "RSS per idle subscribed connection, bytes", "value": pr.get("rss_per_conn_bytes"), "target": "<= 4096"},
    {"figure": "resume: lost", "value": pr.get("resume_lost"), "target": "<= 0"},
    {"figure": "resume: reordered", "value": pr.get("resume_reordered"), "target": "<= 0"},
    {"figure": "resume: all devices resumed, s", "value": pr.get("resume_kill_to_all_resumed_s"), "target": "<= 10"},
]
for t in targets:
    op, num = t["target"].split()
    t["pass"] = chk(t["value"], op, float(num))

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        return ""

cfg_keys = ["SYSTEMS", "SCENARIOS", "RUNS", "DURATION", "WARMUP", "FANOUT_PUBLISHERS", "FANOUT_SUBSCRIBERS", "FANOUT_TOPICS",
            "FANOUT", "FANOUT_WINDOW", "PAYLOAD", "LOADGEN_THREADS", "LAT_SESSIONS", "LAT_DEVICES", "LAT_RATE",
            "LAT_DURATION", "LAT_WARMUP", "LAT_DRAIN", "PUB_CONNS", "IDLE_CONNS", "IDLE_SETTLE", "RESUME_SESSIONS",
            "RESUME_DEVICES", "RESUME_RATE", "RESUME_DURATION", "RESUME_KILL_AT", "RESUME_DOWN", "RESUME_DRAIN",
            "SHARD_CONNS", "NICE"]
out = dict(result)
out.update({
    "benchmark": "realtime_mqtt",
    "date": os.environ["START_TS"],
    "wall_s": int(E["WALL"]),
    "ratios": ratios,
    "targets": targets,
    "targets_source": "/work/shared/TARGETS.md (Real-time sync (MQTT))",
    "machine": {
        "nproc": os.cpu_count(), "uname_r": platform.release(),
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"),
        "mem": sh("free -g | awk '/^Mem:/ {print $2 \" GiB\"}'"),
        "fd_limit": sh("ulimit -n"),
        "mosquitto": E.get("MOSQ_VERSION"), "nats": E.get("NATS_VERSION"),
        "persona": E.get("PERSONA_VERSION"), "git_rev": E.get("GIT_REV"),
    },
    "config": {k.lower(): E[k] for k in cfg_keys},
    "loadavg_note": "1/5/15-min load averages at each broker start/stop are in details (the machine may be shared).",
    "commands": open(f"{W}/commands.txt").read().splitlines(),
    "notes": [
        "Every scenario runs against a freshly started broker; the load generator shares the machine with it.",
        "deliveries_per_s: QoS 1 PUBLISHes received by subscribers (each PUBACKed) per second over the measured "
        "window, median of RUNS runs; fanout_delivery_ratio = deliveries / (acked publishes × fanout) in the "
        "window (< 1 means the broker dropped or queued deliveries).",
        "p50_ms/p99_ms: publish→deliver (CLOCK_MONOTONIC send time in the payload, read at the subscriber) for "
        "updates sent after warmup, merged across the subscriber processes (log-linear histogram, < 1% error); "
        "latency_missing counts updates not delivered within LAT_DRAIN s of the end.",
        "latency_pub_send_lag_p99_ms: p99 of (actual − scheduled) send time of the open-loop publisher; when it "
        "is well above a few ms the load generator itself was starved of CPU (shared or overloaded machine) and the "
        "latency figures of that system are not trustworthy; latency_loadavg gives the load averages.",
        "rss_per_conn_bytes: (broker VmRSS with IDLE_CONNS subscribed idle connections − VmRSS before) / IDLE_CONNS.",
        "resume: every device connection is reset (RST) while updates flow, reconnected with clean_session=0 after "
        "RESUME_DOWN s (no resubscribe); lost = updates never delivered within RESUME_DRAIN s, reordered = "
        "first deliveries of a seq below the highest seq already seen on that device, duplicates = redeliveries of "
        "seen seqs (allowed by QoS 1); resume_s = reconnect start → last device's CONNACK; "
        "resume_backlog_delivered_s = reconnect start → last delivery of an update published before the reconnect.",
        f"Brokers and load-generator processes all run under nice -n {E['NICE']} (same for every system).",
        "File descriptors (20,000 per process): device connections are spread over processes of at most "
        "SHARD_CONNS connections each; the broker holds at most LAT_SESSIONS × LAT_DEVICES + PUB_CONNS + a few.",
    ],
})
path = E["OUT"]
with open(path + ".tmp", "w") as f:
    json.dump(out, f, indent=2, ensure_ascii=False)
    f.write("\n")
os.replace(path + ".tmp", path)

def fmt(v, nd=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)

systems = E["SYSTEMS"].split()
rows = [
    ("QoS 1 deliveries/s (fan-out, saturation)", "deliveries_per_s", 0),
    ("fan-out delivery ratio", "fanout_delivery_ratio", 3),
    ("p50 ms, 5,000 × 3 at 5,000 updates/s", "p50_ms", 3),
    ("p99 ms", "p99_ms", 3),
    ("latency run: updates delivered / expected", "latency_delivered_of", 0),
    ("latency run: publisher send lag p99 ms (loadgen health)", "latency_pub_send_lag_p99_ms", 2),
    ("RSS per idle subscribed connection, bytes", "rss_per_conn_bytes", 0),
    ("resume: lost", "resume_lost", 0),
    ("resume: reordered", "resume_reordered", 0),
    ("resume: duplicates", "resume_duplicates", 0),
    ("resume: reconnect → all resumed, s", "resume_s", 2),
    ("resume: backlog delivered, s", "resume_backlog_delivered_s", 2),
]
print()
print(f"## Real-time sync (MQTT) — {out['date']}, {out['machine']['nproc']} cores, "
      f"{out['machine']['mosquitto'] or 'mosquitto n/a'}, {out['machine']['nats'] or 'nats n/a'}")
print()
print("| figure | " + " | ".join(systems) + " |")
print("|---|" + "---:|" * len(systems))
for label, key, nd in rows:
    cells = []
    for s in systems:
        r = result.get(s, {})
        if not r.get("available"):
            cells.append("skipped")
        elif key == "latency_delivered_of":
            cells.append(f"{fmt(r.get('latency_delivered'))} / {fmt(r.get('latency_expected'))}")
        elif key in ("p50_ms", "p99_ms") and r.get("latency_expected") and not r.get("latency_samples"):
            cells.append("none delivered")
        else:
            cells.append(fmt(r.get(key), nd))
    print(f"| {label} | " + " | ".join(cells) + " |")
print()
print("| ratio | value | target |")
print("|---|---:|---:|")
print(f"| deliveries/s persona / mosquitto | {fmt(ratios['deliveries_per_s_persona_vs_mosquitto'], 2)} | ≥ 1.5 |")
print(f"| deliveries/s persona / nats | {fmt(ratios['deliveries_per_s_persona_vs_nats'], 2)} | ≥ 1.0 |")
print(f"| RSS/conn persona / mosquitto | {fmt(ratios['rss_per_conn_persona_vs_mosquitto'], 2)} | (≤ 4 KB absolute) |")
for s in systems:
    r = result.get(s, {})
    if not r.get("available"):
        print(f"\n{s}: {r.get('note')}")
    else:
        for n in r.get("notes", []):
            print(f"\n{s}: {n}")
lagged = [s for s in systems if isinstance(result.get(s, {}).get("latency_pub_send_lag_p99_ms"), (int, float))
          and result[s]["latency_pub_send_lag_p99_ms"] > 10]
if lagged:
    print(f"\nWARNING: the latency publisher lagged > 10 ms (p99) for {', '.join(lagged)}: the machine was "
          f"overloaded (load averages {', '.join(str(result[s].get('latency_loadavg')) for s in lagged)}); "
          f"rerun on a quiet machine before trusting those p50/p99.")
print(f"\nwrote {path} (wall {out['wall_s']} s)")
EOF
