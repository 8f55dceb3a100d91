"""Reading every image of a dataset once for the audit.

`scan(spec, ...)` lists the examples of every split, decodes each file once
(folder sources) and keeps what the detectors need: whether it decoded (and
why not), its native size, a hash of its pixels, and a small "work" copy,
all images resized to one S x S working size (S: the median short side,
clipped to [16, 64]) so that statistics compare like with like.

For a folder without split folders the splits are the seeded holdout split
that training would use (`seed`, `holdout_fraction`). Array sources
(`fashion_mnist`, `idx:DIR`, `tfds:NAME`) have no files: their examples are
all readable and of one size, so only the pixel-based checks apply.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os

import numpy as np
import tqdm
from PIL import Image

from jvision import data as data_lib
from jvision.audit import duplicates
from jvision.data import decode, folder
from jvision.data.dataset import DataError

MAX_THUMB = 64  # largest side kept per image before the work copy


@dataclasses.dataclass
class Scan:
  """What the audit knows about every example.

  Attributes:
    source: the data spec as the manifest records it (folder paths
      absolute).
    root: the dataset root shown in reports.
    paths: [N] paths relative to the root (array sources: example ids).
    splits: str [N] the split of each example.
    class_names: str [N] each example's class folder (or class) name.
    ok: bool [N] the file decoded.
    reasons: {index: why the file could not be decoded}.
    sizes: int [N, 2] native (height, width); 0 where not ok.
    hashes: [N] pixel digests (None where not ok).
    work: uint8 [N, S, S, C] work copies (zeros where not ok).
  """

  source: str
  root: str
  paths: list[str]
  splits: np.ndarray
  class_names: np.ndarray
  ok: np.ndarray
  reasons: dict[int, str]
  sizes: np.ndarray
  hashes: list[bytes | None]
  work: np.ndarray

  def __len__(self) -> int:
    return len(self.paths)

  @property
  def split_names(self) -> tuple[str, ...]:
    """The splits in order: train first, test last."""
    return tuple(sorted(set(self.splits.tolist()), key=split_rank))


def split_rank(name: str) -> tuple[int, str]:
  """Sort key of split names: train first, test last, others between."""
  return {"train": 0, "test": 2}.get(name.lower(), 1), name


@dataclasses.dataclass
class _Decoded:
  reason: str | None = None
  size: tuple[int, int] = (0, 0)
  digest: bytes | None = None
  thumb: np.ndarray | None = None


def _thumbnail(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W, C] with the longer side at most MAX_THUMB (aspect kept)."""
  h, w = image.shape[:2]
  if max(h, w) <= MAX_THUMB:
    return image
  f = MAX_THUMB / max(h, w)
  size = (max(1, round(w * f)), max(1, round(h * f)))
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  out = np.asarray(pil.resize(size, Image.Resampling.BILINEAR))
  return out.reshape(size[1], size[0], image.shape[-1])


def _decode_one(read, name: str) -> _Decoded:
  try:
    raw = read(name)
  except OSError as e:
    return _Decoded(reason=f"unreadable: {type(e).__name__}: {e}")
  if not raw:
    return _Decoded(reason="empty file (0 bytes)")
  try:
    image = decode.decode_image(raw, path=name)
  except decode.DecodeError as e:
    return _Decoded(reason=e.reason)
  return _Decoded(
    size=image.shape[:2],
    digest=duplicates.pixel_hash(image),
    thumb=_thumbnail(image),
  )


def _decode_all(tree, names, *, progress: bool) -> list[_Decoded]:
  workers = folder.pick_workers(tree, names)
  chunks = [names[i : i + 256] for i in range(0, len(names), 256)]

  def run(chunk):
    return [_decode_one(tree.read, name) for name in chunk]

  out = []
  with (
    tqdm.tqdm(total=len(names), desc="read", disable=not progress) as bar,
    concurrent.futures.ThreadPoolExecutor(workers) as pool,
  ):
    for results in (pool.map if workers > 1 else map)(run, chunks):
      out.extend(results)
      bar.update(len(results))
  return out


def work_size(sizes: np.ndarray, ok: np.ndarray) -> int:
  """S: the median short side of the readable images, clipped to [16, 64]."""
  if not ok.any():
    return 16
  return int(np.clip(np.median(sizes[ok].min(1)), 16, MAX_THUMB))


