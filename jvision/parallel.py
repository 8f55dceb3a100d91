"""Device mesh, shardings and the wrapper that compiles a step over them.

One code path per step function: a step is written for the global batch
and `jit_data_parallel` decides placement. With a `Mesh` over every device
of every process, the batch is sharded along the "data" axis and the train
state is replicated; XLA then computes batch statistics (batch norm, means
of losses) over the global batch, so a run on 1 or 8 devices gives the same
numbers for the same global batch.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


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


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict:
  """Places this process's part of a batch as global, data-sharded arrays."""
  sharding = data_sharded(mesh)
  return {
    key: jax.make_array_from_process_local_data(sharding, value)
    for key, value in batch.items()
  }


def replicate(tree, mesh: Mesh):
  """Places a pytree (e.g. the train state) on every device of `mesh`."""
  return jax.device_put(tree, replicated(mesh))


def jit_data_parallel(
  step: Callable, mesh: Mesh, *, donate_state: bool = False
) -> Callable:
  """Compiles `step(state, batch) -> (state, metrics)` over `mesh`.

  The state and the outputs are replicated, the batch is sharded along the
  data axis. With `donate_state` the input state's buffers are reused for
  the output (saves one copy of parameters and optimizer state).
  """
  return jax.jit(
    step,
    in_shardings=(replicated(mesh), data_sharded(mesh)),
    out_shardings=replicated(mesh),
    donate_argnums=(0,) if donate_state else (),
  )


def map_batches(
  step_fn: Callable,
  state,
  arrays: dict[str, np.ndarray],
  *,
  mesh: Mesh,
  batch_size: int,
):
  """`step_fn(state, batch)` over every example, outputs gathered to host.

  Batches are padded to `batch_size` (one compiled shape) and the padding
  is cut from the result. `step_fn` returns an array [B, ...] or a dict of
  them; the result has the same structure with [N, ...] NumPy arrays.
  """
  from jvision.data import pipeline

  num_examples = len(next(iter(arrays.values())))
  outputs = []
  for batch in pipeline.eval_batches(arrays, batch_size=batch_size):
    batch.pop("mask")
    outputs.append(jax.device_get(step_fn(state, shard_batch(batch, mesh))))
  return jax.tree.map(
    lambda *parts: np.concatenate(parts)[:num_examples], *outputs
  )
