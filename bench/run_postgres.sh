#!/usr/bin/env bash
# The PostgreSQL store (issue 10; TARGETS.md "Distributed mode"), one run:
#
#   (a) persona on RocksDB: closed loop, 64 connections, durable steps/s, p99
#   (b) persona on PostgreSQL (a server started here, fsync and
#       synchronous_commit on): the same load; rows per commit
#   (c) pgbench with a custom script that writes what one step writes, one
#       transaction per step (lock the session row, insert 3 event rows of
#       the same size, upsert the session row), 64 connections: the ratio
#       (b) / (c) is the figure (target ≥ 0.8)
#   (d) two persona processes on the one database, 32 connections each:
#       combined steps/s against (b)
#
# Prints a table and writes bench/results/postgres.json. The load generator,
# PostgreSQL and persona share the 2 cores. Knobs (env): DURATION=10
# WARMUP=2 CONNECTIONS=64 OUT=bench/results/postgres.json PERSONA_PG_BIN=…
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
LOADGEN_BIN=${LOADGEN_BIN:-$ROOT/build/bench/persona_loadgen}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
OUT=${OUT:-$ROOT/bench/results/postgres.json}
PG_BIN=${PERSONA_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[[ -x $PG_BIN/initdb ]] || { echo "run_postgres.sh: PostgreSQL not found (apt-get install postgresql)" >&2; exit 1; }
for bin in "$PERSONA_BIN" "$LOADGEN_BIN"; do
  [[ -x $bin ]] || { echo "run_postgres.sh: $bin not found; build first (make build)" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/persona-pgbench.XXXXXX")
chmod 755 "$WORK"
PIDS=()
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [[ -d $WORK/pg/data ]] && as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '[run_postgres %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- PostgreSQL
PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/pg"
[[ $(id -u) == 0 ]] && chown postgres "$WORK/pg"
as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --no-locale >"$WORK/initdb.log" 2>&1
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w -o \
  "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on -c synchronous_commit=on" \
  start >/dev/null
psql() { "$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
psql -c "CREATE DATABASE persona" postgres
psql -c "CREATE DATABASE pgb" postgres
PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/persona"
log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"

PORT=
start_persona() {  # start_persona NAME args…
  local name=$1; shift
  mkdir -p "$WORK/$name"
  "$PERSONA_BIN" serve --http-listen 127.0.0.1:0 --mqtt-listen off --data-dir "$WORK/$name/data" \
    --schemas-dir "$ROOT/schemas" --set limits.connections_per_address.rate=0 "$@" \
    >"$WORK/$name/persona.log" 2>&1 &
  PIDS+=($!)
  PORT=
  for _ in $(seq 200); do
    PORT=$(grep -o '"http":"[^"]*:[0-9]*"' "$WORK/$name/persona.log" 2>/dev/null | grep -o '[0-9]*"$' | tr -d '"' | head -1 || true)
    [[ -n $PORT ]] && break
    sleep 0.05
  done
  [[ -n $PORT ]] || { echo "persona did not start:"; cat "$WORK/$name/persona.log"; exit 1; } >&2
}
stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
loadgen() { local out=$1; shift; "$LOADGEN_BIN" "$@" >"$out" 2>"$out.err" || true; [[ -s $out ]] || echo '{}' >"$out"; }
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))" "$1" "$2"; }

START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)

log "(a) persona on RocksDB, $CONNECTIONS connections"
start_persona rocks
loadgen "$WORK/rocks.json" closed --url "http://127.0.0.1:$PORT" --connections "$CONNECTIONS" \
  --duration "$DURATION" --warmup "$WARMUP"
stop_all
log "rocksdb: $(field "$WORK/rocks.json" rps) steps/s"

log "(b) persona on PostgreSQL, $CONNECTIONS connections"
start_persona pg --set store.backend=postgres --set "store.url=$PG_URL"
loadgen "$WORK/pg.json" closed --url "http://127.0.0.1:$PORT" --connections "$CONNECTIONS" \
  --duration "$DURATION" --warmup "$WARMUP"
stop_all
log "postgres: $(field "$WORK/pg.json" rps) steps/s, $(field "$WORK/pg.json" appends_per_fsync) appends/commit"

log "(c) pgbench: one transaction per step, the same rows"
# Sizes of what a step writes, from the persona run: ~3 events of ~350 bytes
# and a session row of ~400 bytes (measured below from the database).
read -r EV_BYTES META_BYTES <<<"$(psql -At -F ' ' -c "SELECT coalesce(avg(length(body)),350)::int, (SELECT coalesce(avg(length(meta)),400)::int FROM persona_sessions) FROM persona_events" persona)"
psql -c "CREATE TABLE persona_sessions (session_id text PRIMARY KEY, user_id text NOT NULL, version bigint NOT NULL, meta text NOT NULL);
         CREATE TABLE persona_events (session_id text NOT NULL, seq bigint NOT NULL, type text NOT NULL, body text NOT NULL, PRIMARY KEY (session_id, seq));" pgb
