"""The streaming path: batches read, decoded and cropped by worker processes.

A streamed split is a `SplitIndex` (paths or record numbers, labels, ids);
its pixels exist only for the batches in flight, so memory does not grow
with the dataset. Grain runs the work: one element per step,

    grain.MapDataset.range(start, stop)       # global step numbers
      .map(TrainBatch(...))                   # this process's part of the
                                              # step's batch: read, decode,
                                              # random-resized crop, flip
      .to_iter_dataset()
      .mp_prefetch(num_workers)               # worker processes, in order

The batch of step k holds the examples of `pipeline.local_batch_indices(k)`
(the seeded order the in-memory path reads, each process only its own
slice), and each example's crop is drawn from `crops.example_rng(seed, k,
index, view)`. A run resumed at step k therefore starts a pipeline at k and
reads exactly the batches an uninterrupted run would: no iterator state is
saved or needed.

An example that cannot be read (missing, truncated, over the size limits,
a decompression bomb) is replaced in its batch by the next readable example
of the same batch, and reported in the batch's "skipped" list; the training
loop counts and logs them per epoch (`SkipLog`). The source is never
modified.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

import grain
import numpy as np
from absl import flags

from jvision.data import crops, pipeline
from jvision.data.decode import DecodeError
from jvision.data.index import SplitIndex

_log = logging.getLogger(__name__)
_MAX_LOGGED = 20  # skipped examples named per log line
_PARENT_POLL_SECONDS = 1.0  # how often a worker checks that its parent lives


def default_workers() -> int:
  """Worker processes: one per core (the main process mostly waits)."""
  return max(1, os.cpu_count() or 1)


class _Reading:
  """Holds one reader per process for a picklable batch function."""

  def __init__(self, index: SplitIndex):
    self.index = index
    self._reader = None

  def __getstate__(self) -> dict:
    return {**self.__dict__, "_reader": None}  # each process opens its own

  def read(self, i: int):
    """The stored image of example i (bytes or uint8 [H, W, C])."""
    if self._reader is None:
      self._reader = self.index.reader()
    return self._reader.read(self.index.keys[i])


def _read_all(reading: _Reading, indices, crop_one) -> tuple[list, list]:
  """crop_one(stored, i) for each index; (images or None, skipped)."""
  images, skipped = [], []
  for i in indices:
    example_id = str(reading.index.ids[i])
    try:
      images.append(crop_one(reading.read(i), int(i), example_id))
    except DecodeError as e:
      images.append(None)
      skipped.append((example_id, e.reason))
    except OSError as e:
      images.append(None)
      skipped.append((example_id, f"unreadable: {type(e).__name__}: {e}"))
  return images, skipped


def _filled(images: list, labels: np.ndarray, ids: list[str]) -> dict:
  """{"image": stacked [b, ...], "label": int32 [b]}: each unreadable
  example (image None) replaced by the next readable one (cyclic).

  Raises:
    DecodeError: no image of the batch could be read.
  """
  good = [k for k, image in enumerate(images) if image is not None]
  if not good:
    raise DecodeError(ids[0], "no image of its batch could be read")
  source = [  # where each slot's example comes from
    k if image is not None else next((g for g in good if g > k), good[0])
    for k, image in enumerate(images)
  ]
  return {
    "image": np.stack([images[k] for k in source]),
    "label": np.asarray(labels, np.int32)[source],
  }


@dataclasses.dataclass(frozen=True)
class CropSettings:
  """How a stream worker turns a stored image into a step's view.

  Attributes:
    size: output side (config.data.image_size).
    channels: 1, 3 or None (config.data.channels).
    scale: random-resized crop area fraction range.
    ratio: random-resized crop aspect-ratio range.
    flip: mirror each view with probability 1/2.
    views: crops per example (1; 2 for SimCLR).
    crop_fraction: the centre crop of evaluation (shorter-side fraction).
  """

  size: int
  channels: int | None
  scale: tuple[float, float] = (0.08, 1.0)
  ratio: tuple[float, float] = (3 / 4, 4 / 3)
  flip: bool = True
  views: int = 1
  crop_fraction: float = 0.875


@dataclasses.dataclass(frozen=True)
class Streamed:
  """A split read by stream workers: what, how it is cropped, by how many
  worker processes (0: in the calling process)."""

  index: SplitIndex
  settings: CropSettings
  workers: int

  def take(self, indices: np.ndarray) -> Streamed:
    """The examples at `indices` (int [M])."""
    return dataclasses.replace(self, index=self.index.take(indices))


class TrainBatch(_Reading):
  """step -> this process's part of the step's batch (a grain map fn).

  Returns {"image": uint8 [b, S, S, C] (or [b, V, S, S, C] for V > 1
  views), "label": int32 [b], "skipped": [(id, reason)]}.
  """

  def __init__(
    self,
    index: SplitIndex,
    settings: CropSettings,
    *,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
  ):
    super().__init__(index)
    self.settings = settings
    self.where = dict(
      batch_size=batch_size,
      seed=seed,
      process_index=process_index,
      process_count=process_count,
    )

  def __call__(self, step: int) -> dict:
    s, seed = self.settings, self.where["seed"]
    indices = pipeline.local_batch_indices(
      int(step), num_examples=len(self.index), **self.where
    )

    def crop_one(stored, i: int, example_id: str):
      views = crops.train_views(  # decoded once for all views
        stored,
        [crops.example_rng(seed, int(step), i, v) for v in range(s.views)],
        path=example_id,
        size=s.size,
        channels=s.channels,
        scale=s.scale,
        ratio=s.ratio,
        flip=s.flip,
      )
      return views[0] if s.views == 1 else np.stack(views)

    images, skipped = _read_all(self, indices, crop_one)
    ids = [str(self.index.ids[i]) for i in indices]
    return {
      **_filled(images, self.index.labels[indices], ids),
      "skipped": skipped,
    }


class EvalBatch(_Reading):
  """Batch number -> centre crops of every example once, padded to a fixed
  batch (a grain map fn): {"image": uint8 [b, S, S, C], "label": int32 [b],
  "mask": float32 [b] (0 for padding and unreadable examples),
  "skipped": [(id, reason)]}, this process's slice (`process_slice`)."""

  def __init__(
    self,
    index: SplitIndex,
    settings: CropSettings,
    *,
    batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
  ):
    super().__init__(index)
    self.settings = settings
    self.batch_size = batch_size
    self.where = dict(process_index=process_index, process_count=process_count)

  def __call__(self, number: int) -> dict:
    s, n = self.settings, len(self.index)
    start = int(number) * self.batch_size
    idx = np.arange(start, start + self.batch_size)
    mask = (idx < n).astype(np.float32)
    idx = pipeline.process_slice(np.where(idx < n, idx, 0), **self.where)
    mask = pipeline.process_slice(mask, **self.where)

    def crop_one(stored, i: int, example_id: str):
      return crops.eval_crop(
        stored,
        path=example_id,
        size=s.size,
        channels=s.channels,
        crop_fraction=s.crop_fraction,
      )

    images, skipped = _read_all(self, idx, crop_one)
    ids = [str(self.index.ids[i]) for i in idx]
    mask = mask * np.asarray([im is not None for im in images], np.float32)
    return {
      **_filled(images, self.index.labels[idx], ids),
      "mask": mask,
      "skipped": skipped,
    }


