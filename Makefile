# planbox: build, image, tests, benchmarks.
CARGO ?= cargo
# The debug build is shared with the tests (one compile in CI); planbox is IO-bound.
PLANBOX := target/debug/planbox

.PHONY: build image runsc test test-runsc lint bench bench-rules bench-plans demo clean-containers local-llm local-llm-prepare local-llm-stop test-llm

build:
	$(CARGO) build --locked

# The sandbox image, tagged with the content hash of sandbox-images/: reused when current.
image: build
	$(PLANBOX) image build

# gVisor: installs runsc (Debian's package) and registers it with the running engine (root).
runsc:
	sandbox-images/runsc.sh

# Everything CI runs: formatting, lints, the sandbox image (reused when current), unit tests
# and the Docker tests, then the hostile-script suites again under gVisor.
test: lint image
	$(CARGO) test --locked --no-fail-fast
	$(MAKE) test-runsc

# The hostile-script suites under runsc. Skipped with a note when the engine does not offer
# it, unless PLANBOX_REQUIRE_RUNSC is set (CI sets it).
HOSTILE := --test sandbox_attacks --test sandbox_isolation --test sandbox_resources --test sandbox_lifecycle
test-runsc:
	@if sandbox-images/runsc.sh --check; then \
	  PLANBOX_TEST_RUNTIME=runsc $(CARGO) test --locked --no-fail-fast $(HOSTILE); \
	elif [ -n "$$PLANBOX_REQUIRE_RUNSC" ]; then \
	  echo "the engine does not offer runsc: sudo make runsc" >&2; exit 1; \
	else \
	  echo "skipped the hostile-script suites under gVisor: the engine does not offer runsc (sudo make runsc)"; \
	fi

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

bench: image
	$(CARGO) bench --locked --bench sandbox
	$(CARGO) bench --locked --bench planner
	$(CARGO) bench --locked --bench agent

# What each failure hint and answer rule is worth on the shared dev questions, against the
# offline model (start it with `make local-llm`; run on a quiet machine). ROUNDS=2 for more runs.
bench-rules: image
	tests/bench/rules.sh

# Planning (`--plan dag`) against one script (`--plan none`) on the same dev questions, with
# the offline model: answers right, seconds per question, steps per plan. ROUNDS=2 for more.
bench-plans: image
	tests/bench/plans.sh

# The main job on the bundled example, offline: build the sandbox image and the local model if
# missing, start the model, then plan, write, run and answer a goal on fixtures/demo/sales.csv.
DEMO_GOAL := sales.csv has one row per day, region and product. Which region had the highest total revenue in 2023, and what was that total? Chart the 2023 revenue of each region as bars in revenue_2023.png. Answer as @top_region[name] @revenue_2023[value].
# The answer fixtures/demo/reference.py prints: the run's exit code says whether it was found.
DEMO_EXPECT := --expect top_region=south --expect revenue_2023=37525.5
# Planned as a graph (README: "The demo and the offline model"): the offline model's chain of
# small steps is fused into one script, and steps share their variables, not only files.
# `make demo DEMO_PLAN=none` writes the goal as one script without a plan.
DEMO_PLAN ?= dag

# First a check that stops within seconds when something the build needs is missing (and
# installs mmdebstrap when it can); then, the first time, the image (network and dpkg bound) and the model (a download, then a CPU
# bound llama.cpp build) are prepared side by side; both are cached afterwards.
demo:
	sandbox-images/preflight.sh
	$(MAKE) -j2 image local-llm-prepare
	src/llm/local-llm.sh start
	$(PLANBOX) run "$(DEMO_GOAL)" --input fixtures/demo/sales.csv --runs-dir runs --provider local --plan $(DEMO_PLAN) $(DEMO_EXPECT)

# Manual pages, planbox.1 and one per subcommand (planbox-run.1, ...): read one with
# `man -l target/man/planbox-run.1`.
.PHONY: man
man: build
	$(PLANBOX) man --out target/man

# Remove every container and volume planbox ever labelled (all owners).
clean-containers:
	-docker ps -aq --filter label=planbox.owner | xargs -r docker rm -f
	-docker volume ls -q --filter label=planbox.owner | xargs -r docker volume rm -f

# The offline model: Qwen2.5-Coder-1.5B-Instruct under llama-server on 127.0.0.1:8411.
local-llm:
	src/llm/local-llm.sh start

local-llm-prepare:
	src/llm/local-llm.sh prepare

local-llm-stop:
	src/llm/local-llm.sh stop

# Tests against the real offline model (not in CI): start it with `make local-llm` first.
test-llm:
	$(CARGO) test --locked --test llm_live -- --ignored --test-threads 1 --nocapture
