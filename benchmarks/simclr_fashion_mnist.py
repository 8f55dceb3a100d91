"""Label efficiency of SimCLR on Fashion-MNIST over several seeds.

    python -m benchmarks.simclr_fashion_mnist --seeds=0,1,2 [--pretrain=long]

Runs the `jvision demo` pipeline (jvision.demo.run_demo) once per seed in
benchmarks/workdirs/simclr_fashion_mnist[_long]/seed<k>: SimCLR pretraining
(experiments/fashion_mnist_simclr.py with --pretrain as its argument: "" is
the demo's short run, "long" the longer one), then linear probe, fine-tune,
distillation and supervised-from-scratch at 1% and 10% of the labels.
Finished runs are reused (skipped). Records every seed's test accuracies, the
pretraining's last kNN monitor and wall times, and per (method, fraction)
the mean and sample std over seeds, in
benchmarks/results/simclr_fashion_mnist[_long].json after every seed.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import time

from absl import app, flags

from benchmarks import common
from jvision import demo, logging_setup

_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run.")
_PRETRAIN = flags.DEFINE_string(
  "pretrain", "", "Argument of fashion_mnist_simclr.py: '' or 'long'."
)
_WORKDIRS = pathlib.Path(__file__).resolve().parent / "workdirs"


def aggregate(runs: list[dict]) -> list[dict]:
  """Mean and sample std of test accuracy per (method, label fraction)."""
  groups: dict[tuple, list[float]] = {}
  for run in runs:
    for row in run["summary"]:
      key = (row["method"], row["label_fraction"])
      groups.setdefault(key, []).append(row["test_accuracy"])
  return [
    {
      "method": method,
      "label_fraction": fraction,
      "mean_test_accuracy": statistics.mean(values),
      "std_test_accuracy": statistics.stdev(values) if len(values) > 1 else 0,
      "seeds": len(values),
    }
    for (method, fraction), values in groups.items()
  ]


def main(argv):
  del argv
  name = "simclr_fashion_mnist" + (
    f"_{_PRETRAIN.value}" if _PRETRAIN.value else ""
  )
  runs = []
  for seed in map(int, _SEEDS.value):
    workdir = str(_WORKDIRS / name / f"seed{seed}")
    start = time.perf_counter()
    rows = demo.run_demo(workdir, seed=seed, pretrain_arg=_PRETRAIN.value)
    seconds = time.perf_counter() - start
    pretrain_dir = os.path.join(workdir, "simclr")
    runs.append(
      {
        "seed": seed,
        "summary": rows,
        "pretraining_monitor": demo.last_monitor(pretrain_dir),
        "pipeline_seconds": seconds,
        "workdir": os.path.relpath(workdir),
      }
    )
    record = {
      "pretrain_arg": _PRETRAIN.value,
      "seeds_requested": [int(s) for s in _SEEDS.value],
      "runs": runs,
      "aggregate": aggregate(runs),
      "method": (
        "jvision.demo.run_demo per seed (pretraining, then 8 classifiers), "
        "test accuracy on the full 10,000-image test split; std is the "
        "sample standard deviation over seeds; pipeline_seconds is the wall "
        "time of a seed's whole pipeline (shorter where finished runs were "
        "reused)"
      ),
    }
    path = common.save(name, record)
    print(f"seed {seed} done in {seconds / 60:.1f} min; saved {path}")


if __name__ == "__main__":
  logging_setup.configure()
  app.run(main)
