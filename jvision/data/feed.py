"""How training batches reach the devices: from the host, gathered on the
devices from a device-resident copy of the split, or streamed.

A streamed run (`config.data.loading` resolved to "stream") reads its
batches from `jvision.data.stream`'s worker processes (`Streamed`); the
batches of an in-memory run reach the devices as `config.data.feed` says:

  host    (the host path) a background thread gathers the batch's images
          from the split in host memory and copies them to the devices.
  device  the split is copied once to every device; each step the host
          sends only the batch's indices (int32 [B], sharded like the
          batch) and the devices gather the images themselves, so an
          accelerator never waits for a host-side gather or copy of images.
  auto    (default) "device" on accelerators (GPU, TPU) when the split
          takes at most `MAX_DEVICE_FRACTION` of the smallest local
          device's memory, else "host". On the CPU backend the devices
          share the host's memory, there is no copy to save, and a second
          copy of the split would only cost memory, so it stays "host".

Both feeds read the batches of `pipeline.batch_indices`, so a device-fed
run sees exactly the examples, in the order, that a host-fed one does, and
resumes at the same position. Augmentation happens inside the train step
either way (on device).
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from jvision import configs_io, parallel
from jvision.data import pipeline, stream
from jvision.data.dataset import ArrayDataset
from jvision.data.stream import Streamed

FEEDS = ("auto", "host", "device")
# "auto" keeps a split on the devices when it takes at most this fraction
# of a device's memory (the rest is for the model, its activations and the
# optimizer).
MAX_DEVICE_FRACTION = 0.25
ACCELERATORS = ("gpu", "tpu")


def split_bytes(arrays: dict[str, np.ndarray]) -> int:
  """Bytes one copy of the split takes (all arrays, e.g. images + labels)."""
  return sum(int(np.asarray(a).nbytes) for a in arrays.values())


def device_memory_bytes(devices) -> int | None:
  """The smallest memory limit among `devices` in bytes, or None when a
  device does not report one (the CPU backend)."""
  stats = [device.memory_stats() or {} for device in devices]
  if not stats or any("bytes_limit" not in s for s in stats):
    return None
  return min(int(s["bytes_limit"]) for s in stats)


def _gib(num_bytes: int) -> str:
  return f"{num_bytes / 2**30:.2f} GiB"


def choose_feed(
  feed: str, *, nbytes: int, memory_bytes: int | None, backend: str
) -> str:
  """Resolves `config.data.feed` to "host" or "device".

  Args:
    feed: "auto", "host" or "device" (config.data.feed).
    nbytes: bytes of one copy of the training split.
    memory_bytes: the smallest local device's memory, None if unknown.
    backend: jax.default_backend(), e.g. "cpu" or "gpu".

  Raises:
    ValueError: `feed` is not one of FEEDS, or "device" was asked for and
      the split does not fit in the device's memory.
  """
  configs_io.check_choice("data.feed", feed, FEEDS)
  if feed == "device":
    if memory_bytes is not None and nbytes > memory_bytes:
      raise ValueError(
        f"config.data.feed='device': the training split takes "
        f"{_gib(nbytes)} and each device has {_gib(memory_bytes)}; use "
        "config.data.feed='host' (or 'auto')"
      )
    return "device"
  if feed == "host" or backend not in ACCELERATORS or memory_bytes is None:
    return "host"
  fits = nbytes <= MAX_DEVICE_FRACTION * memory_bytes
  return "device" if fits else "host"


def place(arrays: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """One full copy of every array on each device of `mesh` (replicated).

  Every process passes the same arrays (each loads the whole split)."""
  return {key: parallel.replicate(value, mesh) for key, value in arrays.items()}


def make_gather(mesh: Mesh):
  """A compiled `(resident, indices) -> batch`: rows `indices` (int32 [B],
  data-sharded) of each resident array, data-sharded like a host batch.

  Each device gathers its own rows from its own copy: no communication."""
  return jax.jit(
    lambda resident, indices: {k: v[indices] for k, v in resident.items()},
    in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
    out_shardings=parallel.data_sharded(mesh),
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
  """(step, global batch) for steps [start, stop) through `feed` ("host"
  or "device", as resolved by `choose_feed`).

  "host": gathered from `arrays` in a background thread and copied to the
  devices. "device": gathered on the devices from a resident copy of
  `arrays`, placed when the iteration starts.
  """
  steps = range(start, stop)
  where = dict(
    batch_size=batch_size,
    seed=seed,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )

  def copied():
    for step in steps:
      local = pipeline.train_batch(arrays, step, **where)
      yield step, parallel.shard_batch(local, mesh)

  def gathered():
    resident, gather = place(arrays, mesh), make_gather(mesh)
    num_examples = len(next(iter(arrays.values())))
    for step in steps:
      local = pipeline.local_batch_indices(
        step, num_examples=num_examples, **where
      ).astype(np.int32)  # [B / P]
      indices = parallel.shard_batch({"index": local}, mesh)["index"]
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
  skip_log: stream.SkipLog | None = None,
) -> Iterator[tuple[int, dict]]:
  """(step, global batch) for steps [start, stop) from the stream workers.

  This process reads only its own slice of each global batch; unreadable
  examples (replaced in their batch by the workers) go to `skip_log`.
  """
  num_examples = len(streamed.index)
  local = stream.train_batches(
    streamed.index,
    streamed.settings,
    start=start,
    stop=stop,
    batch_size=batch_size,
    seed=seed,
    workers=streamed.workers,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
  )

  def placed():
    for step, batch in local:
      skipped = batch.pop("skipped")
      if skip_log is not None and skipped:
        epoch, _ = pipeline.stream_position(
          step, batch_size=batch_size, num_examples=num_examples
        )
        skip_log.add(epoch, skipped)
      yield step, parallel.shard_batch(batch, mesh)

  return pipeline.prefetch(placed())


def eval_batches(
  split: ArrayDataset | Streamed | dict, *, batch_size: int
) -> Iterator[dict]:
  """This process's part of every example once, in padded batches:
  {"image", "label", "mask" (float32 [b], 0 for padding)}, from memory (an
  ArrayDataset, or its arrays {"image", ...}) or from the stream workers
  (centre crops)."""
  where = dict(
    process_index=jax.process_index(), process_count=jax.process_count()
  )
  if not isinstance(split, Streamed):
    arrays = split
    if isinstance(split, ArrayDataset):
      arrays = {"image": split.images, "label": split.labels}
    yield from pipeline.eval_batches(arrays, batch_size=batch_size, **where)
    return
  for batch in stream.eval_batches(
    split.index,
    split.settings,
    batch_size=batch_size,
    workers=split.workers,
    **where,
  ):
    batch.pop("skipped")
    yield batch


def split_size(split: ArrayDataset | Streamed | dict) -> int:
  """The number of examples of a split: in memory (an ArrayDataset or its
  arrays {"image": [N, ...], ...}) or streamed."""
  if isinstance(split, Streamed):
    return len(split.index)
  if isinstance(split, dict):
    return len(next(iter(split.values())))
  return len(split)


def map_split(
  step_fn,
  state,
  split: ArrayDataset | Streamed | dict,
  *,
  mesh: Mesh,
  batch_size: int,
):
  """`step_fn(state, {"image": ...})` over every example of `split` (as
  `eval_batches` takes it), outputs gathered to the host: the same
  structure with [N, ...] NumPy arrays (the last batch's padding cut off).
  """
  outputs = []
  for batch in eval_batches(split, batch_size=batch_size):
    batch = {"image": batch["image"]}
    out = step_fn(state, parallel.shard_batch(batch, mesh))
    outputs.append(jax.device_get(out))
  return jax.tree.map(
    lambda *parts: np.concatenate(parts)[: split_size(split)], *outputs
  )
