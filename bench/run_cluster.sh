#!/usr/bin/env bash
# The cluster (issue 11; TARGETS.md "Distributed mode"), one run:
#
#   (a) steps/s and p99 with 1, 2 and 3 nodes on one PostgreSQL, joined by a
#       Redis bus; closed loop, CONNECTIONS split evenly over the nodes, each
#       load generator on its own node. On 2 cores every node, PostgreSQL,
#       Redis and the load generators share the same CPUs: this shows the
#       cost of each node more than scaling.
#   (b) cross-node delivery: an open-loop load on node 1 (USERS users,
#       RATE steps/s each), an MQTT subscriber on node 2 watching
#       session/+/events; for every event it receives, the delay from the
#       event's stamp (`at`, taken before the commit) to its arrival: p50/p99
#       at the measured updates/s.
#   (c) node kill: DEVICES MQTT devices on node 1 of 3, each watching its own
#       session while writers post through all three; node 1 is killed with
#       SIGKILL and each device resumes on another node (subscribe, then
#       fetch what it missed from its last seq). The time from the kill until
#       each device has caught up (p50/p99/max), and how many events in the
#       logs some device never saw (bench/resume_devices.py).
#
# Prints a table and writes bench/results/cluster.json. Knobs (env):
# DURATION=10 WARMUP=2 CONNECTIONS=64 USERS=1000 RATE=2 DEVICES=300 PARTS=abc OUT=…
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
LOADGEN_BIN=${LOADGEN_BIN:-$ROOT/build/bench/persona_loadgen}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
USERS=${USERS:-1000}
RATE=${RATE:-2}
DEVICES=${DEVICES:-300}
PARTS=${PARTS:-abc}  # which of (a), (b), (c) to run
OUT=${OUT:-$ROOT/bench/results/cluster.json}
PG_BIN=${PERSONA_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[[ -x $PG_BIN/initdb ]] || { echo "run_cluster.sh: PostgreSQL not found (make deps)" >&2; exit 1; }
for bin in "$PERSONA_BIN" "$LOADGEN_BIN"; do
  [[ -x $bin ]] || { echo "run_cluster.sh: $bin not found; build first (make build)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/persona-clusterbench.XXXXXX")
chmod 755 "$WORK"
PIDS=()
BASE_PIDS=()
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for pid in "${PIDS[@]}" "${BASE_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [[ -d $WORK/pg/data ]] && as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '[run_cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PG_PORT=$(free_port)
mkdir -p "$WORK/pg"
[[ $(id -u) == 0 ]] && chown postgres "$WORK/pg"
as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w -o \
  "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
  --daemonize no >"$WORK/redis.log" 2>&1 &
BASE_PIDS+=($!)
new_db() {  # new_db NAME: a fresh database for one configuration
  "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE $1" postgres
  echo "postgresql://postgres@127.0.0.1:$PG_PORT/$1"
}

HTTP=() MQTT=()
start_nodes() {  # start_nodes N URL
  HTTP=() MQTT=()
  for i in $(seq 1 "$1"); do
    local d="$WORK/n$1-$i" hp mp
    hp=$(free_port)
    mp=$(free_port)
    mkdir -p "$d"
    "$PERSONA_BIN" serve --http-listen "127.0.0.1:$hp" --mqtt-listen "127.0.0.1:$mp" \
      --data-dir "$d/data" --schemas-dir "$ROOT/schemas" \
      --set store.backend=postgres --set "store.url=$2" \
      --set bus.backend=redis --set "bus.url=redis://127.0.0.1:$REDIS_PORT" \
      --set limits.connections_per_address.rate=0 >"$d/persona.log" 2>&1 &
    PIDS+=($!)
    HTTP+=("$hp")
    MQTT+=("$mp")
  done
  for hp in "${HTTP[@]}"; do
    for _ in $(seq 200); do curl -fs "http://127.0.0.1:$hp/readyz" >/dev/null && break; sleep 0.05; done
  done
}
stop_nodes() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
loadgen() { local out=$1; shift; "$LOADGEN_BIN" "$@" >"$out" 2>"$out.err" || true; [[ -s $out ]] || echo '{}' >"$out"; }

START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
for n in 1 2 3; do
  [[ $PARTS == *a* ]] || break
  log "(a) $n node(s), $CONNECTIONS connections"
  start_nodes "$n" "$(new_db "n$n")"
  per=$((CONNECTIONS / n))
  LG=()
  for i in $(seq 1 "$n"); do
    loadgen "$WORK/a$n-$i.json" closed --url "http://127.0.0.1:${HTTP[$((i - 1))]}" \
      --connections "$per" --duration "$DURATION" --warmup "$WARMUP" &
    LG+=($!)
  done
  wait "${LG[@]}" || true
  stop_nodes
done

if [[ $PARTS == *b* ]]; then
log "(b) cross-node delivery: $USERS users × $RATE steps/s on node 1, subscriber on node 2"
start_nodes 2 "$(new_db xnode)"
python3 - "${MQTT[1]}" "$((DURATION + WARMUP + 8))" "$WORK/b-sub.json" <<'EOF' &
# A raw MQTT 3.1.1 subscriber (QoS 0): for each event, arrival − its `at`.
import json, socket, struct, sys, time
from datetime import datetime
port, seconds, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
for _ in range(100):  # the node may still be opening its listener
    try:
        s = socket.create_connection(("127.0.0.1", port))
        break
    except OSError:
        time.sleep(0.1)
def pkt(first, body): 
    n, v = len(body), b""
    while True:
        b = n % 128; n //= 128; v += bytes([b | (0x80 if n else 0)])
        if not n: break
    return bytes([first]) + v + body
st = lambda t: struct.pack("!H", len(t)) + t
s.sendall(pkt(0x10, st(b"MQTT") + bytes([4, 2]) + struct.pack("!H", 120) + st(b"bench-cross")))
s.sendall(pkt(0x82, struct.pack("!H", 1) + st(b"session/+/events") + b"\x00"))
buf, lat, t_end, first = b"", [], time.time() + seconds, None
s.settimeout(1)
while time.time() < t_end:
    try:
        chunk = s.recv(1 << 16)
    except socket.timeout:
        continue
    if not chunk: break
    buf += chunk
    now = time.time()
    while len(buf) >= 2:
        n, mult, i, whole = 0, 1, 1, False
        while i < len(buf) and i <= 4:
            b = buf[i]; n += (b & 127) * mult; mult *= 128; i += 1
            if not b & 128:
                whole = True
                break
        if not whole or len(buf) < i + n: break
        kind, body, buf = buf[0] >> 4, buf[i:i + n], buf[i + n:]
        if kind != 3: continue
        tl = struct.unpack("!H", body[:2])[0]
        ev = json.loads(body[2 + tl:])
        at = datetime.fromisoformat(ev["at"].replace("Z", "+00:00")).timestamp()
        lat.append((now, (now - at) * 1000.0))
json.dump(lat, open(out, "w"))
EOF
SUB=$!
log "subscriber on node 2 (mqtt ${MQTT[1]}), nodes ${HTTP[*]} / ${MQTT[*]}"
sleep 1
loadgen "$WORK/b-load.json" open --url "http://127.0.0.1:${HTTP[0]}" --users "$USERS" \
  --rate-per-user "$RATE" --duration "$DURATION" --warmup "$WARMUP"
wait "$SUB" || true
stop_nodes
fi

if [[ $PARTS == *c* ]]; then
  log "(c) node kill: $DEVICES devices on node 1 of 3, node 1 killed with SIGKILL"
  start_nodes 3 "$(new_db nodekill)"
  python3 "$ROOT/bench/resume_devices.py" --http "$(IFS=,; echo "${HTTP[*]}")" \
    --mqtt "$(IFS=,; echo "${MQTT[*]}")" --pid "${PIDS[0]}" --devices "$DEVICES" \
    --out "$WORK/c-kill.json" || echo '{}' >"$WORK/c-kill.json"
  stop_nodes
fi

GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git --no-optional-locks -C "$ROOT" status --porcelain 2>/dev/null | head -1 | wc -l || true)
export WORK OUT START_TS GIT_REV GIT_DIRTY CONNECTIONS DURATION WARMUP USERS RATE DEVICES
python3 - <<'EOF'
import json, os
W = os.environ["WORK"]
def load(n):
    try:
        return json.load(open(f"{W}/{n}.json"))
    except (OSError, ValueError):
        return {}
