"""Audit manifests as a data source: `OUT/manifest.jsonl` -> ArrayDataset.

`jvision audit` writes the examples that pass as JSON lines (DESIGN.md
"Audit output"; the writer is `jvision.audit.findings`):

    {"source": "folder:/abs/path/pets", "path": "train/cat/001.png",
     "split": "train", "label": 3, "class": "cat"}

`source` is a data spec (the same on every line), `path` the example's path
inside a folder source's directory or zip (wrapper folders included), or
the example id of an array source (built-in, `idx:`, `tfds:`), e.g.
"train/000123"; `split` the split the example belongs to, `label` its class
id and `class` that class's name. Other keys are ignored; blank lines are
skipped.

`load_manifest(path, split)` returns exactly the rows of `split`:

* ids are the manifest paths, sorted; labels are the manifest's labels (the
  audit's word, not the source's).
* class_names come from the (label, class) pairs of the whole file, so every
  split of one manifest has the same classes. A label id below the largest
  that no line uses gets the placeholder name "<label K: not in manifest>"
  (and a warning), so ids keep their meaning.
* Folder sources decode only the listed files. A listed file that the
  folder no longer holds is an error (the folder changed since the audit);
  one that exists but cannot be decoded is skipped, listed in
  `ArrayDataset.skipped` and logged, as `folder.load_folder` does. Decoded
  splits are cached (`jvision.data.cache`) under a key made of the
  manifest's SHA-256, the split, the options and the folder's fingerprint.
* Array sources load, with `jvision.data.load`, each source split the ids
  name (an id's first part: "train" of "train/000123", whatever the
  manifest `split`; all splits when an id's first part names none) and
  select the listed ids; an id the source lacks is an error naming the
  first few.

Every line is validated: malformed JSON, a missing key, a wrong type, a
source other than the first line's, a path listed twice, or a label or
class paired differently than on an earlier line is a DataError naming the
manifest file and line ("manifest.jsonl:12: ...").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os

import numpy as np

from jvision.data import cache, decode, folder, sources
from jvision.data.dataset import ArrayDataset, DataError, first_per_class

_log = logging.getLogger(__name__)

# Required keys and their JSON types (bool is excluded from int by hand).
_KEYS = {"source": str, "path": str, "split": str, "label": int, "class": str}
_MAX_NAMED = 5  # Rows quoted in an error about many rows.


@dataclasses.dataclass(frozen=True)
class ManifestRow:
  """One example of a manifest.

  Attributes:
    line: its 1-based line number in the file.
    path: the folder-relative path or array-source id.
    split: the split it belongs to.
    label: its class id.
    class_name: that class's name.
  """

  line: int
  path: str
  split: str
  label: int
  class_name: str


@dataclasses.dataclass(frozen=True)
class Manifest:
  """A parsed, validated manifest file.

  Attributes:
    path: the file, as given.
    source: the data spec every line names.
    rows: the examples in file order.
    class_names: names indexed by label id (placeholders for unused ids).
    sha256: hex SHA-256 of the file's bytes.
  """

  path: str
  source: str
  rows: tuple[ManifestRow, ...]
  class_names: tuple[str, ...]
  sha256: str

  @property
  def splits(self) -> tuple[str, ...]:
    """The split names the rows use, train first, test last."""
    return tuple(sorted({r.split for r in self.rows}, key=_split_order))

  def split_rows(self, split: str) -> tuple[ManifestRow, ...]:
    """The rows of `split` sorted by path; DataError when there are none."""
    rows = sorted((r for r in self.rows if r.split == split), key=_by_path)
    if not rows:
      raise DataError(
        f"manifest {self.path} has no rows for split {split!r}; its splits "
        f"are {list(self.splits)}"
      )
    return tuple(rows)


def _split_order(name: str) -> tuple[int, str]:
  return {"train": 0, "test": 2}.get(name.lower(), 1), name


def _by_path(row: ManifestRow) -> str:
  return row.path


def read_manifest(path: str) -> Manifest:
  """Reads and validates a manifest file.

  Args:
    path: a `manifest.jsonl`.

  Returns:
    The manifest.

  Raises:
    DataError: the file is missing, unreadable or empty, or a line is
      invalid (the message names the file and line).
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise DataError(f"cannot read manifest {path}: {e}") from e
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"manifest {path} is not UTF-8 text: {e}") from e
  source, rows = _parse_lines(path, text)
  _check_unique_paths(path, rows)
  return Manifest(
    path=path,
    source=source,
    rows=rows,
    class_names=_class_names(path, rows),
    sha256=hashlib.sha256(data).hexdigest(),
  )


