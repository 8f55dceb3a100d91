"""Peak host and device memory of each trainer.

    python -m benchmarks.memory [--full] [--recipes=fashion_mnist|cifar10]
        [--steps=N] [--set=KEY=VALUE ...]

Runs `jvision train` for the supervised, SimCLR and fine-tune recipes of
Fashion-MNIST (`--recipes=cifar10`: the CIFAR-10 GPU recipes, RECIPES) in
their `runlocal` form unless --full (the same networks and batch sizes,
fewer steps and images), `--steps` steps each if given, with each
`--set` config override (e.g. --set=batch_size=16; a JSON value or a
string) applied to every recipe, in a fresh
subprocess each, in a temporary workdir, and records the process's peak
resident host memory
(`ru_maxrss`) and, where the backend reports it (GPUs, TPUs; not the CPU
backend), the device's peak bytes in use.

On every backend it also records XLA's own account of the compiled train
step's device memory (`Compiled.memory_analysis()`: arguments, outputs,
temporaries and the bytes outputs alias from donated inputs), for the step
as trained (the train state donated) and compiled again without donation.
The step's device footprint is arguments + outputs + temporaries - aliased.
Saved to benchmarks/results/memory.json for the default (Fashion-MNIST on
the CPU), else memory_<backend>_<recipes>.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile

from benchmarks import common

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPES = {  # --recipes -> trainer -> experiments/ file[:argument]
  "fashion_mnist": {
    "supervised": "fashion_mnist_resnet.py",
    "simclr": "fashion_mnist_simclr.py",
    "finetune": "fashion_mnist_finetune.py:finetune",
  },
  "cifar10": {
    "supervised": "cifar10_fast.py",
    "simclr": "cifar10_simclr_resnet18.py",
    "finetune": "cifar10_linear_eval.py:finetune",
  },
}


MIB = 2**20


def footprint(compiled) -> dict:
  """MiB of device memory a compiled step needs, from XLA's analysis."""
  stats = compiled.memory_analysis()
  parts = {
    "arguments": stats.argument_size_in_bytes,
    "outputs": stats.output_size_in_bytes,
    "temporaries": stats.temp_size_in_bytes,
    "aliased": stats.alias_size_in_bytes,
  }
  # A donated buffer counts among both arguments and outputs but is one
  # buffer: count it once.
  total = (
    parts["arguments"]
    + parts["outputs"]
    + parts["temporaries"]
    - parts["aliased"]
  )
  return {k: round(v / MIB, 2) for k, v in {**parts, "total": total}.items()}


def record_step_memory(found: dict):
  """Wraps `parallel.compile_train_step` to analyse the first step it runs.

  The wrapped step compiles the trainer's real step function (with and
  without donating the state) for the real state and batch of its first
  call and stores both footprints in `found`. The run then steps with the
  executable it analysed (a trainer's batches all have one shape), so the
  step is compiled twice, not a third time by the jit's own first call.
  """
  from jvision import parallel

  original = parallel.compile_train_step

  def compile_and_record(step, mesh, *, form, donate_state=True):
    compiled = original(step, mesh, form=form, donate_state=donate_state)
    if form != "jit":
      return compiled
    plain = original(step, mesh, form=form, donate_state=False)
    executable = []

    def recorded_step(state, batch):
      if not executable:
        executable.append(compiled.lower(state, batch).compile())
        if not found:
          found["donated"] = footprint(executable[0])
          found["not_donated"] = footprint(plain.lower(state, batch).compile())
      return executable[0](state, batch)

    return recorded_step

  parallel.compile_train_step = compile_and_record


def parse_override(text: str) -> tuple[str, object]:
  """ "a.b=VALUE" -> ("a.b", VALUE as JSON if it parses, else the string)."""
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise ValueError(f"--set={text}: expected KEY=VALUE, e.g. batch_size=16")
  try:
    return key, json.loads(value)
  except json.JSONDecodeError:
    return key, value


def apply_overrides(config, overrides: dict) -> None:
  """Sets each dotted key of `overrides` in `config` (which must have it)."""
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    if leaf not in node:
      raise ValueError(f"--set={key}: the recipe's config has no such key")
    node[leaf] = value


