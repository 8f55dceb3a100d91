"""Test set-up: 8 fake CPU devices, shared data paths, a tiny trained run.

XLA_FLAGS must be set before jax is first imported, which is why this
happens at the top of the root conftest.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Keras (a test dependency: the import parity tests) on JAX, not TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "jax")

import pathlib  # noqa: E402

import pytest  # noqa: E402
from helpers import (  # noqa: E402
  SHARED_DATA,
  tiny_config,
  tiny_simclr_config,
)


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
