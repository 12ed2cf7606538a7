#!/usr/bin/env bash
# Updates web/assets/qrcode.js from the npm package qrcode-generator (MIT),
# the QR code of the web UI's "continue on another device" link.
#
#   clients/js/scripts/vendor-qrcode.sh           # 2.0.4, the version named in web/assets/README
#   clients/js/scripts/vendor-qrcode.sh 2.0.5     # another one (update web/assets/README too)
#
# Then rebuild persona (the file is compiled into the binary).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${1:-2.0.4}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "qrcode-generator@$version" >/dev/null && tar xzf "qrcode-generator-$version.tgz")
cp "$tmp/package/dist/qrcode.js" "$here/../../web/assets/qrcode.js"
echo "web/assets/qrcode.js: qrcode-generator $version ($(wc -c < "$here/../../web/assets/qrcode.js") bytes)"
