"""Loading a split named by a config's `data` section."""

from __future__ import annotations

import ml_collections


def load_split(
  config: ml_collections.ConfigDict, split: str, *, progress: bool = True
):
  """`config.data`'s `split` as an ArrayDataset (seeded by `config.seed`)."""
  from jvision import data as data_lib

  d = config.data
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