nodes = {}
for n in (1, 2, 3):
    parts = [load(f"a{n}-{i}") for i in range(1, n + 1)]
    nodes[str(n)] = {"steps_per_s": round(sum(p.get("rps") or 0 for p in parts), 1),
                     "p99_ms_worst": max((p.get("p99_ms") or 0) for p in parts),
                     "errors": sum(p.get("errors") or 0 for p in parts)}
samples = load("b-sub") or []
load_b = load("b-load")
# The measured window: the load generator's, after its warmup (from the first
# delivery plus warmup to the end of the steady part).
if samples:
    t0 = samples[0][0] + float(os.environ["WARMUP"])
    win = [l for t, l in samples if t0 <= t <= t0 + float(os.environ["DURATION"])]
else:
    win = []
win.sort()
pct = lambda q: round(win[min(len(win) - 1, int(q * len(win)))], 2) if win else None
rate = round(len(win) / float(os.environ["DURATION"]), 1) if win else 0
r = {
    "benchmark": "cluster", "started_at": os.environ["START_TS"],
    "persona": {"git_rev": os.environ["GIT_REV"], "git_dirty": os.environ["GIT_DIRTY"] == "1"},
    "config": {"connections": int(os.environ["CONNECTIONS"]), "duration_s": float(os.environ["DURATION"]),
               "devices": int(os.environ["DEVICES"]),
               "users": int(os.environ["USERS"]), "rate_per_user": float(os.environ["RATE"])},
    "steps_by_nodes": nodes,
    "scaling_2_over_1": round(nodes["2"]["steps_per_s"] / nodes["1"]["steps_per_s"], 2) if nodes["1"]["steps_per_s"] else None,
    "scaling_3_over_1": round(nodes["3"]["steps_per_s"] / nodes["1"]["steps_per_s"], 2) if nodes["1"]["steps_per_s"] else None,
    "cross_node": {"updates_per_s": rate, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                   "max_ms": round(win[-1], 2) if win else None, "steps_per_s": load_b.get("rps"),
                   "step_p99_ms": load_b.get("p99_ms")},
    "node_kill": load("c-kill"),
}
os.makedirs(os.path.dirname(os.environ["OUT"]), exist_ok=True)
json.dump(r, open(os.environ["OUT"], "w"), indent=2)
print(f"{'nodes':>6} {'steps/s':>10} {'worst p99 ms':>13} {'errors':>7}")
for n, v in nodes.items():
    print(f"{n:>6} {v['steps_per_s']:>10} {v['p99_ms_worst']:>13} {v['errors']:>7}")
c = r["cross_node"]
print(f"cross-node delivery at {c['updates_per_s']} updates/s: p50 {c['p50_ms']} ms, p99 {c['p99_ms']} ms (goal ≤ 50 ms at 5,000/s)")
k = r["node_kill"]
if k:
    print(f"node kill: {k['resumed']} of {k['devices']} devices resumed, p50 {k['resume_ms']['p50']} ms, "
          f"p99 {k['resume_ms']['p99']} ms, max {k['resume_ms']['max']} ms (goal: all within 10 s); "
          f"{k['lost']} of {k['events_in_logs']} events lost (goal 0)")
print(f"wrote {os.environ['OUT']}")
EOF