def work_copies(
  thumbs: list[np.ndarray | None], size: int, channels: int
) -> np.ndarray:
  """uint8 [N, size, size, channels] from thumbnails (None -> zeros)."""
  out = np.zeros((len(thumbs), size, size, channels), np.uint8)
  for i, thumb in enumerate(thumbs):
    if thumb is not None:
      out[i] = decode.convert_array(thumb, image_size=size, channels=channels)
  return out


def _folder_entries(
  index: folder.FolderIndex, *, seed: int, holdout_fraction: float
) -> list[tuple[str, str, str]]:
  """(split, id, class folder) of every image, splits in order."""
  out = []
  for split in index.splits:
    for image_id, class_name in folder.split_entries(
      index, split, seed=seed, holdout_fraction=holdout_fraction
    ):
      out.append((split, image_id, class_name))
  return out


def scan_folder(
  path: str, *, seed: int, holdout_fraction: float, progress: bool
) -> Scan:
  """Scans a directory or zip of class folders (see `scan`)."""
  index = folder.index_folder(path)
  entries = _folder_entries(index, seed=seed, holdout_fraction=holdout_fraction)
  names = [index.prefix + image_id for _, image_id, _ in entries]
  with folder.open_tree(path) as tree:
    decoded = _decode_all(tree, names, progress=progress)
  ok = np.asarray([d.reason is None for d in decoded], bool)
  sizes = np.asarray([d.size for d in decoded], np.int64).reshape(-1, 2)
  thumbs = [d.thumb for d in decoded]
  colour = sum(t.shape[-1] == 3 for t in thumbs if t is not None)
  channels = 3 if colour * 2 >= max(1, int(ok.sum())) else 1
  return Scan(
    source=f"folder:{os.path.abspath(path)}",
    root=os.path.abspath(path),
    paths=names,
    splits=np.asarray([s for s, _, _ in entries], dtype=np.str_),
    class_names=np.asarray([c for _, _, c in entries], dtype=np.str_),
    ok=ok,
    reasons={i: d.reason for i, d in enumerate(decoded) if d.reason},
    sizes=sizes,
    hashes=[d.digest for d in decoded],
    work=work_copies(thumbs, work_size(sizes, ok), channels),
  )


def scan_arrays(spec: str, *, data_dir: str | None, progress: bool) -> Scan:
  """Scans a source without files (built-in, IDX, TFDS): see `scan`."""
  parts = []
  for split in sorted(data_lib.splits(spec, data_dir), key=split_rank):
    parts.append(
      (split, data_lib.load(spec, split, data_dir=data_dir, progress=progress))
    )
  images = np.concatenate([ds.images for _, ds in parts])
  sizes = np.tile(np.asarray(images.shape[1:3]), (len(images), 1))
  size = work_size(sizes, np.ones(len(images), bool))
  return Scan(
    source=spec,
    root=spec,
    paths=[str(i) for _, ds in parts for i in ds.ids],
    splits=np.asarray(
      [split for split, ds in parts for _ in range(len(ds))], np.str_
    ),
    class_names=np.asarray(
      [ds.class_names[label] for _, ds in parts for label in ds.labels],
      np.str_,
    ),
    ok=np.ones(len(images), bool),
    reasons={},
    sizes=sizes,
    hashes=[duplicates.pixel_hash(image) for image in images],
    work=decode.convert_arrays(images, image_size=size, channels=None),
  )


def scan(
  spec: str,
  *,
  seed: int = 0,
  holdout_fraction: float = 0.1,
  data_dir: str | None = None,
  progress: bool = True,
) -> Scan:
  """Reads every example of a data spec for the audit.

  Args:
    spec: a data spec (DESIGN.md "Data specs").
    seed, holdout_fraction: the holdout split of a folder without split
      folders (as in training).
    data_dir: the TFDS data_dir.
    progress: show progress bars.

  Returns:
    The scan.

  Raises:
    DataError: the spec names nothing readable.
  """
  parsed = data_lib.parse_spec(spec)
  if parsed.kind == "folder":
    return scan_folder(
      parsed.name,
      seed=seed,
      holdout_fraction=holdout_fraction,
      progress=progress,
    )
  scanned = scan_arrays(spec, data_dir=data_dir, progress=progress)
  if not len(scanned):
    raise DataError(f"data spec {spec!r} holds no examples")
  return scanned
