"""The built-in datasets: local files first, then TFDS.

Where each name is read from, first match wins:

    fashion_mnist  $JVISION_FASHION_MNIST_DIR (IDX files)
                   /usr/share/datasets/fashion-mnist (IDX, Debian package
                   dataset-fashion-mnist)
                   TFDS "fashion_mnist" prepared in data_dir
    mnist          $JVISION_MNIST_DIR (IDX files)
                   <repo>/../shared/data/mnist (IDX)
                   TFDS "mnist"
    cifar10        $JVISION_CIFAR10 (a folder source: directory or .zip)
                   <repo>/../shared/data/cifar10_q75/cifar10_q75.zip
                   TFDS "cifar10"

An environment variable that is set must point at usable files; it is an
error, not a fall-through, when it does not. Class names and ids always come
from the dataset's built-in label spec. Splits are "train" and "test".
"""

import dataclasses
import logging
import os
import pathlib

from jvision.data import folder, idx, tfds_source
from jvision.data.dataset import ArrayDataset, DataError, UnknownSplitError
from jvision.data.labels import LabelSpec, builtin_label_spec

_log = logging.getLogger(__name__)

NAMES = ("fashion_mnist", "mnist", "cifar10")
SPLITS = ("train", "test")
# jvision/data/builtin.py -> the checkout (the same as jvision.__file__'s
# parents[1], which is None when jvision resolves as a namespace package).
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@dataclasses.dataclass(frozen=True)
class _Local:
  """A local candidate location for a built-in dataset."""

  kind: str  # "idx" or "folder".
  env: str  # The environment variable that overrides `default`.
  default: str


_LOCAL = {
  "fashion_mnist": _Local(
    "idx", "JVISION_FASHION_MNIST_DIR", DEBIAN_FASHION_MNIST
  ),
  "mnist": _Local("idx", "JVISION_MNIST_DIR", str(SHARED_DATA / "mnist")),
  "cifar10": _Local(
    "folder",
    "JVISION_CIFAR10",
    str(SHARED_DATA / "cifar10_q75" / "cifar10_q75.zip"),
  ),
}


def _usable(kind: str, path: str) -> bool:
  if kind == "idx":
    return os.path.isdir(path) and idx.available_splits(path) == SPLITS
  return os.path.exists(path)


def resolve(name: str, data_dir: str | None = None) -> tuple[str, str]:
  """Finds where a built-in dataset is.

  Args:
    name: one of NAMES.
    data_dir: the TFDS data_dir for the fallback.

  Returns:
    (kind, location): ("idx", dir), ("folder", path) or ("tfds", name).

  Raises:
    DataError: an override variable points at nothing usable, or the data is
      nowhere; the message says what to install or prepare.
  """
  if name not in _LOCAL:
    raise DataError(f"unknown built-in dataset {name!r}; known: {list(NAMES)}")
  local = _LOCAL[name]
  override = os.environ.get(local.env)
  if override:
    if not _usable(local.kind, override):
      raise DataError(
        f"${local.env}={override}: expected {_expected(local.kind)} there"
      )
    return local.kind, override
  if _usable(local.kind, local.default):
    return local.kind, local.default
  if tfds_source.is_prepared(name, data_dir):
    return "tfds", name
  raise DataError(_missing_message(name, local, data_dir))


def _expected(kind: str) -> str:
  if kind == "idx":
    return "the IDX files {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"
  return "an image folder or .zip (ROOT/<split>/<class>/<image>)"


def _missing_message(name: str, local: _Local, data_dir: str | None) -> str:
  install = ""
  if name == "fashion_mnist":
    install = "install it with `apt-get install dataset-fashion-mnist`, or "
  where = data_dir or "the default TFDS data_dir"
  tfds_flags = f" --data_dir={data_dir}" if data_dir else ""
  return (
    f"dataset {name!r} not found: expected {_expected(local.kind)} at "
    f"{local.default} (or where ${local.env} points), or TFDS {name!r} "
    f"prepared in {where}. To fix it, {install}set ${local.env} to a copy, "
    f"or prepare TFDS: `tfds build {name} --file_format=array_record"
    f"{tfds_flags}`"
  )


def load_builtin(
  name: str,
  split: str,
  *,
  data_dir: str | None = None,
  image_size: int | None = None,
  channels: int | None = None,
  max_per_class: int | None = None,
  label_spec: LabelSpec | None = None,
  seed: int = 0,
  holdout_fraction: float = 0.1,
  progress: bool = True,
  use_cache: bool = True,
) -> ArrayDataset:
  """Loads a split of a built-in dataset from wherever `resolve` finds it.

  Args:
    name: one of NAMES.
    split: "train" or "test".
    data_dir: the TFDS data_dir for the fallback.
    image_size: resize to image_size x image_size.
    channels: 1, 3 or None (the dataset's own: 1 for the MNISTs, 3 CIFAR).
    max_per_class: keep only the first n of each class in id order.
    label_spec: replaces the built-in spec (same number of classes).
    seed: seeds the holdout split of a $JVISION_CIFAR10 folder that has no
      split folders.
    holdout_fraction: that split's test share.
    progress: show tqdm bars.
    use_cache: use the decoded-array cache (folder and TFDS sources).

  Returns:
    The split, class names from the label spec.
  """
  if split not in SPLITS:
    raise UnknownSplitError(name, SPLITS, split)
  spec = label_spec or builtin_label_spec(name)
  kind, location = resolve(name, data_dir)
  _log.info("Loading %s %s from %s %s", name, split, kind, location)
  options = dict(
    image_size=image_size,
    channels=channels,
    max_per_class=max_per_class,
    label_spec=spec,
  )
  if kind == "idx":
    return idx.load_idx(location, split, **options)
  if kind == "folder":
    return folder.load_folder(
      location,
      split,
      seed=seed,
      holdout_fraction=holdout_fraction,
      progress=progress,
      use_cache=use_cache,
      **options,
    )
  return tfds_source.load_tfds(
    location,
    None,
    split,
    data_dir=data_dir,
    progress=progress,
    use_cache=use_cache,
    **options,
  )
