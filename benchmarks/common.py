"""What every benchmark records beside its numbers: machine and versions."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform

import jax
import numpy as np

from jvision import parallel
from jvision.train import workdir

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def machine() -> dict:
  """The hardware and software a figure was measured on."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      names = [
        line.split(":", 1)[1].strip()
        for line in f
        if line.startswith("model name")
      ]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return {
    "cpu": cpu,
    "cores": os.cpu_count(),
    "devices": [str(d) for d in jax.devices()],
    "backend": jax.default_backend(),
    "versions": workdir.package_versions(),
    "git_revision": workdir.git_revision()[0],
    "date": datetime.date.today().isoformat(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def save(name: str, record: dict) -> pathlib.Path:
  """Writes results/<name>.json with the machine description added."""
  RESULTS.mkdir(parents=True, exist_ok=True)
  path = RESULTS / f"{name}.json"
  with open(path, "w") as f:
    json.dump({**record, "machine": machine()}, f, indent=2)
  return path


def device_batch(batch_size: int, image_shape, mesh, num_classes: int = 10):
  """A seeded random batch for timing a train step, sharded over `mesh`:
  {"image": uint8 [B, H, W, C], "label": int32 [B]}."""
  rng = np.random.default_rng(0)
  return parallel.shard_batch(
    {
      "image": rng.integers(0, 256, (batch_size, *image_shape), np.uint8),
      "label": rng.integers(0, num_classes, (batch_size,), np.int32),
    },
    mesh,
  )
