"""The XLA:CPU defaults jvision adds to XLA_FLAGS."""

import os
import subprocess
import sys

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
