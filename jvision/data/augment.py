"""Image preprocessing and augmentation in JAX, run on device inside steps.

All functions take a whole batch and are vectorised over it; randomness
comes from one key per call, split into per-example draws, so the result
does not depend on how the batch is sharded over devices.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jvision import configs_io


def normalize(
  images: jnp.ndarray, *, mean: Sequence[float], std: Sequence[float]
) -> jnp.ndarray:
  """uint8 [N, H, W, C] -> float32 [N, H, W, C], per-channel standardised.

  `mean` and `std` are in [0, 1] pixel units, one value per channel.
  """
  x = images.astype(jnp.float32) / 255.0
  mean = jnp.asarray(mean, jnp.float32)  # [C]
  std = jnp.asarray(std, jnp.float32)  # [C]
  return (x - mean) / std


def normalize_views(
  images: jnp.ndarray, key: jax.Array, *, mean, std
) -> jnp.ndarray:
  """The training view of streamed batches, which the stream workers have
  already cropped and flipped: `normalize` (the key is unused)."""
  del key
  return normalize(images, mean=mean, std=std)


def random_crop(
  images: jnp.ndarray, key: jax.Array, *, padding: int
) -> jnp.ndarray:
  """Zero-pads each side by `padding` and crops back at a random offset.

  Args:
    images: [N, H, W, C].
    key: PRNG key.
    padding: pixels added on each side before cropping; 0 is a no-op.

  Returns:
    [N, H, W, C], each image shifted by up to `padding` pixels.
  """
  if padding == 0:
    return images
  n, h, w, c = images.shape
  padded = jnp.pad(
    images, ((0, 0), (padding, padding), (padding, padding), (0, 0))
  )
  offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)  # [N, 2]

  def crop(image, offset):
    return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

  return jax.vmap(crop)(padded, offsets)


TTA_MODES = ("none", "flip")


def tta_logits(apply, x: jnp.ndarray, mode: str) -> jnp.ndarray:
  """Test-time augmentation: the mean of `apply` over views of `x`.

  Args:
    apply: float images [N, H, W, C] -> logits [N, K].
    x: [N, H, W, C] preprocessed (normalised) images.
    mode: "none" (`apply(x)`) or "flip" (the mean over x and its mirror
      image, the views a model trained with random flips has seen).

  Returns:
    [N, K] logits.
  """
  configs_io.check_choice("eval_tta", mode, TTA_MODES)
  if mode == "none":
    return apply(x)
  return (apply(x) + apply(x[:, :, ::-1, :])) / 2


def random_flip(images: jnp.ndarray, key: jax.Array) -> jnp.ndarray:
  """Mirrors each image left-right with probability 1/2: [N, H, W, C]."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))  # [N]
  return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


def train_preprocess(
  images: jnp.ndarray,
  key: jax.Array,
  *,
  mean: Sequence[float],
  std: Sequence[float],
  crop_padding: int,
  flip: bool,
) -> jnp.ndarray:
  """The supervised training view: normalise, random crop, random flip.

  Args:
    images: uint8 [N, H, W, C].
    key: PRNG key for this batch.
    mean: per-channel mean in [0, 1] units.
    std: per-channel standard deviation in [0, 1] units.
    crop_padding: see `random_crop`.
    flip: whether to apply `random_flip`.

  Returns:
    float32 [N, H, W, C].
  """
  crop_key, flip_key = jax.random.split(key)
  x = normalize(images, mean=mean, std=std)
  x = random_crop(x, crop_key, padding=crop_padding)
  if flip:
    x = random_flip(x, flip_key)
  return x