cat >"$WORK/step.sql" <<EOF
\set n random(1, 2000000000)
BEGIN;
SELECT version FROM persona_sessions WHERE session_id = 'c' || :client_id || '_' || :n FOR UPDATE;
INSERT INTO persona_events (session_id, seq, type, body) SELECT 'c' || :client_id || '_' || :n, s, 'message.user', repeat('x', $EV_BYTES) FROM generate_series(1, 3) s ON CONFLICT DO NOTHING;
INSERT INTO persona_sessions (session_id, user_id, version, meta) VALUES ('c' || :client_id || '_' || :n, 'u', 3, repeat('m', $META_BYTES)) ON CONFLICT (session_id) DO UPDATE SET version = excluded.version, meta = excluded.meta;
END;
EOF
"$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "$CONNECTIONS" -j 2 -T "$DURATION" \
  -f "$WORK/step.sql" pgb >"$WORK/pgbench.txt" 2>&1 || true
PGB_TPS=$(grep -o 'tps = [0-9.]*' "$WORK/pgbench.txt" | head -1 | awk '{print $3}')
log "pgbench: ${PGB_TPS:-?} tps (events ${EV_BYTES} B, session row ${META_BYTES} B)"

log "(d) two persona processes on one database"
start_persona pg1 --set store.backend=postgres --set "store.url=$PG_URL"
P1=$PORT
start_persona pg2 --set store.backend=postgres --set "store.url=$PG_URL"
P2=$PORT
half=$((CONNECTIONS / 2))
loadgen "$WORK/two1.json" closed --url "http://127.0.0.1:$P1" --connections "$half" \
  --duration "$DURATION" --warmup "$WARMUP" &
L1=$!
loadgen "$WORK/two2.json" closed --url "http://127.0.0.1:$P2" --connections "$half" \
  --duration "$DURATION" --warmup "$WARMUP" &
L2=$!
wait $L1 $L2 || true
stop_all

GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git --no-optional-locks -C "$ROOT" status --porcelain 2>/dev/null | head -1 | wc -l || true)
export WORK OUT START_TS GIT_REV GIT_DIRTY PGB_TPS EV_BYTES META_BYTES CONNECTIONS DURATION
python3 - <<'EOF'
import json, os
W = os.environ["WORK"]
load = lambda n: json.load(open(f"{W}/{n}.json"))
rocks, pg, t1, t2 = load("rocks"), load("pg"), load("two1"), load("two2")
pgb = float(os.environ.get("PGB_TPS") or 0)
two = (t1.get("rps") or 0) + (t2.get("rps") or 0)
r = {
    "benchmark": "postgres_store", "started_at": os.environ["START_TS"],
    "persona": {"git_rev": os.environ["GIT_REV"], "git_dirty": os.environ["GIT_DIRTY"] == "1"},
    "config": {"connections": int(os.environ["CONNECTIONS"]), "duration_s": float(os.environ["DURATION"]),
               "event_bytes": int(os.environ["EV_BYTES"]), "session_row_bytes": int(os.environ["META_BYTES"])},
    "rocksdb": {"steps_per_s": rocks.get("rps"), "p99_ms": rocks.get("p99_ms"), "errors": rocks.get("errors"),
                "appends_per_fsync": rocks.get("appends_per_fsync")},
    "postgres": {"steps_per_s": pg.get("rps"), "p50_ms": pg.get("p50_ms"), "p99_ms": pg.get("p99_ms"),
                 "errors": pg.get("errors"), "appends_per_commit": pg.get("appends_per_fsync")},
    "pgbench_tps": pgb,
    "postgres_vs_pgbench": round(pg.get("rps", 0) / pgb, 3) if pgb else None,
    "postgres_vs_rocksdb": round(pg.get("rps", 0) / rocks["rps"], 3) if rocks.get("rps") else None,
    "two_processes": {"steps_per_s": round(two, 1), "vs_one": round(two / pg["rps"], 3) if pg.get("rps") else None,
                      "errors": (t1.get("errors") or 0) + (t2.get("errors") or 0)},
    "pgbench_output": open(f"{W}/pgbench.txt").read().splitlines()[-12:],
}
os.makedirs(os.path.dirname(os.environ["OUT"]), exist_ok=True)
json.dump(r, open(os.environ["OUT"], "w"), indent=2)
print("\n| figure | measured | target |\n|---|---:|---|")
print(f"| RocksDB, {r['config']['connections']} connections | {r['rocksdb']['steps_per_s']} steps/s, p99 {r['rocksdb']['p99_ms']} ms | |")
print(f"| PostgreSQL, same load | {r['postgres']['steps_per_s']} steps/s, p99 {r['postgres']['p99_ms']} ms, {r['postgres']['errors']} errors, {r['postgres']['appends_per_commit']} appends/commit | |")
print(f"| pgbench, the same rows, one transaction per step | {pgb} tps | |")
print(f"| persona on PostgreSQL / pgbench | {r['postgres_vs_pgbench']} | >= 0.8 |")
print(f"| two persona processes, one database | {r['two_processes']['steps_per_s']} steps/s = {r['two_processes']['vs_one']}x one | |")
print(f"\nwrote {os.environ['OUT']}")
EOF
