#!/usr/bin/env bash
# The AI optimizer (issue 12). Prints the tables; writes bench/results/ai.json.
#   - the intent gate on CLINC150's test and oos_test splits (never trained
#     or tuned on) at its calibrated threshold, the curve around it, and its
#     time per message (`persona gate eval`);
#   - the semantic response cache: hits and wrong hits on CLINC150 pairs,
#     repeated-intent traffic and contrast pairs, on val (where its settings
#     were chosen) and on test (bench/cache_eval.cc);
#   - paid tokens per 1,000 turns of a replayed mixed corpus with the
#     optimizer off and on, and persona's own time on the steps a model
#     answered (bench/replay_ai.py).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PERSONA_BIN=${PERSONA_BIN:-$ROOT/build/src/persona}
CACHE_EVAL=${CACHE_EVAL:-$ROOT/build/bench/persona_cache_eval}
MODEL=${MODEL:-$(dirname "$PERSONA_BIN")/gate/intent.bin}
DATA=$ROOT/data/clinc150/data_oos_plus.json
OUT=${OUT:-$ROOT/bench/results/ai.json}
for b in "$PERSONA_BIN" "$CACHE_EVAL"; do
  [[ -x $b ]] || { echo "run_ai.sh: $b not found; build first (make build)" >&2; exit 1; }
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PERSONA_BIN" gate eval --data "$DATA" | tee "$TMP/gate" | head -n -1
echo
for split in val test; do
  "$CACHE_EVAL" --model "$MODEL" --data "$DATA" --contrast "$ROOT/eval/cache/contrast.tsv" \
    --split $split | tee "$TMP/cache_$split" | head -n -1
  echo
done
python3 "$ROOT/bench/replay_ai.py" "$PERSONA_BIN" "$DATA" >"$TMP/replay"
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$(git --no-optional-locks -C "$ROOT" status --porcelain 2>/dev/null | head -1 | wc -l || true)
export TMP OUT GIT_REV GIT_DIRTY
python3 - <<'PY'
import json, os, time
tmp = os.environ["TMP"]
last = lambda name: json.loads(open(os.path.join(tmp, name)).read().strip().splitlines()[-1])
gate, replay = last("gate"), json.load(open(os.path.join(tmp, "replay")))
cache = {s: last("cache_" + s) for s in ("val", "test")}
chosen = 0.8  # ai.cache.semantic_threshold's default, chosen on val (README)
at = lambda s: next(r for r in cache[s]["curve"] if abs(r["threshold"] - chosen) < 1e-9)
r = {"benchmark": "ai", "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
     "persona": {"git_rev": os.environ["GIT_REV"], "git_dirty": os.environ["GIT_DIRTY"] == "1"},
     "gate": {"data": "CLINC150 test + oos_test (data_oos_plus.json)",
              **{k: v for k, v in gate.items() if k != "data"}},
     "semantic_cache": {"threshold": chosen, "val": cache["val"], "test": cache["test"],
                        "test_at_threshold": at("test")},
     "replay": replay}
os.makedirs(os.path.dirname(os.environ["OUT"]), exist_ok=True)
json.dump(r, open(os.environ["OUT"], "w"), indent=2)
t = gate["at_threshold"]
print("gate at %.2f: precision %.2f%% (goal 99), coverage %.2f%% (goal 60), out-of-scope accepted "
      "%.2f%% (goal 2); p99 %.1f µs (goal 200)" % (t["threshold"], 100 * t["precision"],
      100 * t["coverage"], 100 * t["oos_accepted"], gate["p99_us"]))
c = at("test")
print("semantic cache at %.2f on test: pairs %.2f%% hits, %.2f%% wrong (goal 1); repeated-intent "
      "traffic %.2f%% hits (goal 30), %.2f%% wrong, %d cross-user (goal 0); contrast pairs %d of %d "
      "answered" % (chosen, 100 * c["pairs_hit_rate"], 100 * c["pairs_wrong_rate"],
      100 * c["traffic_hit_rate"], 100 * c["traffic_wrong_rate"], c["traffic_cross_user_hits"],
      c["contrast_hits"], c["contrast_pairs"]))
off, on = replay["off"], replay["on"]
print("replay, %s:" % replay["corpus"])
print("  %-10s %12s %14s %14s %12s %10s %16s" % ("optimizer", "model calls", "paid tok/1k",
      "primary tok/1k", "USD/1k", "avoided", "own p50/p99 ms"))
for name, x in (("off", off), ("on", on)):
    print("  %-10s %12d %14d %14d %12.4f %10d %9s / %s" % (name, x["model_calls"],
          x["paid_tokens_per_1000_turns"], x["primary_tokens_per_1000_turns"],
          x["cost_usd_per_1000_turns"], sum(x["calls_avoided"].values()),
          x["own_time"]["p50_ms_at_most"], x["own_time"]["p99_ms_at_most"]))
print("  paid tokens %.1f%% fewer (goal 50), cost %.1f%% lower" % (100 * replay["paid_tokens_saved"],
      100 * replay["cost_saved"]))
print("wrote " + os.environ["OUT"])
PY
