"""What every benchmark records beside its numbers: machine and versions."""

from __future__ import annotations

import datetime
import functools
import json
import os
import pathlib
import platform
import statistics
import time

import jax
import numpy as np

from jvision import models, optim, parallel, workdir
from jvision.train import setup, supervised

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
# Where `save` writes instead of RESULTS (benchmarks/gpu.sh: under $OUT).
RESULTS_ENV = "JVISION_BENCHMARK_RESULTS"

# /proc/cpuinfo flag -> the name of the vector extension it shows, in the
# order of the units that speed up the benchmarks' convolutions and
# matmuls (float32 on AVX2 / AVX-512, bfloat16 on AVX512-BF16 / AMX).
VECTOR_EXTENSIONS = {
  "avx2": "AVX2",
  "avx512f": "AVX-512",
  "avx512_bf16": "AVX512-BF16",
  "amx_bf16": "AMX",
}


def results_dir() -> pathlib.Path:
  """$JVISION_BENCHMARK_RESULTS if set, else benchmarks/results."""
  return pathlib.Path(os.environ.get(RESULTS_ENV) or RESULTS)


def cpu_info(cpuinfo: str | None = None) -> dict:
  """{"cpu": model name, "vector_extensions": [...]} of this machine.

  Args:
    cpuinfo: the text of /proc/cpuinfo (default: read it; where it cannot
      be read, the model is platform.processor() and no extensions).
  """
  if cpuinfo is None:
    try:
      cpuinfo = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
      cpuinfo = ""
  fields = {}
  for line in cpuinfo.splitlines():  # the first processor's lines win
    key, _, value = line.partition(":")
    fields.setdefault(key.strip(), value.strip())
  flags = set(fields.get("flags", "").split())
  return {
    "cpu": fields.get("model name")
    or platform.processor()
    or platform.machine(),
    "vector_extensions": [
      name for flag, name in VECTOR_EXTENSIONS.items() if flag in flags
    ],
  }


def cpu_kind(machine_record: dict) -> str:
  """A processor as the README's tables name it: model, then the vector
  extensions recorded with it, e.g. "AMD EPYC (AVX2, AVX-512)"."""
  extensions = machine_record.get("vector_extensions")
  if extensions is None:
    return f"{machine_record['cpu']} (vector extensions not recorded)"
  name = machine_record["cpu"]
  if machine_record.get("cpu_microarchitecture"):
    name += f" {machine_record['cpu_microarchitecture']}"
  return f"{name} ({', '.join(extensions) or 'no AVX2'})"


def cpu_slug(machine_record: dict) -> str:
  """A file-name tag for the kind of CPU: its widest vector extension
  (e.g. "avx512bf16"), so results of different CPUs do not replace each
  other."""
  extensions = machine_record.get("vector_extensions") or ["none"]
  return extensions[-1].lower().replace("-", "")


def machine_tag(backend: str | None = None, cpu: dict | None = None) -> str:
  """The part of a results file's name that keeps one kind of machine's
  figures from replacing another's: "cpu_<cpu_slug>" on the CPU (e.g.
  "cpu_avx2"), else the backend ("gpu", "tpu").

  Args:
    backend: a JAX backend name (default: this process's).
    cpu: a cpu_info() record (default: this machine's).
  """
  backend = backend or jax.default_backend()
  if backend != "cpu":
    return backend
  return f"cpu_{cpu_slug(cpu if cpu is not None else cpu_info())}"


def machine() -> dict:
  """The hardware and software a figure was measured on."""
  return {
    **cpu_info(),
    "cores": os.cpu_count(),
    "devices": [str(d) for d in jax.devices()],
    "device_kind": jax.devices()[0].device_kind,
    "backend": jax.default_backend(),
    "versions": workdir.package_versions(),
    "git_revision": workdir.git_revision()[0],
    "date": datetime.date.today().isoformat(),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def save(name: str, record: dict) -> pathlib.Path:
  """Writes <results_dir()>/<name>.json with the machine description added."""
  directory = results_dir()
  directory.mkdir(parents=True, exist_ok=True)
  path = directory / f"{name}.json"
  with open(path, "w") as f:
    json.dump({**record, "machine": machine()}, f, indent=2)
  return path


def read_metrics(workdir) -> list[dict]:
  """The records of a run's DIR/metrics.jsonl ({"step", "split", ...})."""
  with open(pathlib.Path(workdir) / "metrics.jsonl") as f:
    return [json.loads(line) for line in f if line.strip()]


def steady_images_per_sec(records: list[dict]) -> float | None:
  """Median logged train images/s over the intervals after the first
  (which holds compilation); None with fewer than two intervals."""
  rates = [r["images_per_sec"] for r in records if r["split"] == "train"]
  return statistics.median(rates[1:]) if len(rates) > 1 else None


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


def step_seconds(run, steps: int, warmup: int) -> list[float]:
  """Seconds of each of `steps` calls of `run` after `warmup` calls."""
  for _ in range(warmup):
    run()
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return times


def recipe_step_times(
  config, image_shape: tuple[int, int, int], steps: int, warmup: int = 3
) -> list[float]:
  """Seconds per step of a supervised recipe's compiled train step.

  `supervised.train_step` as `config` trains it (its model section and
  dtype, batch size, on-device augmentation and label smoothing; 10
  classes, a fixed learning rate) on one device-resident random batch of
  `image_shape` images (`device_batch`), each step waited for; `steps`
  timed after `warmup` untimed (`step_seconds`).
  """
  model = models.create_model(
    config.model.name,
    num_classes=10,
    **models.config_kwargs(config.model),
    dtype=setup.model_dtype(config),
  )
  lr_fn = optim.create_learning_rate_fn(
    base_learning_rate=0.1, num_train_steps=1000, warmup_steps=0
  )
  state = supervised.create_train_state(
    config, model, image_shape=image_shape, learning_rate_fn=lr_fn
  )
  step = functools.partial(
    supervised.train_step,
    learning_rate_fn=lr_fn,
    preprocess=supervised.train_preprocess(config, streamed=False),
    label_smoothing=config.loss.label_smoothing,
  )
  mesh = parallel.create_mesh()
  p_step = parallel.jit_data_parallel(step, mesh, donate_state=True)
  batch = device_batch(config.batch_size, image_shape, mesh)
  holder = {"state": parallel.replicate(state, mesh)}

  def run():
    holder["state"], metrics = p_step(holder["state"], batch)
    jax.block_until_ready(metrics)

  return step_seconds(run, steps, warmup)
