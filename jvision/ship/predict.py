"""`jvision predict`: class predictions for a file, a folder or a zip.

`run_predict(workdir, images, out)` applies a trained workdir's classifier
to every image under `images` and writes one CSV row per file:

    path,label,score,label_2,score_2,...,label_k,score_k,error

* path: relative to `images` (POSIX, as listed inside a zip) for a folder
  or a zip, the file name for a single file; rows are sorted by path.
* label, score: the most probable class name and its softmax probability
  (4 decimals); label_i, score_i the i-th most probable, so scores descend
  along a row. Only top_k (label, score) pairs are written, or as many as
  the model has classes when top_k is larger.
* error: empty for a predicted file; for a file that cannot be read or
  decoded, the reason (e.g. "empty file (0 bytes)") with the label and score
  columns left empty. Unreadable files never stop the run.

Images are files ending in `jvision.data.folder.IMAGE_EXTENSIONS` (any
case); hidden files and folders (".*") and `__MACOSX` are skipped. A single
file is decoded whatever its extension. Files are read, decoded and
predicted `batch_size` at a time, so a large folder is never held in memory.

The CSV is written to a temporary file beside `out` and moved into place at
the end. An existing `out` is replaced only when it is itself a predictions
CSV (its header starts with `path,label,score` and ends with `error`);
any other file is left alone and the run refuses to start.
"""

import collections
import csv
import os
import zipfile
from collections.abc import Iterator, Sequence

import numpy as np
import tqdm

from jvision import inference
from jvision.data import decode, folder

_UNREADABLE_SHOWN = 10  # Unreadable files listed by format_summary.
_CLASSES_SHOWN = 5  # Predicted classes listed by format_summary.


def csv_header(top_k: int) -> list[str]:
  """The predictions CSV header for `top_k` (label, score) pairs."""
  header = ["path", "label", "score"]
  for i in range(2, top_k + 1):
    header += [f"label_{i}", f"score_{i}"]
  return header + ["error"]


def is_predictions_header(header: Sequence[str]) -> bool:
  """Whether a CSV header is one that `run_predict` writes."""
  return (
    len(header) >= 4
    and list(header[:3]) == ["path", "label", "score"]
    and header[-1] == "error"
  )


def check_out(out: str) -> None:
  """Raises unless `out` is absent or a previous predictions CSV.

  Raises:
    IsADirectoryError: `out` is a directory.
    FileExistsError: `out` is some other file, which is never overwritten.
  """
  if os.path.isdir(out):
    raise IsADirectoryError(f"--out={out} is a directory; expected a .csv")
  if not os.path.exists(out):
    return
  try:
    with open(out, newline="", encoding="utf-8") as f:
      header = next(csv.reader(f), [])
  except (UnicodeDecodeError, csv.Error):
    header = []
  if not is_predictions_header(header):
    raise FileExistsError(
      f"--out={out} exists and is not a predictions CSV (its first line "
      "is not 'path,label,score,...,error'); refusing to overwrite it: "
      "choose another --out or remove the file"
    )


def _is_zip(path: str) -> bool:
  """A .zip, or a zip file whose name is not an image's."""
  ext = os.path.splitext(path)[1].lower()
  if ext == ".zip":
    return True
  return ext not in folder.IMAGE_EXTENSIONS and zipfile.is_zipfile(path)


class _Source:
  """The image files of a single file, a directory or a zip.

  Attributes:
    names: sorted paths as written in the CSV.
  """

  def __init__(self, path: str):
    if not os.path.exists(path):
      raise FileNotFoundError(f"--images={path} does not exist")
    self._tree = None
    self._file = None
    self._refused = {}
    if os.path.isdir(path) or _is_zip(path):
      if not os.path.isdir(path) and not zipfile.is_zipfile(path):
        raise ValueError(f"--images={path} ends in .zip but is not a zip")
      self._tree = folder.Tree(path)
      self.names = [n for n in self._tree.names if folder.is_image(n)]
      # Zip members whose paths leave the archive are listed, never read.
      self._refused = dict(self._tree.refused)
      self.names = sorted(self.names + list(self._refused))
    else:
      self._file = path
      self.names = [os.path.basename(path)]
    if not self.names:
      raise ValueError(
        f"--images={path} holds no images (files ending in "
        f"{', '.join(sorted(folder.IMAGE_EXTENSIONS))}, any case)"
      )

  def read(self, name: str) -> bytes:
    """The bytes of one listed file (OSError for a refused zip member)."""
    if name in self._refused:
      raise OSError(f"refused: {self._refused[name]}")
    if self._file is not None:
      with open(self._file, "rb") as f:
        return f.read()
    return self._tree.read(name)

  def close(self) -> None:
    if self._tree is not None:
      self._tree.close()


def top_k_rows(
  probabilities: np.ndarray, class_names: Sequence[str], top_k: int
) -> list[list[str]]:
  """(label, score) columns of the top_k classes per image.

  Args:
    probabilities: float32 [N, K].
    class_names: K names.
    top_k: pairs per row, 1 <= top_k <= K.

  Returns:
    N lists [label, score, label_2, score_2, ...] of 2 * top_k strings;
    ties go to the lower class id.
  """
  order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
  rows = []
  for probs, ids in zip(probabilities, order, strict=True):
    row = []
    for i in ids:
      row += [class_names[i], f"{probs[i]:.4f}"]
    rows.append(row)
  return rows


