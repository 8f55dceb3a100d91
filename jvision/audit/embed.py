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

import functools

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from jvision import models
from jvision.data import augment, decode
from jvision.evaluate import workdir as eval_workdir


def _batches(n: int, batch_size: int):
  for start in range(0, n, batch_size):
    yield slice(start, min(n, start + batch_size))


def _pad_to(x: np.ndarray, size: int) -> np.ndarray:
  """Pads a batch along axis 0 to `size` rows (one compiled shape)."""
  if len(x) == size:
    return x
  return np.concatenate([x, np.zeros((size - len(x), *x.shape[1:]), x.dtype)])


def map_batched(
  fn, images: np.ndarray, *, batch_size: int, progress: bool, desc: str
) -> np.ndarray:
  """`fn` (jitted, uint8 [B, ...] -> float [B, D]) over all images."""
  out = []
  with tqdm.tqdm(total=len(images), desc=desc, disable=not progress) as bar:
    for part in _batches(len(images), batch_size):
      chunk = images[part]
      result = np.asarray(fn(_pad_to(chunk, batch_size)))[: len(chunk)]
      out.append(result.astype(np.float32))
      bar.update(len(chunk))
  return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _backbone_features(variables, images, *, model, preprocessing):
  x = augment.normalize(images, **preprocessing)
  return model.apply(variables, x, train=False)  # [B, D]


def encoder_embeddings(
  workdir: str,
  images: np.ndarray,
  *,
  batch_size: int = 512,
  progress: bool = True,
) -> tuple[np.ndarray, str]:
  """Backbone features of a trained workdir.

  Args:
    workdir: a jvision workdir with a checkpoint.
    images: uint8 [N, H, W, C]; converted to the run's image size and
      channels when they differ.
    batch_size: images per forward pass.
    progress: show a tqdm bar.

  Returns:
    (float32 [N, D] features, a description of the encoder).
  """
  config = eval_workdir.read_config(workdir)
  params, stats, description = eval_workdir.load_backbone(workdir)
  channels = len(config.data.mean)
  size = config.data.image_size or None
  images = decode.convert_arrays(images, image_size=size, channels=channels)
  model = models.create_model(
    config.model.name, num_classes=0, **models.config_kwargs(config.model)
  )
  variables = {"params": params}
  if stats:
    variables["batch_stats"] = stats
  step = jax.jit(
    functools.partial(
      _backbone_features,
      variables,
      model=model,
      preprocessing=augment.preprocessing(config.data),
    )
  )
  features = map_batched(
    step, images, batch_size=batch_size, progress=progress, desc="embed"
  )
  return features, f"encoder {description}"


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
  filters = random_filters(seed, images.shape[-1], widths)
  step = jax.jit(
    functools.partial(_builtin_features, filters=filters, grid=grid)
  )
  features = map_batched(
    step, images, batch_size=batch_size, progress=progress, desc="features"
  )
  return features, (
    f"built-in: {grid}x{grid} pixels + {sum(widths)} seeded random conv "
    "filters (no training)"
  )
