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

This module says what each process reads, as NumPy arrays on the host;
`jvision.parallel` places it on the devices (`train_batches`,
`streamed_batches`, `map_split`).
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np

from jvision import configs_io
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


def host_batches(
  arrays: dict[str, np.ndarray],
  *,
  start: int,
  stop: int,
  batch_size: int,
  seed: int,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
  """(step, this process's part of global batch `step`) for steps [start,
  stop), gathered from `arrays` in host memory (the "host" feed)."""
  where = _process()
  for step in range(start, stop):
    yield (
      step,
      pipeline.train_batch(
        arrays, step, batch_size=batch_size, seed=seed, **where
      ),
    )


def batch_indices(
  num_examples: int, *, start: int, stop: int, batch_size: int, seed: int
) -> Iterator[tuple[int, np.ndarray]]:
  """(step, int32 [B / P] indices of this process's part of global batch
  `step`) for steps [start, stop): what the "device" feed sends."""
  where = _process()
  for step in range(start, stop):
    local = pipeline.local_batch_indices(
      step, batch_size=batch_size, num_examples=num_examples, seed=seed, **where
    )
    yield step, local.astype(np.int32)


def stream_batches(
  streamed: Streamed,
  *,
  start: int,
  stop: int,
  batch_size: int,
  seed: int,
  skip_log: stream.SkipLog | None = None,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
  """(step, this process's part of global batch `step`) for steps [start,
  stop) from the stream workers; unreadable examples (replaced in their
  batch by the workers) go to `skip_log`."""
  num_examples = len(streamed.index)
  local = stream.train_batches(
    streamed.index,
    streamed.settings,
    start=start,
    stop=stop,
    batch_size=batch_size,
    seed=seed,
    workers=streamed.workers,
    **_process(),
  )
  for step, batch in local:
    skipped = batch.pop("skipped")
    if skip_log is not None and skipped:
      epoch, _ = pipeline.stream_position(
        step, batch_size=batch_size, num_examples=num_examples
      )
      skip_log.add(epoch, skipped)
    yield step, batch


def _process() -> dict:
  """This process's place among the processes of a (multi-host) run."""
  return dict(
    process_index=jax.process_index(), process_count=jax.process_count()
  )


def eval_batches(
  split: ArrayDataset | Streamed | dict, *, batch_size: int
) -> Iterator[dict]:
  """This process's part of every example once, in padded batches:
  {"image", "label", "mask" (float32 [b], 0 for padding)}, from memory (an
  ArrayDataset, or its arrays {"image", ...}) or from the stream workers
  (centre crops)."""
  where = _process()
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
