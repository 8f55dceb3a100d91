"""TFDS sources: datasets already prepared in a TFDS data_dir.

`tfds:NAME[:CONFIG]` reads `tfds.data_source("NAME[/CONFIG]", split=...,
data_dir=..., download=False)`, which needs the dataset prepared in the
ArrayRecord format; TensorFlow is not needed to read it. Each record's
"image" and "label" features are used; class names come from the label
`ClassLabel`. Encoded images are decoded by `jvision.data.decode` (so
`image_size` and `channels` behave as for folders), in parallel, and the
decoded split is cached on disk when data_dir is local.

Ids are "<split>/<index>" with the index zero-padded to at least 6 digits,
in the order of the data source.
"""

import os

import numpy as np
import tqdm

from jvision.data import cache, decode
from jvision.data import labels as labels_lib
from jvision.data.dataset import (
  ArrayDataset,
  DataError,
  UnknownSplitError,
  first_per_class,
)
from jvision.data.labels import LabelSpec

_READ_CHUNK = 1024  # Records read per data-source call.


def _tfds():
  """tensorflow_datasets, imported when a TFDS source is first used, so the
  other sources run without it (e.g. on a GPU image that lacks it)."""
  try:
    import tensorflow_datasets
  except ImportError as e:
    raise DataError(
      f"TFDS sources need tensorflow-datasets, which is not installed ({e}); "
      "pip install 'tensorflow-datasets>=4.9.7,<4.10'"
    ) from e
  return tensorflow_datasets


def full_name(name: str, config: str | None) -> str:
  """ "NAME/CONFIG", or "NAME" without a config."""
  return f"{name}/{config}" if config else name


def _where(data_dir: str | None) -> str:
  default = _tfds().core.constants.DATA_DIR
  return data_dir or f"the default data_dir {default}"


def _prepare_hint(name: str, data_dir: str | None) -> str:
  target = data_dir or "DIR"
  return (
    f"prepare it with `tfds build {name} --data_dir={target} "
    f"--file_format=array_record` on a machine with internet (most datasets "
    f"also need TensorFlow to prepare), or "
    f'`tfds.builder("{name}", data_dir="{target}").download_and_prepare('
    f'file_format="array_record")`'
  )


def open_builder(name: str, config: str | None, data_dir: str | None):
  """Returns the TFDS builder of a prepared dataset.

  Args:
    name: the TFDS dataset name.
    config: a builder config name or None.
    data_dir: the TFDS data_dir, None for TFDS's default.

  Returns:
    A `tfds.core.DatasetBuilder` whose data is prepared.

  Raises:
    DataError: unknown name or config, or not prepared in data_dir.
  """
  full = full_name(name, config)
  tfds = _tfds()
  try:
    builder = tfds.builder(full, data_dir=data_dir)
  except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
    first_line = str(e).splitlines()[0]
    raise DataError(
      f"tfds:{full}: no such dataset in {_where(data_dir)} ({first_line}); "
      f"{_prepare_hint(full, data_dir)}"
    ) from e
  if not builder.is_prepared():
    raise DataError(
      f"tfds:{full} is not prepared in {_where(data_dir)}; "
      f"{_prepare_hint(full, data_dir)}"
    )
  return builder


def open_split_builder(
  name: str, config: str | None, split: str, data_dir: str | None
):
  """(builder, "NAME[/CONFIG]") of a prepared dataset with an "image" and a
  ClassLabel "label" feature and the split `split`; DataError otherwise."""
  builder = open_builder(name, config, data_dir)
  full = full_name(name, config)
  _check_features(builder.info.features, full)
  if split not in builder.info.splits:
    raise UnknownSplitError(f"tfds:{full}", builder.info.splits.keys(), split)
  return builder, full


def is_prepared(name: str, data_dir: str | None) -> bool:
  """Whether `name` is a TFDS dataset prepared in data_dir."""
  try:
    open_builder(name, None, data_dir)
  except DataError:
    return False
  return True


