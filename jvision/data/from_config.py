"""Loading a split named by a config's `data` section.

A split is decoded into memory (an ArrayDataset) or streamed (a
`stream.Streamed`: an index read by worker processes), as
`data.loading` says; `resolve_loading` turns its "auto" into one of the two
(and a run records the result, so that a resumed run reads the same way).

`data.name` names the source unless `data.manifest` is set: then the
manifest (an audit's `manifest.jsonl`) is authoritative for the source, the
examples, their labels and class names, and `data.name`, `data.label_spec`
and `data.holdout_fraction` are not read (the log says so).
"""

from __future__ import annotations

import logging

import ml_collections

from jvision import configs_io
from jvision.data import index as index_lib
from jvision.data import stream

_log = logging.getLogger(__name__)

LOADINGS = ("auto", "memory", "stream")


def load_split(
  config: ml_collections.ConfigDict, split: str, *, progress: bool = True
):
  """`config.data`'s `split` as an ArrayDataset (seeded by `config.seed`)."""
  from jvision import data as data_lib

  d = config.data
  if d.get("manifest"):  # Configs recorded before the key lack it.
    return _load_manifest_split(d, split, progress=progress)
  return data_lib.load(
    d.name,
    split,
    image_size=d.image_size,
    channels=d.channels,
    data_dir=d.data_dir,
    seed=config.seed,
    holdout_fraction=d.holdout_fraction,
    max_per_class=d.max_per_class,
    label_spec=d.label_spec,
    progress=progress,
  )


def _load_manifest_split(
  d: ml_collections.ConfigDict, split: str, *, progress: bool
):
  """The manifest's rows of `split`; logs which source replaces data.name."""
  from jvision.data import manifest as manifest_lib

  manifest = manifest_lib.read_manifest(d.manifest)
  ignored = f"data.name={d.name!r}"
  if d.label_spec:
    ignored += f", data.label_spec={d.label_spec!r}"
  _log.info(
    "data.manifest=%s: reading split %r of its source %s with its labels "
    "(%s not read)",
    d.manifest,
    split,
    manifest.source,
    ignored,
  )
  return manifest_lib.load_manifest(
    manifest,
    split,
    image_size=d.image_size,
    channels=d.channels,
    data_dir=d.data_dir,
    max_per_class=d.max_per_class,
    progress=progress,
  )


def _streamable(config: ml_collections.ConfigDict) -> bool:
  """Whether config.data names a source the streaming path reads."""
  from jvision.data import sources

  d = config.data
  if d.get("manifest"):
    return False
  kind = sources.parse_spec(d.name).kind
  return kind in index_lib.STREAMABLE_KINDS


def index_split(config: ml_collections.ConfigDict, split: str, **kwargs):
  """The SplitIndex of config.data's `split` (a streamable source)."""
  d = config.data
  return index_lib.index_split(
    d.name,
    split,
    data_dir=d.data_dir,
    seed=config.seed,
    holdout_fraction=d.holdout_fraction,
    max_per_class=d.max_per_class,
    label_spec=d.label_spec,
    **kwargs,
  )


def resolve_loading(config: ml_collections.ConfigDict) -> tuple[str, str]:
  """Resolves `config.data.loading` to ("memory" | "stream", why)."""
  loading, why, _ = _resolve(config)
  return loading, why


