"""`jvision demo`: the pipeline on the embedded default, Fashion-MNIST.

Trains the recipe in experiments/fashion_mnist_cnn.py,
evaluates it on the test split and says where everything went.
"""

from __future__ import annotations

import os
import time

import jvision
from jvision import configs_io, train
from jvision.evaluate import workdir as eval_workdir

DEMO_CONFIG = "fashion_mnist_cnn.py"


def experiments_dir() -> str:
  """experiments/ of the jvision checkout this package was installed from."""
  path = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(jvision.__file__))),
    "experiments",
  )
  if not os.path.isdir(path):
    raise FileNotFoundError(
      f"{path} not found: `jvision demo` runs from a jvision checkout "
      "installed with `pip install -e .` (see README)"
    )
  return path


def run_demo(workdir: str) -> dict:
  """Trains and evaluates the demo recipe in `workdir`; prints a summary."""
  config = configs_io.load_config_file(
    os.path.join(experiments_dir(), DEMO_CONFIG)
  )
  print(
    f"jvision demo: seed CNN on Fashion-MNIST, {config.num_train_steps} "
    f"steps of {config.batch_size} images, workdir {workdir}"
  )
  start = time.perf_counter()
  result = train.get_trainer(config.trainer)(config, workdir)
  train_seconds = time.perf_counter() - start
  report = eval_workdir.evaluate_workdir(workdir, "test")
  total = time.perf_counter() - start
  out = os.path.join(workdir, "eval")
  print(
    f"\nstarted from {result['source']}; training took {train_seconds:.0f} s, "
    f"everything {total:.0f} s\n"
    f"test accuracy {report['accuracy']:.4f}, macro F1 "
    f"{report['macro_f1']:.4f} on {report['num_examples']} test images\n"
    f"outputs in {os.path.abspath(workdir)}:\n"
    f"  config.json            the resolved config, git revision, versions\n"
    f"  metrics.jsonl          train/test metrics per logged step\n"
    f"  checkpoints/           Orbax checkpoints (resumable)\n"
    f"  tensorboard/           tensorboard --logdir {workdir}/tensorboard\n"
    f"  eval/metrics.json      accuracy, macro F1, per-class scores\n"
    f"  eval/confusion_matrix.png, {os.path.relpath(out, workdir)}"
    f"/training_curves.png"
  )
  return report
