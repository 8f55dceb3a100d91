"""Split indexes: what to read for each example of a split, not its pixels.

A `SplitIndex` is the streaming path's view of a split: per example, a key
its source's reader understands (a path inside a folder or zip, a record
number), a label (-1 in an unlabelled source) and a stable id. It takes a
few bytes per example, whatever the images' size, so it fits in memory for
any dataset; the pixels are read, decoded and cropped by the workers of
`jvision.data.stream` when a batch needs them.

Readers are opened lazily in the process that reads (each worker process
opens its own file or zip handle), so an index pickles small:

    index = index_split("folder:photos.zip", "train")
    reader = index.reader()            # in a worker
    encoded = reader.read(index.keys[i])   # bytes, or uint8 [H, W, C]

`index_split` covers folders and zips (labelled or not), TFDS datasets
prepared as ArrayRecord (`tfds.data_source`) and packed shards
(`jvision pack`); built-in and IDX sources are small and always loaded in
memory (`jvision.data.load`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from jvision.data import folder
from jvision.data.dataset import DataError, first_per_class
from jvision.data.labels import LabelSpec, load_label_spec

STREAMABLE_KINDS = ("folder", "tfds", "packed")


@dataclasses.dataclass(frozen=True, eq=False)
class SplitIndex:
  """One split as an index of stored images.

  Attributes:
    source: the data spec, for messages ("folder:photos.zip").
    split: the split's name.
    keys: [N] what `reader().read` takes per example (str or int64).
    labels: int32 [N]; all -1 in an unlabelled source.
    ids: numpy unicode [N]; stable per example (as `ArrayDataset.ids`).
    class_names: names indexed by label id; () when unlabelled.
    reader: picklable `() -> Reader`; a Reader has `read(key) -> bytes |
      uint8 [H, W, C]` (raising OSError for an unreadable example) and
      `close()`.
  """

  source: str
  split: str
  keys: np.ndarray
  labels: np.ndarray
  ids: np.ndarray
  class_names: tuple[str, ...]
  reader: Callable

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def labelled(self) -> bool:
    return bool(self.class_names)

  def take(self, indices: np.ndarray) -> SplitIndex:
    """The examples at `indices` (int [M])."""
    return dataclasses.replace(
      self,
      keys=self.keys[indices],
      labels=self.labels[indices],
      ids=self.ids[indices],
    )


@dataclasses.dataclass(frozen=True)
class TreeReader:
  """Reads files of a directory or zip below a prefix (a picklable factory:
  calling it returns the reader itself with its own, lazily opened tree)."""

  path: str
  prefix: str

  def __call__(self) -> _OpenTree:
    return _OpenTree(folder.Tree(self.path), self.prefix)


class _OpenTree:
  def __init__(self, tree: folder.Tree, prefix: str):
    self._tree, self._prefix = tree, prefix

  def read(self, key: str) -> bytes:
    return self._tree.read(self._prefix + key)

  def close(self) -> None:
    self._tree.close()


def index_folder_split(
  path: str,
  split: str,
  *,
  seed: int = 0,
  holdout_fraction: float = 0.1,
  max_per_class: int | None = None,
  label_spec: LabelSpec | None = None,
) -> SplitIndex:
  """The index of one split of a folder or zip (`folder.index_folder`'s
  layouts; the same examples, labels and ids `folder.load_folder` loads)."""
  folder.check_holdout(seed, holdout_fraction)
  index = folder.index_folder(path)
  entries = folder.split_entries(
    index, split, seed=seed, holdout_fraction=holdout_fraction
  )
  mapping, class_names = folder.class_mapping(index, label_spec)
  ids = np.asarray([i for i, _ in entries], dtype=np.str_)
  labels = np.asarray([mapping[c] for _, c in entries], dtype=np.int32)
  if max_per_class is not None:
    keep = first_per_class(labels, ids, max_per_class)
    ids, labels = ids[keep], labels[keep]
  return SplitIndex(
    source=f"folder:{path}",
    split=split,
    keys=ids,
    labels=labels,
    ids=ids,
    class_names=tuple(class_names),
    reader=TreeReader(path, index.prefix),
  )


@dataclasses.dataclass(frozen=True)
class TfdsReader:
  """Opens a TFDS ArrayRecord split with `tfds.data_source` (images left
  encoded) in the calling process; `read(i)` is record i's image."""

  name: str
  split: str
  data_dir: str | None

  def __call__(self) -> _OpenTfds:
    from jvision.data import tfds_source

    return _OpenTfds(
      tfds_source.open_source(self.name, self.split, self.data_dir)
    )


