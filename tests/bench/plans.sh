#!/usr/bin/env bash
# Planning against one script, measured on the shared dev questions (InfiAgent-DABench dev
# subset, read from $DABENCH, never copied here) with the offline model: the suite runs once
# per plan mode and round, and each line says how many answers matched and the seconds per
# question. Needs `make local-llm` and the sandbox image; run it on a quiet machine (the model
# slows to a crawl beside a build).
#   tests/bench/plans.sh                          quick set (12 questions), none and dag, 1 round
#   ROUNDS=2 MODES="none dag" SETS="questions more-questions" tests/bench/plans.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

dabench=${DABENCH:-../shared/dabench-dev}
rounds=${ROUNDS:-1}
sets=${SETS:-questions}
modes=${MODES:-none dag}
out=${OUT:-target/bench-plans}
planbox=${PLANBOX:-target/debug/planbox}

[ -d "$dabench" ] || { echo "no dev questions at $dabench (set DABENCH)" >&2; exit 2; }
mkdir -p "$out"
suite=$out/suite.jsonl
python3 tests/bench/dev_suite.py "$dabench" "$suite" $sets
questions=$(wc -l < "$suite")

for round in $(seq 1 "$rounds"); do
  for mode in $modes; do
    runs=$out/$mode-$round
    rm -rf "$runs"
    started=$SECONDS
    "$planbox" batch "$suite" --json --provider local --plan "$mode" --runs-dir "$runs" \
      --goals-parallel 1 --parallel 1 > "$runs.jsonl" 2> "$runs.log" || true
    python3 - "$runs.jsonl" "$runs" "$mode" "$round" "$questions" $((SECONDS - started)) <<'PY'
import glob, json, os, sys
lines, runs, mode, round_, questions, secs = sys.argv[1:7]
results = [json.loads(l) for l in open(lines) if l.strip()]
right = sum(1 for r in results if r.get("expect_ok"))
steps = []
for plan in glob.glob(os.path.join(runs, "*", "plan-1.json")):
    steps.append(len(json.load(open(plan))["steps"]))
mean_steps = sum(steps) / len(steps) if steps else 0
print(f"{mode:<5} round {round_}: {right:2d} of {questions} right, {int(secs) / max(len(results), 1):6.1f} s per question, "
      f"{mean_steps:.1f} steps per first plan ({len(results)} finished)")
PY
  done
done