def _resolve(config: ml_collections.ConfigDict):
  """`resolve_loading`'s (loading, why), and the training split's index
  when "auto" had to build it to measure the split (else None).

  "auto" streams a folder, zip, TFDS or packed source whose decoded
  training split at data.image_size would take more than
  data.max_memory_gib; built-in and IDX sources and audit manifests are
  small and always in memory.

  Raises:
    ValueError: an unknown value, or "stream" for a source or config that
      cannot stream.
  """
  d = config.data
  configs_io.check_choice("data.loading", d.loading, LOADINGS)
  if d.loading == "memory":
    return "memory", "config.data.loading='memory'", None
  if not _streamable(config):
    if d.loading == "stream":
      raise ValueError(
        f"config.data.loading='stream': data {d.name!r} is loaded in memory "
        f"only; streaming reads {', '.join(index_lib.STREAMABLE_KINDS)} "
        "sources (set data.loading='memory' or 'auto')"
      )
    return "memory", "the source is small and only loaded in memory", None
  if d.image_size is None:
    if d.loading == "stream":
      raise ValueError(
        "config.data.loading='stream' needs config.data.image_size: the "
        "side of the crops the stream workers make"
      )
    return "memory", "config.data.image_size is None (stored sizes kept)", None
  if d.loading == "stream":
    return "stream", "config.data.loading='stream'", None
  train_index = index_split(config, d.train_split, progress=False)
  count = len(train_index)
  gib = count * d.image_size**2 * (d.channels or 3) / 2**30
  relation = ">" if gib > d.max_memory_gib else "<="
  why = (
    f"the decoded training split of {count} images would take {gib:.2f} "
    f"GiB {relation} data.max_memory_gib={d.max_memory_gib}"
  )
  return ("stream" if relation == ">" else "memory"), why, train_index


def crop_settings(config: ml_collections.ConfigDict) -> stream.CropSettings:
  """How the stream workers crop (one view; SimCLR asks for two)."""
  a = config.augment
  return stream.CropSettings(
    size=config.data.image_size,
    channels=config.data.channels,
    scale=tuple(a.crop_scale),
    ratio=tuple(a.crop_ratio),
    flip=bool(a.flip),
    crop_fraction=config.data.eval_crop_fraction,
  )


def stream_workers(config: ml_collections.ConfigDict) -> int:
  """config.data.workers, or one per core when it is None."""
  workers = config.data.get("workers")
  if workers is None:
    return stream.default_workers()
  if not isinstance(workers, int) or workers < 0:
    raise ValueError(
      f"config.data.workers must be an int >= 0, got {workers!r}"
    )
  return workers


def reading(
  config: ml_collections.ConfigDict, spec: str, *, loading: str = "auto"
) -> ml_collections.ConfigDict:
  """A copy of `config` that reads the data spec `spec` whole and labelled
  as it is (no manifest, label spec or label fraction); image size,
  channels, mean and std stay the run's. For reading another labelled
  source with a run's settings: the kNN monitor's bank, another test set
  for `jvision eval`.

  `loading` is its data.loading: "auto" (decided on `spec`'s training
  split), or "stream" or "memory"; "stream" falls back to "memory" for a
  source that cannot stream (one split read the way the run read its
  own, without indexing a training split it may not have)."""
  other = ml_collections.ConfigDict(config.to_dict())
  other.data.name = spec
  other.data.label_spec, other.data.label_fraction = None, 1.0
  if other.data.get("manifest"):
    other.data.manifest = None
  if loading == "stream" and not _streamable(other):
    loading = "memory"
  other.data.loading = loading
  return other


def open_split(
  config: ml_collections.ConfigDict,
  split: str,
  *,
  loading: str | None = None,
  progress: bool = True,
):
  """config.data's `split` in memory (ArrayDataset) or streamed
  (`stream.Streamed`), as `loading` (default: the config's own
  data.loading, "memory" for configs recorded before it) says."""
  loading = loading or config.data.get("loading", "memory")
  if loading == "auto":
    loading, _ = resolve_loading(config)
  if loading == "memory":
    return load_split(config, split, progress=progress)
  return _streamed(config, index_split(config, split, progress=progress))


def open_splits(
  config: ml_collections.ConfigDict, splits, *, progress: bool = True
):
  """Resolves data.loading and opens `splits` that way, indexing each
  split once: (loading, why, [split data in the order of `splits`])."""
  loading, why, train_index = _resolve(config)
  opened = []
  for split in splits:
    if loading == "memory":
      opened.append(load_split(config, split, progress=progress))
    elif train_index is not None and split == config.data.train_split:
      opened.append(_streamed(config, train_index))
    else:
      opened.append(
        _streamed(config, index_split(config, split, progress=progress))
      )
  return loading, why, opened


def _streamed(config, split_index) -> stream.Streamed:
  return stream.Streamed(
    split_index, crop_settings(config), stream_workers(config)
  )
