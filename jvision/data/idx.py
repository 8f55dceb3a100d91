"""MNIST-style IDX files: parsing and loading a split from a directory.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the values in C
order. A directory holds `train-images-idx3-ubyte` and
`train-labels-idx1-ubyte` for "train" and the same with `t10k-` for "test",
each optionally gzipped (`.gz`); `train-images.idx3-ubyte` also works.

A loaded split has ids "<split>/<index>" (e.g. "train/000123") in file
order, and class names from a label spec or "0".."K-1", K = 1 + the largest
label over all splits in the directory.
"""

import gzip
import os
import zlib

import numpy as np

from jvision.data import decode
from jvision.data.dataset import (
  ArrayDataset,
  DataError,
  UnknownSplitError,
  first_per_class,
)
from jvision.data.labels import LabelSpec

# IDX type code -> big-endian dtype.
_DTYPES = {
  0x08: np.dtype(np.uint8),
  0x09: np.dtype(np.int8),
  0x0B: np.dtype(">i2"),
  0x0C: np.dtype(">i4"),
  0x0D: np.dtype(">f4"),
  0x0E: np.dtype(">f8"),
}
_PREFIXES = {"train": "train", "test": "t10k"}
SPLITS = tuple(_PREFIXES)


def parse_idx(data: bytes, *, path: str) -> np.ndarray:
  """Parses the (decompressed) bytes of one IDX file.

  Args:
    data: the file's bytes.
    path: named in errors.

  Returns:
    The array, shaped as the header says, in native byte order.

  Raises:
    DataError: bad magic number, type code, or a size that disagrees with
      the header.
  """
  if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _DTYPES:
    raise DataError(
      f"{path}: not an IDX file: magic number {data[:4].hex() or 'missing'}, "
      f"expected 0000TTNN with type TT in "
      f"{sorted(f'{t:02x}' for t in _DTYPES)}"
    )
  dtype, ndim = _DTYPES[data[2]], data[3]
  header_size = 4 + 4 * ndim
  if ndim == 0 or len(data) < header_size:
    raise DataError(
      f"{path}: IDX header declares {ndim} dimensions but the file has "
      f"{len(data)} bytes"
    )
  shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
  expected = header_size + int(np.prod(shape)) * dtype.itemsize
  if len(data) != expected:
    raise DataError(
      f"{path}: IDX header says shape {list(shape)} of {dtype} "
      f"({expected} bytes with the header) but the file has {len(data)} "
      "bytes"
    )
  values = np.frombuffer(data, dtype, offset=header_size).reshape(shape)
  return values.astype(dtype.newbyteorder("="))


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file, gunzipping it when it starts with the gzip magic.

  Args:
    path: an IDX file, raw or gzipped.

  Returns:
    The array, shaped as its header says.

  Raises:
    DataError: the file is unreadable, a broken gzip or a bad IDX file.
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
    if data[:2] == b"\x1f\x8b":
      data = gzip.decompress(data)
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(f"{path}: cannot read IDX file: {e}") from e
  return parse_idx(data, path=path)


def find_file(directory: str, split: str, kind: str) -> str | None:
  """Returns the path of a split's `kind` file ("images"|"labels") or None."""
  prefix = _PREFIXES[split]
  dims = "idx3" if kind == "images" else "idx1"
  for sep in ("-", "."):
    for suffix in (".gz", ""):
      path = os.path.join(
        directory, f"{prefix}-{kind}{sep}{dims}-ubyte{suffix}"
      )
      if os.path.isfile(path):
        return path
  return None


def available_splits(directory: str) -> tuple[str, ...]:
  """The splits whose image and label files are both in `directory`."""
  return tuple(
    split
    for split in SPLITS
    if find_file(directory, split, "images")
    and find_file(directory, split, "labels")
  )


def load_idx_split(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """Loads one split of an IDX directory.

  Args:
    directory: holds the IDX files (see the module docstring).
    split: "train" or "test".

  Returns:
    (images, labels): uint8 [N, H, W, 1] and int32 [N].

  Raises:
    DataError: a file is missing or malformed, or images and labels disagree.
  """
  if split not in _PREFIXES:
    raise UnknownSplitError(f"idx:{directory}", SPLITS, split)
  paths = {k: find_file(directory, split, k) for k in ("images", "labels")}
  for kind, path in paths.items():
    if path is None:
      dims = "idx3" if kind == "images" else "idx1"
      raise DataError(
        f"{directory}: no {_PREFIXES[split]}-{kind}-{dims}-ubyte[.gz] for "
        f"split {split!r}"
      )
  images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
  _check_pair(images, labels, paths["images"], paths["labels"])
  return images[..., None], labels.astype(np.int32)


def _check_pair(
  images: np.ndarray, labels: np.ndarray, images_path: str, labels_path: str
) -> None:
  """Raises DataError unless images are uint8 [N, H, W] and labels [N]."""
  if images.ndim != 3 or images.dtype != np.uint8:
    raise DataError(
      f"{images_path}: expected uint8 images [N, H, W], got {images.dtype} "
      f"{list(images.shape)}"
    )
  if labels.ndim != 1 or labels.dtype != np.uint8:
    raise DataError(
      f"{labels_path}: expected uint8 labels [N], got {labels.dtype} "
      f"{list(labels.shape)}"
    )
  if len(images) != len(labels):
    raise DataError(
      f"{images_path} has {len(images)} images but {labels_path} has "
      f"{len(labels)} labels"
    )


def load_idx(
  directory: str,
  split: str,
  *,
  image_size: int | None = None,
  channels: int | None = None,
  max_per_class: int | None = None,
  label_spec: LabelSpec | None = None,
) -> ArrayDataset:
  """Loads one split of an IDX directory as an ArrayDataset.

  Args:
    directory: holds the IDX files.
    split: "train" or "test".
    image_size: resize to image_size x image_size (PIL bilinear).
    channels: 1, 3 (grayscale repeated) or None (1).
    max_per_class: keep only the first n of each class in id order.
    label_spec: gives the class names; labels must be below its size.

  Returns:
    The split.
  """
  decode.check_options(image_size, channels)
  images, labels = load_idx_split(directory, split)
  class_names = _class_names(directory, label_spec)
  if labels.size and labels.max() >= len(class_names):
    raise DataError(
      f"idx:{directory} split {split!r} has label {labels.max()} but "
      f"{len(class_names)} classes {list(class_names)}"
    )
  width = max(6, len(str(len(labels) - 1)))
  ids = np.asarray([f"{split}/{i:0{width}d}" for i in range(len(labels))])
  keep = slice(None)
  if max_per_class is not None:
    keep = first_per_class(labels, ids, max_per_class)
  images = decode.convert_arrays(
    images[keep], image_size=image_size, channels=channels
  )
  return ArrayDataset(
    images=np.ascontiguousarray(images),
    labels=labels[keep],
    ids=ids[keep],
    class_names=class_names,
  )


def _class_names(
  directory: str, label_spec: LabelSpec | None
) -> tuple[str, ...]:
  """The spec's names, else "0".."K-1" over all splits' labels."""
  if label_spec is not None:
    return label_spec.class_names
  top = -1
  for split in available_splits(directory):
    labels = read_idx(find_file(directory, split, "labels"))
    top = max(top, int(labels.max()) if labels.size else -1)
  return tuple(str(i) for i in range(top + 1))
