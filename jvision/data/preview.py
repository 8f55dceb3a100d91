"""A PNG grid of images and their augmented views, to see what a net sees.

SimCLR pretraining writes one into its workdir at the start so that a person
can check the crops, colour distortion and grayscale before spending compute.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure


def _to_display(images: np.ndarray) -> np.ndarray:
  """[N, H, W, C] in [0, 1] -> [N, H, W] for C = 1, else unchanged."""
  images = np.clip(images, 0.0, 1.0)
  return images[..., 0] if images.shape[-1] == 1 else images


def _destandardise(
  view: np.ndarray, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
  """Undoes (x - mean) / std: [N, H, W, C] -> [N, H, W, C] in [0, 1]."""
  mean = np.asarray(mean, np.float32)  # [C]
  std = np.asarray(std, np.float32)  # [C]
  return np.asarray(view, np.float32) * std + mean


def save_view_grid(
  images_uint8: np.ndarray,
  views: list[np.ndarray],
  path: str | os.PathLike,
  *,
  mean: Sequence[float],
  std: Sequence[float],
  max_images: int = 8,
) -> None:
  """Writes a PNG: one row per image, the original then each of its views.

  Args:
    images_uint8: uint8 [N, H, W, C], C = 1 or 3.
    views: standardised float views, each [N, H', W', C], as `two_views`
      returns them.
    path: the PNG to write.
    mean: the per-channel mean the views were standardised with, in [0, 1].
    std: the per-channel standard deviation, in [0, 1] units.
    max_images: rows to show at most.
  """
  rows = min(len(images_uint8), max_images)
  originals = _to_display(np.asarray(images_uint8[:rows]) / 255.0)
  shown = [
    _to_display(_destandardise(np.asarray(v[:rows]), mean, std)) for v in views
  ]
  columns = [originals, *shown]
  titles = ["original"] + [f"view {i + 1}" for i in range(len(views))]
  cell = 1.2  # Inches per image.
  figure = Figure(figsize=(cell * len(columns), cell * rows + 0.3))
  axes = figure.subplots(rows, len(columns), squeeze=False)
  for row in range(rows):
    for col, images in enumerate(columns):
      ax = axes[row, col]
      ax.imshow(
        images[row], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest"
      )
      ax.set_xticks([])
      ax.set_yticks([])
      if row == 0:
        ax.set_title(titles[col], fontsize=8)
  figure.tight_layout(pad=0.2)
  figure.savefig(path, format="png", dpi=100)
