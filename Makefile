# Two commands do all set-up on a fresh Debian machine:
#   make demo    the whole pipeline on Fashion-MNIST (jvision demo)
#   make test    the test suite (what .ci/run calls)
# Both create .venv, install jvision and its dependencies, and install the
# Debian package dataset-fashion-mnist when its files are missing.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: demo test setup data lint bench clean-venv

demo: setup data
	$(VENV)/bin/jvision demo $(if $(WORKDIR),--workdir=$(WORKDIR))

test: setup data
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

setup: $(STAMP)

$(STAMP): pyproject.toml
	@bash .ci/setup_venv.sh "$(PYTHON)" "$(VENV)"
	@touch $@

data:
	@bash .ci/fashion_mnist.sh

lint: setup
	$(VENV)/bin/ruff check jvision tests experiments benchmarks
	$(VENV)/bin/ruff format --check jvision tests experiments benchmarks

clean-venv:
	rm -rf $(VENV)