def child(
  spec: str, workdir: str, init_from: str, steps: str, overrides: str
) -> None:
  """Runs one recipe in this process and prints its peak memory as JSON.

  `steps` ("0": the recipe's own) caps the run's training steps (and its
  warm-up steps);
  `overrides` is a JSON object of dotted config keys to set."""
  import jax

  from jvision import configs_io, train

  step_memory = {}
  record_step_memory(step_memory)

  config = configs_io.load_config_file(spec)
  config.progress_bar = False
  if int(steps):  # warm-up within the capped run
    config.num_train_steps = int(steps)
    warmup = config.optimizer.warmup_steps
    config.optimizer.warmup_steps = min(warmup, int(steps))
  apply_overrides(config, json.loads(overrides))
  if config.trainer == "finetune":
    config.init_from = init_from
  train.get_trainer(config.trainer)(config, workdir)
  stats = jax.devices()[0].memory_stats() or {}
  print(
    json.dumps(
      {
        "peak_host_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        / 1024,
        "device_peak_bytes": stats.get("peak_bytes_in_use"),
        "backend": jax.default_backend(),
        "train_step_device_mib": step_memory,
      }
    )
  )


def recipe_spec(recipe: str, full: bool) -> str:
  """experiments/<file>[:<arg>], with "runlocal" added unless `full`."""
  path = REPO / "experiments" / recipe.split(":")[0]
  arg = recipe.partition(":")[2]
  if not full:
    arg = f"{arg},runlocal" if arg else "runlocal"
  return f"{path}:{arg}" if arg else str(path)


def results_name(recipes: str, backend: str) -> str:
  """ "memory" for the README's default, else memory_<backend>_<recipes>."""
  if (recipes, backend) == ("fashion_mnist", "cpu"):
    return "memory"
  return f"memory_{backend}_{recipes}"


def parse_args(argv) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
  parser.add_argument("--full", action="store_true", help="full recipes")
  parser.add_argument(
    "--recipes", choices=sorted(RECIPES), default="fashion_mnist"
  )
  parser.add_argument(
    "--steps", type=int, default=0, help="cap each run's steps (0: none)"
  )
  parser.add_argument(
    "--set",
    action="append",
    default=[],
    type=parse_override,
    metavar="KEY=VALUE",
    help="a config override for every recipe (repeatable)",
  )
  return parser.parse_args(argv)


def main(argv):
  import jax

  args = parse_args(argv)
  root = pathlib.Path(tempfile.mkdtemp())
  record = {}
  for trainer, recipe in RECIPES[args.recipes].items():
    spec = recipe_spec(recipe, args.full)
    out = subprocess.run(
      [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--child",
        spec,
        str(root / trainer),
        str(root / "simclr"),
        str(args.steps),
        json.dumps(dict(args.set)),
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
    )
    if out.returncode:
      sys.exit(
        f"benchmarks.memory: {trainer} ({spec}) failed with exit "
        f"{out.returncode}:\n{out.stderr[-3000:]}"
      )
    record[trainer] = {
      "recipe": spec.replace(str(REPO) + "/", ""),
      "steps": args.steps or None,
      "overrides": dict(args.set),
      **json.loads(out.stdout.strip().splitlines()[-1]),
    }
    print(trainer, record[trainer], flush=True)
  shutil.rmtree(root)
  steps = f", {args.steps} steps each" if args.steps else ""
  record["method"] = (
    "one `jvision train` subprocess per trainer (runlocal recipes unless "
    f"--full{steps}): peak resident host memory (ru_maxrss) and the "
    "device's peak_bytes_in_use where the backend reports it; "
    "train_step_device_mib: XLA's memory_analysis() of the compiled jit "
    "train step for the run's real state and batch (per device), with the "
    "state donated (as trained) and without; total = arguments + outputs + "
    "temporaries - aliased (a donated buffer is one buffer, not an "
    "argument and an output)"
  )
  name = results_name(args.recipes, jax.default_backend())
  print("saved", common.save(name, record))


if __name__ == "__main__":
  if sys.argv[1:2] == ["--child"]:
    child(*sys.argv[2:7])
  else:
    main(sys.argv[1:])
