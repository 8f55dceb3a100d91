"""Test accuracy of an experiment config over several seeds.

    python -m benchmarks.accuracy --config=experiments/fashion_mnist_cnn.py \
        --seeds=0,1,2 [--name=fashion_mnist_cnn] [--workdirs=DIR]
        [--config.KEY=VALUE ...]

Each seed trains from scratch in <--workdirs>/<name>/seed<k> (default
benchmarks/workdirs; reused if finished: training resumes or is skipped,
evaluation reruns), then `jvision eval` computes the test metrics. Records
per-seed accuracy, wall time of the training (data loading and compilation
included) and the steady logged images/s (intervals after the first), and
mean and sample std over seeds, in benchmarks/results/accuracy_<name>.json.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import time

from absl import app, flags
from ml_collections import config_flags

from benchmarks import common
from jvision import logging_setup, train
from jvision.evaluate import run as evaluate_run

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment file.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to train.")
_NAME = flags.DEFINE_string("name", None, "Result name (default: file stem).")
_WORKDIRS = flags.DEFINE_string(
  "workdirs",
  str(pathlib.Path(__file__).resolve().parent / "workdirs"),
  "Where the seeds' workdirs go.",
)


def main(argv):
  del argv
  config_path = flags.FLAGS["config"].config_filename
  name = _NAME.value or pathlib.Path(config_path.split(":")[0]).stem
  runs = []
  for seed in map(int, _SEEDS.value):
    config = _CONFIG.value.copy_and_resolve_references()
    config.seed = seed
    workdir = str(pathlib.Path(_WORKDIRS.value) / name / f"seed{seed}")
    start = time.perf_counter()
    train.get_trainer(config.trainer)(config, workdir)
    seconds = time.perf_counter() - start
    report = evaluate_run.evaluate_workdir(workdir, config.data.eval_split)
    runs.append(
      {
        "seed": seed,
        "test_accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "train_seconds": seconds,
        "images_per_sec": common.steady_images_per_sec(
          common.read_metrics(workdir)
        ),
        "workdir": os.path.relpath(workdir),
      }
    )
    print(f"{name} seed {seed}: accuracy {report['accuracy']:.4f}")
    path = _save(name, config_path, runs)  # after every seed: partial too
  print("saved", path)


def _save(name: str, config_path: str, runs: list[dict]):
  """Writes the seeds finished so far with their mean and spread."""
  accuracies = [r["test_accuracy"] for r in runs]
  std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
  record = {
    "config": config_path,
    "resolved_config": _CONFIG.value.to_dict(),
    "seeds_requested": [int(s) for s in _SEEDS.value],
    "runs": runs,
    "mean_test_accuracy": statistics.mean(accuracies),
    "std_test_accuracy": std,
    "method": (
      f"{len(runs)} seed(s) trained from scratch and evaluated on the full "
      "test split; std is the sample standard deviation over seeds"
    ),
  }
  print(
    f"{name}: {100 * record['mean_test_accuracy']:.2f} +- {100 * std:.2f}% "
    f"over {len(runs)} seeds"
  )
  return common.save(f"accuracy_{name}", record)


if __name__ == "__main__":
  logging_setup.configure()
  app.run(main)
