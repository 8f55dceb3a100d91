"""Test set-up: CPU devices, shared data paths, a tiny trained run.

XLA_FLAGS (JVISION_TEST_DEVICES fake CPU devices, default 1, and
helpers.TEST_XLA_FLAGS) must be set before jax is first imported, which is
why this happens at the top of the root conftest. Tests marked
`devices(N)` need N devices; with fewer they are skipped, saying how to
run them (`make test` runs them in a pytest run of their own).
"""

import os
import re

from helpers import requested_test_devices, xla_flags  # stdlib only: no jax yet

os.environ.setdefault("XLA_FLAGS", xla_flags(devices=requested_test_devices()))
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Keras (a test dependency: the import parity tests) on JAX, not TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "jax")

import atexit  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

# One persistent XLA compilation cache for the whole session, for the
# programs that take long to compile (a trainer's step, a model's init) and
# that the tests compile again and again (every trainer a test starts as a
# subprocess, both xdist workers). The process that loads this file first
# (pytest itself, before it starts its workers) makes the folder; the
# workers and every subprocess inherit it through the environment, and it
# goes away with that process. A size limit turns on JAX's file lock around
# reads and writes, so that concurrent processes never read an entry half
# written. The cached programs are the ones XLA would compile again: the
# same numbers, bit for bit. Only compiles of 0.5 s or more are kept: each
# write lists and reads every entry under that lock (JAX's LRU eviction),
# so caching the thousands of eager ops too made the suite slower, not
# faster (tests/models/test_cnn.py and test_ntxent.py: 103 s with every
# compile kept, 873 entries; 57 s with this threshold).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _XLA_CACHE = tempfile.mkdtemp(prefix="jvision-tests-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
  atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 << 30))

import pytest  # noqa: E402
from helpers import (  # noqa: E402
  SHARED_DATA,
  tiny_config,
  tiny_simclr_config,
)


def _cpu_devices() -> int:
  """The CPU devices XLA_FLAGS gives this process (read without starting
  JAX's backend)."""
  found = re.search(
    r"--xla_force_host_platform_device_count=(\d+)", os.environ["XLA_FLAGS"]
  )
  return int(found.group(1)) if found else 1


def pytest_collection_modifyitems(config, items):
  """Skips `devices(N)` tests that need more devices than this process has,
  and puts the files that hold `slow` tests first (in their own order).

  xdist hands out whole files in collection order (--dist loadfile): a
  long file started last would keep one worker busy after the other ran
  out of files.
  """
  del config  # unused
  have = _cpu_devices()
  for item in items:
    marker = item.get_closest_marker("devices")
    if marker and marker.args[0] > have:
      reason = (
        f"needs {marker.args[0]} CPU devices, this process has {have}: "
        f"JVISION_TEST_DEVICES={marker.args[0]} pytest -m devices "
        "(make test runs them)"
      )
      item.add_marker(pytest.mark.skip(reason=reason))
  slow_files = {item.path for item in items if item.get_closest_marker("slow")}
  items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """../shared/data beside the checkout (MNIST IDX, CIFAR-10 q75 zip)."""
  if not SHARED_DATA.is_dir():
    pytest.fail(f"{SHARED_DATA} is missing; tests read real data from it")
  return SHARED_DATA


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory) -> pathlib.Path:
  """A workdir with a finished tiny run (shared by eval and CLI tests)."""
  from jvision.train import supervised

  workdir = tmp_path_factory.mktemp("run") / "wd"
  supervised.train_and_evaluate(tiny_config(), str(workdir))
  return workdir


@pytest.fixture(scope="session")
def simclr_workdir(tmp_path_factory):
  """(workdir, result) of a finished tiny SimCLR run."""
  from jvision.train import simclr

  workdir = tmp_path_factory.mktemp("simclr") / "wd"
  result = simclr.train_and_evaluate(tiny_simclr_config(), str(workdir))
  return workdir, result
