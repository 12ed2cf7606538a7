#!/usr/bin/env bash
# The AI optimizer (issue 12), what is built of it so far: the intent gate on
# CLINC150's test and oos_test splits (never trained or tuned on) at its
# calibrated threshold, the curve around it, and its time per message
# (`persona gate eval`). Prints the table; writes bench/results/ai.json.
# The response cache and the cost router are not built yet.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
OUT=${OUT:-$ROOT/bench/results/ai.json}
[[ -x $PERSONA_BIN ]] || { echo "run_ai.sh: $PERSONA_BIN not found; build first (make build)" >&2; exit 1; }
TMP=$(mktemp)
trap 'rm -f "$TMP"' EXIT
"$PERSONA_BIN" gate eval --data "$ROOT/data/clinc150/data_oos_plus.json" | tee "$TMP" | head -n -1
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git --no-optional-locks -C "$ROOT" status --porcelain 2>/dev/null | head -1 | wc -l || true)
export TMP OUT GIT_REV GIT_DIRTY
python3 - <<'PY'
import json, os, time
gate = json.loads(open(os.environ["TMP"]).read().strip().splitlines()[-1])
r = {"benchmark": "ai", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
     "persona": {"git_rev": os.environ["GIT_REV"], "git_dirty": os.environ["GIT_DIRTY"] == "1"},
     "gate": {"data": "CLINC150 test + oos_test (data_oos_plus.json)", **{k: v for k, v in gate.items() if k != "data"}},
     "not_built": ["response cache", "cost router"]}
os.makedirs(os.path.dirname(os.environ["OUT"]), exist_ok=True)
json.dump(r, open(os.environ["OUT"], "w"), indent=2)
t = gate["at_threshold"]
print("gate at %.2f: precision %.2f%% (goal 99), coverage %.2f%% (goal 60), out-of-scope accepted "
      "%.2f%% (goal 2); p99 %.1f µs (goal 200)" % (t["threshold"], 100 * t["precision"],
      100 * t["coverage"], 100 * t["oos_accepted"], gate["p99_us"]))
print("wrote " + os.environ["OUT"])
PY