def _batches(names: list[str], size: int) -> Iterator[list[str]]:
  for start in range(0, len(names), size):
    yield names[start : start + size]


def _predict_batch(
  model: inference.Inference,
  source: _Source,
  names: list[str],
  *,
  top_k: int,
) -> tuple[list[list[str]], list[tuple[str, str]]]:
  """Reads, decodes and predicts some files.

  Returns:
    (rows, unreadable): one CSV row per name in order, and (name, reason)
    for the files that could not be decoded.
  """
  images, unreadable = decode.decode_many(
    names, source.read, image_size=None, channels=None, progress=False
  )
  good = [i for i, image in enumerate(images) if image is not None]
  predicted = {}
  if good:
    prepared = model.prepare([images[i] for i in good])
    probs = model.probabilities(prepared)  # [n, K]
    cells = top_k_rows(probs, model.class_names, top_k)
    predicted = dict(zip(good, cells, strict=True))
  reasons = dict(unreadable)
  rows = []
  for i, name in enumerate(names):
    if i in predicted:
      rows.append([name, *predicted[i], ""])
    else:
      rows.append([name, *[""] * (2 * top_k), reasons[name]])
  return rows, unreadable


def _check_top_k(top_k: int) -> None:
  if not isinstance(top_k, int) or top_k < 1:
    raise ValueError(f"--top_k must be an integer >= 1, got {top_k!r}")


def run_predict(
  workdir: str,
  images: str,
  out: str,
  *,
  top_k: int = 3,
  batch_size: int = 256,
  progress: bool = True,
) -> dict:
  """Predicts the class of every image under `images` into a CSV.

  Args:
    workdir: a trained run with a classifier (supervised or fine-tuned).
    images: an image file, a directory (searched recursively) or a .zip.
    out: the CSV to write (see the module docstring for its columns).
    top_k: (label, score) pairs per row, >= 1; more than the model's
      classes writes all of them (and the header has that many pairs).
    batch_size: files read, decoded and predicted at a time.
    progress: show a tqdm bar over files.

  Returns:
    {"images": files found, "predicted": files predicted, "unreadable":
    [(path, reason), ...], "out": out, "top_k": pairs written per row,
    "class_counts": {class name: files predicted as it}} (most common
    first).

  Raises:
    FileNotFoundError: `images` or the workdir is missing.
    ValueError: `images` holds no images, top_k or batch_size is out of
      range, or the workdir has no classifier.
    FileExistsError: `out` exists and is not a predictions CSV.
  """
  _check_top_k(top_k)
  if not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
  check_out(out)
  source = _Source(images)
  try:
    model = inference.load(workdir, batch_size=batch_size)
    model.require_classifier()
    top_k = min(top_k, len(model.class_names))  # all classes, at most
    unreadable, counts = _write_csv(
      model, source, out, top_k=top_k, batch_size=batch_size, progress=progress
    )
  finally:
    source.close()
  n = len(source.names)
  return {
    "images": n,
    "predicted": n - len(unreadable),
    "unreadable": unreadable,
    "out": out,
    "top_k": top_k,
    "class_counts": dict(counts.most_common()),
  }


def _write_csv(
  model: inference.Inference,
  source: _Source,
  out: str,
  *,
  top_k: int,
  batch_size: int,
  progress: bool,
) -> tuple[list[tuple[str, str]], collections.Counter]:
  """Streams predictions to a temporary file and moves it to `out`."""
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f".{os.path.basename(out)}.{os.getpid()}.tmp")
  unreadable, counts = [], collections.Counter()
  try:
    with (
      open(tmp, "w", newline="", encoding="utf-8") as f,
      tqdm.tqdm(
        total=len(source.names), desc="predict", disable=not progress
      ) as bar,
    ):
      writer = csv.writer(f)
      writer.writerow(csv_header(top_k))
      for names in _batches(source.names, batch_size):
        rows, bad = _predict_batch(model, source, names, top_k=top_k)
        writer.writerows(rows)
        unreadable += bad
        counts.update(row[1] for row in rows if not row[-1])
        bar.update(len(names))
    os.replace(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return unreadable, counts


def format_summary(summary: dict) -> str:
  """A few terminal lines about a `run_predict` result."""
  lines = [
    f"predicted {summary['predicted']} of {summary['images']} images; "
    f"{len(summary['unreadable'])} unreadable"
  ]
  counts = list(summary["class_counts"].items())
  if counts:
    shown = ", ".join(f"{name} {n}" for name, n in counts[:_CLASSES_SHOWN])
    more = len(counts) - _CLASSES_SHOWN
    lines.append(
      f"top classes: {shown}" + (f" (+{more} more)" if more > 0 else "")
    )
  unreadable = summary["unreadable"]
  if unreadable:
    lines.append("unreadable files:")
    for path, reason in unreadable[:_UNREADABLE_SHOWN]:
      lines.append(f"  {path}: {reason}")
    if len(unreadable) > _UNREADABLE_SHOWN:
      lines.append(f"  ... and {len(unreadable) - _UNREADABLE_SHOWN} more")
  lines.append(f"wrote {summary['out']}")
  return "\n".join(lines)
