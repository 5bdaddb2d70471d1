# Two entry points for a fresh machine: `make demo` (set up, run the mini benchmark sweep,
# analyse) and `make test` (set up, run the test suite). Set-up is shared and runs once.
# `make test-fast` is the edit loop's tier: no test that starts a process, needs Slurm, runs
# torch.distributed or is real-size (markers in pyproject.toml; README: Tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
# where the demo's runs and leaderboard land (scripts/bench_demo.py times the demo in a folder of its own)
RESULTS ?= results

# Every core (pytest-xdist); tests that share a costly fixture, or the local Slurm cluster, share a
# worker (their xdist_group), hence loadgroup.
PYTEST := $(BIN)/python -m pytest -n auto --dist loadgroup
FAST := not process and not slurm and not distributed and not realsize

.PHONY: setup demo test test-fast

# torch and torchvision first, from their exact versions (see docs/installing.md), then the
# rest under the tested constraints so pip never swaps torch.
$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -c requirements/constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# The default launcher runs one single-threaded run per core at once without a GPU, one after another with one.
demo: $(STAMP)
	$(BIN)/python launch.py -m 'method=*' 'dataset=mini/*' results_dir=$(RESULTS)
	$(BIN)/python analyze.py $(RESULTS) --out $(RESULTS)/leaderboard

# ends with the 25 slowest test phases and each xdist worker's seconds (tests/conftest.py): where the time went
test: $(STAMP)
	$(PYTEST) --durations=25 tests

test-fast: $(STAMP)
	$(PYTEST) -m '$(FAST)' tests
