#!/usr/bin/env bash
# Tests of @persona/client against a real persona server.
#
#   clients/js/run-tests.sh [path/to/persona] [node --test args...]
#
# Installs the node deps (npm ci) when missing; each test starts persona on free
# ports (HTTP + MQTT) with a throwaway data dir. Default binary: build/src/persona,
# or $PERSONA_BIN.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -ge 1 && "$1" != -* ]]; then
  bin="$1"; shift
  if [[ "$bin" != */* ]]; then bin="$(command -v "$bin")"; fi
  PERSONA_BIN="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
  export PERSONA_BIN
fi
want="$(sed -nE 's/^ *"mqtt": *"([^"]+)".*/\1/p' "$here/package.json" | head -n1)"
have="$(sed -nE 's/^ *"version": *"([^"]+)".*/\1/p' "$here/node_modules/mqtt/package.json" 2>/dev/null | head -n1 || true)"
if [[ "$have" != "$want" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi
cd "$here"
exec node --test --test-concurrency=1 "$@" test/client.test.mjs
