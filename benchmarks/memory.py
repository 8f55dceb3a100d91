"""Peak host and device memory of each trainer.

    python -m benchmarks.memory [--full]

Runs `jvision train` for the supervised, SimCLR and fine-tune recipes of
Fashion-MNIST (their `runlocal` form unless --full: the same networks and
batch sizes, fewer steps and images) in a fresh subprocess each, in a
temporary workdir, and records the process's peak resident host memory
(`ru_maxrss`) and, where the backend reports it (GPUs, TPUs; not the CPU
backend), the device's peak bytes in use. The jit form donates the train
state's buffers to each step (one copy of parameters and optimizer state
instead of two). Saved to benchmarks/results/memory.json.
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


def child(spec: str, workdir: str, init_from: str) -> None:
  """Runs one recipe in this process and prints its peak memory as JSON."""
  import jax

  from jvision import configs_io, train

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
    "peak_bytes_in_use where the backend reports it"
  )
  print("saved", common.save("memory", record))


if __name__ == "__main__":
  if sys.argv[1:2] == ["--child"]:
    child(*sys.argv[2:5])
  else:
    main(sys.argv[1:])
