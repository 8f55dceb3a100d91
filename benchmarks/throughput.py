"""Images/s of the bare jitted train step and of the full trainer, by feed.

    python -m benchmarks.throughput [--models=cnn,resnet18] [--steps=N]
        [--feeds=host,device]

Bare step: `supervised.train_step` (with its on-device augmentation) on one
device-resident batch, timed step by step with block_until_ready; median of
`--steps` steps after 3 warm-up steps. Full trainer: `train_and_evaluate`
on CIFAR-10 (q75) with the data pipeline, once per `config.data.feed`
(jvision/data/feed.py: batches copied from the host, or gathered on the
devices from a resident split), logging every `LOG_EVERY` steps and
saving a checkpoint only at the end; the median of its logged images/s and
of its logged `data_wait_fraction` (the share of the interval the loop
waited for a batch) over the intervals after the first (which holds
compilation). Overhead = 1 - trainer / bare. Results:
benchmarks/results/throughput.json.
"""

from __future__ import annotations

import json
import statistics
import tempfile

import jax
from absl import app, flags

from benchmarks import common
from jvision import logging_setup
from jvision.train import defaults, supervised

_MODELS = flags.DEFINE_list("models", ["cnn", "resnet18"], "Models to time.")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps per measurement.")
_TRAINER_STEPS = flags.DEFINE_integer(
  "trainer_steps", 0, "Trainer steps (0: LOG_EVERY x (--steps + 1))."
)
_FEEDS = flags.DEFINE_list(
  "feeds", ["host", "device"], "config.data.feed values for the trainer."
)

LOG_EVERY = 10
# Checkpoints only at the end (real runs save 1000s of steps apart); that
# save falls after the last timed interval.
CHECKPOINT_EVERY = 0

BATCH = {"cnn": 256, "resnet18": 128}
MODEL_KWARGS = {"cnn": {}, "resnet18": {"stem": "cifar"}}  # 32x32 inputs
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def config_for(model: str, steps: int, feed: str = "auto"):
  config = defaults.supervised_config()
  config.data.name = "cifar10"
  config.data.mean, config.data.std = MEAN, STD
  config.model.name = model
  for key, value in MODEL_KWARGS[model].items():
    config.model[key] = value
  config.batch_size = BATCH[model]
  config.num_train_steps = steps
  config.data.feed = feed
  config.log_every_steps = LOG_EVERY
  config.eval_every_steps = 0
  config.checkpoint_every_steps = CHECKPOINT_EVERY
  config.progress_bar = False
  return config


def bare_step_times(model_name: str, steps: int) -> list[float]:
  """Seconds per step of the compiled supervised step, one device batch."""
  return common.recipe_step_times(
    config_for(model_name, steps), (32, 32, 3), steps
  )


def trainer_intervals(model_name: str, steps: int, feed: str) -> dict:
  """The full trainer's logged images/s and data-wait fractions per
  interval (not the first), with `config.data.feed=feed`."""
  with tempfile.TemporaryDirectory() as workdir:
    supervised.train_and_evaluate(config_for(model_name, steps, feed), workdir)
    with open(f"{workdir}/metrics.jsonl") as f:
      records = [json.loads(line) for line in f]
  train = [r for r in records if r["split"] == "train"][1:]
  return {
    "images_per_sec": [r["images_per_sec"] for r in train],
    "data_wait_fraction": [r["data_wait_fraction"] for r in train],
  }


def main(argv):
  del argv
  previous = common.results_dir() / "throughput.json"
  results = json.loads(previous.read_text()) if previous.exists() else {}
  results.pop("machine", None)  # re-described by common.save
  for name in _MODELS.value:
    times = bare_step_times(name, _STEPS.value)
    bare = BATCH[name] / statistics.median(times)
    trainer_steps = _TRAINER_STEPS.value or LOG_EVERY * (_STEPS.value + 1)
    trainer = {}
    for feed in _FEEDS.value:
      intervals = trainer_intervals(name, trainer_steps, feed)
      rate = statistics.median(intervals["images_per_sec"])
      trainer[feed] = {
        "images_per_sec": rate,
        "overhead": 1 - rate / bare,
        "data_wait_fraction": statistics.median(
          intervals["data_wait_fraction"]
        ),
        "intervals": intervals,
      }
      t = trainer[feed]
      print(
        f"{name}: bare {bare:.0f} img/s; trainer, feed={feed}: {rate:.0f} "
        f"img/s (overhead {100 * t['overhead']:.1f}%, waiting for data "
        f"{100 * t['data_wait_fraction']:.1f}% of the time)"
      )
    num_intervals = len(intervals["images_per_sec"])
    results[name] = {
      "batch_size": BATCH[name],
      "image_shape": [32, 32, 3],
      "model_kwargs": MODEL_KWARGS[name],
      "backend": jax.default_backend(),
      "bare_step_images_per_sec": bare,
      "bare_step_seconds": times,
      "trainer": trainer,
      "method": (
        f"bare: median of {len(times)} steps after 3 warm-up; trainer: "
        f"median of {num_intervals} {LOG_EVERY}-step intervals after the "
        "first, per feed"
      ),
    }
  print("saved", common.save("throughput", results))


if __name__ == "__main__":
  logging_setup.configure()
  app.run(main)
