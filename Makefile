# The README's two commands: `make demo` and `make test`. Both install into a local virtualenv first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo_output
DEMO_ROWS ?= 100000
# What the README's tour writes (train, encode, report, sweep, reduce, dedup, tfds-to-parquet examples).
TOUR_DIRS := models embeddings reports sweeps reduced dedup out data/mnist

.PHONY: demo demo-images test lint unit install install-test benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when setup.py changes (stamp files); editable so the tree is what runs.
$(VENV)/.installed-demo: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[demo]"
	touch $@

$(VENV)/.installed-test: setup.py | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test,demo]"
	touch $@

install: $(VENV)/.installed-demo
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed-demo
	$(BIN)/ae-tf demo --workdir $(DEMO_DIR) --rows $(DEMO_ROWS)

# Photographs bundled in scikit-image/scikit-learn: conv model, encode, near-duplicate dedup, report.
demo-images: $(VENV)/.installed-demo
	$(BIN)/ae-tf demo --images --workdir $(DEMO_DIR)-images

lint: $(VENV)/.installed-test
	$(BIN)/ruff check ae_tf pipelines benchmarks tests ae_tf_cli.py

# Two pytest-xdist workers, whole test files each (a module's trained fixtures are built once); the files
# with slow cases start first (tests/conftest.py). TEST_WORKERS=0 runs everything in this one process.
TEST_WORKERS ?= 2
unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

test: lint unit

benchmark: $(VENV)/.installed-test
	$(BIN)/python benchmarks/encode_throughput.py

clean:
	rm -rf $(DEMO_DIR) $(DEMO_DIR)-images $(TOUR_DIRS) .pytest_cache .ruff_cache
