#!/usr/bin/env bash
# Installs every Debian package persona needs to build, test and benchmark.
# Idempotent: when everything is present it only runs dpkg queries (< 1 s).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  librocksdb-dev libjemalloc-dev libhiredis-dev libabsl-dev libspdlog-dev libfmt-dev libcli11-dev libyaml-cpp-dev
  libssl-dev openssl libgtest-dev libgmock-dev libbenchmark-dev
  libpq-dev postgresql haproxy faketime libgeonames-dev libfasttext-dev fasttext libhnswlib-dev prometheus
  curl python3 python3-yaml wrk redis-server redis-tools mosquitto mosquitto-clients nats-server libpaho-mqttpp-dev libpaho-mqtt-dev
)
if [[ "${PERSONA_BROWSER_TESTS:-1}" == 1 ]]; then
  PACKAGES+=(chromium nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  # dpkg-query prints "install ok installed" only for fully installed packages.
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

# nodejs/npm may come from outside Debian (e.g. NodeSource); a working node+npm is enough.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for p in "${missing[@]}"; do [[ "$p" == nodejs || "$p" == npm ]] || filtered+=("$p"); done
  missing=("${filtered[@]}")
fi

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
