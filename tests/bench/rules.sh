#!/usr/bin/env bash
# What each failure hint and answer rule is worth, measured on the shared dev questions
# (InfiAgent-DABench dev subset, read from $DABENCH, never copied here) against the offline
# model: the suite runs with every rule on and with the exception hints off, ROUNDS times
# each; then every baseline run folder is scored again with each answer rule off
# (`planbox rescore`, no model calls). Needs `make local-llm` and the sandbox image; run it on
# a quiet machine (the model slows to a crawl beside a build).
#   tests/bench/rules.sh            quick set (12 questions), 1 round
#   ROUNDS=2 SETS="questions more-questions" tests/bench/rules.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

dabench=${DABENCH:-../shared/dabench-dev}
rounds=${ROUNDS:-1}
sets=${SETS:-questions}
plan=${PLAN:-none}
out=${OUT:-target/bench-rules}
planbox=target/debug/planbox
# The hints read from the exception a script raised; the status hints (time limit, memory,
# output ceiling, refused files, missing outputs) name sandbox limits and stay on.
exception_hints=(missing_package file_not_found dt_on_text single_value undefined_name)

[ -d "$dabench" ] || { echo "no dev questions at $dabench (set DABENCH)" >&2; exit 2; }
mkdir -p "$out"
suite=$out/suite.jsonl
python3 tests/bench/dev_suite.py "$dabench" "$suite" $sets
questions=$(wc -l < "$suite")

score() { # label, extra flags...
  local label=$1; shift
  local runs=$out/$label
  rm -rf "$runs"
  local started=$SECONDS
  "$planbox" batch "$suite" --json --provider local --plan "$plan" --runs-dir "$runs" \
    --goals-parallel 1 --parallel 1 "$@" > "$runs.jsonl" 2> "$runs.log" || true
  local right
  right=$(python3 -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if l.strip() and json.loads(l).get("expect_ok")))' "$runs.jsonl")
  printf '%-28s %2d of %d right  (%d s)\n' "$label" "$right" "$questions" $((SECONDS - started))
}

off=()
for id in "${exception_hints[@]}"; do off+=(--rule-off "$id"); done
for round in $(seq 1 "$rounds"); do
  score "all-on-$round"
  score "exception-hints-off-$round" "${off[@]}"
done
for round in $(seq 1 "$rounds"); do
  echo "answer rules, from the run folders of all-on-$round:"
  "$planbox" rescore "$suite" "$out/all-on-$round"
done
