# The two commands of the README. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BACKENDS := jax tensorflow torch
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: run test test-min test-wheel docs fuzz lint bench bench-peers clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The main job needs the JAX backend and the demo extra (scikit-learn, matplotlib).
$(VENV)/.run-deps: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e ".[jax,demo]"
	touch $@

# All three backends; torch is pinned to its CPU build in pyproject.toml.
$(VENV)/.test-deps: pyproject.toml | $(VENV)/bin/python
	$(PIP) -e ".[jax,tensorflow,torch,test,docs,demo,deploy]"
	$(PIP) -e examples/groco-hexagonal
	$(PIP) -e examples/groco-srf
	touch $@ $(VENV)/.run-deps

# `groco demo` with its defaults: a table, and groco-demo/results.json and demo.png.
run: $(VENV)/.run-deps
	KERAS_BACKEND=jax $(VENV)/bin/groco demo

# The documentation site, first (`make docs`), then the whole suite once per backend, in
# TEST_WORKERS processes (pytest-xdist; the tests spend most of their time in one thread,
# compiling and dispatching small ops, so two processes on two cores take about half the
# time); fails if the site or any backend fails. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
test: $(VENV)/.test-deps docs
	@failed=""; \
	for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend"; \
		start=$$(date +%s); \
		KERAS_BACKEND=$$backend $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) \
			|| failed="$$failed $$backend"; \
		echo "=== KERAS_BACKEND=$$backend took $$(( $$(date +%s) - start )) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED backends:$$failed"; exit 1; fi

# The fuzz tests with the deep profile: hundreds of random layer configurations per backend,
# random stacks of layers trained compiled and eagerly (200 on JAX and TensorFlow, about
# 15 minutes each on two cores; 15 through torch.compile on PyTorch, about 10 minutes), and
# 150 layers whose fast paths are compared with their references (about 5 minutes each).
fuzz: $(VENV)/.test-deps
	@for backend in $(BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend"; \
		KERAS_BACKEND=$$backend HYPOTHESIS_PROFILE=deep $(PY) -m pytest -q -p no:cacheprovider \
			tests/test_fuzz.py tests/test_fuzz_training.py tests/test_fast_paths.py \
			--hypothesis-show-statistics \
			|| exit 1; \
	done

# Ruff on all the code; mypy on the public API (the files of [tool.mypy] in pyproject.toml).
lint: $(VENV)/.test-deps
	$(VENV)/bin/ruff check groco_core plugins tests benchmarks examples docs .ci/floors.py
	$(VENV)/bin/mypy

# The site of docs/*.md with the API reference generated from the docstrings, into site/;
# strict (mkdocs.yml): a broken link or an unresolved reference fails it.
docs: $(VENV)/.test-deps
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# The release as a user installs it: the sdist and wheel of groco and of each example
# package, the wheels installed into a fresh environment outside the repository, where
# `groco list-groups` and SMOKE_TESTS run against the installed package (.ci/test-wheel).
SMOKE_TESTS := tests/test_registry.py tests/test_cli.py tests/test_toolkit.py \
	examples/groco-hexagonal/tests
test-wheel: $(VENV)/.test-deps
	.ci/test-wheel $(PY) $(SMOKE_TESTS)

# Overhead over plain Keras layers, export, build times, separable, memory, on every backend:
# whole networks (GroupResNet18 against the plain ResNet): writes benchmarks/RESULTS.md (about
# half an hour on two cores; BENCH_ARGS=--quick for fewer rows).
bench: $(VENV)/.test-deps
	$(PY) benchmarks/bench.py $(BENCH_ARGS)

# escnn, the peer GroupConv2D is measured against, in its own environment: its lie_learn
# dependency needs numpy<2 and a Fortran compiler (Debian's gfortran), which must not leak
# into .venv. GroCo is installed there too, so one process times both.
PEERS := .venv-peers
$(PEERS)/.peer-deps: pyproject.toml
	command -v gfortran > /dev/null || (apt-get update && apt-get install -y gfortran)
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet --disable-pip-version-check \
		"numpy<2" "torch==2.13.0" escnn
	$(PEERS)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[torch]" "numpy<2"
	touch $@

# GroupConv2D against escnn's R2Conv (torch, train and inference, both paddings):
# writes benchmarks/RESULTS-peers.md.
bench-peers: $(PEERS)/.peer-deps
	KERAS_BACKEND=torch $(PEERS)/bin/python benchmarks/peers.py

# The lowest versions pyproject.toml declares, in their own environment: each runtime
# dependency, backend and extra pinned to its floor by .ci/floors.py; the test tools are the
# newest. test-min runs the suite there once per backend in MIN_BACKENDS.
MIN := .venv-min
MIN_EXTRAS := jax tensorflow torch demo
MIN_BACKENDS := jax tensorflow torch
$(MIN)/.min-deps: pyproject.toml .ci/floors.py
	rm -rf $(MIN)
	$(PYTHON) -m venv $(MIN)
	$(PYTHON) .ci/floors.py $(MIN_EXTRAS) > $(MIN)/floors.txt
	$(MIN)/bin/python -m pip install --quiet --disable-pip-version-check -c $(MIN)/floors.txt \
		-e ".[$(shell echo $(MIN_EXTRAS) | tr ' ' ','),test]" \
		-e examples/groco-hexagonal -e examples/groco-srf
	touch $@

test-min: $(MIN)/.min-deps
	@$(MIN)/bin/python -m pip list --disable-pip-version-check 2>/dev/null \
		| grep -iE "^(keras|numpy|jax|jaxlib|pluggy|pydantic|importlib.metadata|tensorflow.cpu|torch) "
	@failed=""; \
	for backend in $(MIN_BACKENDS); do \
		echo "=== KERAS_BACKEND=$$backend (floors)"; \
		start=$$(date +%s); \
		KERAS_BACKEND=$$backend $(MIN)/bin/python -m pytest -q -p no:cacheprovider \
			-n $(TEST_WORKERS) || failed="$$failed $$backend"; \
		echo "=== KERAS_BACKEND=$$backend (floors) took $$(( $$(date +%s) - start )) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED backends at the floors:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) $(MIN) $(PEERS) .pytest_cache site
