#!/usr/bin/env bash
# Planning against one script, measured on the shared dev questions (InfiAgent-DABench dev
# subset, read from $DABENCH, never copied here) with the offline model: the suite runs once
# per plan mode and round, and each line says how many answers matched and the seconds per
# question. Needs `make local-llm` and the sandbox image; run it on a quiet machine (the model
# slows to a crawl beside a build).
#   tests/bench/plans.sh                          quick set (12 questions), none and dag, 1 round
#   ROUNDS=2 MODES="none dag" SETS="questions more-questions" tests/bench/plans.sh
#   MODES="dag-model" ...  dag with a model call for every plan (--always-plan)
#   SIDE_BY_SIDE=1 ...    the modes of a round run at the same time, one per slot of the model
#                         server (it has two): half the wall time, and both modes share the
#                         same machine load, so their seconds per question stay comparable
set -euo pipefail
cd "$(dirname "$0")/../.."

dabench=${DABENCH:-../shared/dabench-dev}
rounds=${ROUNDS:-1}
sets=${SETS:-questions}
modes=${MODES:-none dag}
side_by_side=${SIDE_BY_SIDE:-}
out=${OUT:-target/bench-plans}
planbox=${PLANBOX:-target/debug/planbox}

[ -d "$dabench" ] || { echo "no dev questions at $dabench (set DABENCH)" >&2; exit 2; }
mkdir -p "$out"
suite=$out/suite.jsonl
python3 tests/bench/dev_suite.py "$dabench" "$suite" $sets
questions=$(wc -l < "$suite")

# One mode's run of the suite, then its line: answers right, seconds per question, steps.
run_mode() {
  local mode=$1 round=$2 runs=$out/$1-$2 started=$SECONDS
  rm -rf "$runs"
  # dag-model: dag with the model asked for every plan (--always-plan), even for a goal
  # that asks only for values, which dag otherwise plans as one step without a model call.
  local plan=${mode%-model} extra=()
  [ "$plan" != "$mode" ] && extra=(--always-plan)
  "$planbox" batch "$suite" --json --provider local --plan "$plan" "${extra[@]}" --runs-dir "$runs" \
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
wrong = " ".join(sorted(r.get("id", "?") for r in results if not r.get("expect_ok")))
print(f"{mode:<5} round {round_}: {right:2d} of {questions} right, {int(secs) / max(len(results), 1):6.1f} s per question, "
      f"{mean_steps:.1f} steps per first plan ({len(results)} finished); wrong: {wrong or 'none'}", flush=True)
PY
}

for round in $(seq 1 "$rounds"); do
  if [ -n "$side_by_side" ]; then
    for mode in $modes; do run_mode "$mode" "$round" & done
    wait
  else
    for mode in $modes; do run_mode "$mode" "$round"; done
  fi
done
