"""Data specs: parsing the one-string dataset names and loading a split.

    fashion_mnist | mnist | cifar10     built-in (see jvision.data.builtin)
    tfds:NAME[:CONFIG]                  a TFDS dataset prepared in data_dir
    folder:PATH                         a directory or .zip of class folders
    idx:DIR                             MNIST-style IDX files
    packed:DIR                          record shards written by `jvision pack`

`load(spec, split)` returns an `ArrayDataset` whatever the kind.
"""

import dataclasses
import os

from jvision.data import builtin, decode, folder, idx, packed, tfds_source
from jvision.data.dataset import ArrayDataset, DataError
from jvision.data.labels import LabelSpec, load_label_spec

KINDS = ("builtin", "tfds", "folder", "idx", "packed")
_FORMS = (
  "fashion_mnist | mnist | cifar10 | tfds:NAME[:CONFIG] | folder:PATH | "
  "idx:DIR | packed:DIR"
)


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """A parsed data spec.

  Attributes:
    kind: "builtin", "tfds", "folder", "idx" or "packed".
    name: the built-in or TFDS dataset name, or the folder/IDX/pack path
      (with "~" expanded).
    config: the TFDS builder config, else None.
  """

  kind: str
  name: str
  config: str | None = None


def parse_spec(spec: str) -> DataSpec:
  """Parses a data spec string.

  Args:
    spec: e.g. "mnist", "tfds:cifar10", "folder:~/pets.zip", "idx:/data",
      "packed:/data/pets".

  Returns:
    The parsed spec.

  Raises:
    DataError: the string matches none of the forms.
  """
  if not isinstance(spec, str) or not spec:
    raise DataError(f"data spec must be a non-empty string, got {spec!r}")
  if spec in builtin.NAMES:
    return DataSpec("builtin", spec)
  kind, sep, rest = spec.partition(":")
  if sep and kind in ("folder", "idx", "packed"):
    if not rest:
      raise DataError(f"data spec {spec!r} lacks a path after '{kind}:'")
    return DataSpec(kind, os.path.expanduser(rest))
  if sep and kind == "tfds":
    name, colon, config = rest.partition(":")
    if not name or ":" in config or (colon and not config):
      raise DataError(f"data spec {spec!r} is not tfds:NAME[:CONFIG]")
    return DataSpec("tfds", name, config or None)
  hint = ""
  if os.path.exists(os.path.expanduser(spec)):
    hint = f"; for a local folder or zip write 'folder:{spec}'"
  raise DataError(f"unknown data spec {spec!r}; expected {_FORMS}{hint}")


def same_spec(a, b) -> bool:
  """Whether two data specs name the same data: the paths of folder:, idx:
  and packed: specs compare by the file they resolve to (relative,
  absolute, "~" and symlinked spellings agree); anything else, including
  a string that is not a valid spec, compares as written."""
  if a == b:
    return True
  try:
    left, right = parse_spec(a), parse_spec(b)
  except DataError:
    return False
  if left.kind != right.kind or left.kind in ("builtin", "tfds"):
    return left == right
  return os.path.realpath(left.name) == os.path.realpath(right.name)


def splits(spec: str, data_dir: str | None = None) -> tuple[str, ...]:
  """The splits a source offers.

  Args:
    spec: a data spec.
    data_dir: the TFDS data_dir (tfds and built-in fallbacks).

  Returns:
    Split names, e.g. ("train", "test").
  """
  parsed = parse_spec(spec)
  if parsed.kind == "builtin":
    builtin.resolve(parsed.name, data_dir)  # Raises if it is nowhere.
    return builtin.SPLITS
  if parsed.kind == "idx":
    found = idx.available_splits(parsed.name)
    if not found:
      raise DataError(
        f"idx:{parsed.name} holds no complete split (train-images-idx3-"
        "ubyte[.gz] with train-labels-idx1-ubyte[.gz], or t10k-...)"
      )
    return found
  if parsed.kind == "folder":
    return folder.index_folder(parsed.name).splits
  if parsed.kind == "packed":
    return packed.packed_splits(parsed.name)
  return tfds_source.tfds_splits(parsed.name, parsed.config, data_dir)


def load(
  spec: str,
  split: str,
  *,
  image_size: int | None = None,
  channels: int | None = None,
  data_dir: str | None = None,
  seed: int = 0,
  holdout_fraction: float = 0.1,
  max_per_class: int | None = None,
  progress: bool = True,
  label_spec: str | LabelSpec | None = None,
  cache: bool = True,
) -> ArrayDataset:
  """Loads one split of any data source into memory.

  Args:
    spec: a data spec (see the module docstring).
    split: e.g. "train" or "test"; `splits(spec)` lists them.
    image_size: resize images to image_size x image_size (PIL bilinear);
      None keeps the stored size.
    channels: 1 or 3 to convert, None to keep grayscale 1 and colour 3.
    data_dir: the TFDS data_dir, for tfds: specs and built-in fallbacks.
    seed: seeds the stratified train/test split of folders without split
      folders.
    holdout_fraction: the share of each class that split puts in "test".
    max_per_class: keep only the first n examples of each class in id order.
    progress: show tqdm progress bars.
    label_spec: a label spec JSON path (or a loaded LabelSpec); folder and
      TFDS class names must be its names or aliases and ids come from it;
      for IDX it names the classes. Built-ins use their own spec when None.
    cache: read and write the decoded-array cache (`$JVISION_CACHE`) for
      folder, TFDS and packed sources.

  Returns:
    The split: images uint8 [N, H, W, C], labels int32 [N], ids [N].

  Raises:
    DataError: a bad spec, argument, file or label spec.
  """
  parsed = parse_spec(spec)
  decode.check_options(image_size, channels)
  folder.check_holdout(seed, holdout_fraction)
  if max_per_class is not None and (
    not isinstance(max_per_class, int) or max_per_class < 1
  ):
    raise DataError(f"max_per_class must be an int >= 1, got {max_per_class!r}")
  labels = label_spec or None  # A config's "" means no label spec too.
  if isinstance(labels, (str, os.PathLike)):
    labels = load_label_spec(os.fspath(labels))
  options = dict(
    image_size=image_size,
    channels=channels,
    max_per_class=max_per_class,
    label_spec=labels,
  )
  return _load_parsed(
    parsed,
    split,
    options,
    data_dir=data_dir,
    seed=seed,
    holdout_fraction=holdout_fraction,
    progress=progress,
    use_cache=cache,
  )


def _load_parsed(
  parsed: DataSpec,
  split: str,
  options: dict,
  *,
  data_dir: str | None,
  seed: int,
  holdout_fraction: float,
  progress: bool,
  use_cache: bool,
) -> ArrayDataset:
  """Dispatches a parsed spec to its loader."""
  if parsed.kind == "idx":
    return idx.load_idx(parsed.name, split, **options)
  if parsed.kind == "tfds":
    return tfds_source.load_tfds(
      parsed.name,
      parsed.config,
      split,
      data_dir=data_dir,
      progress=progress,
      use_cache=use_cache,
      **options,
    )
  if parsed.kind == "packed":
    return packed.load_packed(
      parsed.name, split, progress=progress, use_cache=use_cache, **options
    )
  holdout = dict(seed=seed, holdout_fraction=holdout_fraction)
  if parsed.kind == "folder":
    return folder.load_folder(
      parsed.name,
      split,
      progress=progress,
      use_cache=use_cache,
      **holdout,
      **options,
    )
  return builtin.load_builtin(
    parsed.name,
    split,
    data_dir=data_dir,
    progress=progress,
    use_cache=use_cache,
    **holdout,
    **options,
  )
