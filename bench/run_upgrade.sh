#!/usr/bin/env bash
# A zero-downtime upgrade under load (issue 13's goals: 0 refused, 0 failed,
# 0 lost, longest stall ≤ 200 ms), on RocksDB and on PostgreSQL (a server
# the script starts, as the tests do). WRITERS HTTP writers (each its own
# session, keep-alive, an Idempotency-Key per step) and one MQTT device
# with a persistent session, watching WATCHED (2) of the sessions, run for BEFORE seconds against one persona; a
# second `persona serve` on the same data directory then takes over, and the
# load runs AFTER seconds more against it. The longest stall is the longest
# time in which no writer got an answer, from the start of the upgrade to a
# second after it. Prints a table; writes bench/results/upgrade.json.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
[[ -x $PERSONA_BIN ]] || { echo "run_upgrade.sh: $PERSONA_BIN not found; build first (make build)" >&2; exit 1; }
export GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
export GIT_DIRTY=$(git --no-optional-locks -C "$ROOT" status --porcelain 2>/dev/null | head -1 | wc -l || true)
export WRITERS=${WRITERS:-16} BEFORE=${BEFORE:-3} AFTER=${AFTER:-3} ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$ROOT/bench/results/upgrade.json}
results=()
for store in rocksdb postgres; do
  PERSONA_TEST_STORE=$store python3 "$ROOT/bench/upgrade_bench.py" >"$OUT.$store"
  results+=("$OUT.$store")
done
python3 - "$OUT" "${results[@]}" <<'PY'
import datetime, json, os, sys
out, parts = sys.argv[1], sys.argv[2:]
runs = [json.load(open(p)) for p in parts]
for p in parts: os.remove(p)
doc = {"benchmark": "upgrade", "at": datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
       "persona": {"git_rev": os.environ["GIT_REV"], "git_dirty": os.environ["GIT_DIRTY"] == "1"},
       "writers": int(os.environ["WRITERS"]), "stores": runs}
json.dump(doc, open(out, "w"), indent=1)
print("| store | round | steps | failed | refused | retried | MQTT events lost / watched | longest stall | slowest step | old drain | old exit |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in runs:
    for i, u in enumerate(r["rounds"], 1):
        print("| %s | %d | %d | %d | %d | %d | %d / %d | %.0f ms | %.0f ms | %s ms | %d |" % (
            r["store"], i, u["steps"], u["failed"], u["refused"], u["retried"], u["mqtt_lost"],
            u["mqtt_events"],
            u["longest_stall_ms"], u["slowest_step_ms"], u["drain_ms"], u["old_exit"]))
PY
