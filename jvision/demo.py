"""`jvision demo`: the whole pipeline on the embedded default, Fashion-MNIST.

SimCLRv2's path (pretrain, fine-tune, distil) beside the baselines:

1. SimCLR pretraining on the 60,000 training images without their labels
   (experiments/fashion_mnist_simclr.py).
2. For 1% and 10% of the labels (a class-balanced, seeded subset): a linear
   probe and a fine-tune of the pretrained network
   (experiments/fashion_mnist_finetune.py: linear, finetune); the fine-tuned
   network distilled into a student on all 60,000 training images without
   their labels (experiments/fashion_mnist_distill.py); and the same network
   trained from scratch on the same labels (fashion_mnist_finetune.py:
   scratch).
3. Every classifier is evaluated on the 10,000 test images (DIR/<run>/eval/).

It prints a comparison table, then the best SimCLR method's margin over
supervised training per label fraction, and writes DIR/summary.json, a list of
{"method": "simclr_linear" | "simclr_finetune" | "simclr_distill" |
 "supervised", "label_fraction": 0.01, "test_accuracy": 0.0} (one per run),
and DIR/summary.png. Each run lives in its own sub-workdir and resumes from its
checkpoints, so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jvision
from jvision import checkpoint, configs_io, models, train
from jvision import workdir as workdir_lib
from jvision.evaluate import plots
from jvision.evaluate import run as evaluate_run

PRETRAIN_CONFIG = "fashion_mnist_simclr.py"
LABEL_FRACTIONS = (0.01, 0.1)
PRETRAINED = "simclr"  # the pretraining's sub-workdir


@dataclasses.dataclass(frozen=True)
class Method:
  """How the demo trains one of its methods.

  Attributes:
    config: the recipe in experiments/.
    mode: its first argument word ("" for none).
    starts_from: the method whose workdir this one starts from (its
      `init_from`, or its distillation teacher): PRETRAINED, another
      method's name, or "" (from scratch).
  """

  config: str
  mode: str
  starts_from: str


# summary.json's method names, in the order the demo trains them per label
# fraction (a method after the one it starts from).
METHODS = {
  "simclr_linear": Method("fashion_mnist_finetune.py", "linear", PRETRAINED),
  "simclr_finetune": Method(
    "fashion_mnist_finetune.py", "finetune", PRETRAINED
  ),
  "simclr_distill": Method("fashion_mnist_distill.py", "", "simclr_finetune"),
  "supervised": Method("fashion_mnist_finetune.py", "scratch", ""),
}


@dataclasses.dataclass(frozen=True)
class DemoRun:
  """One classifier of the demo: a method at a label fraction."""

  method: str  # a key of METHODS
  label_fraction: float
  config_spec: str  # experiments/FILE.py:ARG
  workdir: str
  source: str  # the workdir it starts from ("" for none)


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


def _run_dir(workdir: str, method: str, fraction: float) -> str:
  if method == PRETRAINED:
    return os.path.join(workdir, PRETRAINED)
  return os.path.join(workdir, f"{method}_{fraction_tag(fraction)}")


def plan_runs(
  workdir: str, fractions=LABEL_FRACTIONS, extra_arg: str = ""
) -> list[DemoRun]:
  """The downstream runs, in the order the demo trains them."""
  suffix = f",{extra_arg}" if extra_arg else ""
  runs = []
  for fraction in fractions:
    for name, method in METHODS.items():
      words = ",".join(w for w in (method.mode, f"{fraction}") if w)
      runs.append(
        DemoRun(
          method=name,
          label_fraction=fraction,
          config_spec=(
            f"{os.path.join(experiments_dir(), method.config)}:{words}{suffix}"
          ),
          workdir=_run_dir(workdir, name, fraction),
          source=(
            _run_dir(workdir, method.starts_from, fraction)
            if method.starts_from
            else ""
          ),
        )
      )
  return runs


def _start_from(config, source: str):
  """Points a downstream config at the workdir it starts from."""
  if config.trainer == "finetune":
    config.init_from = source
  elif config.trainer == "distill":
    config.distill.teacher = source


def _accuracies(rows: list[dict]) -> dict:
  """{(method, label fraction): test accuracy} of summary rows."""
  return {(r["method"], r["label_fraction"]): r["test_accuracy"] for r in rows}


def _labels(fraction: float) -> str:
  """0.01 -> "1% (600)": a fraction of Fashion-MNIST's training labels."""
  return f"{fraction * 100:g}% ({round(60_000 * fraction)})"


def format_table(rows: list[dict]) -> str:
  """Test accuracy per method (columns) and label fraction (rows)."""
  fractions = sorted({r["label_fraction"] for r in rows})
  methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
  acc = _accuracies(rows)
  lines = [
    f"{'labels':>14}  " + "  ".join(f"{m:>15}" for m in methods),
  ]
  for fraction in fractions:
    cells = []
    for method in methods:
      value = acc.get((method, fraction))
      cells.append(f"{'-' if value is None else f'{value:.4f}':>15}")
    lines.append(f"{_labels(fraction):>14}  " + "  ".join(cells))
  return "\n".join(lines)


