"""The in-memory split every source returns, and the package's error type.

`ArrayDataset` holds one split as NumPy arrays: images `uint8 [N, H, W, C]`,
labels `int32 [N]` and stable string ids `[N]`. Indexing it yields the
example dicts of the design (`{"image", "label", "id"}`).
"""

import dataclasses

import numpy as np


class DataError(ValueError):
  """A bad input to `jvision.data`: a spec, file, label spec or argument."""


class UnknownSplitError(DataError):
  """A split its source does not have; `available` are those it has."""

  def __init__(self, source: str, available, split: str):
    super().__init__(f"{source} has splits {list(available)}, not {split!r}")
    self.source, self.available, self.split = source, tuple(available), split


@dataclasses.dataclass(frozen=True, eq=False)
class ArrayDataset:
  """A split held in memory.

  Attributes:
    images: uint8 [N, H, W, C], C is 1 or 3.
    labels: int32 [N], each in [0, num_classes); all -1 in an unlabelled
      split (no class names).
    ids: numpy unicode [N]; stable per example: the relative path for folder
      sources, "<split>/<index>" (e.g. "train/000123") for array sources.
    class_names: names indexed by label id.
    skipped: (path, reason) for each unreadable file that was left out.
  """

  images: np.ndarray
  labels: np.ndarray
  ids: np.ndarray
  class_names: tuple[str, ...]
  skipped: tuple[tuple[str, str], ...] = ()

  def __post_init__(self):
    _check_arrays(self.images, self.labels, self.ids, len(self.class_names))

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def __getitem__(self, index: int) -> dict:
    """Returns {"image": uint8 [H, W, C], "label": int32, "id": str}."""
    return {
      "image": self.images[index],
      "label": self.labels[index],
      "id": str(self.ids[index]),
    }

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def labelled(self) -> bool:
    """False for an unlabelled split (every label -1, no class names)."""
    return bool(self.class_names)

  def take(self, indices: np.ndarray) -> "ArrayDataset":
    """Returns the examples at `indices` (int [M]), keeping `skipped`."""
    return dataclasses.replace(
      self,
      images=self.images[indices],
      labels=self.labels[indices],
      ids=self.ids[indices],
    )


def _check_arrays(
  images: np.ndarray, labels: np.ndarray, ids: np.ndarray, num_classes: int
) -> None:
  """Raises DataError unless the arrays form a consistent split."""
  if images.dtype != np.uint8 or images.ndim != 4:
    raise DataError(
      f"images must be uint8 [N, H, W, C], got {images.dtype} "
      f"{list(images.shape)}"
    )
  if images.shape[-1] not in (1, 3):
    raise DataError(f"images must have 1 or 3 channels, got {images.shape}")
  if labels.dtype != np.int32 or labels.ndim != 1:
    raise DataError(
      f"labels must be int32 [N], got {labels.dtype} {list(labels.shape)}"
    )
  if ids.dtype.kind != "U" or ids.ndim != 1:
    raise DataError(f"ids must be a numpy unicode [N] array, got {ids.dtype}")
  n = labels.shape[0]
  if images.shape[0] != n or ids.shape[0] != n:
    raise DataError(
      f"images, labels and ids disagree on N: {images.shape[0]}, {n}, "
      f"{ids.shape[0]}"
    )
  if num_classes == 0:
    if n and (labels != -1).any():
      raise DataError(
        "an unlabelled split (no class names) must have every label -1, "
        f"got labels in [{labels.min()}, {labels.max()}]"
      )
    return
  if n and (labels.min() < 0 or labels.max() >= num_classes):
    raise DataError(
      f"labels must lie in [0, {num_classes}), got "
      f"[{labels.min()}, {labels.max()}]"
    )


def first_per_class(
  labels: np.ndarray, ids: np.ndarray, max_per_class: int
) -> np.ndarray:
  """Picks the first `max_per_class` examples of each class in id order.

  Args:
    labels: int [N].
    ids: str [N].
    max_per_class: how many to keep per class; must be >= 1.

  Returns:
    int64 [M] indices into the inputs, in id order.
  """
  if max_per_class < 1:
    raise DataError(f"max_per_class must be >= 1, got {max_per_class}")
  order = np.argsort(ids, kind="stable")
  kept = []
  counts: dict[int, int] = {}
  for i in order:
    label = int(labels[i])
    if counts.get(label, 0) < max_per_class:
      counts[label] = counts.get(label, 0) + 1
      kept.append(i)
  return np.asarray(kept, dtype=np.int64)
