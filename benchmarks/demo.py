"""Wall time and accuracy of `jvision demo`, run as a user runs it.

    python -m benchmarks.demo [--workdir=DIR]

Runs the `jvision` command in a fresh temporary workdir (a subprocess, so
start-up, data loading, compilation, pretraining, the eight classifiers,
evaluation and reports are all counted) and records the wall time and the
demo's DIR/summary.json (test accuracy per method and label fraction) in
benchmarks/results/demo_<machine>.json (e.g. demo_cpu_avx2.json: one per
kind of machine, see result_name), beside two figures of this machine measured
just before the demo, so that demo times of different machines can be
compared: its float32 matmul peak (GFLOP/s, best of 1024-2048 squares) and
the time of one training step of the demo's own network (the supervised
step of experiments/fashion_mnist_finetune.py:scratch, batch 128 at 28x28,
on-device augmentation included; median of STEP_TIMES steps). The second
tracks the demo's time more closely (between the fastest and the slowest
2-core VM measured: demo 2.7x, step 2.3x, matmul peak 4.8x; the README's
table of demo times and benchmarks/NOTES.md have every machine). With
--workdir the demo
runs there (it must not exist yet) and is kept, e.g. as seed 0 (the
demo's seed) of benchmarks.simclr_fashion_mnist
(benchmarks/workdirs/simclr_fashion_mnist/seed0).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import common, compare
from jvision import configs_io, demo

# Timed steps of the demo network's supervised step (after 3 untimed).
STEP_TIMES = 20
STEP_RECIPE = "fashion_mnist_finetune.py:scratch"


def demo_step_record(steps: int = STEP_TIMES) -> dict:
  """Median time of one supervised step of the demo's network: {"recipe",
  "batch_size", "steps", "median_ms", "images_per_sec"}."""
  config = configs_io.load_config_file(
    f"{demo.experiments_dir()}/{STEP_RECIPE}"
  )
  seconds = statistics.median(
    common.recipe_step_times(config, (28, 28, 1), steps)
  )
  return {
    "recipe": f"experiments/{STEP_RECIPE}",
    "batch_size": config.batch_size,
    "steps": steps,
    "median_ms": seconds * 1e3,
    "images_per_sec": config.batch_size / seconds,
  }


def result_name(cpu: dict, backend: str | None = None) -> str:
  """The results file of a demo run on a CPU like `cpu` (common.cpu_info)
  and `backend` (default: this process's): one per kind of machine
  (common.machine_tag), so that the demo's times on different machines
  stand side by side, as the 15-minute target on the slowest of them
  needs."""
  return f"demo_{common.machine_tag(backend, cpu)}"


def main(argv):
  keep = [a.partition("=")[2] for a in argv if a.startswith("--workdir=")]
  if keep and pathlib.Path(keep[0]).exists():
    sys.exit(f"--workdir={keep[0]} exists; the demo must start fresh")
  workdir = (
    pathlib.Path(keep[0])
    if keep
    else (pathlib.Path(tempfile.mkdtemp()) / "demo")
  )
  peak = compare.matmul_peak_gflops([1024, 2048], "float32")
  print(f"float32 matmul peak: {peak}")
  step = demo_step_record()
  print(f"the demo network's supervised step: {step}")
  start = time.perf_counter()
  subprocess.run(
    [sys.executable, "-m", "jvision.cli", "demo", f"--workdir={workdir}"],
    check=True,
  )
  seconds = time.perf_counter() - start
  summary = json.loads((workdir / "summary.json").read_text())
  if not keep:
    shutil.rmtree(workdir.parent)
  record = {
    "wall_seconds": seconds,
    "matmul_peak_gflops_float32": peak,
    "demo_step": step,
    "summary": summary,
    "method": (
      "one run of `jvision demo` in a fresh workdir, wall time of the "
      "whole command"
    ),
  }
  print(f"demo: {seconds / 60:.1f} min")
  print("saved", common.save(result_name(common.cpu_info()), record))


if __name__ == "__main__":
  main(sys.argv[1:])