def tfds_splits(
  name: str, config: str | None, data_dir: str | None
) -> tuple[str, ...]:
  """The splits a prepared TFDS dataset offers."""
  return tuple(open_builder(name, config, data_dir).info.splits.keys())


def load_tfds(
  name: str,
  config: str | None,
  split: str,
  *,
  data_dir: str | None = None,
  image_size: int | None = None,
  channels: int | None = None,
  max_per_class: int | None = None,
  label_spec: LabelSpec | None = None,
  progress: bool = True,
  use_cache: bool = True,
) -> ArrayDataset:
  """Loads one split of a prepared TFDS dataset into memory.

  Args:
    name: the TFDS dataset name.
    config: a builder config name or None.
    split: a split of the dataset, e.g. "train".
    data_dir: the TFDS data_dir, None for TFDS's default.
    image_size: resize to image_size x image_size; None keeps sizes.
    channels: 1, 3, or None to keep the stored channels.
    max_per_class: keep only the first n of each class in id order.
    label_spec: renames classes: each TFDS class name must be a name or an
      alias in it; labels are remapped to its ids.
    progress: show tqdm bars.
    use_cache: read and write the decoded-array cache (local data_dir only).

  Returns:
    The split.
  """
  decode.check_options(image_size, channels)
  builder, full = open_split_builder(name, config, split, data_dir)

  def compute():
    return _read_split(
      builder,
      full,
      split,
      data_dir=data_dir,
      image_size=image_size,
      channels=channels,
      max_per_class=max_per_class,
      label_spec=label_spec,
      progress=progress,
    )

  if not (use_cache and os.path.isdir(builder.data_dir)):
    return compute()
  key = {
    "source": "tfds",
    **cache.source_fingerprint(builder.data_dir),
    "split": split,
    "image_size": image_size,
    "channels": channels,
    "max_per_class": max_per_class,
    "label_spec": labels_lib.cache_key(label_spec),
  }
  return cache.cached(key, compute)


def _check_features(features, full: str) -> None:
  """Raises DataError unless there is an "image" and a ClassLabel "label"."""
  keys = list(features.keys())
  if "image" not in keys or "label" not in keys:
    raise DataError(
      f'tfds:{full} needs features "image" and "label", it has {keys}'
    )
  if not isinstance(features["label"], _tfds().features.ClassLabel):
    raise DataError(
      f'tfds:{full}: feature "label" must be a ClassLabel, got '
      f"{type(features['label']).__name__}"
    )


def _read_split(
  builder,
  full: str,
  split: str,
  *,
  data_dir: str | None,
  image_size: int | None,
  channels: int | None,
  max_per_class: int | None,
  label_spec: LabelSpec | None,
  progress: bool,
) -> ArrayDataset:
  """Reads the records of a split, then decodes the selected images."""
  encoded = _is_encoded(builder)
  source = _data_source(full, split, data_dir, encoded)
  images, labels = _read_records(source, f"{full} {split}", progress)
  width = max(6, len(str(len(labels) - 1)))
  ids = np.asarray([f"{split}/{i:0{width}d}" for i in range(len(labels))])
  names = builder.info.features["label"].names
  labels, class_names = _apply_label_spec(labels, names, label_spec, full)
  keep = np.arange(len(labels))
  if max_per_class is not None:
    keep = first_per_class(labels, ids, max_per_class)
  if encoded:
    by_id = {str(ids[i]): images[i] for i in keep}
    decoded, skipped = decode.decode_many(
      list(by_id),
      by_id.__getitem__,
      image_size=image_size,
      channels=channels,
      progress=progress,
      desc=f"decoding {full} {split}",
    )
  else:
    decoded, skipped = [_as_image(images[i], full) for i in keep], []
  good = np.asarray([image is not None for image in decoded], dtype=bool)
  kept = keep[good]
  stacked = decode.stack_images(
    [d for d in decoded if d is not None], ids[kept]
  )
  if not encoded:
    stacked = decode.convert_arrays(
      stacked, image_size=image_size, channels=channels
    )
  return ArrayDataset(
    images=stacked,
    labels=labels[kept],
    ids=ids[kept],
    class_names=class_names,
    skipped=tuple(skipped),
  )


