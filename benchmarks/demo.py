"""Wall time and accuracy of `jvision demo`, run as a user runs it.

    python -m benchmarks.demo [--workdir=DIR]

Runs the `jvision` command in a fresh temporary workdir (a subprocess, so
start-up, data loading, compilation, pretraining, the eight classifiers,
evaluation and reports are all counted) and records the wall time and the
demo's DIR/summary.json (test accuracy per method and label fraction) in
benchmarks/results/demo.json, beside this machine's float32 matmul peak
(GFLOP/s, best of 1024-2048 squares, measured just before the demo) so that
demo times of different machines can be compared. With --workdir the demo
runs there (it must not exist yet) and is kept, e.g. as seed 0 (the
demo's seed) of benchmarks.simclr_fashion_mnist
(benchmarks/workdirs/simclr_fashion_mnist/seed0).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import common, compare


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
    "summary": summary,
    "method": (
      "one run of `jvision demo` in a fresh workdir, wall time of the "
      "whole command"
    ),
  }
  print(f"demo: {seconds / 60:.1f} min")
  print("saved", common.save("demo", record))


if __name__ == "__main__":
  main(sys.argv[1:])
