"""`jvision pack`: a folder, zip or TFDS split packed into record shards.

    pack("folder:photos.zip", "packed/photos")   # then data spec packed:...

Each split of the source (its `index.index_split`) is cut into shards of
about `shard_mb` megabytes, in the split's example order, and each shard is
written whole by one worker process: the records of `jvision.data.packed`
(the image bytes as the source stores them, never re-encoded; PNG for TFDS
images stored decoded), its id and label. The source is only read.

Resuming. Before writing, the plan (source, settings, class names, and per
shard its example range and a SHA-256 of its ids and labels) is stored in
DIR/.jvision-pack/plan.json. A shard is written to
DIR/.jvision-pack/<shard>.partial, closed, its marker (<shard>.json: the
plan entry, records written, bytes, examples skipped) written, and only
then renamed into DIR; a shard counts as complete when its file and a
marker that matches the plan and the file's size are both there. A rerun
with the same source and settings skips complete shards and writes the
rest (an interrupted run's .partial files are overwritten); another source
or other settings are refused. packed.json, which readers require, is
written last, atomically, after the per-split indexes.

Examples whose bytes cannot be read from the source (a file above the size
limit, a corrupt zip member) are left out, logged, and listed under
"skipped" in packed.json; bytes that can be read are packed as they are,
even if they do not decode (the stream skips those when reading).

Measured on the shared CIFAR-10 zip (60,000 JPEGs of about 1 KB, 62 MB) on
a 2-core AMD EPYC VM, `--workers=2`: see README.md (Packing large datasets).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import queue

import numpy as np
import tqdm
from PIL import Image

import jvision
from jvision.data import packed
from jvision.data.dataset import DataError
from jvision.data.index import SplitIndex, index_split

_log = logging.getLogger(__name__)

STAGING = ".jvision-pack"  # plan, markers and partial shards
PLAN = "plan.json"
DEFAULT_SHARD_MB = 64
_WRITER_OPTIONS = "group_size:1,uncompressed"  # images are compressed
_SAMPLE = 64  # examples read per split to estimate its packed size
_PROGRESS_EVERY = 256  # records between progress reports of a worker
_MAX_LOGGED = 20
# Passed to index_split; stored in the plan (a folder without split folders
# is split into train and test by them).
_HOLDOUT = {"seed": 0, "holdout_fraction": 0.1}


def stored_bytes(stored, *, example_id: str) -> bytes:
  """An example's image file bytes: bytes as read, or a decoded uint8
  [H, W, C] image (C in 1, 3, 4) encoded as PNG (lossless)."""
  if isinstance(stored, (bytes, bytearray, memoryview)):
    return bytes(stored)
  array = np.asarray(stored)
  if array.ndim == 0 and isinstance(array.item(), bytes):
    return array.item()
  if array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  if array.dtype != np.uint8 or array.ndim not in (2, 3):
    raise DataError(
      f"example {example_id!r}: image must be encoded bytes or uint8 "
      f"[H, W, C], got {array.dtype} {list(array.shape)}"
    )
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def _digest(index: SplitIndex) -> str:
  """SHA-256 of an index's ids and labels (what a shard must hold)."""
  h = hashlib.sha256()
  h.update("\0".join(index.ids.tolist()).encode("utf-8"))
  h.update(np.asarray(index.labels, "<i4").tobytes())
  return h.hexdigest()


def _estimated_bytes(index: SplitIndex) -> int:
  """The split's packed size, from up to `_SAMPLE` evenly spaced examples."""
  n = len(index)
  picks = np.unique(np.linspace(0, n - 1, min(n, _SAMPLE)).astype(int))
  reader = index.reader()
  sizes = []
  try:
    for i in picks:
      with contextlib.suppress(OSError):
        stored = reader.read(index.keys[i])
        sizes.append(len(stored_bytes(stored, example_id=str(index.ids[i]))))
  finally:
    reader.close()
  return int(np.mean(sizes) * n) if sizes else 0


def plan_split(index: SplitIndex, shard_mb: float) -> list[dict]:
  """The shards of one split: [{"name", "start", "stop", "sha256"}].

  The examples are cut into equal-count ranges, as many as the estimated
  size over `shard_mb` megabytes (at least one, at most one per example).
  """
  n = len(index)
  if n == 0:
    raise DataError(f"{index.source} split {index.split!r} has no examples")
  count = math.ceil(_estimated_bytes(index) / (shard_mb * 2**20))
  count = min(n, max(1, count))
  bounds = np.linspace(0, n, count + 1).round().astype(int).tolist()
  return [
    {
      "name": packed.shard_name(index.split, k, count),
      "start": bounds[k],
      "stop": bounds[k + 1],
      "sha256": _digest(index.take(np.arange(bounds[k], bounds[k + 1]))),
    }
    for k in range(count)
  ]