def _is_encoded(builder) -> bool:
  """Whether the "image" feature is stored as an encoded file."""
  return isinstance(builder.info.features["image"], _tfds().features.Image)


def _data_source(full: str, split: str, data_dir: str | None, encoded: bool):
  """`tfds.data_source` of one split, encoded images left undecoded."""
  tfds = _tfds()
  decoders = {"image": tfds.decode.SkipDecoding()} if encoded else None
  try:
    return tfds.data_source(
      full, split=split, data_dir=data_dir, download=False, decoders=decoders
    )
  except NotImplementedError as e:  # Prepared as TFRecord, not ArrayRecord.
    raise DataError(
      f"tfds:{full} in {_where(data_dir)} is not in a random-access format "
      f"({e}); {_prepare_hint(full, data_dir)}"
    ) from e


def open_source(full: str, split: str, data_dir: str | None):
  """The random-access records of one prepared split (for a stream worker):
  record i is {"image": encoded bytes or uint8 [H, W, C], "label": int}."""
  name, _, config = full.partition("/")
  builder = open_builder(name, config or None, data_dir)
  return _data_source(full, split, data_dir, _is_encoded(builder))


def read_labels(
  name: str,
  config: str | None,
  split: str,
  *,
  data_dir: str | None = None,
  label_spec: LabelSpec | None = None,
  progress: bool = True,
) -> tuple[np.ndarray, tuple[str, ...]]:
  """(int32 labels [N], class names) of one split, in record order.

  One pass over the records; the images are not decoded.
  """
  builder, full = open_split_builder(name, config, split, data_dir)
  source = _data_source(full, split, data_dir, _is_encoded(builder))
  labels = np.empty(len(source), np.int32)
  with tqdm.tqdm(
    total=len(source), desc=f"indexing {full} {split}", disable=not progress
  ) as bar:
    for start in range(0, len(source), _READ_CHUNK):
      indices = list(range(start, min(len(source), start + _READ_CHUNK)))
      for i, record in zip(indices, _records(source, indices), strict=True):
        labels[i] = record["label"]
      bar.update(len(indices))
  names = builder.info.features["label"].names
  return _apply_label_spec(labels, names, label_spec, full)


def _records(source, indices: list[int]) -> list:
  if hasattr(source, "__getitems__"):
    return source.__getitems__(indices)
  return [source[i] for i in indices]


def _read_records(source, desc: str, progress: bool) -> tuple[list, np.ndarray]:
  """Reads every record: (images, int32 labels [N])."""
  images, labels = [], []
  n = len(source)
  with tqdm.tqdm(total=n, desc=f"reading {desc}", disable=not progress) as bar:
    for start in range(0, n, _READ_CHUNK):
      indices = list(range(start, min(n, start + _READ_CHUNK)))
      for record in _records(source, indices):
        images.append(record["image"])
        labels.append(record["label"])
      bar.update(len(indices))
  return images, np.asarray(labels, dtype=np.int32)


def _apply_label_spec(
  labels: np.ndarray,
  names: list[str],
  label_spec: LabelSpec | None,
  full: str,
) -> tuple[np.ndarray, tuple[str, ...]]:
  """Remaps labels through a label spec; returns (labels, class_names)."""
  return labels_lib.remap(labels, names, label_spec, f"tfds:{full}")


def _as_image(value, full: str) -> np.ndarray:
  """An unencoded image feature as uint8 [H, W, C]."""
  image = np.asarray(value)
  if image.ndim == 2:
    image = image[..., None]
  if image.dtype != np.uint8 or image.ndim != 3:
    raise DataError(
      f'tfds:{full}: feature "image" must be uint8 [H, W] or [H, W, C], got '
      f"{image.dtype} {list(image.shape)}"
    )
  return image
