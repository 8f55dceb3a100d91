"""benchmarks/gpu.sh: the CPU dry run (--tiny) of the script a GPU lease
runs, and its refusal to measure on the CPU when no GPU is there.

The dry run is every part of the GPU script at toy sizes on the CPU
backend, with this interpreter (JVISION_PYTHON: nothing is installed); it
is slow for a test (start-up and compilation of four benchmarks), so it is
marked slow, but it is what makes the first GPU run work.
"""

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO, xla_flags

SCRIPT = REPO / "benchmarks" / "gpu.sh"


def _run(tmp_path, *args, **env):
  environment = {
    **os.environ,
    "OUT": str(tmp_path / "out"),
    "GPU_SH_WORK": str(tmp_path / "work"),
    "JVISION_PYTHON": sys.executable,
    "PYTHONPATH": str(REPO),
    "XLA_FLAGS": xla_flags(),  # one CPU device, not the suite's eight
    **env,
  }
  return subprocess.run(
    ["bash", str(SCRIPT), *args],
    capture_output=True,
    text=True,
    cwd=REPO,
    env=environment,
    timeout=1800,
  )


def _statuses(summary: str) -> dict:
  """{part: status} from summary.txt's first lines."""
  rows = [line.split(None, 2) for line in summary.splitlines()]
  return {row[0]: row[1] for row in rows if len(row) >= 2 and row[0].isalpha()}


@pytest.mark.slow
def test_tiny_dry_run_measures_every_part_on_the_cpu(tmp_path):
  out = _run(tmp_path, "--tiny")
  summary = (tmp_path / "out" / "summary.txt").read_text()
  assert out.returncode == 0, summary + out.stdout[-3000:]
  status = _statuses(summary)
  assert status["setup"] == "given" and status["devices"] == "ok"
  for part in ("fast", "simclr", "memory"):
    assert status[part] == "ok", summary
  try:
    import torch  # noqa: F401

    assert status["compare"] == "ok", summary
  except ImportError:
    assert status["compare"] == "skipped", summary

  results = tmp_path / "out" / "results"
  devices = (tmp_path / "out" / "devices.txt").read_text().splitlines()[-1]
  assert json.loads(devices)["backend"] == "cpu"
  fast = json.loads((results / "accuracy_cifar10_fast_cpu.json").read_text())
  run = fast["runs"][0]
  assert 0.0 <= run["test_accuracy"] <= 1.0 and run["train_seconds"] > 0
  assert fast["machine"]["backend"] == "cpu"
  assert "vector_extensions" in fast["machine"]
  speed = json.loads(
    (results / "train_speed_cifar10_simclr_resnet18_epoch_cpu.json").read_text()
  )
  assert speed["steps"] == 3 and speed["images_per_step"] == 32  # 16 x 2
  assert speed["images_per_sec"] > 0 and speed["wall_seconds"] > 0
  assert "knn_accuracy" in speed["last_metrics"]["test"]
  memory = json.loads((results / "memory_cpu_cifar10.json").read_text())
  for trainer in ("supervised", "simclr", "finetune"):
    step = memory[trainer]["train_step_device_mib"]["donated"]
    assert step["total"] > 0
  # The summary ends with the report of what was measured.
  assert "`experiments/cifar10_fast.py:runlocal`" in summary
  assert "total" in summary.splitlines()[-1]
  # At most 8 files come back from a device lease.
  files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
  assert len(files) <= 8, files


def test_without_a_gpu_it_stops_instead_of_measuring_the_cpu(tmp_path):
  out = _run(tmp_path)
  summary = (tmp_path / "out" / "summary.txt").read_text()
  assert out.returncode == 1
  assert "devices  failed   JAX could not start gpu" in summary
  log = (tmp_path / "out" / "gpu.log").read_text()
  assert "JVISION_ACCELERATOR=gpu asked for gpu, which JAX could not start" in (
    log
  )
  assert list((tmp_path / "out" / "results").glob("*.json")) == []