def make_plan(
  spec: str,
  splits: tuple[str, ...],
  indexes: dict[str, SplitIndex],
  shard_mb: float,
) -> dict:
  """What a pack holds; equal plans mean a pack can be resumed."""
  class_names = {index.class_names for index in indexes.values()}
  if len(class_names) > 1:
    raise DataError(f"{spec}: its splits disagree on the class names")
  return {
    "format": packed.FORMAT,
    "version": packed.VERSION,
    "source": spec,
    "settings": {"shard_mb": shard_mb, **_HOLDOUT},
    "class_names": list(class_names.pop()),
    "splits": {s: plan_split(indexes[s], shard_mb) for s in splits},
  }


def _source_spec(spec: str) -> tuple[str, str]:
  """(kind, the spec with an absolute path for folders), checked."""
  from jvision.data import sources

  parsed = sources.parse_spec(spec)
  if parsed.kind == "packed":
    raise DataError(f"{spec} is already packed")
  if parsed.kind == "folder":
    return "folder", f"folder:{os.path.abspath(parsed.name)}"
  if parsed.kind != "tfds":
    raise DataError(
      f"jvision pack reads folder:, zip and tfds: sources; {spec!r} "
      f"({parsed.kind}) is small, load it directly"
    )
  return "tfds", spec


def _check_out(out: str, spec: str) -> None:
  """Refuses an --out that is a file or lies inside a folder source."""
  if os.path.exists(out) and not os.path.isdir(out):
    raise DataError(f"--out={out} exists and is not a directory")
  kind, _, path = spec.partition(":")
  if kind == "folder" and os.path.isdir(path):
    root, target = os.path.realpath(path), os.path.realpath(out)
    if os.path.commonpath([root, target]) == root:
      raise DataError(
        f"--out={out} lies inside the source {spec}; the pack must not "
        "change the source: write it elsewhere"
      )


def _read_json(path: str) -> dict | None:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError):
    return {}