def _exit_with_parent(worker_index: int, worker_count: int) -> None:
  """Worker start-up: ends this worker once its parent has died.

  A trainer killed with SIGKILL cannot stop its workers; without this they
  would live on (reparented) and keep its pipes open."""
  del worker_index, worker_count
  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(_PARENT_POLL_SECONDS)
    os._exit(1)

  threading.Thread(target=watch, daemon=True).start()


def iterate(dataset: grain.MapDataset, workers: int, *, buffer: int = 2):
  """Iterates a map dataset in order: in `workers` processes (0: in this
  process, with `buffer` threads reading ahead)."""
  if workers <= 0:
    options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=buffer)
    return iter(dataset.to_iter_dataset(options))
  if not flags.FLAGS.is_parsed():  # grain's workers read their absl flags;
    flags.FLAGS.mark_as_parsed()  # outside a CLI, take their defaults
  iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=0))
  return iter(
    iterable.mp_prefetch(
      grain.MultiprocessingOptions(
        num_workers=workers, per_worker_buffer_size=buffer
      ),
      worker_init_fn=_exit_with_parent,
    )
  )


def train_batches(
  index: SplitIndex,
  settings: CropSettings,
  *,
  start: int,
  stop: int,
  batch_size: int,
  seed: int,
  workers: int,
  process_index: int = 0,
  process_count: int = 1,
):
  """(step, local batch) for steps [start, stop), made by `workers`."""
  fn = TrainBatch(
    index,
    settings,
    batch_size=batch_size,
    seed=seed,
    process_index=process_index,
    process_count=process_count,
  )
  steps = grain.MapDataset.range(start, stop)
  batches = iterate(steps.map(fn), workers)
  return zip(range(start, stop), _closing(batches), strict=True)


def eval_batches(
  index: SplitIndex,
  settings: CropSettings,
  *,
  batch_size: int,
  workers: int,
  process_index: int = 0,
  process_count: int = 1,
):
  """Every example once, in order, in padded batches (see `EvalBatch`)."""
  fn = EvalBatch(
    index,
    settings,
    batch_size=batch_size,
    process_index=process_index,
    process_count=process_count,
  )
  count = -(-len(index) // batch_size)
  return _closing(iterate(grain.MapDataset.range(count).map(fn), workers))


def _closing(iterator):
  """Yields from `iterator`, then stops its workers (also when abandoned)."""
  try:
    yield from iterator
  finally:
    close = getattr(iterator, "close", None)
    if close is not None:
      close()


class SkipLog:
  """Counts skipped examples per epoch and logs each once, with reasons."""

  def __init__(self, source: str):
    self.source = source
    self.seen: set[str] = set()
    self.per_epoch: dict[int, int] = {}

  def add(self, epoch: int, skipped: list[tuple[str, str]]) -> None:
    if not skipped:
      return
    self.per_epoch[epoch] = self.per_epoch.get(epoch, 0) + len(skipped)
    new = [(i, r) for i, r in skipped if i not in self.seen]
    self.seen.update(i for i, _ in new)
    if new:
      listed = "\n".join(f"  {i}: {r}" for i, r in new[:_MAX_LOGGED])
      _log.warning(
        "%s: skipped %d unreadable example(s) in epoch %d (replaced by "
        "others of their batch; %d so far this epoch):\n%s",
        self.source,
        len(new),
        epoch,
        self.per_epoch[epoch],
        listed,
      )


class LazyImages:
  """`images[i]`: example i's evaluation crop, read when asked for (the
  thumbnails of a report on a streamed split, without holding the split)."""

  def __init__(self, streamed: Streamed):
    self._streamed = streamed

  def __len__(self) -> int:
    return len(self._streamed.index)

  def __getitem__(self, i: int) -> np.ndarray:
    """uint8 [H, W, C]."""
    one = self._streamed.index.take(np.asarray([int(i)]))
    return EvalBatch(one, self._streamed.settings, batch_size=1)(0)["image"][0]
