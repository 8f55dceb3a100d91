"""Writes logged metrics to DIR/metrics.jsonl and TensorBoard.

Each call appends one JSON object {"step", "split", <name>: <value>, ...};
TensorBoard gets the same values as scalars named "<split>/<name>". Only
process 0 writes.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np


class MetricWriter:
  """Appends metrics of one run; safe to re-open when a run resumes."""

  def __init__(self, workdir: str):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      summary_writer = import_summary_writer()
      self._tb = summary_writer(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, split: str, metrics: dict) -> None:
    if not self.enabled:
      return
    values = {k: _scalar(v) for k, v in metrics.items()}
    with open(self.path, "a") as f:
      f.write(json.dumps({"step": int(step), "split": split, **values}))
      f.write("\n")
    for name, value in values.items():
      self._tb.add_scalar(f"{split}/{name}", value, int(step))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def import_summary_writer() -> type:
  """tensorboardX's SummaryWriter, imported without PyTorch.

  tensorboardX imports torch whenever it is installed (to accept torch
  tensors, which jvision never passes), and that import took 1.5-2.6 s of
  every `jvision train` on a 2-core CPU (benchmarks/NOTES.md, 2026-12-03).
  While tensorboardX loads, "torch" maps to None in `sys.modules`, so its
  guarded `import torch` fails and it uses NumPy alone; a process that
  already imported torch keeps it.
  """
  if "torch" in sys.modules:
    from tensorboardX import SummaryWriter

    return SummaryWriter
  sys.modules["torch"] = None  # `import torch` raises ImportError
  try:
    from tensorboardX import SummaryWriter
  finally:
    del sys.modules["torch"]
  return SummaryWriter


def _scalar(value) -> float | int:
  value = np.asarray(value).item()
  return value if isinstance(value, int) else float(value)


def drop_records_after(path: str, step: int) -> int:
  """Removes records logged after `step` (a resumed run logs them again).

  Returns:
    The number of records removed.
  """
  if jax.process_index() != 0 or not os.path.exists(path):
    return 0
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  kept = [line for line in lines if json.loads(line)["step"] <= step]
  if len(kept) != len(lines):
    with open(path + ".tmp", "w") as f:
      f.writelines(kept)
    os.replace(path + ".tmp", path)
  return len(lines) - len(kept)
