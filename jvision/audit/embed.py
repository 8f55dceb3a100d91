"""Image embeddings for the audit: a jvision workdir's encoder or our own.

`encoder_embeddings` runs the backbone of a trained workdir (SimCLR,
supervised or fine-tuned; `jvision audit --encoder=WORKDIR`) over images and
returns its pooled features. Without an encoder the audit uses
`builtin_embeddings`: features it builds itself, needing no training and no
labels, of two kinds side by side:

* pixels: the standardized grey image resized to a `grid` x `grid` map;
* random convolutional features: a fixed, seeded bank of 3x3 and 5x5
  filters with ReLU and 2x2 / global max-pooling, the classic "random
  features" baseline that a linear classifier reads far better than pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jvision import inference, parallel
from jvision.data import decode


def encoder_embeddings(
  workdir: str,
  images: np.ndarray,
  *,
  batch_size: int = 512,
  progress: bool = True,
) -> tuple[np.ndarray, str]:
  """Backbone features of a trained workdir (`jvision.inference`).

  Args:
    workdir: a jvision workdir with a checkpoint.
    images: uint8 [N, H, W, C]; converted to the run's image size and
      channels when they differ.
    batch_size: images per forward pass.
    progress: show a tqdm bar.

  Returns:
    (float32 [N, D] features, a description of the encoder).
  """
  encoder = inference.load(workdir, batch_size=batch_size)
  config = encoder.trained.config
  channels = len(config.data.mean)
  size = config.data.image_size or None
  images = decode.convert_arrays(images, image_size=size, channels=channels)
  features = encoder.features(images, progress=progress)  # [N, D]
  return features, f"encoder {encoder.describe()}"


def random_filters(
  seed: int, channels: int, widths: tuple[int, int]
) -> list[np.ndarray]:
  """Zero-mean, unit-norm random filters: [3, 3, C, w0] and [5, 5, C, w1]."""
  rng = np.random.default_rng(seed)
  banks = []
  for size, width in zip((3, 5), widths, strict=True):
    w = rng.standard_normal((size, size, channels, width)).astype(np.float32)
    w -= w.mean(axis=(0, 1, 2), keepdims=True)
    w /= np.linalg.norm(w.reshape(-1, width), axis=0) + 1e-6
    banks.append(w)
  return banks


def _builtin_features(images, *, filters, grid: int):
  x = images.astype(jnp.float32) / 255.0  # [B, H, W, C]
  x = x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  x = x / (jnp.std(x, axis=(1, 2, 3), keepdims=True) + 1e-3)
  pooled = jax.image.resize(
    jnp.mean(x, -1), (x.shape[0], grid, grid), "linear"
  ).reshape(x.shape[0], -1)  # [B, grid * grid]
  parts = [pooled]
  for w in filters:
    y = jax.lax.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    y = jax.nn.relu(y)  # [B, H, W, F]
    h, wd = y.shape[1] // 2 * 2, y.shape[2] // 2 * 2
    y = y[:, :h, :wd].reshape(y.shape[0], h // 2, 2, wd // 2, 2, -1)
    y = y.max(axis=(2, 4))  # [B, H/2, W/2, F]
    cells = jax.image.resize(
      y, (y.shape[0], 4, 4, y.shape[-1]), "linear"
    )  # [B, 4, 4, F]
    parts += [cells.reshape(y.shape[0], -1), y.max(axis=(1, 2))]
  return jnp.concatenate(parts, axis=-1)


def builtin_embeddings(
  images: np.ndarray,
  *,
  seed: int = 0,
  grid: int = 8,
  widths: tuple[int, int] = (48, 32),
  batch_size: int = 1024,
  progress: bool = True,
) -> tuple[np.ndarray, str]:
  """Label-free features built without training (module docstring).

  Args:
    images: uint8 [N, H, W, C].
    seed: seeds the random filters.
    grid: side of the pooled pixel map.
    widths: number of 3x3 and 5x5 random filters.
    batch_size: images per pass.
    progress: show a tqdm bar.

  Returns:
    (float32 [N, grid^2 + 17 * (widths[0] + widths[1])], a description).
  """
  description = (
    f"built-in: {grid}x{grid} pixels + {sum(widths)} seeded random conv "
    "filters (no training)"
  )
  if not len(images):
    return np.zeros((0, grid**2 + 17 * sum(widths)), np.float32), description
  filters = random_filters(seed, images.shape[-1], widths)
  mesh = parallel.create_mesh()
  step = parallel.jit_map_step(
    lambda filters, batch: _builtin_features(
      batch["image"], filters=filters, grid=grid
    ),
    mesh,
  )
  features = parallel.map_split(
    step,
    filters,
    {"image": images},
    mesh=mesh,
    batch_size=parallel.round_batch_size(batch_size, mesh),
    progress=progress,
    desc="features",
  )
  return np.asarray(features, np.float32), description
