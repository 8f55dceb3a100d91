"""The XLA:CPU defaults jvision adds to XLA_FLAGS."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import REPO

from jvision import xla_defaults

FLAG = (
  "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
  " --xla_disable_hlo_passes=cse_barrier_expander"
)


def test_defaults_are_added_once_and_never_override():
  assert xla_defaults.with_defaults("", "0.10.2") == FLAG
  both = xla_defaults.with_defaults("--xla_foo=1", "0.10.2")
  assert both == f"--xla_foo=1 {FLAG}"
  assert xla_defaults.with_defaults(both, "0.10.2") == both
  mine = "--xla_cpu_experimental_ynn_fusion_type=default"
  passes = "--xla_disable_hlo_passes=cse_barrier_expander"
  assert xla_defaults.with_defaults(mine, "0.10.2") == f"{mine} {passes}"
  theirs = "--xla_disable_hlo_passes=foo"
  assert xla_defaults.with_defaults(theirs, "0.10.2").startswith(theirs)
  assert "cse_barrier" not in xla_defaults.with_defaults(theirs, "0.10.2")
  # An unchecked jaxlib gets nothing (an unknown flag aborts XLA).
  assert xla_defaults.with_defaults("--a=1", "0.11.0") == "--a=1"
  assert xla_defaults.with_defaults("", None) == ""


def test_a_gpu_or_tpu_machine_gets_only_cpu_backend_options():
  flags = xla_defaults.with_defaults("", "0.10.2", accelerator=True)
  assert (
    flags == "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
  )


def test_this_process_runs_with_them():
  assert FLAG in os.environ["XLA_FLAGS"]


def test_opt_out_and_a_real_start():
  code = "import os, jvision, jax; jax.numpy.ones(2).block_until_ready(); "
  code += "print(os.environ['XLA_FLAGS'])"
  for env, expected in (({}, FLAG), ({"JVISION_XLA_DEFAULTS": "0"}, "")):
    out = subprocess.run(
      [sys.executable, "-c", code],
      cwd=REPO,
      env={**os.environ, "XLA_FLAGS": "", **env},
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
    assert out == expected


def test_programs_that_run_once_compile_at_o0_on_the_cpu_only():
  assert xla_defaults.one_shot_options("cpu") == {
    "xla_backend_optimization_level": 0
  }
  assert xla_defaults.one_shot_options("gpu") == {}
  assert xla_defaults.one_shot_options("tpu") == {}
  key = jax.random.key(0)
  lowered = jax.jit(lambda k: jax.random.normal(k, (64,))).lower(key)
  once = lowered.compile(compiler_options=xla_defaults.one_shot_options("cpu"))
  full = lowered.compile(compiler_options={"xla_backend_optimization_level": 2})
  np.testing.assert_allclose(once(key), full(key), rtol=1e-6, atol=1e-7)
  # XLA checks the option's name: a misspelt one would not be ignored.
  with pytest.raises(Exception, match="xla_backend_optimisation_level"):
    lowered.compile(compiler_options={"xla_backend_optimisation_level": 0})


def test_compile_once_is_one_program_for_its_arguments_shapes():
  key = jax.random.key(0)
  normal = xla_defaults.compile_once(lambda k: jax.random.normal(k, (64,)), key)
  np.testing.assert_allclose(
    normal(key), jax.random.normal(key, (64,)), rtol=1e-6, atol=1e-7
  )
  double = xla_defaults.compile_once(lambda x: x * 2, np.ones(3, np.float32))
  np.testing.assert_array_equal(
    double(np.arange(3, dtype=np.float32)), [0, 2, 4]
  )
  with pytest.raises(TypeError):  # compiled for [3], not retraced for [4]
    double(np.ones(4, np.float32))
