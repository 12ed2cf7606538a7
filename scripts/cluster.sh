#!/usr/bin/env bash
# make cluster: a local persona cluster on this machine (SPEC §11).
#
#   PostgreSQL (the shared store)  ─┐
#   Redis (the bus between nodes)  ─┼─ three `persona serve` nodes
#   HAProxy :8080 (HTTP, SSE, WebSocket /mqtt) and :1883 (MQTT over TCP)
#
# Runs in the foreground; Ctrl-C (or SIGTERM) stops every process and
# removes the cluster's directory (CLUSTER_KEEP=1 keeps it).
#
# HAProxy sends each session's requests (/v1/sessions/{id}/…) to one node by
# a consistent hash of the path, so a session's writes usually meet no other
# node's; any node serves any session when its node is down (or when a client
# goes elsewhere: the nodes reload and retry on a version conflict). Other
# requests, WebSocket and MQTT connections go to the node with the fewest.
#
# Environment: PERSONA_BIN, CLUSTER_HTTP_PORT (8080), CLUSTER_MQTT_PORT
# (1883), CLUSTER_NODES (3), CLUSTER_DIR (a new temp dir), CLUSTER_LISTEN
# (127.0.0.1), PERSONA_CLUSTER_ARGS (extra `persona serve` arguments).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${PERSONA_BIN:-$ROOT/build/src/persona}"
HTTP_PORT="${CLUSTER_HTTP_PORT:-8080}"
MQTT_PORT="${CLUSTER_MQTT_PORT:-1883}"
NODES="${CLUSTER_NODES:-3}"
LISTEN="${CLUSTER_LISTEN:-127.0.0.1}"
DIR="${CLUSTER_DIR:-$(mktemp -d /tmp/persona-cluster-XXXXXX)}"
mkdir -p "$DIR"

for tool in haproxy redis-server "$BIN"; do
  command -v "$tool" >/dev/null || { echo "cluster: $tool not found (make deps)" >&2; exit 2; }
done
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
[[ -x "$PG_BIN/initdb" ]] || { echo "cluster: PostgreSQL server not found (make deps)" >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_postgres() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PIDS=()
stop() {
  trap - EXIT INT TERM
  echo "cluster: stopping"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg/data" stop -m fast >/dev/null 2>&1 || true
  [[ "${CLUSTER_KEEP:-0}" == 1 ]] || rm -rf "$DIR"
  echo "cluster: stopped"
}
trap stop EXIT
trap 'echo "cluster: failed at line $LINENO (logs kept in $DIR)" >&2; CLUSTER_KEEP=1' ERR
trap 'stop; exit 0' INT TERM

# PostgreSQL: a fresh server in $DIR/pg on a free port.
PG_PORT="$(free_port)"
mkdir -p "$DIR/pg"
if [[ $(id -u) -eq 0 ]]; then
  chmod 755 "$DIR"  # mktemp makes it 0700: the postgres user must reach pg/
  chown postgres: "$DIR/pg"
fi
as_postgres "$PG_BIN/initdb" -D "$DIR/pg/data" -U postgres -A trust -E UTF8 --no-locale -N \
  >"$DIR/pg/initdb.log" 2>&1
as_postgres "$PG_BIN/pg_ctl" -D "$DIR/pg/data" -l "$DIR/pg/server.log" -w -t 60 \
  -o "-p $PG_PORT -k $DIR/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
"$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE persona" postgres
STORE_URL="postgresql://postgres@127.0.0.1:$PG_PORT/persona"

# Redis: the bus.
REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" \
  --daemonize no >"$DIR/redis.log" 2>&1 &
PIDS+=($!)

# The nodes. Behind HAProxy every client shares one address: per-address
# connection limits are off (per-user limits still apply with auth on).
HTTP_SERVERS="" WS_SERVERS="" MQTT_SERVERS=""
for i in $(seq 1 "$NODES"); do
  hp="$(free_port)"
  mp="$(free_port)"
  mkdir -p "$DIR/node$i"
  # shellcheck disable=SC2086
  "$BIN" serve --http-listen "127.0.0.1:$hp" --mqtt-listen "127.0.0.1:$mp" \
    --data-dir "$DIR/node$i" --schemas-dir "$ROOT/schemas" \
    --set store.backend=postgres --set "store.url=$STORE_URL" \
    --set bus.backend=redis --set "bus.url=redis://127.0.0.1:$REDIS_PORT" \
    --set limits.connections_per_address.rate=0 ${PERSONA_CLUSTER_ARGS:-} \
    >"$DIR/node$i/persona.log" 2>&1 &
  PIDS+=($!)
  HTTP_SERVERS+="  server node$i 127.0.0.1:$hp check inter 500ms fall 2 rise 2"$'\n'
  MQTT_SERVERS+="  server node$i 127.0.0.1:$mp check inter 500ms fall 2 rise 2"$'\n'
done

cat >"$DIR/haproxy.cfg" <<EOF
global
  maxconn 4000

defaults
  mode http
  timeout connect 2s
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
  option http-server-close

frontend http
  bind $LISTEN:$HTTP_PORT
  use_backend by_session if { path_beg /v1/sessions/ }
  default_backend any_node

# A session's requests to one node: consistent hash of /v1/sessions/{id}.
backend by_session
  balance uri depth 3
  hash-type consistent
  option httpchk GET /readyz
  http-check expect status 200
$HTTP_SERVERS
backend any_node
  balance leastconn
  option httpchk GET /readyz
  http-check expect status 200
$HTTP_SERVERS
frontend mqtt
  mode tcp
  bind $LISTEN:$MQTT_PORT
  default_backend mqtt_nodes

backend mqtt_nodes
  mode tcp
  balance leastconn
$MQTT_SERVERS
EOF
haproxy -f "$DIR/haproxy.cfg" -db >"$DIR/haproxy.log" 2>&1 &
PIDS+=($!)

# Ready when every node answers /readyz through HAProxy's checks.
for _ in $(seq 1 150); do
  if curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null 2>&1; then break; fi
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$HTTP_PORT/readyz" >/dev/null || {
  echo "cluster: not ready; logs in $DIR" >&2
  CLUSTER_KEEP=1
  exit 1
}
echo "cluster ready: http://$LISTEN:$HTTP_PORT (web UI, API, /mqtt) and mqtt://$LISTEN:$MQTT_PORT;" \
  "$NODES nodes, PostgreSQL :$PG_PORT, Redis :$REDIS_PORT; logs in $DIR; Ctrl-C stops"
# Until a signal, or until a process dies.
wait -n "${PIDS[@]}" || true
echo "cluster: a process exited; see $DIR" >&2
CLUSTER_KEEP=1
exit 1
