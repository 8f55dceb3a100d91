"""Tests for jvision/parallel.py: the device start-up (what was asked for,
what JAX found, and the error when they differ, on this CPU-only machine),
the batches it places and the function it maps over a whole split."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import REPO, xla_flags

from jvision import parallel


@pytest.fixture
def clean_env(monkeypatch):
  """No platform asked for by the environment (conftest sets JAX_PLATFORMS)."""
  monkeypatch.delenv(parallel.ACCELERATOR_ENV, raising=False)
  monkeypatch.delenv("JAX_PLATFORMS", raising=False)
  return monkeypatch


def test_requested_platform_precedence(clean_env):
  assert parallel.requested_platform() == ("auto", "default")
  clean_env.setenv("JAX_PLATFORMS", "cuda")
  assert parallel.requested_platform() == ("gpu", "JAX_PLATFORMS=cuda")
  clean_env.setenv("JAX_PLATFORMS", "cuda,cpu")  # a fall-back is allowed
  assert parallel.requested_platform() == ("auto", "default")
  clean_env.setenv(parallel.ACCELERATOR_ENV, "TPU")
  assert parallel.requested_platform() == ("tpu", "JVISION_ACCELERATOR=TPU")
  assert parallel.requested_platform("cpu") == ("cpu", "--accelerator=cpu")


def test_unknown_accelerator_names_the_setting(clean_env):
  clean_env.setenv(parallel.ACCELERATOR_ENV, "xpu")
  with pytest.raises(ValueError, match=r"JVISION_ACCELERATOR=xpu.*'xpu'.*gpu"):
    parallel.requested_platform()


def test_cpu_asked_and_found(clean_env):
  summary = parallel.start_devices("cpu")
  assert summary["backend"] == "cpu"
  n = jax.device_count()  # conftest's CPU devices (1, or 8 for `devices`)
  assert summary["global_devices"] == n
  assert summary["plugins"] == []  # the test venv is CPU-only
  line = parallel.describe_devices(summary)
  assert line.startswith(f"JAX backend cpu: {n} x cpu ({n} local)")
  assert "asked for: cpu (--accelerator=cpu)" in line


def test_gpu_asked_but_only_cpu_found(clean_env):
  with pytest.raises(ValueError) as error:
    parallel.start_devices("gpu")
  message = str(error.value)
  assert "--accelerator=gpu asked for gpu" in message
  n = jax.device_count()
  found = f"found only cpu devices ({n} x cpu; installed plugins: none)"
  assert found in message
  assert "ACCEL=cuda12" in message


def _jvision(env, *args):
  return subprocess.run(
    [sys.executable, "-m", "jvision.cli", *args],
    capture_output=True,
    text=True,
    cwd=REPO,
    env={**os.environ, "XLA_FLAGS": xla_flags(), **env},
    timeout=300,
  )


def test_cli_refuses_a_missing_gpu_before_any_work(tmp_path):
  out = _jvision(
    {"JAX_PLATFORMS": "", parallel.ACCELERATOR_ENV: "gpu"},
    "train",
    "--config=experiments/fashion_mnist_cnn.py:runlocal",
    f"--workdir={tmp_path}/wd",
  )
  assert out.returncode == 1, out.stderr
  assert (
    "jvision train: JVISION_ACCELERATOR=gpu asked for gpu, but JAX found "
    "only cpu devices" in out.stderr
  )
  assert not (tmp_path / "wd").exists()


def test_cli_jax_platforms_cuda_without_plugin_is_a_clear_error(tmp_path):
  out = _jvision({"JAX_PLATFORMS": "cuda"}, "eval", f"--workdir={tmp_path}")
  assert out.returncode == 1, out.stderr
  assert "JAX_PLATFORMS=cuda asked for gpu, which JAX could not start" in (
    out.stderr
  )
  assert "Traceback" not in out.stderr


def test_cli_logs_the_backend_it_found(tmp_path):
  out = _jvision(
    {"JAX_PLATFORMS": "", parallel.ACCELERATOR_ENV: "cpu"},
    "eval",
    f"--workdir={tmp_path}/none",
  )
  assert (
    "JAX backend cpu: 1 x cpu (1 local); accelerator plugins: none; asked "
    "for: cpu (JVISION_ACCELERATOR=cpu)" in out.stderr
  )
  assert "is not a jvision workdir" in out.stderr  # then the command ran


@pytest.mark.devices(8)
def test_device_batches_equal_host_batches_across_epochs():
  rng = np.random.default_rng(0)
  arrays = {
    "image": rng.integers(0, 256, (40, 6, 6, 1), dtype=np.uint8),
    "label": rng.integers(0, 10, 40).astype(np.int32),
  }
  mesh = parallel.create_mesh()  # 8 CPU devices
  kw = dict(start=3, stop=9, batch_size=16, seed=5)  # steps 3..8: 2+ epochs
  host = list(parallel.train_batches(arrays, mesh, feed="host", **kw))
  device = list(parallel.train_batches(arrays, mesh, feed="device", **kw))
  assert [s for s, _ in host] == [s for s, _ in device] == list(range(3, 9))
  for (_, h), (_, d) in zip(host, device, strict=True):
    assert d["image"].sharding.is_equivalent_to(h["image"].sharding, 4)
    for key in arrays:
      assert d[key].dtype == h[key].dtype
      np.testing.assert_array_equal(np.asarray(d[key]), np.asarray(h[key]))


@pytest.mark.devices(8)
@pytest.mark.parametrize("compile_step", ["jit_map_step", "jit_data_parallel"])
def test_map_split_pads_the_last_batch_and_cuts_it_off(compile_step):
  mesh = parallel.create_mesh()  # 8 CPU devices
  images = np.arange(21 * 2, dtype=np.uint8).reshape(21, 2)
  step = getattr(parallel, compile_step)(
    lambda scale, batch: {"double": batch["image"].astype(np.int32) * scale},
    mesh,
  )
  out = parallel.map_split(step, 2, {"image": images}, mesh=mesh, batch_size=8)
  np.testing.assert_array_equal(out["double"], images.astype(np.int32) * 2)


@pytest.mark.devices(8)
def test_a_split_smaller_than_the_batch_is_padded_to_a_power_of_two():
  mesh = parallel.create_mesh()  # 8 CPU devices
  fitted = [parallel.fitted_batch_size(256, n, mesh) for n in (1, 9, 16, 17)]
  assert fitted == [8, 16, 16, 32]  # at least one image per device
  assert parallel.fitted_batch_size(256, 300, mesh) == 256
  assert parallel.fitted_batch_size(24, 20, mesh) == 24  # never above it
  shapes = []

  def step(scale, batch):
    shapes.append(batch["image"].shape)  # traced once per compiled shape
    return {"double": batch["image"].astype(np.int32) * scale}

  compiled = parallel.jit_map_step(step, mesh)
  images = np.arange(9 * 2, dtype=np.uint8).reshape(9, 2)
  out = parallel.map_split(
    compiled, 2, {"image": images}, mesh=mesh, batch_size=256
  )
  np.testing.assert_array_equal(out["double"], images.astype(np.int32) * 2)
  assert shapes == [(16, 2)]  # not the whole batch of 256


@pytest.mark.devices(8)
def test_map_split_batch_size_must_divide_over_the_devices():
  mesh = parallel.create_mesh()
  with pytest.raises(ValueError, match="batch size=12 must be divisible"):
    parallel.map_split(
      lambda s, b: b,
      None,
      {"image": np.zeros((3, 1))},
      mesh=mesh,
      batch_size=12,
    )
