"""Writes a planbox suite (JSONL) from the shared dev questions: one goal per question, its
table as the input, the labelled answers as the expectations. Nothing of the benchmark is
copied into the repository; the suite is written under target/.
    python3 tests/bench/dev_suite.py DABENCH_DIR SUITE.jsonl SET...
"""
import json
import os
import sys

root, suite, sets = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(suite, "w") as out:
    for name in sets:
        labels = {}
        for line in open(os.path.join(root, name.replace("questions", "labels") + ".jsonl")):
            label = json.loads(line)
            labels[label["id"]] = dict(label["common_answers"])
        for line in open(os.path.join(root, name + ".jsonl")):
            q = json.loads(line)
            goal = f'{q["question"]} Constraints: {q["constraints"]} Answer format: {q["format"]}'
            table = os.path.abspath(os.path.join(root, "tables", q["file_name"]))
            out.write(json.dumps({"id": f'q{q["id"]}', "goal": goal, "inputs": [table],
                                  "expect": labels[q["id"]]}) + "\n")