def _train(config, workdir: str) -> dict:
  return train.get_trainer(config.trainer)(config, workdir)


def _same_config(config, workdir: str) -> bool:
  """Whether `workdir` records `config`'s run: every key `config` sets
  has the recorded value; keys it leaves to the trainer (None or "auto",
  resolved at start, e.g. `model.proj_hidden_dims`, `data.loading`) are
  not compared."""
  recorded = workdir_lib.read_config(workdir).to_dict()
  changed = workdir_lib.changed_keys(recorded, config.to_dict())
  return all(
    wanted is None or wanted == "auto" for _, wanted in changed.values()
  )


def _trained(config, workdir: str) -> bool:
  """Whether `workdir` holds `config`'s run, checkpointed at
  `config.num_train_steps` (another seed's run is not; the trainer then
  refuses the workdir, naming the differences)."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory) or not _same_config(config, workdir):
    return False
  latest = checkpoint.Checkpointer(directory).latest_step()
  return latest == config.num_train_steps


def _test_report(config, workdir: str) -> dict | None:
  """DIR/eval/metrics.json when it is the test split of the run's own data
  at its last step (a finished run's evaluation, reused on a rerun; not a
  `jvision eval --data` of other data); else None."""
  path = os.path.join(workdir, "eval", "metrics.json")
  if not os.path.isfile(path) or not _trained(config, workdir):
    return None
  with open(path) as f:
    report = json.load(f)
  own = report.get("data", config.data.name) == config.data.name
  done = own and report.get("split") == "test"
  return (
    report if done and report.get("step") == config.num_train_steps else None
  )


def pretraining_gains(rows: list[dict]) -> list[str]:
  """One line per label fraction with a supervised row: the most accurate
  SimCLR method there and its margin over supervised training from
  scratch in points (what the pretraining bought), e.g. "1% (600):
  simclr_distill 83.86%, +0.99 points over supervised (82.87%)"."""
  acc = _accuracies(rows)
  lines = []
  for fraction in sorted({r["label_fraction"] for r in rows}):
    baseline = acc.get(("supervised", fraction))
    simclr = [
      (value, method)
      for (method, f), value in acc.items()
      if f == fraction and method.startswith("simclr_")
    ]
    if baseline is None or not simclr:
      continue
    value, method = max(simclr)
    lines.append(
      f"{_labels(fraction)}: {method} "
      f"{100 * value:.2f}%, {100 * (value - baseline):+.2f} points over "
      f"supervised ({100 * baseline:.2f}%)"
    )
  return lines


def describe_model(section) -> str:
  """A config's `model` section in words: its name, then its other keys
  (`models.config_kwargs`), e.g. "fast_cifar (pool=flatten, stem_width=8,
  widths=(16, 32))"."""
  kwargs = models.config_kwargs(section)
  fields = ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()))
  return f"{section.name} ({fields})" if fields else section.name


def last_monitor(workdir: str) -> dict:
  """The newest test-split record of a SimCLR workdir's metrics.jsonl (its
  kNN and probe monitors); {} before the first."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    return {}
  tests = [
    r for r in plots.read_metrics_jsonl(path) if r.get("split") == "test"
  ]
  return tests[-1] if tests else {}


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
  pretrain_dir = os.path.join(workdir, PRETRAINED)
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
    f"{describe_model(config.model)}, "
    f"{config.num_train_steps} steps of {config.batch_size} images "
    f"-> {pretrain_dir}",
    flush=True,
  )
  if _trained(config, pretrain_dir):
    print("  already trained", flush=True)
  else:
    _train(config, pretrain_dir)
  monitors = {
    k: round(v, 4)
    for k, v in last_monitor(pretrain_dir).items()
    if isinstance(v, float)
  }
  print(f"  monitors at the end of pretraining: {monitors}", flush=True)
  rows = []
  for index, run in enumerate(runs, start=2):
    config = configs_io.load_config_file(run.config_spec)
    config.seed = seed
    _start_from(config, run.source)
    print(
      f"[{index}/{total}] {run.method} on {run.label_fraction:.0%} of the "
      f"labels: {config.num_train_steps} steps -> {run.workdir}",
      flush=True,
    )
    report = _test_report(config, run.workdir)
    if report is None:
      _train(config, run.workdir)
      report = evaluate_run.evaluate_workdir(
        run.workdir, "test", embedding_map=False
      )
    else:
      print("  already trained and evaluated", flush=True)
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
  gains = "".join(f"  {line}\n" for line in pretraining_gains(rows))
  print(
    f"\nFashion-MNIST test accuracy ({minutes:.1f} min in all):\n"
    f"{format_table(rows)}\n\n"
    "the best SimCLR method against training from scratch on the same "
    f"labels:\n{gains}\n"
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
