"""Deterministic, resumable batching of an in-memory split.

The training order is one endless stream: epoch e is a permutation of the
split drawn from ``(seed, e)``, and global batch ``k`` is the slice
``[k * B, (k + 1) * B)`` of the concatenated epochs. The position of any step
is therefore a pure function of ``(seed, step, batch_size)``; a resumed run
reads exactly the batches the uninterrupted run would have read, and batches
may straddle an epoch boundary instead of dropping a remainder.

Each process of a multi-host run takes its own contiguous slice of every
global batch.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator

import numpy as np

Batch = dict[str, np.ndarray]


@functools.lru_cache(maxsize=4)
def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The order of the examples in one epoch: int64 [num_examples]."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def stream_position(
  step: int, *, batch_size: int, num_examples: int
) -> tuple[int, int]:
  """(epoch, position within the epoch) at which global batch `step` starts."""
  return divmod(step * batch_size, num_examples)


def batch_indices(
  step: int, *, batch_size: int, num_examples: int, seed: int
) -> np.ndarray:
  """Dataset indices of global batch `step`: int64 [batch_size]."""
  epoch, position = stream_position(
    step, batch_size=batch_size, num_examples=num_examples
  )
  parts, needed = [], batch_size
  while needed > 0:
    order = epoch_permutation(num_examples, seed, epoch)
    take = order[position : position + needed]
    parts.append(take)
    needed -= len(take)
    epoch, position = epoch + 1, 0
  return np.concatenate(parts)


def process_slice(
  indices: np.ndarray, *, process_index: int, process_count: int
) -> np.ndarray:
  """The contiguous part of a global batch that one process feeds."""
  if len(indices) % process_count:
    raise ValueError(
      f"global batch of {len(indices)} does not split evenly over "
      f"{process_count} processes"
    )
  local = len(indices) // process_count
  return indices[process_index * local : (process_index + 1) * local]


def local_batch_indices(
  step: int,
  *,
  batch_size: int,
  num_examples: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
) -> np.ndarray:
  """Dataset indices of this process's part of global batch `step`:
  int64 [batch_size // process_count]."""
  indices = batch_indices(
    step, batch_size=batch_size, num_examples=num_examples, seed=seed
  )
  return process_slice(
    indices, process_index=process_index, process_count=process_count
  )


def train_batch(
  arrays: dict[str, np.ndarray],
  step: int,
  *,
  batch_size: int,
  seed: int,
  process_index: int = 0,
  process_count: int = 1,
) -> Batch:
  """This process's part of global batch `step`.

  Args:
    arrays: same-length arrays, e.g. {"image": uint8 [N, H, W, C],
      "label": int32 [N]}.
    step: the global step whose batch to read.
    batch_size: the global batch size.
    seed: the data-order seed.
    process_index: this process's index.
    process_count: the number of processes.

  Returns:
    The same keys, each [batch_size // process_count, ...].
  """
  idx = local_batch_indices(
    step,
    batch_size=batch_size,
    num_examples=len(next(iter(arrays.values()))),
    seed=seed,
    process_index=process_index,
    process_count=process_count,
  )
  return {key: value[idx] for key, value in arrays.items()}


def prefetch(iterator: Iterator, size: int = 2) -> Iterator:
  """Runs `iterator` in a background thread, `size` items ahead."""
  items: queue.Queue = queue.Queue(maxsize=size)
  done = object()

  def produce():
    try:
      for item in iterator:
        items.put(item)
    except BaseException as error:  # handed to the consumer
      items.put(error)
    items.put(done)

  threading.Thread(target=produce, daemon=True).start()
  while (item := items.get()) is not done:
    if isinstance(item, BaseException):
      raise item
    yield item


def eval_batches(
  arrays: dict[str, np.ndarray],
  *,
  batch_size: int,
  process_index: int = 0,
  process_count: int = 1,
) -> Iterator[Batch]:
  """Every example once, in order, in batches of exactly `batch_size`.

  The last batch is padded by repeating example 0; the added key "mask"
  (float32 [B]) is 1 for real examples and 0 for padding, so one compiled
  step serves every batch.
  """
  num_examples = len(next(iter(arrays.values())))
  for start in range(0, num_examples, batch_size):
    idx = np.arange(start, start + batch_size)
    mask = (idx < num_examples).astype(np.float32)
    idx = np.where(idx < num_examples, idx, 0)
    idx = process_slice(
      idx, process_index=process_index, process_count=process_count
    )
    mask = process_slice(
      mask, process_index=process_index, process_count=process_count
    )
    batch = {key: value[idx] for key, value in arrays.items()}
    batch["mask"] = mask
    yield batch
