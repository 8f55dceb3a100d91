"""Wall time and accuracy of `jvision demo`, run as a user runs it.

    python -m benchmarks.demo

Runs the `jvision` command in a fresh temporary workdir (a subprocess, so
start-up, data loading, compilation, training, evaluation and reports are
all counted) and records the time and the test accuracy it reached in
benchmarks/results/demo.json.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks import common


def main():
  workdir = pathlib.Path(tempfile.mkdtemp()) / "demo"
  start = time.perf_counter()
  subprocess.run(
    [sys.executable, "-m", "jvision.cli", "demo", f"--workdir={workdir}"],
    check=True,
  )
  seconds = time.perf_counter() - start
  report = json.loads((workdir / "eval" / "metrics.json").read_text())
  shutil.rmtree(workdir.parent)
  record = {
    "wall_seconds": seconds,
    "test_accuracy": report["accuracy"],
    "method": "one run of `jvision demo` in a fresh workdir, wall time",
  }
  print(f"demo: {seconds:.0f} s, test accuracy {report['accuracy']:.4f}")
  print("saved", common.save("demo", record))


if __name__ == "__main__":
  main()
