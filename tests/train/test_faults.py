"""Real processes, real signals: SIGKILL and SIGTERM mid-run, then resume."""

import os
import signal
import time

import jax
import numpy as np
import pytest
from helpers import REPO, train_process

from jvision import checkpoint

STEPS = 600  # long enough to kill mid-run: the first checkpoint is at 100
CONFIG = f"""
import sys
sys.path.insert(0, {str(REPO / "tests")!r})
from helpers import tiny_config


def get_config():
  return tiny_config(
    num_train_steps={STEPS},
    checkpoint_every_steps=100,
    eval_every_steps=0,
    log_every_steps=50,
    keep_checkpoints=2,
    **{{"optimizer.learning_rate": 0.02}},
  )
"""


def _wait_for_checkpoint(workdir, process, timeout=120):
  """Polls until the run has saved a checkpoint (then it is mid-run)."""
  deadline = time.monotonic() + timeout
  ckpts = workdir / "checkpoints"
  while time.monotonic() < deadline:
    if ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir()):
      return
    assert process.poll() is None, process.communicate()
    time.sleep(0.05)
  raise TimeoutError("no checkpoint appeared")


def _final(workdir):
  ckpt = checkpoint.Checkpointer(str(workdir / "checkpoints"))
  assert ckpt.latest_step() == STEPS
  return ckpt.restore_raw()


def _same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """The config file and an uninterrupted run of it."""
  root = tmp_path_factory.mktemp("faults")
  config = root / "config.py"
  config.write_text(CONFIG)
  whole = train_process(config, root / "whole")
  out, err = whole.communicate(timeout=600)
  assert whole.returncode == 0, err[:3000]
  return root, config, _final(root / "whole")


@pytest.mark.slow
def test_sigkill_then_same_command_is_bit_identical(runs):
  root, config, expected = runs
  workdir = root / "killed"
  process = train_process(config, workdir)
  _wait_for_checkpoint(workdir, process)
  time.sleep(0.3)  # somewhere past the first checkpoint, maybe mid-save
  process.send_signal(signal.SIGKILL)
  process.communicate(timeout=60)
  assert process.returncode == -signal.SIGKILL
  restarted = train_process(config, workdir)
  out, err = restarted.communicate(timeout=600)
  assert restarted.returncode == 0, err[-2000:]
  assert "from checkpoint step" in out
  _same(_final(workdir), expected)


@pytest.mark.slow
def test_sigterm_saves_the_step_in_flight_and_resumes(runs):
  root, config, expected = runs
  workdir = root / "terminated"
  process = train_process(config, workdir)
  _wait_for_checkpoint(workdir, process)
  time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
  assert "stopped by SIGTERM after step" in err
  step = int(err.split("stopped by SIGTERM after step ")[1].split(";")[0])
  assert 0 < step < STEPS
  saved = checkpoint.Checkpointer(str(workdir / "checkpoints"))
  assert saved.latest_step() == step  # the step in flight, not only k*100
  restarted = train_process(config, workdir)
  out, err = restarted.communicate(timeout=600)
  assert restarted.returncode == 0, err[-2000:]
  assert f"from checkpoint step {step}" in out
  _same(_final(workdir), expected)


def test_sigterm_handler_is_restored():
  from jvision.train import loop

  before = signal.getsignal(signal.SIGTERM)
  with loop.sigterm_flag() as flag:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    assert flag.is_set()
  assert signal.getsignal(signal.SIGTERM) is before
