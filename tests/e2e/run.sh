#!/usr/bin/env bash
# Browser end-to-end test of the web UI against a real persona server.
#
#   tests/e2e/run.sh path/to/persona [extra node --test args]
#
# Starts `persona serve` on a free port with a throwaway data dir, runs
# chat.test.mjs in headless Chromium (/usr/bin/chromium, or $CHROMIUM), stops
# the server and exits with the test's status. Set E2E_SCREENSHOT=/path.png
# (and E2E_SCREENSHOT_MOBILE=/path.png) to keep screenshots; set
# PERSONA_URL to test an already running server instead (then $1 is unused);
# E2E_WEB_FROM_DISK=1 to serve / and /assets/* from web/ instead of the binary's
# embedded copies. The @persona/client tests are clients/js/run-tests.sh.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  if [[ -f "$here/package-lock.json" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund)
  else
    (cd "$here" && npm install --no-audit --no-fund)
  fi
fi

server_pid=""
tmp=""
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [[ -n "$tmp" ]]; then rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z "${PERSONA_URL:-}" ]]; then
  if [[ $# -lt 1 ]]; then
    echo "usage: $0 path/to/persona [node --test args...]" >&2
    exit 2
  fi
  bin="$1"; shift
  if [[ "$bin" != */* ]]; then bin="$(command -v "$bin")"; fi
  bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
  export PERSONA_BIN="$bin"   # auth.test.mjs starts its own server (auth on)
  tmp="$(mktemp -d -t persona-e2e.XXXXXX)"
  log="$tmp/server.log"
  # From the repo root so ./schemas is found; MQTT (TCP) on a free port too so
  # a running dev server does not clash; the page's MQTT goes over the HTTP
  # port's WebSocket at /mqtt. PERSONA_E2E_SERVER_ARGS adds flags (word-split).
  # A flags file whose one flag changes nothing (both variants are the default
  # write mode) so the dashboard has flag variants to chart.
  cat >"$tmp/flags.json" <<'JSON'
{"flags": {"persona.write_mode": {"state": "ENABLED", "variants": {"sync-a": "sync", "sync-b": "sync"},
  "defaultVariant": "sync-a", "targeting": {"fractional": [["sync-a", 50], ["sync-b", 50]]}}}}
JSON
  # shellcheck disable=SC2086
  (cd "$here/../.." && exec "$bin" serve --http-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 \
    --data-dir "$tmp/data" --set "flags.file=$tmp/flags.json" ${PERSONA_E2E_SERVER_ARGS:-}) \
    >"$log" 2>"$tmp/server.err" &
  server_pid=$!

  port=""
  for _ in $(seq 1 300); do   # up to 30 s
    # {"ts":...,"level":"info","msg":"listening","http":"127.0.0.1:PORT",...}
    port="$(grep -E '"msg" *: *"listening"' "$log" 2>/dev/null \
      | sed -nE 's/.*"http" *: *"[^"]*:([0-9]+)".*/\1/p' | head -n1 || true)"
    [[ -n "$port" ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "persona exited before listening:" >&2
      cat "$log" "$tmp/server.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [[ -z "$port" ]]; then
    echo "persona did not log a listening address within 30 s:" >&2
    cat "$log" "$tmp/server.err" >&2
    exit 1
  fi
  export PERSONA_URL="http://127.0.0.1:$port"
fi

echo "e2e: testing $PERSONA_URL" >&2
status=0
(cd "$here" && node --test --test-concurrency=1 "$@" chat.test.mjs auth.test.mjs dashboard.test.mjs) || status=$?
if [[ $status -ne 0 && -n "$tmp" ]]; then
  echo "--- server log (last 50 lines) ---" >&2
  tail -n 50 "$log" "$tmp/server.err" >&2 || true
fi
exit $status
