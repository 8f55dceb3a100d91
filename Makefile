# Two commands do all set-up on a fresh Debian machine:
#   make demo    the whole pipeline on Fashion-MNIST (jvision demo)
#   make test    the test suite (what .ci/run calls)
# Both create .venv, install jvision and its dependencies, and install the
# Debian package dataset-fashion-mnist when its files are missing.
# ACCEL=cuda12|cuda13|tpu adds that accelerator runtime of the pinned JAX
# (pyproject's extras), e.g. `make demo ACCEL=cuda12`; `make test` always
# installs and runs CPU-only.

PYTHON ?= python3
VENV := .venv
ACCEL ?=
ACCELS := cuda12 cuda13 tpu
ifneq ($(filter-out $(ACCELS),$(ACCEL)),)
$(error ACCEL=$(ACCEL) is not an accelerator extra; use one of: $(ACCELS))
endif
# The stamp names pyproject's checksum and the accelerator installed with
# it, so a changed pyproject or ACCEL reinstalls.
STAMP = $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)-$(or $(ACCEL),cpu)
PYTEST_ARGS ?=
# Test processes (pytest-xdist, one file per process at a time so that a
# module's compiled fixtures are built once); 2 matches CI's 2 cores. Files
# are handed out in collection order, where tests/conftest.py puts the files
# with `slow` tests first (xdist's own reorder, by test count, put them
# last: one worker then ran them alone at the end).
TEST_WORKERS ?= 3
# The platform an ACCEL runs on: `make demo ACCEL=...` asks jvision for it,
# so a runtime that cannot start is an error, not a demo on the CPU.
ACCEL_PLATFORM = $(if $(filter tpu,$(ACCEL)),tpu,$(if $(ACCEL),gpu))

.PHONY: demo test setup data lint bench clean-venv

demo: setup data
	$(if $(ACCEL),JVISION_ACCELERATOR=$(ACCEL_PLATFORM)) $(VENV)/bin/jvision demo $(if $(WORKDIR),--workdir=$(WORKDIR))

# CPU-only whatever ACCEL installed, in two pytest runs: the tests marked
# `devices(8)` (sharding, pmap) on 8 fake CPU devices, then the rest on
# one, as a user's machine runs them (a step sharded over 8 fake devices
# costs more CPU on 2 cores). Each run must pass and collect tests (exit
# code 5, no tests, is a failure).
PYTEST = JAX_PLATFORMS=cpu $(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) \
  --dist loadfile --no-loadscope-reorder
test: setup data
	JVISION_TEST_DEVICES=8 $(PYTEST) -m devices $(PYTEST_ARGS)
	JVISION_TEST_DEVICES=1 $(PYTEST) -m "not devices" $(PYTEST_ARGS)

setup: $(STAMP)

$(STAMP): pyproject.toml
	@rm -f $(VENV)/.installed-*
	@bash .ci/setup_venv.sh "$(PYTHON)" "$(VENV)" "$(ACCEL)"
	@touch $@

data:
	@bash .ci/fashion_mnist.sh

lint: setup
	$(VENV)/bin/ruff check jvision tests experiments benchmarks
	$(VENV)/bin/ruff format --check jvision tests experiments benchmarks

clean-venv:
	rm -rf $(VENV)
