"""Seeded, class-balanced subsets of a labelled split."""

from __future__ import annotations

import numpy as np

from jvision.data.dataset import DataError


def label_subset(labels: np.ndarray, fraction: float, *, seed: int):
  """Indices of a class-balanced `fraction` of the examples, sorted.

  Each class keeps round(fraction * its count) examples (at least one),
  drawn with a generator seeded by `seed`, so Fashion-MNIST's 60,000
  training images at 0.01 give 60 of each of the 10 classes.

  Args:
    labels: int [N].
    fraction: in (0, 1].
    seed: the draw's seed.

  Returns:
    int64 [M] indices into `labels`.
  """
  if not 0.0 < fraction <= 1.0:
    raise DataError(f"data.label_fraction must be in (0, 1], got {fraction}")
  rng = np.random.default_rng(seed)
  keep = []
  for cls in np.unique(labels):
    members = np.flatnonzero(labels == cls)
    count = max(1, round(fraction * len(members)))
    keep.append(rng.permutation(members)[:count])
  return np.sort(np.concatenate(keep))