def _parse_lines(path: str, text: str) -> tuple[str, tuple[ManifestRow, ...]]:
  """(the common source, the rows) of a manifest's text."""
  source, first_line, rows = None, 0, []
  for number, line in enumerate(text.split("\n"), start=1):
    if not line.strip():
      continue
    where = f"{path}:{number}"
    row_source, row = _parse_line(line, where=where, number=number)
    if source is None:
      source, first_line = _check_source(row_source, where), number
    elif row_source != source:
      raise DataError(
        f"{where}: source {row_source!r} differs from {source!r} on line "
        f"{first_line}; a manifest reads one source"
      )
    rows.append(row)
  if source is None:
    raise DataError(f"manifest {path} holds no examples (no non-blank lines)")
  return source, tuple(rows)


def _parse_line(
  text: str, *, where: str, number: int
) -> tuple[str, ManifestRow]:
  """(source, row) of line `number`; `where` ("file:line") is in errors."""
  try:
    record = json.loads(text)
  except json.JSONDecodeError as e:
    raise DataError(f"{where}: not valid JSON: {e}") from e
  if not isinstance(record, dict):
    raise DataError(
      f"{where}: expected a JSON object, got {type(record).__name__}"
    )
  missing = [key for key in _KEYS if key not in record]
  if missing:
    raise DataError(
      f"{where}: missing key(s) {missing}; each line needs {list(_KEYS)}"
    )
  for key, kind in _KEYS.items():
    _check_value(record[key], key, kind, where)
  return record["source"], ManifestRow(
    line=number,
    path=record["path"],
    split=record["split"],
    label=record["label"],
    class_name=record["class"],
  )


def _check_value(value, key: str, kind: type, where: str) -> None:
  """Raises DataError unless `value` is a non-empty str or an int >= 0."""
  if kind is int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      raise DataError(
        f"{where}: {key!r} must be an integer >= 0, got {value!r}"
      )
  elif not isinstance(value, str) or not value:
    raise DataError(
      f"{where}: {key!r} must be a non-empty string, got {value!r}"
    )
  if key == "path" and (
    value.startswith("/") or ".." in value.split("/") or "\\" in value
  ):
    raise DataError(
      f"{where}: path {value!r} must be relative to the source, with '/' "
      "separators and no '..'"
    )


def _check_source(source: str, where: str) -> str:
  """Returns `source` if it is a valid data spec, else raises DataError."""
  try:
    sources.parse_spec(source)
  except DataError as e:
    raise DataError(f"{where}: bad source: {e}") from e
  return source


def _check_unique_paths(path: str, rows: tuple[ManifestRow, ...]) -> None:
  """Raises DataError naming both lines of the first path listed twice."""
  seen: dict[str, int] = {}
  for row in rows:
    if row.path in seen:
      raise DataError(
        f"{path}:{row.line}: path {row.path!r} is already listed on line "
        f"{seen[row.path]}; each example appears once"
      )
    seen[row.path] = row.line


def _class_names(path: str, rows: tuple[ManifestRow, ...]) -> tuple[str, ...]:
  """Names indexed by label, checking each label keeps one class and back.

  Args:
    path: the manifest, named in errors.
    rows: all of its rows.

  Returns:
    K names, K = 1 + the largest label; unused ids get placeholders.
  """
  by_label: dict[int, ManifestRow] = {}
  by_class: dict[str, ManifestRow] = {}
  for row in rows:
    first = by_label.setdefault(row.label, row)
    if first.class_name != row.class_name:
      raise DataError(
        f"{path}:{row.line}: label {row.label} is class {row.class_name!r} "
        f"but line {first.line} gives it class {first.class_name!r}"
      )
    first = by_class.setdefault(row.class_name, row)
    if first.label != row.label:
      raise DataError(
        f"{path}:{row.line}: class {row.class_name!r} has label {row.label} "
        f"but line {first.line} gives it label {first.label}"
      )
  num_classes = max(by_label) + 1
  unused = [i for i in range(num_classes) if i not in by_label]
  if unused:
    _log.warning(
      "manifest %s has no example of %d label id(s) below its largest, %d: "
      "%s%s; they get placeholder class names",
      path,
      len(unused),
      num_classes - 1,
      unused[:_MAX_NAMED],
      " ..." if len(unused) > _MAX_NAMED else "",
    )
  return tuple(
    by_label[i].class_name if i in by_label else placeholder_name(i)
    for i in range(num_classes)
  )


