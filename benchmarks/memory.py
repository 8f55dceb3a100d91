"""Peak host and device memory of each trainer.

    python -m benchmarks.memory [--full]

Runs `jvision train` for the supervised, SimCLR and fine-tune recipes of
Fashion-MNIST (their `runlocal` form unless --full: the same networks and
batch sizes, fewer steps and images) in a fresh subprocess each, in a
temporary workdir, and records the process's peak resident host memory
(`ru_maxrss`) and, where the backend reports it (GPUs, TPUs; not the CPU
backend), the device's peak bytes in use.

On every backend it also records XLA's own account of the compiled train
step's device memory (`Compiled.memory_analysis()`: arguments, outputs,
temporaries and the bytes outputs alias from donated inputs), for the step
as trained (the train state donated) and compiled again without donation.
The step's device footprint is arguments + outputs + temporaries - aliased.
Saved to benchmarks/results/memory.json.
"""

from __future__ import annotations

import json
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile

from benchmarks import common

REPO = pathlib.Path(__file__).resolve().parents[1]
RECIPES = {
  "supervised": "fashion_mnist_resnet.py",
  "simclr": "fashion_mnist_simclr.py",
  "finetune": "fashion_mnist_finetune.py:finetune",
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
  call and stores both footprints in `found`.
  """
  from jvision import parallel

  original = parallel.compile_train_step

  def compile_and_record(step, mesh, *, form, donate_state=True):
    compiled = original(step, mesh, form=form, donate_state=donate_state)
    if form != "jit":
      return compiled
    plain = original(step, mesh, form=form, donate_state=False)

    def first_call(state, batch):
      if not found:
        found["donated"] = footprint(compiled.lower(state, batch).compile())
        found["not_donated"] = footprint(plain.lower(state, batch).compile())
      return compiled(state, batch)

    return first_call

  parallel.compile_train_step = compile_and_record


def child(spec: str, workdir: str, init_from: str) -> None:
  """Runs one recipe in this process and prints its peak memory as JSON."""
  import jax

  from jvision import configs_io, train

  step_memory = {}
  record_step_memory(step_memory)

  config = configs_io.load_config_file(spec)
  config.progress_bar = False
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


def main(argv):
  full = "--full" in argv
  root = pathlib.Path(tempfile.mkdtemp())
  record = {}
  for trainer, recipe in RECIPES.items():
    path = REPO / "experiments" / recipe.split(":")[0]
    arg = recipe.partition(":")[2]
    if not full:
      arg = f"{arg},runlocal" if arg else "runlocal"
    spec = f"{path}:{arg}" if arg else str(path)
    out = subprocess.run(
      [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "--child",
        spec,
        str(root / trainer),
        str(root / "simclr"),
      ],
      cwd=REPO,
      check=True,
      capture_output=True,
      text=True,
    ).stdout
    record[trainer] = {
      "recipe": spec.replace(str(REPO) + "/", ""),
      **json.loads(out.strip().splitlines()[-1]),
    }
    print(trainer, record[trainer])
  shutil.rmtree(root)
  record["method"] = (
    "one `jvision train` subprocess per trainer (runlocal recipes unless "
    "--full): peak resident host memory (ru_maxrss) and the device's "
    "peak_bytes_in_use where the backend reports it; train_step_device_mib: "
    "XLA's memory_analysis() of the compiled jit train step for the run's "
    "real state and batch (per device), with the state donated (as "
    "trained) and without; total = arguments + outputs + temporaries - "
    "aliased (a donated buffer is one buffer, not an argument and an "
    "output)"
  )
  print("saved", common.save("memory", record))


if __name__ == "__main__":
  if sys.argv[1:2] == ["--child"]:
    child(*sys.argv[2:5])
  else:
    main(sys.argv[1:])
