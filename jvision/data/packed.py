"""Packed sources: the record shards `jvision pack` writes, read per record.

A pack is a directory (`jvision.data.pack` writes it):

    DIR/packed.json                       metadata, written last (below)
    DIR/<split>-00000-of-00012.array_record   ArrayRecord shards, group_size 1
    DIR/<split>.index.npz                 ids (UTF-8 bytes [N]) and labels
                                          (int32 [N]) in record order, so
                                          indexing reads no record
    DIR/.jvision-pack/                    the writer's plan and per-shard
                                          markers (resuming; not read here)

packed.json: {"format": "jvision-packed", "version": 1, "source": the data
spec packed, "settings": {...}, "class_names": [...] ([] when unlabelled),
"splits": {split: {"shards": [names], "shard_examples": [counts],
"num_examples": N, "skipped": [[id, reason], ...]}}, "created",
"jvision_version"}. The examples of a split are its records in shard order;
record k of the split is its global record number k.

Each record (version 1) is, little-endian:

    bytes 0-3    magic b"JVPR"
    bytes 4-5    uint16 record format version (1)
    bytes 6-7    uint16 reserved, 0
    bytes 8-11   uint32 M, the length of the metadata
    bytes 12-19  uint64 L, the length of the image
    20 .. 20+M   UTF-8 JSON {"id": str, "label": int} (label -1: unlabelled)
    .. +L        the image file's bytes as the source stored them (a TFDS
                 image stored decoded is encoded as PNG, losslessly)

and nothing after. Reading parses the header and the JSON only (no pickle,
nothing that runs code); a record that does not follow the layout raises
`DamagedRecord` (an OSError, so the stream skips it as unreadable).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import json
import os
import struct
import threading

import numpy as np

from jvision.data import cache, decode, folder
from jvision.data import labels as labels_lib
from jvision.data.dataset import (
  ArrayDataset,
  DataError,
  UnknownSplitError,
  first_per_class,
)
from jvision.data.index import SplitIndex
from jvision.data.labels import LabelSpec

FORMAT = "jvision-packed"
VERSION = 1  # of packed.json and of the record layout
METADATA = "packed.json"
SHARD_SUFFIX = ".array_record"
RECORD_MAGIC = b"JVPR"
RECORD_VERSION = 1
_HEADER = struct.Struct("<4sHHIQ")  # magic, version, reserved, M, L
MAX_META_BYTES = 2**16  # a record's JSON; ids are relative paths
# Reader options: no read-ahead (records are read at random), as grain does.
_READER_OPTIONS = "readahead_buffer_size:0"


class DamagedRecord(OSError):
  """A record that does not follow the packed layout (module docstring)."""


def encode_record(image: bytes, *, example_id: str, label: int) -> bytes:
  """One record of the packed layout.

  Args:
    image: the image file's bytes.
    example_id: the example's stable id.
    label: its class id, -1 when unlabelled.
  """
  meta = json.dumps(
    {"id": example_id, "label": int(label)}, ensure_ascii=False
  ).encode("utf-8")
  if len(meta) > MAX_META_BYTES:
    raise DataError(
      f"id {example_id[:80]!r}... is too long to pack: its record metadata "
      f"is {len(meta)} bytes, above {MAX_META_BYTES}"
    )
  header = _HEADER.pack(RECORD_MAGIC, RECORD_VERSION, 0, len(meta), len(image))
  return b"".join((header, meta, image))


def decode_record(record: bytes, *, where: str) -> tuple[dict, bytes]:
  """({"id", "label"}, image bytes) of a record.

  Args:
    record: a record's bytes.
    where: names the record in errors ("shard X record 12").

  Raises:
    DamagedRecord: the bytes do not follow the layout.
  """
  record = bytes(record)
  if len(record) < _HEADER.size:
    raise DamagedRecord(
      f"{where}: damaged record of {len(record)} bytes, shorter than the "
      f"{_HEADER.size}-byte header"
    )
  magic, version, _, meta_len, image_len = _HEADER.unpack_from(record)
  if magic != RECORD_MAGIC:
    raise DamagedRecord(
      f"{where}: not a jvision packed record (starts {magic!r}, expected "
      f"{RECORD_MAGIC!r})"
    )
  if version != RECORD_VERSION:
    raise DamagedRecord(
      f"{where}: record format version {version}; this jvision reads "
      f"version {RECORD_VERSION}"
    )
  if meta_len > MAX_META_BYTES or (
    _HEADER.size + meta_len + image_len != len(record)
  ):
    raise DamagedRecord(
      f"{where}: damaged record: header says {meta_len} + {image_len} "
      f"bytes after the header, the record holds "
      f"{len(record) - _HEADER.size}"
    )
  meta = _parse_meta(record[_HEADER.size : _HEADER.size + meta_len], where)
  return meta, record[_HEADER.size + meta_len :]


def _parse_meta(data: bytes, where: str) -> dict:
  """The record's {"id": str, "label": int}, checked."""
  try:
    meta = json.loads(data.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise DamagedRecord(f"{where}: damaged record metadata: {e}") from e
  if (
    not isinstance(meta, dict)
    or not isinstance(meta.get("id"), str)
    or type(meta.get("label")) is not int
  ):
    raise DamagedRecord(
      f'{where}: record metadata must be {{"id": str, "label": int}}, got '
      f"{str(meta)[:200]}"
    )
  return meta


def shard_name(split: str, number: int, count: int) -> str:
  """ "train-00003-of-00012.array_record"."""
  return f"{split}-{number:05d}-of-{count:05d}{SHARD_SUFFIX}"


def index_file(split: str) -> str:
  """The per-split index file's name: "<split>.index.npz"."""
  return f"{split}.index.npz"


def read_metadata(directory: str) -> dict:
  """The checked packed.json of a pack.

  Raises:
    DataError: missing (not a pack, or one not finished), unreadable, of
      another format or a newer version, or malformed.
  """
  path = os.path.join(directory, METADATA)
  if not os.path.isfile(path):
    hint = ""
    if os.path.isdir(os.path.join(directory, ".jvision-pack")):
      hint = " (an unfinished `jvision pack`: run it again to complete it)"
    raise DataError(
      f"packed:{directory} has no {METADATA}{hint}; a packed source is a "
      "directory written by `jvision pack --data=SPEC --out=DIR`"
    )
  try:
    with open(path, encoding="utf-8") as f:
      meta = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise DataError(f"{path} is not readable JSON: {e}") from e
  if not isinstance(meta, dict) or meta.get("format") != FORMAT:
    raise DataError(f'{path}: "format" is not {FORMAT!r}; not a jvision pack')
  if meta.get("version") != VERSION:
    raise DataError(
      f"{path}: pack format version {meta.get('version')!r}; this jvision "
      f"reads version {VERSION} (repack with `jvision pack`)"
    )
  _check_metadata(meta, path)
  return meta


def _check_metadata(meta: dict, path: str) -> None:
  """Raises DataError unless the splits and class names are well formed."""
  names, splits = meta.get("class_names"), meta.get("splits")
  if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
    raise DataError(f'{path}: "class_names" must be a list of strings')
  if not isinstance(splits, dict) or not splits:
    raise DataError(f'{path}: "splits" must be a non-empty object')
  for split, entry in splits.items():
    shards = entry.get("shards") if isinstance(entry, dict) else None
    counts = entry.get("shard_examples") if isinstance(entry, dict) else None
    if (
      not isinstance(shards, list)
      or not isinstance(counts, list)
      or len(shards) != len(counts)
      or not all(_is_plain_name(s) for s in shards)
      or not all(type(c) is int and c >= 0 for c in counts)
      or entry.get("num_examples") != sum(counts)
    ):
      raise DataError(
        f'{path}: split {split!r} must have "shards" (file names in the '
        'directory), "shard_examples" (one count per shard) and '
        '"num_examples" (their sum)'
      )


def _is_plain_name(name) -> bool:
  """A file name inside the pack directory (no separators, not hidden)."""
  return (
    isinstance(name, str)
    and name.endswith(SHARD_SUFFIX)
    and "/" not in name
    and "\\" not in name
    and not name.startswith(".")
  )


def packed_splits(directory: str) -> tuple[str, ...]:
  """The splits of a pack, in the order the source listed them."""
  return tuple(read_metadata(directory)["splits"])


def _read_index(directory: str, split: str, count: int):
  """(ids unicode [N], labels int32 [N]) from <split>.index.npz, checked."""
  path = os.path.join(directory, index_file(split))
  try:
    with np.load(path, allow_pickle=False) as data:
      ids, labels = data["ids"], data["labels"]
  except (OSError, ValueError, KeyError) as e:
    raise DataError(
      f"{path}: not a readable pack index (arrays ids and labels): {e}"
    ) from e
  if ids.dtype.kind != "S" or labels.dtype != np.int32:
    raise DataError(
      f"{path}: ids must be UTF-8 bytes and labels int32, got {ids.dtype} "
      f"and {labels.dtype}"
    )
  try:
    ids = np.char.decode(ids, "utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: ids are not UTF-8: {e}") from e
  if ids.shape != (count,) or labels.shape != (count,):
    raise DataError(
      f"{path}: {ids.shape} ids and {labels.shape} labels; {METADATA} says "
      f"the split has {count} records"
    )
  return ids, labels


def _apply_label_spec(
  labels: np.ndarray,
  class_names: tuple[str, ...],
  label_spec: LabelSpec | None,
  directory: str,
) -> tuple[np.ndarray, tuple[str, ...]]:
  """Remaps labels to a label spec's ids; returns (labels, class_names)."""
  if label_spec is None:
    return labels, class_names
  if not class_names:
    raise DataError(
      f"packed:{directory} is an unlabelled source (no class names), so "
      f"label spec {label_spec.name!r} cannot name its classes"
    )
  return labels_lib.remap(
    labels, class_names, label_spec, f"packed:{directory}"
  )


def index_packed_split(
  directory: str,
  split: str,
  *,
  max_per_class: int | None = None,
  label_spec: LabelSpec | None = None,
) -> SplitIndex:
  """The index of one split of a pack: keys are global record numbers.

  Ids and labels come from <split>.index.npz; no record is read.

  Args:
    directory: the pack's directory.
    split: one of its splits.
    max_per_class: keep only the first n examples of each class in id order.
    label_spec: names the classes; the packed class names must be its
      names or aliases (as for folders) and labels become its ids.

  Raises:
    DataError: not a pack, an unknown split, a malformed index, or class
      names that do not match the label spec.
  """
  meta = read_metadata(directory)
  if split not in meta["splits"]:
    raise UnknownSplitError(
      f"packed:{directory}", packed_splits(directory), split
    )
  entry = meta["splits"][split]
  ids, labels = _read_index(directory, split, entry["num_examples"])
  labels, class_names = _apply_label_spec(
    labels, tuple(meta["class_names"]), label_spec, directory
  )
  keys = np.arange(len(ids), dtype=np.int64)
  if max_per_class is not None:
    keep = first_per_class(labels, ids, max_per_class)
    keys, labels, ids = keys[keep], labels[keep], ids[keep]
  return SplitIndex(
    source=f"packed:{directory}",
    split=split,
    keys=keys,
    labels=labels,
    ids=ids,
    class_names=class_names,
    reader=PackedReader(
      directory, tuple(entry["shards"]), tuple(entry["shard_examples"])
    ),
  )


@dataclasses.dataclass(frozen=True)
class PackedReader:
  """Reads records of one split's shards (a picklable factory: calling it
  returns a reader that opens each shard on first use, in the calling
  process)."""

  directory: str
  shards: tuple[str, ...]
  counts: tuple[int, ...]

  def __call__(self) -> _OpenShards:
    return _OpenShards(self)


class _OpenShards:
  """`read(record number)` -> the image bytes of that record.

  Each shard is opened once, with its record count checked against
  packed.json (ArrayRecord reads a truncated file as empty records). Any
  failure is an OSError naming the shard and record.
  """

  def __init__(self, spec: PackedReader):
    self._spec = spec
    self._ends = np.cumsum(spec.counts).tolist()
    self._readers: dict[int, object] = {}
    self._lock = threading.Lock()  # decode_many reads from threads

  def read(self, key) -> bytes:
    key = int(key)
    if not 0 <= key < (self._ends[-1] if self._ends else 0):
      raise OSError(f"record {key} is outside the split's records")
    shard = bisect.bisect_right(self._ends, key)
    position = key - (self._ends[shard - 1] if shard else 0)
    where = f"{self._spec.shards[shard]} record {position}"
    try:
      record = self._reader(shard).read([position])[0]
    except RuntimeError as e:  # what array_record raises
      raise OSError(f"{where}: {e}") from e
    return decode_record(record, where=where)[1]

  def _reader(self, shard: int):
    with self._lock:
      if shard not in self._readers:
        self._readers[shard] = _open_shard(
          os.path.join(self._spec.directory, self._spec.shards[shard]),
          self._spec.counts[shard],
        )
      return self._readers[shard]

  def close(self) -> None:
    with self._lock:
      for reader in self._readers.values():
        reader.close()
      self._readers.clear()


def _open_shard(path: str, count: int):
  """An ArrayRecordReader of a shard that holds `count` records.

  Raises:
    OSError: the shard is missing, damaged, or holds another count.
  """
  from array_record.python import array_record_module

  if not os.path.isfile(path):
    raise OSError(f"shard {path} is missing")
  try:
    reader = array_record_module.ArrayRecordReader(
      path, options=_READER_OPTIONS
    )
    ok, found = reader.ok(), reader.num_records()
  except RuntimeError as e:
    raise OSError(
      f"shard {path} is not a readable ArrayRecord file: {e}"
    ) from e
  if not ok or found != count:
    with contextlib.suppress(RuntimeError):  # close raises when not ok
      reader.close()
    raise OSError(
      f"shard {path} is damaged or truncated: it reads as {found} records "
      f"(ok={ok}); {METADATA} says {count}"
    )
  return reader


def load_packed(
  directory: str,
  split: str,
  *,
  image_size: int | None = None,
  channels: int | None = None,
  max_per_class: int | None = None,
  label_spec: LabelSpec | None = None,
  progress: bool = True,
  use_cache: bool = True,
  workers: int | None = None,
) -> ArrayDataset:
  """Loads one split of a pack into memory, decoding its records.

  Args:
    directory: the pack's directory.
    split: one of its splits.
    image_size: resize to image_size x image_size; None keeps sizes.
    channels: 1, 3 or None (as `decode.decode_image`).
    max_per_class: keep only the first n of each class in id order.
    label_spec: as in `index_packed_split`.
    progress: show a tqdm bar while decoding.
    use_cache: read and write the decoded-array cache (`jvision.data.cache`).
    workers: decoding threads; None for `decode.default_workers()`.

  Returns:
    The split; `skipped` lists the records that could not be decoded.
  """
  decode.check_options(image_size, channels)
  index = index_packed_split(
    directory, split, max_per_class=max_per_class, label_spec=label_spec
  )

  def compute():
    return _decode_index(index, image_size, channels, progress, workers)

  if use_cache:
    key = {
      "source": "packed",
      **cache.source_fingerprint(directory),
      "split": split,
      "image_size": image_size,
      "channels": channels,
      "max_per_class": max_per_class,
      "label_spec": labels_lib.cache_key(label_spec),
    }
    dataset = cache.cached(key, compute)
  else:
    dataset = compute()
  folder.warn_skipped(index.source, split, dataset.skipped)
  return dataset


def _decode_index(
  index: SplitIndex,
  image_size: int | None,
  channels: int | None,
  progress: bool,
  workers: int | None,
) -> ArrayDataset:
  """Reads and decodes every record of an index (no cache)."""
  key_of = dict(zip(index.ids.tolist(), index.keys.tolist(), strict=True))
  reader = index.reader()
  try:
    images, skipped = decode.decode_many(
      index.ids.tolist(),
      lambda example_id: reader.read(key_of[example_id]),
      image_size=image_size,
      channels=channels,
      workers=workers,
      progress=progress,
      desc=f"{index.source} {index.split}",
    )
  finally:
    reader.close()
  good = np.asarray([image is not None for image in images], dtype=bool)
  if len(images) and not good.any():
    raise DataError(
      f"{index.source} split {index.split!r}: none of its {len(images)} "
      f"records could be decoded, e.g. {skipped[0]}"
    )
  kept_ids = index.ids[good]
  return ArrayDataset(
    images=decode.stack_images([i for i in images if i is not None], kept_ids),
    labels=index.labels[good],
    ids=kept_ids,
    class_names=index.class_names,
    skipped=tuple(skipped),
  )
