"""An on-disk cache of decoded splits, so a second load skips decoding.

Each entry is one uncompressed `.npz` in `$JVISION_CACHE` (default
`~/.cache/jvision`; `JVISION_CACHE=off` disables caching), named by a SHA-256
of everything the decoded arrays depend on: the source's identity (path plus
size and mtime, or a listing of its files) and the load options. Entries hold
only plain arrays, ids and names as numpy unicode, and are read with
`allow_pickle=False`. A damaged entry is logged, ignored and rewritten.
"""

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable

import numpy as np

from jvision.data.dataset import ArrayDataset

_log = logging.getLogger(__name__)
_VERSION = 1  # Bump when the decoding or the entry format changes.
_FIELDS = (
  "images",
  "labels",
  "ids",
  "class_names",
  "skipped_paths",
  "skipped_reasons",
)


def cache_dir() -> str | None:
  """The cache directory, or None when `JVISION_CACHE=off`."""
  value = os.environ.get("JVISION_CACHE", "")
  if value.lower() in ("off", "0", "none", "false"):
    return None
  return value or os.path.join(os.path.expanduser("~"), ".cache", "jvision")


def cache_key(parts: dict) -> str:
  """A hex SHA-256 of JSON-serialisable `parts` (with the format version)."""
  text = json.dumps({"version": _VERSION, **parts}, sort_keys=True)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


def source_fingerprint(path: str) -> dict:
  """Identifies a file or directory tree's current contents cheaply.

  Args:
    path: a file (e.g. a zip) or a directory.

  Returns:
    For a file: its absolute path, size and mtime. For a directory: its
    absolute path and a hash of every file's relative path, size and mtime.
  """
  path = os.path.abspath(path)
  if os.path.isfile(path):
    stat = os.stat(path)
    return {"path": path, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
  digest = hashlib.sha256()
  for root, dirs, files in os.walk(path):
    dirs.sort()
    for name in sorted(files):
      full = os.path.join(root, name)
      stat = os.stat(full)
      rel = os.path.relpath(full, path)
      digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
  return {"path": path, "listing_sha256": digest.hexdigest()}


def cached(parts: dict, compute: Callable[[], ArrayDataset]) -> ArrayDataset:
  """Returns the cached split for `parts`, computing and storing it if absent.

  Args:
    parts: everything the split depends on (JSON-serialisable).
    compute: builds the split on a miss.

  Returns:
    The split.
  """
  directory = cache_dir()
  if directory is None:
    return compute()
  path = os.path.join(directory, cache_key(parts) + ".npz")
  dataset = _read(path)
  if dataset is None:
    dataset = compute()
    _write(path, dataset)
  return dataset


def _read(path: str) -> ArrayDataset | None:
  """Reads an entry; None if absent or damaged (damage is logged)."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as entry:
      arrays = {name: entry[name] for name in _FIELDS}
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    _log.warning("Ignoring damaged cache entry %s: %s", path, e)
    return None
  _log.info("Loaded decoded split from cache %s", path)
  return ArrayDataset(
    images=arrays["images"],
    labels=arrays["labels"],
    ids=arrays["ids"],
    class_names=tuple(str(n) for n in arrays["class_names"]),
    skipped=tuple(
      zip(
        (str(p) for p in arrays["skipped_paths"]),
        (str(r) for r in arrays["skipped_reasons"]),
        strict=True,
      )
    ),
  )


def _write(path: str, dataset: ArrayDataset) -> None:
  """Writes an entry atomically; a failure is logged, not raised."""
  arrays = {
    "images": dataset.images,
    "labels": dataset.labels,
    "ids": dataset.ids,
    "class_names": np.asarray(dataset.class_names, dtype=np.str_),
    "skipped_paths": np.asarray([p for p, _ in dataset.skipped], np.str_),
    "skipped_reasons": np.asarray([r for _, r in dataset.skipped], np.str_),
  }
  directory = os.path.dirname(path)
  tmp = None
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.NamedTemporaryFile(
      dir=directory, suffix=".tmp", delete=False
    ) as f:
      tmp = f.name
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except OSError as e:
    _log.warning("Could not write cache entry %s: %s", path, e)
    if tmp and os.path.exists(tmp):
      os.remove(tmp)
    return
  _log.info("Cached decoded split in %s", path)