def placeholder_name(label: int) -> str:
  """The class name of a label id below the largest that no row uses."""
  return f"<label {label}: not in manifest>"


def load_manifest(
  manifest: str | os.PathLike | Manifest,
  split: str,
  *,
  image_size: int | None = None,
  channels: int | None = None,
  data_dir: str | None = None,
  max_per_class: int | None = None,
  progress: bool = True,
  use_cache: bool = True,
) -> ArrayDataset:
  """Loads the examples a manifest lists for one split.

  Args:
    manifest: a `manifest.jsonl` path, or one `read_manifest` returned.
    split: a split the manifest uses (`Manifest.splits`).
    image_size: resize to image_size x image_size; None keeps sizes.
    channels: 1, 3, or None for the source's own.
    data_dir: the TFDS data_dir (tfds: and built-in sources).
    max_per_class: keep only the first n rows of each class in id order.
    progress: show tqdm bars.
    use_cache: read and write the decoded-array cache.

  Returns:
    The split: images uint8 [N, H, W, C], labels int32 [N] (the manifest's),
    ids [N] (the manifest paths, sorted), class_names from the whole file.

  Raises:
    DataError: an invalid manifest, an empty split, listed files or ids the
      source lacks, or bad options.
  """
  decode.check_options(image_size, channels)
  if not isinstance(manifest, Manifest):
    manifest = read_manifest(os.fspath(manifest))
  rows = _select(manifest.split_rows(split), max_per_class)
  _log.info(
    "Reading manifest %s split %r: %d examples from %s",
    manifest.path,
    split,
    len(rows),
    manifest.source,
  )
  options = {"image_size": image_size, "channels": channels}
  parsed = sources.parse_spec(manifest.source)
  if parsed.kind == "folder":
    return _load_folder_rows(
      manifest, parsed.name, rows, split, options, progress, use_cache
    )
  return _load_array_rows(
    manifest, rows, options, data_dir, progress, use_cache
  )


def _select(
  rows: tuple[ManifestRow, ...], max_per_class: int | None
) -> tuple[ManifestRow, ...]:
  """The first `max_per_class` rows of each class (all when None)."""
  if max_per_class is None:
    return rows
  labels = np.asarray([r.label for r in rows], dtype=np.int64)
  ids = np.asarray([r.path for r in rows], dtype=np.str_)
  return tuple(rows[i] for i in first_per_class(labels, ids, max_per_class))


def _dataset(
  manifest: Manifest,
  rows: tuple[ManifestRow, ...],
  images: np.ndarray,
  skipped: tuple[tuple[str, str], ...] = (),
) -> ArrayDataset:
  """An ArrayDataset of `rows` (in order) with their uint8 [N, H, W, C]."""
  return ArrayDataset(
    images=images,
    labels=np.asarray([r.label for r in rows], dtype=np.int32),
    ids=np.asarray([r.path for r in rows], dtype=np.str_),
    class_names=manifest.class_names,
    skipped=skipped,
  )


def _named(rows: list[ManifestRow]) -> str:
  """The first rows for an error: "'a' (line 3), 'b' (line 9) and 4 more"."""
  listed = ", ".join(f"{r.path!r} (line {r.line})" for r in rows[:_MAX_NAMED])
  more = len(rows) - _MAX_NAMED
  return listed + (f" and {more} more" if more > 0 else "")


