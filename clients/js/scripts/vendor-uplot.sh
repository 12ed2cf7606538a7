#!/usr/bin/env bash
# Updates web/assets/uPlot.iife.min.js and uPlot.min.css from the npm package
# uplot (MIT), the charting library of /dashboard.
#
#   clients/js/scripts/vendor-uplot.sh           # 1.6.32, the version named in web/assets/README
#   clients/js/scripts/vendor-uplot.sh 1.6.33    # another one (update web/assets/README too)
#
# Then rebuild persona (the files are compiled into the binary).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${1:-1.6.32}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@$version" >/dev/null && tar xzf "uplot-$version.tgz")
for f in uPlot.iife.min.js uPlot.min.css; do
  cp "$tmp/package/dist/$f" "$here/../../web/assets/$f"
  echo "web/assets/$f: uplot $version ($(wc -c < "$here/../../web/assets/$f") bytes)"
done
