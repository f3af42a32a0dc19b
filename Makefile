# Everything a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test bench soak lint check-jobs clean

# What running needs; the test tools (schemathesis, hypothesis...) only for `make test`.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(TEST_STAMP)

run: $(STAMP)
	$(BIN)/python -m apsis_cli.devrun

# The suite over TEST_WORKERS pytest-xdist processes, a test file to each at a time (a
# module's shared daemon starts once). Its tests mostly wait on daemons and programs:
# three workers finish sooner than two, even on 2 cores.
TEST_WORKERS ?= 3
test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

bench: $(TEST_STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

# Ten minutes under load (one with QUICK=1); adds its figures to bench/results.json.
soak: $(TEST_STAMP)
	$(BIN)/python -m bench --soak $(if $(QUICK),--quick,)

lint: $(TEST_STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/ruff check apsis apsis_cli apsis_tui tests bench
	$(BIN)/mypy apsis

check-jobs: $(STAMP)
	$(BIN)/apsisctl check-job jobs/

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
