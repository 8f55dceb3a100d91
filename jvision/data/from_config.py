"""Loading a split named by a config's `data` section.

`data.name` names the source unless `data.manifest` is set: then the
manifest (an audit's `manifest.jsonl`) is authoritative for the source, the
examples, their labels and class names, and `data.name`, `data.label_spec`
and `data.holdout_fraction` are not read (the log says so).
"""

from __future__ import annotations

import logging

import ml_collections

_log = logging.getLogger(__name__)


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
