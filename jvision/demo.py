"""`jvision demo`: the whole pipeline on the embedded default, Fashion-MNIST.

1. SimCLR pretraining on the 60,000 training images without their labels
   (experiments/fashion_mnist_simclr.py).
2. For 1% and 10% of the labels (a class-balanced, seeded subset): a linear
   probe and a fine-tune of the pretrained network, and the same network
   trained from scratch on the same labels
   (experiments/fashion_mnist_finetune.py: linear, finetune, scratch).
3. Every classifier is evaluated on the 10,000 test images (DIR/<run>/eval/).

It prints a comparison table and writes DIR/summary.json, a list of
{"method": "simclr_linear" | "simclr_finetune" | "supervised",
 "label_fraction": 0.01, "test_accuracy": 0.0} (one per run), and
DIR/summary.png. Each run lives in its own sub-workdir and resumes from its
checkpoints, so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jvision
from jvision import configs_io, train
from jvision.evaluate import plots
from jvision.evaluate import run as evaluate_run

PRETRAIN_CONFIG = "fashion_mnist_simclr.py"
DOWNSTREAM_CONFIG = "fashion_mnist_finetune.py"
LABEL_FRACTIONS = (0.01, 0.1)
# summary.json's method name -> the downstream config's mode.
METHODS = {
  "simclr_linear": "linear",
  "simclr_finetune": "finetune",
  "supervised": "scratch",
}


@dataclasses.dataclass(frozen=True)
class DemoRun:
  """One classifier of the demo: a method at a label fraction."""

  method: str  # a key of METHODS
  label_fraction: float
  config_spec: str  # experiments/FILE.py:ARG
  workdir: str


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


def fraction_tag(fraction: float) -> str:
  """0.01 -> "1pct", 0.1 -> "10pct" (workdir names)."""
  return f"{fraction * 100:g}pct".replace(".", "p")


def plan_runs(
  workdir: str, fractions=LABEL_FRACTIONS, extra_arg: str = ""
) -> list[DemoRun]:
  """The downstream runs, in the order the demo trains them."""
  base = os.path.join(experiments_dir(), DOWNSTREAM_CONFIG)
  suffix = f",{extra_arg}" if extra_arg else ""
  return [
    DemoRun(
      method=method,
      label_fraction=fraction,
      config_spec=f"{base}:{mode},{fraction}{suffix}",
      workdir=os.path.join(workdir, f"{method}_{fraction_tag(fraction)}"),
    )
    for fraction in fractions
    for method, mode in METHODS.items()
  ]


def format_table(rows: list[dict]) -> str:
  """Test accuracy per method (columns) and label fraction (rows)."""
  fractions = sorted({r["label_fraction"] for r in rows})
  methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
  acc = {(r["method"], r["label_fraction"]): r["test_accuracy"] for r in rows}
  lines = [
    f"{'labels':>14}  " + "  ".join(f"{m:>15}" for m in methods),
  ]
  for fraction in fractions:
    cells = []
    for method in methods:
      value = acc.get((method, fraction))
      cells.append(f"{'-' if value is None else f'{value:.4f}':>15}")
    label = f"{fraction * 100:g}% ({round(60_000 * fraction)})"
    lines.append(f"{label:>14}  " + "  ".join(cells))
  return "\n".join(lines)


def _train(config, workdir: str) -> dict:
  return train.get_trainer(config.trainer)(config, workdir)


def run_demo(
  workdir: str,
  *,
  seed: int = 0,
  pretrain_arg: str = "",
  downstream_arg: str = "",
  fractions=LABEL_FRACTIONS,
) -> list[dict]:
  """Runs the whole pipeline in `workdir`; prints and returns the summary.

  Args:
    workdir: the demo's directory; each run gets a sub-workdir.
    seed: `config.seed` of every run (initialisation, data order, and the
      label subset).
    pretrain_arg: the argument of experiments/fashion_mnist_simclr.py
      ("" for the demo's short pretraining, "long", "runlocal").
    downstream_arg: extra argument of the downstream config ("runlocal").
    fractions: the label fractions to compare.

  Returns:
    The rows of DIR/summary.json.
  """
  start = time.perf_counter()
  pretrain_dir = os.path.join(workdir, "simclr")
  runs = plan_runs(workdir, fractions, downstream_arg)
  total = 1 + len(runs)
  spec = os.path.join(experiments_dir(), PRETRAIN_CONFIG)
  config = configs_io.load_config_file(
    f"{spec}:{pretrain_arg}" if pretrain_arg else spec
  )
  config.seed = seed
  print(
    f"jvision demo: SimCLR on Fashion-MNIST, then {len(runs)} classifiers "
    f"with {', '.join(f'{f:.0%}' for f in fractions)} of the labels; "
    f"workdir {workdir}\n[1/{total}] SimCLR pretraining without labels: "
    f"{config.model.name} width {config.model.get('width', 1.0)}, "
    f"{config.num_train_steps} steps of {config.batch_size} images "
    f"-> {pretrain_dir}",
    flush=True,
  )
  pretrained = _train(config, pretrain_dir)
  print(f"  monitors at the end of pretraining: {pretrained['eval']}")
  rows = []
  for index, run in enumerate(runs, start=2):
    config = configs_io.load_config_file(run.config_spec)
    config.seed = seed
    if config.trainer == "finetune":
      config.init_from = pretrain_dir
    print(
      f"[{index}/{total}] {run.method} on {run.label_fraction:.0%} of the "
      f"labels: {config.num_train_steps} steps -> {run.workdir}",
      flush=True,
    )
    _train(config, run.workdir)
    report = evaluate_run.evaluate_workdir(run.workdir, "test")
    rows.append(
      {
        "method": run.method,
        "label_fraction": run.label_fraction,
        "test_accuracy": report["accuracy"],
      }
    )
    print(f"  test accuracy {report['accuracy']:.4f}", flush=True)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(rows, f, indent=2)
  plots.plot_label_efficiency(rows, os.path.join(workdir, "summary.png"))
  minutes = (time.perf_counter() - start) / 60
  print(
    f"\nFashion-MNIST test accuracy ({minutes:.1f} min in all):\n"
    f"{format_table(rows)}\n\n"
    f"outputs in {os.path.abspath(workdir)}:\n"
    "  summary.json, summary.png   the table above, as data and as a chart\n"
    "  simclr/                     pretraining: metrics.jsonl (kNN and "
    "probe monitors),\n"
    "                              augmentations.png, checkpoints/, "
    "tensorboard/\n"
    "  <method>_<N>pct/            each classifier: checkpoints/, "
    "eval/metrics.json,\n"
    "                              eval/confusion_matrix.png, "
    "eval/training_curves.png"
  )
  return rows
