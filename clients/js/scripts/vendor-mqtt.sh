#!/usr/bin/env bash
# Updates web/assets/mqtt.min.js, MQTT.js's browser bundle (UMD, global `mqtt`, MIT).
#
#   clients/js/scripts/vendor-mqtt.sh            # the version pinned in clients/js/package.json
#   clients/js/scripts/vendor-mqtt.sh 5.17.0     # another one: updates package.json and package-lock.json too
#
# Then update the version in web/assets/README, run clients/js/run-tests.sh and rebuild persona
# (the file is compiled into the binary).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
if [[ $# -ge 1 ]]; then
  npm install --no-audit --no-fund --save-exact "mqtt@$1"
else
  npm ci --no-audit --no-fund
fi
version="$(node -p 'require("./node_modules/mqtt/package.json").version')"
cp node_modules/mqtt/dist/mqtt.min.js ../../web/assets/mqtt.min.js
size="$(wc -c < ../../web/assets/mqtt.min.js)"
echo "web/assets/mqtt.min.js: MQTT.js $version ($size bytes)"
if ! grep -q "MQTT.js $version" ../../web/assets/README 2>/dev/null; then
  echo "note: web/assets/README does not name MQTT.js $version yet; update it" >&2
fi