def _load_folder_rows(
  manifest: Manifest,
  root: str,
  rows: tuple[ManifestRow, ...],
  split: str,
  options: dict,
  progress: bool,
  use_cache: bool,
) -> ArrayDataset:
  """Decodes the listed files of a folder source, through the cache."""

  def compute():
    return _decode_folder_rows(manifest, root, rows, split, options, progress)

  if use_cache and os.path.exists(root):
    key = {
      "source": "manifest",
      "manifest_sha256": manifest.sha256,
      "ids_sha256": _ids_digest(rows),
      **cache.source_fingerprint(root),
      **options,
    }
    dataset = cache.cached(key, compute)
  else:
    dataset = compute()
  folder.warn_skipped(
    f"manifest {manifest.path} (folder:{root})", split, dataset.skipped
  )
  return dataset


def _ids_digest(rows: tuple[ManifestRow, ...]) -> str:
  """A SHA-256 of the selected paths (the split and max_per_class)."""
  joined = "\n".join(r.path for r in rows)
  return hashlib.sha256(joined.encode("utf-8")).hexdigest()


def _decode_folder_rows(
  manifest: Manifest,
  root: str,
  rows: tuple[ManifestRow, ...],
  split: str,
  options: dict,
  progress: bool,
) -> ArrayDataset:
  """Reads and decodes the rows' files from a directory or zip (no cache)."""
  paths = [r.path for r in rows]
  try:
    tree = folder.Tree(root)
  except DataError as e:
    raise DataError(f"manifest {manifest.path}: {e}") from e
  try:
    present = set(tree.names)
    missing = [r for r in rows if r.path not in present]
    if missing:
      raise DataError(
        f"manifest {manifest.path} lists {len(missing)} file(s) that "
        f"folder:{root} does not hold (changed since the audit?): "
        + _named(missing)
      )
    images, skipped = decode.decode_many(
      paths,
      tree.read,
      workers=folder.pick_workers(tree, paths),
      progress=progress,
      desc=f"{os.path.basename(manifest.path)} {split}",
      **options,
    )
  finally:
    tree.close()
  good = [i for i, image in enumerate(images) if image is not None]
  if not good:
    raise DataError(
      f"manifest {manifest.path} split {split!r}: none of its {len(rows)} "
      f"files in folder:{root} could be decoded, e.g. {skipped[0]}"
    )
  kept = tuple(rows[i] for i in good)
  stacked = decode.stack_images(
    [images[i] for i in good], [r.path for r in kept]
  )
  return _dataset(manifest, kept, stacked, tuple(skipped))


def _splits_to_search(
  rows: tuple[ManifestRow, ...], available: tuple[str, ...]
) -> tuple[str, ...]:
  """The source splits that may hold the rows' ids.

  Array-source ids start with their split ("train/000123"; a built-in
  CIFAR-10 read from its zip: "train/cat/0001.jpg"), so only the splits the
  ids name are read, unless an id's first part names no split (a folder
  without split folders behind a built-in name): then all are.
  """
  named = {r.path.split("/")[0] for r in rows}
  if named <= set(available):
    return tuple(s for s in available if s in named)
  return available


def _load_array_rows(
  manifest: Manifest,
  rows: tuple[ManifestRow, ...],
  options: dict,
  data_dir: str | None,
  progress: bool,
  use_cache: bool,
) -> ArrayDataset:
  """Loads the source splits that hold the rows' ids and selects the rows."""
  available = sources.splits(manifest.source, data_dir)
  searched = _splits_to_search(rows, available)
  position = {r.path: i for i, r in enumerate(rows)}
  order, parts, example = [], [], None
  for source_split in searched:
    dataset = sources.load(
      manifest.source,
      source_split,
      data_dir=data_dir,
      progress=progress,
      cache=use_cache,
      **options,
    )
    found = [
      (position.pop(str(key)), i)
      for i, key in enumerate(dataset.ids)
      if str(key) in position
    ]
    parts.append(dataset.images[[i for _, i in found]])
    order.extend(p for p, _ in found)
    example = example or (str(dataset.ids[0]) if len(dataset) else None)
  if position:
    missing = [rows[i] for i in sorted(position.values())]
    raise DataError(
      f"manifest {manifest.path} lists {len(missing)} id(s) that "
      f"{manifest.source} does not have in split(s) {list(searched)} (its "
      f"ids look like {example!r}): " + _named(missing)
    )
  images = np.concatenate(parts)[np.argsort(order)]  # back to row order
  return _dataset(manifest, rows, images)