def _write_json(path: str, value: dict) -> None:
  """Writes JSON atomically (a temporary file renamed over `path`)."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1, ensure_ascii=False)
    f.write("\n")
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _differences(old: dict, new: dict) -> list[str]:
  """What differs between two plans, in words."""
  if not old:
    return ["its plan is unreadable"]
  said = []
  for key in ("source", "settings", "class_names"):
    if old.get(key) != new[key]:
      said.append(f"{key} {old.get(key)!r} (now {new[key]!r})")
  old_splits = old.get("splits") or {}
  if list(old_splits) != list(new["splits"]):
    said.append(f"splits {list(old_splits)} (now {list(new['splits'])})")
  else:
    for split, shards in new["splits"].items():
      if old_splits[split] != shards:
        said.append(f"split {split!r}: its examples or shards changed")
  if old.get("version") != new["version"]:
    said.append(f"format version {old.get('version')!r}")
  return said


def prepare_out(out: str, plan: dict) -> str:
  """Creates or checks --out; returns the staging directory.

  Raises:
    DataError: --out is not empty and not a pack of this plan (nothing in
      it is changed then).
  """
  staging = os.path.join(out, STAGING)
  old = _read_json(os.path.join(staging, PLAN))
  if old is None:
    if os.path.isfile(os.path.join(out, packed.METADATA)):
      raise DataError(
        f"--out={out} holds a pack without its {STAGING}/ plan, so it cannot "
        "be checked or resumed; give a new directory (nothing in it was "
        "changed)"
      )
    if os.path.isdir(out) and os.listdir(out):
      raise DataError(
        f"--out={out} is not empty and holds no jvision pack; give a new "
        "or empty directory (nothing in it was changed)"
      )
    os.makedirs(staging, exist_ok=True)
    _write_json(os.path.join(staging, PLAN), plan)
    return staging
  said = _differences(old, plan)
  if said:
    raise DataError(
      f"--out={out} holds a pack of other data or settings: "
      + "; ".join(said)
      + ". Give a new directory or repeat that pack's command (nothing in "
      "it was changed)"
    )
  return staging


@contextlib.contextmanager
def _locked(staging: str):
  """Holds an exclusive lock on the pack for one writer."""
  with open(os.path.join(staging, "lock"), "w") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      raise DataError(
        f"another `jvision pack` is writing {os.path.dirname(staging)}"
      ) from e
    yield


def _marker_path(staging: str, name: str) -> str:
  return os.path.join(staging, name + ".json")


def is_complete(out: str, staging: str, shard: dict) -> dict | None:
  """The marker of a complete shard (file and matching marker), else None."""
  marker = _read_json(_marker_path(staging, shard["name"]))
  path = os.path.join(out, shard["name"])
  if not marker or marker.get("plan") != shard or not os.path.isfile(path):
    return None
  return marker if os.path.getsize(path) == marker.get("bytes") else None


# Set in each worker process (a queue) or in-process (a callable): receives
# the number of examples done since the last report.
_report = None


def _init_worker(progress_queue) -> None:
  global _report
  _report = progress_queue.put


def write_shard(task: tuple[SplitIndex, dict, str, str]) -> dict:
  """Writes one shard and its marker; returns the marker.

  Args:
    task: (the shard's examples, its plan entry, --out, staging directory).
  """
  from array_record.python import array_record_module

  index, shard, out, staging = task
  partial = os.path.join(staging, shard["name"] + ".partial")
  writer = array_record_module.ArrayRecordWriter(partial, _WRITER_OPTIONS)
  reader = index.reader()
  skipped, written = [], 0
  try:
    for k in range(len(index)):
      example_id = str(index.ids[k])
      try:
        stored = reader.read(index.keys[k])
      except OSError as e:
        skipped.append([example_id, f"unreadable: {type(e).__name__}: {e}"])
        continue
      writer.write(
        packed.encode_record(
          stored_bytes(stored, example_id=example_id),
          example_id=example_id,
          label=int(index.labels[k]),
        )
      )
      written += 1
      if _report and (k + 1) % _PROGRESS_EVERY == 0:
        _report(_PROGRESS_EVERY)
  finally:
    reader.close()
    writer.close()
  if _report:
    _report(len(index) % _PROGRESS_EVERY)
  with open(partial, "rb") as f:
    os.fsync(f.fileno())
  marker = {
    "plan": shard,
    "records": written,
    "bytes": os.path.getsize(partial),
    "skipped": skipped,
  }
  _write_json(_marker_path(staging, shard["name"]), marker)
  os.replace(partial, os.path.join(out, shard["name"]))
  return marker


def _run(tasks: list, workers: int, bar: tqdm.tqdm) -> list[dict]:
  """write_shard over tasks: in this process, or in `workers` processes
  (spawned: the caller may hold JAX's threads), updating the bar."""
  global _report
  if workers <= 1 or len(tasks) <= 1:
    _report = bar.update
    try:
      return [write_shard(task) for task in tasks]
    finally:
      _report = None
  context = multiprocessing.get_context("spawn")
  progress = context.Queue()
  with context.Pool(
    min(workers, len(tasks)), initializer=_init_worker, initargs=(progress,)
  ) as pool:
    result = pool.map_async(write_shard, tasks, chunksize=1)
    while not result.ready():
      with contextlib.suppress(queue.Empty):
        bar.update(progress.get(timeout=0.2))
    markers = result.get()
  while True:
    try:
      bar.update(progress.get(timeout=0.05))
    except queue.Empty:
      break
  return markers


def _write_index(out: str, split: str, ids: np.ndarray, labels: np.ndarray):
  """Writes DIR/<split>.index.npz atomically (ids as UTF-8 bytes, a
  quarter of numpy unicode's size, compressed)."""
  path = os.path.join(out, packed.index_file(split))
  utf8 = np.char.encode(ids.astype(np.str_), "utf-8")
  with open(path + ".tmp", "wb") as f:
    np.savez_compressed(f, ids=utf8, labels=labels.astype(np.int32))
  os.replace(path + ".tmp", path)


def _finish(
  out: str, plan: dict, indexes: dict[str, SplitIndex], markers: dict
) -> dict:
  """Writes the per-split indexes, then packed.json; returns the latter."""
  splits = {}
  for split, shards in plan["splits"].items():
    index = indexes[split]
    skipped = [s for shard in shards for s in markers[shard["name"]]["skipped"]]
    gone = {example_id for example_id, _ in skipped}
    keep = np.asarray([i not in gone for i in index.ids.tolist()], dtype=bool)
    _write_index(out, split, index.ids[keep], index.labels[keep])
    counts = [markers[shard["name"]]["records"] for shard in shards]
    splits[split] = {
      "shards": [shard["name"] for shard in shards],
      "shard_examples": counts,
      "num_examples": sum(counts),
      "skipped": skipped,
    }
  meta = {
    "format": packed.FORMAT,
    "version": packed.VERSION,
    "source": plan["source"],
    "settings": plan["settings"],
    "class_names": plan["class_names"],
    "splits": splits,
    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    "jvision_version": jvision.__version__,
  }
  _write_json(os.path.join(out, packed.METADATA), meta)
  return meta


def pack(
  spec: str,
  out: str,
  *,
  splits: tuple[str, ...] | None = None,
  shard_mb: float = DEFAULT_SHARD_MB,
  workers: int | None = None,
  data_dir: str | None = None,
  progress: bool = True,
) -> dict:
  """Packs splits of a source into DIR (module docstring); resumable.

  Args:
    spec: a folder: (directory or zip) or tfds: data spec.
    out: the pack directory: new, empty, or a pack of the same source and
      settings to complete.
    splits: the splits to pack; None packs every split of the source.
    shard_mb: the target shard size in megabytes.
    workers: processes writing shards; None for one per core.
    data_dir: the TFDS data_dir.
    progress: show a progress bar.

  Returns:
    {"out", "metadata" (packed.json), "written" (shards written now),
    "reused" (complete shards found)}.

  Raises:
    DataError: a bad source, split, setting or --out.
  """
  from jvision.data import sources

  if not shard_mb or shard_mb <= 0:
    raise DataError(f"--shard_mb must be positive, got {shard_mb!r}")
  kind, spec = _source_spec(spec)
  _check_out(out, spec)
  available = sources.splits(spec, data_dir)
  splits = tuple(splits or available)
  unknown = [s for s in splits if s not in available]
  if unknown:
    raise DataError(f"{spec} has splits {list(available)}, not {unknown}")
  indexes = {
    s: index_split(spec, s, data_dir=data_dir, progress=progress, **_HOLDOUT)
    for s in splits
  }
  plan = make_plan(spec, splits, indexes, shard_mb)
  staging = prepare_out(out, plan)
  with _locked(staging):
    return _pack_planned(out, staging, plan, indexes, workers, progress)


def _pack_planned(
  out: str,
  staging: str,
  plan: dict,
  indexes: dict[str, SplitIndex],
  workers: int | None,
  progress: bool,
) -> dict:
  """Writes the shards a plan still lacks, then the metadata."""
  markers, tasks, done = {}, [], 0
  for split, shards in plan["splits"].items():
    for shard in shards:
      marker = is_complete(out, staging, shard)
      if marker is not None:
        markers[shard["name"]] = marker
        done += shard["stop"] - shard["start"]
      else:
        rows = np.arange(shard["start"], shard["stop"])
        tasks.append((indexes[split].take(rows), shard, out, staging))
  metadata_path = os.path.join(out, packed.METADATA)
  finished = [metadata_path] + [
    os.path.join(out, packed.index_file(split)) for split in plan["splits"]
  ]
  if not tasks and all(os.path.isfile(path) for path in finished):
    _log.info("%s is a complete pack of %s; nothing to do", out, plan["source"])
    return {
      "out": out,
      "metadata": packed.read_metadata(out),
      "written": 0,
      "reused": len(markers),
    }
  if os.path.exists(metadata_path):  # the pack is incomplete again
    os.remove(metadata_path)
  total = sum(len(index) for index in indexes.values())
  with tqdm.tqdm(
    total=total, initial=done, desc=f"packing into {out}", disable=not progress
  ) as bar:
    for marker in _run(tasks, workers or os.cpu_count() or 1, bar):
      markers[marker["plan"]["name"]] = marker
  meta = _finish(out, plan, indexes, markers)
  _log_skipped(meta)
  return {
    "out": out,
    "metadata": meta,
    "written": len(tasks),
    "reused": len(markers) - len(tasks),
  }


def _log_skipped(meta: dict) -> None:
  for split, entry in meta["splits"].items():
    if entry["skipped"]:
      listed = "\n".join(
        f"  {i}: {r}" for i, r in entry["skipped"][:_MAX_LOGGED]
      )
      _log.warning(
        "%s split %r: left out %d example(s) that could not be read:\n%s",
        meta["source"],
        split,
        len(entry["skipped"]),
        listed,
      )


def format_summary(result: dict) -> str:
  """The lines `jvision pack` prints."""
  meta, out = result["metadata"], result["out"]
  lines = [
    f"packed {meta['source']} into {out}: {result['written']} shard(s) "
    f"written, {result['reused']} already complete"
  ]
  for split, entry in meta["splits"].items():
    size = sum(
      os.path.getsize(os.path.join(out, name)) for name in entry["shards"]
    )
    lines.append(
      f"  {split}: {entry['num_examples']} examples in "
      f"{len(entry['shards'])} shard(s), {size / 2**20:.1f} MiB"
      + (
        f", {len(entry['skipped'])} unreadable left out"
        if entry["skipped"]
        else ""
      )
    )
  lines.append(f"use it as data spec packed:{out}")
  return "\n".join(lines)
