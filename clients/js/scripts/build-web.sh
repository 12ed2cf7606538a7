#!/usr/bin/env bash
# Copies the client (a plain ES module, no build step) to web/assets/persona-client.js,
# which the server embeds and serves at /assets/persona-client.js. Rebuild persona after.
# --check: exit 1 if the copy is stale instead of writing it.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$here/src/index.js"
dst="$here/../../web/assets/persona-client.js"
if [[ "${1:-}" == "--check" ]]; then
  cmp -s "$src" "$dst" || { echo "web/assets/persona-client.js is stale: run clients/js/scripts/build-web.sh" >&2; exit 1; }
  exit 0
fi
cp "$src" "$dst"
echo "wrote $(cd "$(dirname "$dst")" && pwd)/persona-client.js"
