# aignet. `make demo`: set up and run the demo. `make test`: set up and run the checks (CI).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
TORCH_VERSION := 2.13.0
DATA ?= fashion-mnist
DATA_DIR ?=
EPOCHS ?=
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install test lint demo fashion-mnist-data clean

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y python3-venv && $(PYTHON) -m venv $(VENV); \
	  else echo "cannot create a virtualenv: run 'sudo apt-get install python3-venv'"; exit 1; fi; }
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch pulls gigabytes of CUDA wheels.
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

lint: install
	$(PY) -m ruff check src tests benchmarks scripts hubconf.py

test: lint
	$(PY) -m pytest -q

# The Debian package dataset-fashion-mnist, installed when missing (as root), else explained.
fashion-mnist-data:
	@if [ "$(DATA)" = fashion-mnist ] && [ -z "$(DATA_DIR)" ] && \
	    [ ! -f $(FASHION_DIR)/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get install -y dataset-fashion-mnist || \
	      { apt-get update && apt-get install -y dataset-fashion-mnist; }; \
	  else \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'"; \
	    echo "(or pass DATA_DIR=folder-with-the-IDX-files, or DATA=cifar10 DATA_DIR=...)"; \
	    exit 1; \
	  fi; \
	fi

demo: install fashion-mnist-data
	$(PY) -m aignet demo --data $(DATA) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) \
	    $(if $(EPOCHS),--epochs $(EPOCHS))

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
