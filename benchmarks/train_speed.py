"""Wall time and images/s of one training run of a recipe.

    python -m benchmarks.train_speed --config=experiments/X.py[:ARG] \
        [--name=NAME] [--workdir=DIR] [--config.KEY=VALUE ...]

Trains the config once from scratch, in `--workdir` (default: a temporary
directory, removed after), and records: the wall time of the whole run
(data loading, compilation, training, its evaluations and checkpoint
writes); the median of the logged images/s over the logged intervals after
the first (which holds compilation; SimCLR counts both views, as its log
does); the run's steps at that rate (`steady_seconds`: for a one-epoch
recipe, the epoch time without start-up and compilation); and the last
logged metrics of each split (e.g. SimCLR's kNN monitor, a classifier's
test accuracy). Log often enough for several intervals
(--config.log_every_steps). Results: results/train_speed_<name>.json.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import time

from absl import app, flags
from ml_collections import config_flags

from benchmarks import common
from jvision import logging_setup, train
from jvision.train import simclr

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment file.")
_NAME = flags.DEFINE_string("name", None, "Result name (default: file stem).")
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Run directory (default: a temporary one, removed)."
)


def summarize(records: list[dict], *, steps: int, images_per_step: int):
  """Steady images/s, the run's steps at that rate, last metrics per split.

  Args:
    records: metrics.jsonl records ({"step", "split", ...}).
    steps: the run's training steps.
    images_per_step: images one step sees (batch x views for SimCLR).

  Raises:
    ValueError: fewer than two logged train intervals (the first holds
      compilation, so there is no steady rate).
  """
  steady = common.steady_images_per_sec(records)
  if steady is None:
    raise ValueError(
      "fewer than 2 logged train intervals; the steady rate needs them "
      "(lower --config.log_every_steps)"
    )
  last = {}
  for r in records:
    last[r["split"]] = {k: v for k, v in r.items() if k != "split"}
  return {
    "images_per_sec": steady,
    "steady_seconds": steps * images_per_step / steady,
    "last_metrics": last,
  }


def main(argv):
  del argv
  config = _CONFIG.value
  config_path = flags.FLAGS["config"].config_filename
  name = _NAME.value or pathlib.Path(config_path.split(":")[0]).stem
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="train_speed_")
  start = time.perf_counter()
  train.get_trainer(config.trainer)(config, workdir)
  seconds = time.perf_counter() - start
  views = simclr.VIEWS_PER_IMAGE if config.trainer == "simclr" else 1
  record = {
    "config": config_path,
    "resolved_config": config.to_dict(),
    "trainer": config.trainer,
    "dtype": config.dtype,
    "steps": config.num_train_steps,
    "batch_size": config.batch_size,
    "images_per_step": config.batch_size * views,
    "wall_seconds": seconds,
    **summarize(
      common.read_metrics(workdir),
      steps=config.num_train_steps,
      images_per_step=config.batch_size * views,
    ),
    "method": (
      "one run from scratch: wall time of the whole run (data loading, "
      "compilation, training, evaluations, checkpoints); images/s is the "
      "median of the logged intervals after the first (SimCLR counts both "
      "views); steady_seconds = steps x images per step / that rate"
    ),
  }
  if not _WORKDIR.value:
    shutil.rmtree(workdir)
  print(
    f"{name}: {record['steps']} steps in {seconds:.1f} s end to end; "
    f"{record['images_per_sec']:.0f} img/s steady "
    f"({record['steady_seconds']:.1f} s at that rate)"
  )
  print("saved", common.save(f"train_speed_{name}", record))


if __name__ == "__main__":
  logging_setup.configure()
  app.run(main)