class _OpenTfds:
  def __init__(self, source):
    self._source = source

  def read(self, key: int):
    return self._source[int(key)]["image"]

  def close(self) -> None:
    pass


def index_tfds_split(
  name: str,
  config: str | None,
  split: str,
  *,
  data_dir: str | None = None,
  max_per_class: int | None = None,
  label_spec: LabelSpec | None = None,
  progress: bool = True,
) -> SplitIndex:
  """The index of one split of a TFDS dataset prepared as ArrayRecord.

  Its labels are read once, in one pass over the records (the images are
  not decoded).
  """
  from jvision.data import tfds_source

  full = tfds_source.full_name(name, config)
  labels, class_names = tfds_source.read_labels(
    name,
    config,
    split,
    data_dir=data_dir,
    label_spec=label_spec,
    progress=progress,
  )
  width = max(6, len(str(len(labels) - 1)))
  ids = np.asarray([f"{split}/{i:0{width}d}" for i in range(len(labels))])
  keys = np.arange(len(labels), dtype=np.int64)
  if max_per_class is not None:
    keep = first_per_class(labels, ids, max_per_class)
    keys, labels, ids = keys[keep], labels[keep], ids[keep]
  return SplitIndex(
    source=f"tfds:{full}",
    split=split,
    keys=keys,
    labels=labels,
    ids=ids,
    class_names=class_names,
    reader=TfdsReader(full, split, data_dir),
  )


def index_split(
  spec: str,
  split: str,
  *,
  data_dir: str | None = None,
  seed: int = 0,
  holdout_fraction: float = 0.1,
  max_per_class: int | None = None,
  label_spec: str | LabelSpec | None = None,
  progress: bool = True,
) -> SplitIndex:
  """The index of one split of any streamable source (module docstring).

  Args:
    spec: a data spec of kind folder, tfds or packed.
    split: the split's name.
    data_dir: the TFDS data_dir.
    seed: seeds the holdout split of folders without split folders.
    holdout_fraction: the share of each class that split puts in "test".
    max_per_class: keep only the first n examples of each class in id order.
    label_spec: a label spec (path or loaded) naming the classes.
    progress: show progress bars.

  Raises:
    DataError: a bad spec, or a kind that is only loaded in memory.
  """
  from jvision.data import sources

  parsed = sources.parse_spec(spec)
  if parsed.kind not in STREAMABLE_KINDS:
    raise DataError(
      f"data spec {spec!r} ({parsed.kind}) is small and always loaded in "
      f"memory; streaming reads {', '.join(STREAMABLE_KINDS)} sources"
    )
  if isinstance(label_spec, (str, os.PathLike)) and label_spec:
    label_spec = load_label_spec(os.fspath(label_spec))
  label_spec = label_spec or None
  if parsed.kind == "folder":
    return index_folder_split(
      parsed.name,
      split,
      seed=seed,
      holdout_fraction=holdout_fraction,
      max_per_class=max_per_class,
      label_spec=label_spec,
    )
  if parsed.kind == "packed":
    from jvision.data import packed

    return packed.index_packed_split(
      parsed.name, split, max_per_class=max_per_class, label_spec=label_spec
    )
  return index_tfds_split(
    parsed.name,
    parsed.config,
    split,
    data_dir=data_dir,
    max_per_class=max_per_class,
    label_spec=label_spec,
    progress=progress,
  )
