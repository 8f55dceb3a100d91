"""Device mesh, shardings and the wrappers that compile a step over them.

One code path per step function; the wrapper decides how it runs
(`compile_train_step`, from `config.parallel`):

  jit   (default) `jit_data_parallel`: the step sees the global batch, sharded
        along the mesh's "data" axis, with the train state replicated; XLA
        computes batch statistics (batch norm, means of losses, NT-Xent
        negatives) over the global batch.
  pmap  `pmap_data_parallel`: the step runs per device on its slice of the
        batch with `axis_name=PMAP_AXIS`, and itself averages gradients and
        metrics over the axis (`pmean`), gathers NT-Xent negatives, and its
        model normalises with global batch statistics (`bn_axis_name`).

Either way a run on 1 or 8 devices gives the same numbers for the same
global batch.

Batches reach the devices here: `train_batches` and `streamed_batches`
place what `jvision.data.feed` reads for each process, and `map_split` runs
a function over every example of a split, padded to one compiled shape.

Every command starts with `initialize` (multi-host) and `start_devices`,
which logs the backend and devices JAX found and refuses to run when the
platform asked for (--accelerator, $JVISION_ACCELERATOR, a single
JAX_PLATFORMS) is not there, instead of falling back to the CPU.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from collections.abc import Callable, Iterator

import jax
import numpy as np
import tqdm
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jvision import configs_io
from jvision.data import feed as feed_lib
from jvision.data import pipeline
from jvision.data.dataset import ArrayDataset
from jvision.data.stream import SkipLog, Streamed

DATA_AXIS = "data"
PMAP_AXIS = "batch"  # the axis name pmap-form steps reduce over
FORMS = ("jit", "pmap")


# Environment variables that mean "this process is one of a multi-host job
# that jax.distributed.initialize() can configure by itself".
_CLUSTER_ENV = ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "CLOUD_TPU_TASK_ID")


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  initialization_timeout: int = 300,
  heartbeat_timeout: int = 100,
) -> bool:
  """Starts JAX's multi-controller runtime when this is a multi-host job.

  With `coordinator_address` ("host:port" of process 0), `num_processes`
  and `process_id` (the CLI's flags of the same names) it connects
  explicitly; without them it lets `jax.distributed.initialize()` read SLURM
  (a job step with more than one task) or a TPU VM's environment; otherwise
  (one process) it does nothing. Call it before anything touches a device.
  CPU collectives use gloo, so the same code runs multi-process on CPUs.
  A process that stops answering for `heartbeat_timeout` seconds (it died,
  its host went away) makes the coordination service stop the others with
  an error instead of leaving them waiting in a collective forever.

  Returns:
    Whether the distributed runtime was started.

  Raises:
    ValueError: an explicit coordinator without the process count and id.
  """
  explicit = coordinator_address is not None
  if explicit and (num_processes is None or process_id is None):
    raise ValueError(
      f"--coordinator_address={coordinator_address} needs --num_processes "
      "and --process_id (this process's index, 0 .. num_processes - 1)"
    )
  slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
  cluster = any(k in os.environ for k in _CLUSTER_ENV[1:]) or (
    "SLURM_JOB_ID" in os.environ and slurm_tasks > 1
  )
  if not explicit and not cluster:
    return False
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if explicit:
    jax.distributed.initialize(
      coordinator_address,
      num_processes=num_processes,
      process_id=process_id,
      initialization_timeout=initialization_timeout,
      heartbeat_timeout_seconds=heartbeat_timeout,
    )
  else:
    jax.distributed.initialize(
      initialization_timeout=initialization_timeout,
      heartbeat_timeout_seconds=heartbeat_timeout,
    )
  return True


# Asking for a platform: the `--accelerator` flag, else this variable.
ACCELERATOR_ENV = "JVISION_ACCELERATOR"
ACCELERATORS = ("auto", "cpu", "gpu", "tpu")
# JAX_PLATFORMS' names -> the platform (jax.default_backend()) they start.
_JAX_PLATFORM_NAMES = {
  "cpu": "cpu",
  "cuda": "gpu",
  "rocm": "gpu",
  "gpu": "gpu",
  "tpu": "tpu",
}
# The distributions that give JAX a GPU or TPU backend (the extras of
# pyproject.toml install one of them).
PLUGIN_DISTRIBUTIONS = (
  "jax-cuda12-plugin",
  "jax-cuda13-plugin",
  "jax-rocm7-plugin",
  "libtpu",
)


def accelerator_plugins() -> list[str]:
  """The installed JAX GPU/TPU plugins, as "name version"."""
  found = []
  for name in PLUGIN_DISTRIBUTIONS:
    try:
      found.append(f"{name} {importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
      continue
  return found


def requested_platform(accelerator: str | None = None) -> tuple[str, str]:
  """(platform asked for, where the request came from).

  The platform is "auto" (whatever JAX starts), "cpu", "gpu" or "tpu":
  `accelerator` (the CLI's --accelerator) if given, else $JVISION_ACCELERATOR,
  else a JAX_PLATFORMS that names exactly one platform ("cuda" and "rocm"
  ask for "gpu"; several, e.g. "cuda,cpu", allow JAX's fall-back and ask
  for nothing).

  Raises:
    ValueError: an unknown --accelerator or $JVISION_ACCELERATOR value,
      naming where it came from.
  """
  jax_platforms = os.environ.get("JAX_PLATFORMS", "").strip()
  if accelerator:
    value, source = accelerator, f"--accelerator={accelerator}"
  elif os.environ.get(ACCELERATOR_ENV):
    value = os.environ[ACCELERATOR_ENV]
    source = f"{ACCELERATOR_ENV}={value}"
  elif jax_platforms and "," not in jax_platforms:
    platform = jax_platforms.lower()
    return (
      _JAX_PLATFORM_NAMES.get(platform, platform),
      f"JAX_PLATFORMS={jax_platforms}",
    )
  else:
    return "auto", "default"
  value = value.strip().lower()
  if value not in ACCELERATORS:
    raise ValueError(
      f"{source}: unknown accelerator {value!r}; expected one of "
      f"{', '.join(ACCELERATORS)}"
    )
  return value, source


def _install_hint(platform: str) -> str:
  extra = {"gpu": "cuda12", "tpu": "tpu"}.get(platform)
  if extra is None:
    return ""
  return (
    f"; install its runtime with `make setup ACCEL={extra}` (or `pip install "
    f"-e '.[{extra}]'`)"
  )


def start_devices(accelerator: str | None = None) -> dict:
  """Starts JAX's backend, checks it is the one asked for, and logs it.

  Every jvision command calls this first (after `initialize`), so a run
  says where it runs and never falls back to the CPU silently: asking for
  a GPU or TPU (`requested_platform`) that JAX cannot start is an error
  naming what was asked and what was found.

  Args:
    accelerator: "auto", "cpu", "gpu", "tpu" or None (see
      `requested_platform`).

  Returns:
    {"backend", "device_kind", "local_devices", "global_devices",
    "process_count", "plugins", "requested", "source"}.

  Raises:
    ValueError: the asked-for platform is not there.
  """
  requested, source = requested_platform(accelerator)
  plugins = accelerator_plugins()
  found = f"installed plugins: {', '.join(plugins) or 'none'}"
  try:
    devices = jax.devices()
  except (RuntimeError, AssertionError) as error:
    # JAX_PLATFORMS=cuda without a GPU plugin fails with a bare assertion.
    detail = str(error) or "JAX started no backend"
    raise ValueError(
      f"{source} asked for {requested}, which JAX could not start: {detail} "
      f"({found}){_install_hint(requested)}"
    ) from error
  summary = {
    "backend": jax.default_backend(),
    "device_kind": devices[0].device_kind,
    "local_devices": jax.local_device_count(),
    "global_devices": len(devices),
    "process_count": jax.process_count(),
    "plugins": plugins,
    "requested": requested,
    "source": source,
  }
  if requested not in ("auto", summary["backend"]):
    raise ValueError(
      f"{source} asked for {requested}, but JAX found only "
      f"{summary['backend']} devices ({summary['global_devices']} x "
      f"{summary['device_kind']}; {found}){_install_hint(requested)}"
    )
  logging.info("%s", describe_devices(summary))
  if plugins and summary["backend"] == "cpu":
    logging.warning(
      "%s installed, but JAX runs on the CPU: no usable accelerator was "
      "found (set %s=gpu or tpu to make this an error)",
      ", ".join(plugins),
      ACCELERATOR_ENV,
    )
  return summary


def describe_devices(summary: dict) -> str:
  """One line for the log: backend, devices, processes, plugins."""
  processes = summary["process_count"]
  hosts = f" over {processes} processes" if processes > 1 else ""
  return (
    f"JAX backend {summary['backend']}: {summary['global_devices']} x "
    f"{summary['device_kind']}{hosts} ({summary['local_devices']} local); "
    f"accelerator plugins: {', '.join(summary['plugins']) or 'none'}; "
    f"asked for: {summary['requested']} ({summary['source']})"
  )


def create_mesh(devices=None) -> Mesh:
  """A 1-D data-parallel mesh over `devices` (default: all devices)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device."""
  return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) axis over the mesh."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, *, name="batch_size"):
  """Raises unless `batch_size` splits evenly over devices and processes."""
  devices, processes = mesh.devices.size, jax.process_count()
  if batch_size % devices or batch_size % processes:
    raise ValueError(
      f"{name}={batch_size} must be divisible by the {devices} devices and "
      f"{processes} processes; the nearest valid values are "
      f"{batch_size - batch_size % devices} and "
      f"{batch_size + devices - batch_size % devices}"
    )


def round_batch_size(batch_size: int, mesh: Mesh) -> int:
  """`batch_size` rounded up to a multiple of the mesh's devices and the
  processes (a batch that `check_batch_size` accepts)."""
  multiple = np.lcm(mesh.devices.size, jax.process_count())
  return int(-(-batch_size // multiple) * multiple)


def fitted_batch_size(batch_size: int, examples: int, mesh: Mesh) -> int:
  """The batch to map `examples` examples in: `batch_size`, or, for fewer
  examples than that, the next power of two at or above their count
  (rounded as `round_batch_size` does), so that a handful of images is not
  padded to a whole batch, and calls with different small counts share a
  few compiled shapes."""
  if examples >= batch_size:
    return batch_size
  power = 1 << max(examples - 1, 0).bit_length()  # >= examples
  return min(batch_size, round_batch_size(power, mesh))


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict:
  """Places this process's part of a batch as global, data-sharded arrays."""
  sharding = data_sharded(mesh)
  return {
    key: jax.make_array_from_process_local_data(sharding, value)
    for key, value in batch.items()
  }


def replicate(tree, mesh: Mesh):
  """Places a pytree (e.g. the train state) on every device of `mesh`.

  With several processes each passes its own copy of the same values. An
  array committed to one local device (what Orbax restores, e.g. a
  distillation teacher) would be a cross-host transfer, which the CPU and
  GPU backends refuse, so the tree goes through host memory first.
  """
  if jax.process_count() > 1:
    tree = jax.device_get(tree)
  return jax.device_put(tree, replicated(mesh))


def jit_data_parallel(
  step: Callable,
  mesh: Mesh,
  *,
  donate_state: bool = False,
  constant_args: int = 0,
) -> Callable:
  """Compiles `step(state, batch) -> (state, metrics)` over `mesh`.

  The state and the outputs are replicated, the batch is sharded along the
  data axis. With `donate_state` the input state's buffers are reused for
  the output (saves one copy of parameters and optimizer state).
  `constant_args` more arguments after the batch are replicated.
  """
  return jax.jit(
    step,
    in_shardings=(
      replicated(mesh),
      data_sharded(mesh),
      *[replicated(mesh)] * constant_args,
    ),
    out_shardings=replicated(mesh),
    donate_argnums=(0,) if donate_state else (),
  )


def pmap_data_parallel(
  step: Callable,
  mesh: Mesh,
  *,
  donate_state: bool = False,
  constant_args: int = 0,
) -> Callable:
  """Runs `step(state, batch, axis_name=PMAP_AXIS)` per device with pmap.

  Takes and returns the same arrays as `jit_data_parallel` (a replicated
  state, a data-sharded global batch [B, ...]), so the loop, checkpoints
  and evaluation do not depend on the form. Each device gets B / D
  examples; the step must reduce over PMAP_AXIS itself and return
  replicated values (`out_axes=None`). `constant_args` more arguments
  after the batch are passed to every device whole.
  """
  num = mesh.devices.size
  mapped = jax.pmap(
    functools.partial(step, axis_name=PMAP_AXIS),
    axis_name=PMAP_AXIS,
    in_axes=(None, 0, *[None] * constant_args),
    out_axes=None,
    devices=list(mesh.devices.flat),
  )
  del donate_state  # pmap cannot donate an unmapped (in_axes=None) input

  def run(state, batch, *constants):
    per_device = jax.tree.map(
      lambda x: x.reshape(num, x.shape[0] // num, *x.shape[1:]), batch
    )  # [D, B / D, ...]
    return mapped(state, per_device, *constants)

  return run


def compile_train_step(
  step: Callable,
  mesh: Mesh,
  *,
  form: str,
  donate_state: bool = True,
  constants=None,
) -> Callable:
  """`step` (which takes `axis_name=`) compiled in `form`: jit or pmap.

  With `constants` (a pytree that every step reads but none changes, e.g.
  a distillation teacher's variables) the step is `step(state, batch,
  constants)`: they are placed on every device once and passed as an
  argument (not baked into the program as literals); the returned
  function still takes `(state, batch)`.
  """
  configs_io.check_choice("parallel", form, FORMS)
  if form == "pmap" and jax.process_count() > 1:
    raise ValueError(
      "config.parallel='pmap' runs on one host; multi-host jobs use the "
      "default config.parallel='jit'"
    )
  extra = 0 if constants is None else 1
  if form == "pmap":
    compiled = pmap_data_parallel(
      step, mesh, donate_state=donate_state, constant_args=extra
    )
  else:
    compiled = jit_data_parallel(
      functools.partial(step, axis_name=None),
      mesh,
      donate_state=donate_state,
      constant_args=extra,
    )
  if constants is None:
    return compiled
  placed = replicate(constants, mesh)
  return lambda state, batch: compiled(state, batch, placed)


def global_then_local(fn: Callable, images, rng, axis_name: str | None):
  """`fn(images, rng)` as if on the global batch, this device's part of it.

  Under jit (`axis_name` None) this is `fn(images, rng)`. Under pmap the
  uint8 images are all-gathered, `fn` runs on the whole batch with the
  shared key, and each device keeps its own rows, so per-example
  augmentation randomness is exactly that of the jit form. The price is D
  times the augmentation work (not the network's), small beside the step.
  """
  if axis_name is None:
    return fn(images, rng)
  full = jax.lax.all_gather(images, axis_name, tiled=True)  # [B, ...]
  out = fn(full, rng)
  num = images.shape[0]
  start = jax.lax.axis_index(axis_name) * num
  return jax.tree.map(
    lambda o: jax.lax.dynamic_slice_in_dim(o, start, num), out
  )


def pmean(tree, axis_name: str | None):
  """`lax.pmean` over `axis_name`, or `tree` itself when it is None."""
  if axis_name is None:
    return tree
  return jax.lax.pmean(tree, axis_name)


# ------------------------------------------------------ batches on devices


def place(arrays: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """One full copy of every array on each device of `mesh` (replicated).

  Every process passes the same arrays (each loads the whole split)."""
  return {key: replicate(value, mesh) for key, value in arrays.items()}


def make_gather(mesh: Mesh):
  """A compiled `(resident, indices) -> batch`: rows `indices` (int32 [B],
  data-sharded) of each resident array, data-sharded like a host batch.

  Each device gathers its own rows from its own copy: no communication."""
  return jax.jit(
    lambda resident, indices: {k: v[indices] for k, v in resident.items()},
    in_shardings=(replicated(mesh), data_sharded(mesh)),
    out_shardings=data_sharded(mesh),
  )


def train_batches(
  arrays: dict[str, np.ndarray],
  mesh: Mesh,
  *,
  feed: str,
  start: int,
  stop: int,
  batch_size: int,
  seed: int,
) -> Iterator[tuple[int, dict]]:
  """(step, global batch on `mesh`) for steps [start, stop) through `feed`
  ("host" or "device", as resolved by `jvision.data.feed.choose_feed`).

  "host": gathered from `arrays` in a background thread and copied to the
  devices. "device": gathered on the devices from a resident copy of
  `arrays`, placed when the iteration starts.
  """
  where = dict(start=start, stop=stop, batch_size=batch_size, seed=seed)

  def copied():
    for step, local in feed_lib.host_batches(arrays, **where):
      yield step, shard_batch(local, mesh)

  def gathered():
    resident, gather = place(arrays, mesh), make_gather(mesh)
    num_examples = feed_lib.split_size(arrays)
    for step, local in feed_lib.batch_indices(num_examples, **where):
      indices = shard_batch({"index": local}, mesh)["index"]
      yield step, gather(resident, indices)

  return pipeline.prefetch(copied()) if feed == "host" else gathered()


def streamed_batches(
  streamed: Streamed,
  mesh: Mesh,
  *,
  start: int,
  stop: int,
  batch_size: int,
  seed: int,
  skip_log: SkipLog | None = None,
) -> Iterator[tuple[int, dict]]:
  """(step, global batch on `mesh`) for steps [start, stop) from the stream
  workers (`jvision.data.feed.stream_batches`), in a background thread."""
  local = feed_lib.stream_batches(
    streamed,
    start=start,
    stop=stop,
    batch_size=batch_size,
    seed=seed,
    skip_log=skip_log,
  )
  return pipeline.prefetch(
    (step, shard_batch(batch, mesh)) for step, batch in local
  )


def jit_map_step(step: Callable, mesh: Mesh) -> Callable:
  """Compiles `step(state, batch) -> per-example outputs [B, ...]` for
  `map_split`: the state replicated, the batch data-sharded.

  On one host the outputs stay sharded along the batch and `map_split`
  gathers them to the host, with no all-gather between the devices; a
  multi-host run replicates them, because a process can fetch only what
  its own devices hold.
  """
  single_host = jax.process_count() == 1
  return jax.jit(
    step,
    in_shardings=(replicated(mesh), data_sharded(mesh)),
    out_shardings=data_sharded(mesh) if single_host else replicated(mesh),
  )


def map_split(
  step_fn: Callable,
  state,
  split: ArrayDataset | Streamed | dict,
  *,
  mesh: Mesh,
  batch_size: int,
  progress: bool = False,
  desc: str = "",
):
  """`step_fn(state, {"image": ...})` over every example of `split`.

  Args:
    step_fn: compiled over `mesh` (state replicated, batch data-sharded),
      by `jit_map_step` or `jit_data_parallel`.
    state: its first argument (variables, a train state).
    split: arrays {"image": [N, ...], ...}, an ArrayDataset or a streamed
      split, as `jvision.data.feed.eval_batches` takes it.
    mesh: the device mesh.
    batch_size: the global batch; every batch is padded to it (one
      compiled shape), or, for a split smaller than it, to
      `fitted_batch_size`. It must divide over the devices and processes.
    progress: show a tqdm bar named `desc`.

  Returns:
    `step_fn`'s output structure with [N, ...] NumPy arrays, gathered to
    the host (the last batch's padding cut off).
  """
  check_batch_size(batch_size, mesh, name="batch size")
  size = feed_lib.split_size(split)
  batch_size = fitted_batch_size(batch_size, size, mesh)
  outputs = []
  with tqdm.tqdm(total=size, desc=desc, disable=not progress) as bar:
    for batch in feed_lib.eval_batches(split, batch_size=batch_size):
      out = step_fn(state, shard_batch({"image": batch["image"]}, mesh))
      outputs.append(out)  # fetched at the end: the devices run ahead
      bar.update(min(batch_size, size - bar.n))
  outputs = jax.device_get(outputs)
  return jax.tree.map(lambda *parts: np.concatenate(parts)[:size], *outputs)
