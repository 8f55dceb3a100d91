"""Data sources: built-in datasets, TFDS, image folders and zips, IDX files,
packed record shards (`jvision pack`).

Every source loads a split into an `ArrayDataset` (uint8 images [N, H, W, C],
int32 labels [N], stable string ids [N]) through one call:

    ds = jvision.data.load("folder:pets.zip", "train", image_size=64)

See `sources` for the spec strings, `labels` for label specs and `decode` for
how image files become arrays.
"""

from jvision.data.dataset import ArrayDataset, DataError, UnknownSplitError
from jvision.data.decode import DecodeError, decode_image
from jvision.data.labels import (
  ClassInfo,
  LabelSpec,
  builtin_label_spec,
  load_label_spec,
  match_classes,
)
from jvision.data.sources import DataSpec, load, parse_spec, same_spec, splits
from jvision.data.subsets import label_subset

__all__ = [
  "ArrayDataset",
  "ClassInfo",
  "DataError",
  "DataSpec",
  "DecodeError",
  "LabelSpec",
  "UnknownSplitError",
  "builtin_label_spec",
  "decode_image",
  "label_subset",
  "load",
  "load_label_spec",
  "match_classes",
  "parse_spec",
  "same_spec",
  "splits",
]
