"""SimCLR's augmentations in JAX, run on device inside the pretraining step.

Every function takes a float32 batch [N, H, W, C] in [0, 1] (C = 1 or 3)
and one PRNG key. The key is split into N per-example keys and a
single-image op is `jax.vmap`-ed over the batch, so each image draws its own
crop, flip, jitter and blur, and everything is fixed-shape and jit-compiles
once per batch shape. Hyper-parameters are keyword arguments (Python
numbers, static under jit); nothing is drawn on the Python side.

A view follows SimCLR (Chen et al., 2020), appendix A and its CIFAR setup:

    random_resized_crop -> random_flip -> color_jitter (p) ->
    random_grayscale (p) -> gaussian_blur (p; off for CIFAR)

`two_views` turns a uint8 batch into the two standardised views that
NT-Xent compares; `default_config` holds the CIFAR-10 settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

# ITU-R 601 luma weights, as in PIL, torchvision and tf.image.rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)

# A plain mapping or an ml_collections.ConfigDict with CONFIG_KEYS.
AugmentConfig = Mapping[str, Any] | ml_collections.ConfigDict

CONFIG_KEYS = (
  "crop_scale",
  "crop_ratio",
  "flip",
  "color_strength",
  "color_p",
  "grayscale_p",
  "blur_p",
)


def default_config() -> ml_collections.ConfigDict:
  """SimCLR's CIFAR-10 augmentation settings (no blur at 32 x 32)."""
  config = ml_collections.ConfigDict()
  config.crop_scale = (0.08, 1.0)  # Area fraction of the crop.
  config.crop_ratio = (3 / 4, 4 / 3)  # Aspect ratio w / h, log-uniform.
  config.flip = True
  config.color_strength = 0.5  # SimCLR's s; 1.0 for ImageNet.
  config.color_p = 0.8
  config.grayscale_p = 0.2
  config.blur_p = 0.0  # SimCLR drops blur for CIFAR; 0.5 for ImageNet.
  return config


def _per_example(
  fn: Callable[..., jnp.ndarray], images: jnp.ndarray, key: jax.Array
) -> jnp.ndarray:
  """Applies fn(image [H, W, C], key) to each image with its own key."""
  keys = jax.random.split(key, images.shape[0])  # [N] keys
  return jax.vmap(fn)(images, keys)


def _check_channels(images: jnp.ndarray) -> int:
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(
      f"expected images [N, H, W, C] with C = 1 or 3, got {images.shape}"
    )
  return images.shape[-1]


def _with_probability(
  key: jax.Array, p: float, new: jnp.ndarray, old: jnp.ndarray
) -> jnp.ndarray:
  """new with probability p, else old (one image)."""
  return jnp.where(jax.random.bernoulli(key, p), new, old)


# Random resized crop.


def _fallback_box(
  height: int, width: int, ratio: tuple[float, float]
) -> tuple[int, int]:
  """torchvision's fallback crop (h, w): the whole image, clamped to ratio."""
  in_ratio = width / height
  if in_ratio < min(ratio):
    return round(width / min(ratio)), width
  if in_ratio > max(ratio):
    return height, round(height * max(ratio))
  return height, width


def _crop_box(
  key: jax.Array,
  height: int,
  width: int,
  *,
  scale: tuple[float, float],
  ratio: tuple[float, float],
  attempts: int,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Samples one crop box as torchvision's RandomResizedCrop.get_params.

  `attempts` candidates are drawn at once; the first that fits the image is
  taken, and the central fallback box when none does.

  Returns:
    (top, left, h, w), int32 scalars.
  """
  area_key, ratio_key, top_key, left_key = jax.random.split(key, 4)
  area = (height * width) * jax.random.uniform(
    area_key, (attempts,), minval=scale[0], maxval=scale[1]
  )  # [K]
  log_ratio = jax.random.uniform(
    ratio_key,
    (attempts,),
    minval=math.log(ratio[0]),
    maxval=math.log(ratio[1]),
  )  # [K]
  aspect = jnp.exp(log_ratio)  # [K], w / h
  w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)  # [K]
  h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)  # [K]
  valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)  # [K]
  first = jnp.argmax(valid)
  fallback_h, fallback_w = _fallback_box(height, width, ratio)
  found = jnp.any(valid)
  h = jnp.where(found, h[first], fallback_h)
  w = jnp.where(found, w[first], fallback_w)
  top = jax.random.randint(top_key, (), 0, height - h + 1)
  left = jax.random.randint(left_key, (), 0, width - w + 1)
  # torchvision centres the fallback box.
  top = jnp.where(found, top, (height - h) // 2)
  left = jnp.where(found, left, (width - w) // 2)
  return top, left, h, w


def _resize_weights(
  start: jnp.ndarray, length: jnp.ndarray, size: int, out: int, antialias: bool
) -> jnp.ndarray:
  """Interpolation matrix from pixels [start, start + length) to `out` pixels.

  A triangle (bilinear) kernel centred where each output pixel centre falls
  in the input (half-pixel centres), widened to the sampling step when
  shrinking with `antialias`, restricted to the window and normalised, so
  nothing outside the window bleeds in: crop first, then resize.

  Args:
    start: first pixel of the window, traced scalar.
    length: window length in pixels, traced scalar.
    size: input side (static).
    out: output side (static).
    antialias: widen the kernel when length > out.

  Returns:
    float32 [out, size], rows summing to 1.
  """
  start = start.astype(jnp.float32)
  length = length.astype(jnp.float32)
  step = length / out  # Input pixels per output pixel.
  centres = start + (jnp.arange(out, dtype=jnp.float32) + 0.5) * step  # [out]
  pixels = jnp.arange(size, dtype=jnp.float32) + 0.5  # [size]
  support = jnp.maximum(step, 1.0) if antialias else 1.0
  distance = jnp.abs(pixels[None, :] - centres[:, None]) / support
  weights = jnp.maximum(0.0, 1.0 - distance)  # [out, size]
  inside = (pixels > start) & (pixels < start + length)  # [size]
  weights = jnp.where(inside[None, :], weights, 0.0)
  return weights / jnp.sum(weights, axis=1, keepdims=True)


def _resize_box(
  image: jnp.ndarray,
  box: tuple[jnp.ndarray, ...],
  out_size: tuple[int, int],
  antialias: bool,
) -> jnp.ndarray:
  """Bilinear resize of image[top:top+h, left:left+w] to out_size.

  The box has a traced size, so instead of slicing, two interpolation
  matrices (one per axis) gather and blend its pixels.

  Args:
    image: [H, W, C].
    box: (top, left, h, w) int32 scalars, traced.
    out_size: (out_h, out_w), static.
    antialias: low-pass when the box is larger than out_size.

  Returns:
    [out_h, out_w, C].
  """
  top, left, h, w = (jnp.asarray(v) for v in box)
  height, width, _ = image.shape
  rows = _resize_weights(top, h, height, out_size[0], antialias)  # [oh, H]
  cols = _resize_weights(left, w, width, out_size[1], antialias)  # [ow, W]
  return jnp.einsum(
    "ih,hwc,jw->ijc", rows, image, cols, precision=jax.lax.Precision.HIGHEST
  )


def random_resized_crop(
  images: jnp.ndarray,
  key: jax.Array,
  *,
  scale: Sequence[float] = (0.08, 1.0),
  ratio: Sequence[float] = (3 / 4, 4 / 3),
  out_size: int | Sequence[int] | None = None,
  attempts: int = 10,
  antialias: bool = True,
) -> jnp.ndarray:
  """Crops a random box from each image and resizes it back (bilinear).

  The box covers a `scale` fraction of the image area with a log-uniform
  aspect ratio (w / h) in `ratio`, as torchvision's RandomResizedCrop and
  SimCLR's `crop_and_resize`: `attempts` candidates are drawn, the first
  that fits is kept, and the central box clamped to `ratio` otherwise.

  Args:
    images: float32 [N, H, W, C].
    key: PRNG key.
    scale: (min, max) area fraction.
    ratio: (min, max) aspect ratio w / h.
    out_size: output (h, w) or side; None keeps (H, W).
    attempts: candidate boxes drawn per image.
    antialias: low-pass when shrinking (torchvision's antialias=True).

  Returns:
    float32 [N, out_h, out_w, C]; a convex combination of input pixels, so
    [0, 1] input stays in [0, 1].
  """
  _, height, width, _ = images.shape
  if out_size is None:
    out_size = (height, width)
  elif isinstance(out_size, int):
    out_size = (out_size, out_size)
  out_size = tuple(out_size)
  scale, ratio = tuple(scale), tuple(ratio)

  def crop_one(image, image_key):
    box = _crop_box(
      image_key, height, width, scale=scale, ratio=ratio, attempts=attempts
    )
    return _resize_box(image, box, out_size, antialias)

  return _per_example(crop_one, images, key)


def random_flip(
  images: jnp.ndarray, key: jax.Array, *, p: float = 0.5
) -> jnp.ndarray:
  """Mirrors each image left-right with probability p: [N, H, W, C]."""

  def flip_one(image, image_key):
    return _with_probability(image_key, p, image[:, ::-1], image)

  return _per_example(flip_one, images, key)


# Colour.


def _luma(image: jnp.ndarray) -> jnp.ndarray:
  """[..., 3] RGB -> [..., 1] luma."""
  return image @ jnp.asarray(_LUMA, image.dtype)[:, None]


def _rgb_to_hsv(rgb: jnp.ndarray) -> jnp.ndarray:
  """[..., 3] RGB in [0, 1] -> [..., 3] HSV, hue in [0, 1)."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  value = jnp.max(rgb, axis=-1)
  chroma = value - jnp.min(rgb, axis=-1)
  safe_chroma = jnp.where(chroma > 0, chroma, 1.0)
  saturation = jnp.where(
    value > 0, chroma / jnp.where(value > 0, value, 1.0), 0
  )
  hue = jnp.where(
    value == r,
    (g - b) / safe_chroma,
    jnp.where(
      value == g, (b - r) / safe_chroma + 2.0, (r - g) / safe_chroma + 4.0
    ),
  )  # In sextants, [-1, 5).
  hue = jnp.where(chroma > 0, hue / 6.0 % 1.0, 0.0)
  return jnp.stack([hue, saturation, value], axis=-1)


def _hsv_to_rgb(hsv: jnp.ndarray) -> jnp.ndarray:
  """[..., 3] HSV -> [..., 3] RGB (the closed form f(n) of Wikipedia)."""
  hue, saturation, value = hsv[..., 0:1], hsv[..., 1:2], hsv[..., 2:3]
  n = jnp.asarray([5.0, 3.0, 1.0], hsv.dtype)  # R, G, B
  k = (n + 6.0 * hue) % 6.0  # [..., 3]
  ramp = jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
  return value - value * saturation * ramp


def _brightness(image: jnp.ndarray, factor: jnp.ndarray) -> jnp.ndarray:
  return image * factor


def _contrast(image: jnp.ndarray, factor: jnp.ndarray) -> jnp.ndarray:
  # Per-channel mean, as tf.image.adjust_contrast that SimCLR uses.
  mean = jnp.mean(image, axis=(0, 1), keepdims=True)  # [1, 1, C]
  return (image - mean) * factor + mean


def _saturation(image: jnp.ndarray, factor: jnp.ndarray) -> jnp.ndarray:
  # Blend with the grayscale image (torchvision's adjust_saturation).
  gray = _luma(image)  # [H, W, 1]
  return gray + (image - gray) * factor


def _hue(image: jnp.ndarray, delta: jnp.ndarray) -> jnp.ndarray:
  hsv = _rgb_to_hsv(image)  # [H, W, 3]
  hue = (hsv[..., 0:1] + delta) % 1.0
  return _hsv_to_rgb(jnp.concatenate([hue, hsv[..., 1:]], axis=-1))


def _jitter_ranges(
  strength: float, channels: int
) -> tuple[list[Callable[..., jnp.ndarray]], list[tuple[float, float]]]:
  """The jitter ops that apply to `channels` and their parameter ranges."""
  amount = 0.8 * strength  # SimCLR: brightness, contrast, saturation 0.8s.
  factor_range = (max(0.0, 1.0 - amount), 1.0 + amount)
  ops = [_brightness, _contrast]
  ranges = [factor_range, factor_range]
  if channels == 3:
    hue = 0.2 * strength  # SimCLR: hue 0.2s.
    ops += [_saturation, _hue]
    ranges += [factor_range, (-hue, hue)]
  return ops, ranges


def color_jitter(
  images: jnp.ndarray, key: jax.Array, *, strength: float, p: float = 0.8
) -> jnp.ndarray:
  """SimCLR's colour distortion (random order), per image with probability p.

  Brightness (multiply by a factor in [1 - 0.8s, 1 + 0.8s]), contrast
  (scale around the per-channel mean), saturation (blend with grayscale,
  same factor range) and hue (rotate by up to 0.2s turns in HSV), applied in
  a random order drawn per image and clipped to [0, 1] after each, as
  SimCLR v1's `color_jitter_rand`. Grayscale images (C = 1) get brightness
  and contrast only.

  Args:
    images: float32 [N, H, W, C] in [0, 1].
    key: PRNG key.
    strength: SimCLR's s; 0 is the identity.
    p: probability that an image is jittered at all.

  Returns:
    float32 [N, H, W, C] in [0, 1].
  """
  ops, ranges = _jitter_ranges(strength, _check_channels(images))
  low = jnp.asarray([r[0] for r in ranges], jnp.float32)  # [J]
  high = jnp.asarray([r[1] for r in ranges], jnp.float32)  # [J]
  branches = [
    lambda x, params, i=i, op=op: op(x, params[i]) for i, op in enumerate(ops)
  ]

  def jitter_one(image, image_key):
    apply_key, order_key, param_key = jax.random.split(image_key, 3)
    params = jax.random.uniform(
      param_key, low.shape, minval=low, maxval=high
    )  # [J]
    order = jax.random.permutation(order_key, len(ops))  # [J]

    def stage(step, x):
      x = jax.lax.switch(order[step], branches, x, params)
      return jnp.clip(x, 0.0, 1.0)

    # A loop, so each op is compiled once rather than once per stage.
    x = jax.lax.fori_loop(0, len(ops), stage, image)
    return _with_probability(apply_key, p, x, image)

  return _per_example(jitter_one, images, key)


def random_grayscale(
  images: jnp.ndarray, key: jax.Array, *, p: float = 0.2
) -> jnp.ndarray:
  """Replaces each RGB image by its luma, repeated, with probability p.

  Args:
    images: float32 [N, H, W, C]; C = 1 is returned unchanged.
    key: PRNG key.
    p: probability per image.

  Returns:
    float32 [N, H, W, C].
  """
  if _check_channels(images) == 1:
    return images

  def gray_one(image, image_key):
    gray = jnp.broadcast_to(_luma(image), image.shape)  # [H, W, 3]
    return _with_probability(image_key, p, gray, image)

  return _per_example(gray_one, images, key)


# Blur.


def _blur_radius(side: int, kernel_fraction: float) -> int:
  """SimCLR's radius: kernel size (side * fraction) // 2 * 2 + 1, >= 3."""
  return max(1, int(side * kernel_fraction) // 2)


def _gaussian_kernel(sigma: jnp.ndarray, radius: int) -> jnp.ndarray:
  """Normalised 1-D Gaussian taps: [2 * radius + 1]."""
  x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  taps = jnp.exp(-0.5 * (x / sigma) ** 2)
  return taps / jnp.sum(taps)


def _blur_axis(image: jnp.ndarray, taps: jnp.ndarray, axis: int) -> jnp.ndarray:
  """Convolves [H, W, C] with 1-D taps along axis 0 or 1, reflect-padded."""
  radius = (taps.shape[0] - 1) // 2
  pad = [(0, 0)] * 3
  pad[axis] = (radius, radius)
  padded = jnp.pad(image, pad, mode="reflect")
  size = image.shape[axis]
  out = jnp.zeros_like(image)
  for i in range(taps.shape[0]):
    out += taps[i] * jax.lax.slice_in_dim(padded, i, i + size, axis=axis)
  return out


def gaussian_blur(
  images: jnp.ndarray,
  key: jax.Array,
  *,
  p: float,
  sigma: Sequence[float] = (0.1, 2.0),
  kernel_fraction: float = 0.1,
) -> jnp.ndarray:
  """Separable Gaussian blur with a per-image sigma, with probability p.

  As SimCLR's `random_blur`: sigma uniform in `sigma`, kernel size about
  `kernel_fraction` of each side (odd, at least 3); edges are reflected.

  Args:
    images: float32 [N, H, W, C].
    key: PRNG key.
    p: probability per image.
    sigma: (min, max) standard deviation in pixels.
    kernel_fraction: kernel size over image side.

  Returns:
    float32 [N, H, W, C].
  """
  _, height, width, _ = images.shape
  radius_h = _blur_radius(height, kernel_fraction)
  radius_w = _blur_radius(width, kernel_fraction)

  def blur_one(image, image_key):
    apply_key, sigma_key = jax.random.split(image_key)
    s = jax.random.uniform(sigma_key, (), minval=sigma[0], maxval=sigma[1])
    x = _blur_axis(image, _gaussian_kernel(s, radius_h), axis=0)
    x = _blur_axis(x, _gaussian_kernel(s, radius_w), axis=1)
    return _with_probability(apply_key, p, x, image)

  return _per_example(blur_one, images, key)


# Views.


def _check_config(config: AugmentConfig) -> None:
  missing = [k for k in CONFIG_KEYS if k not in config]
  if missing:
    raise KeyError(
      f"SimCLR augmentation config lacks {missing}; it needs {CONFIG_KEYS}"
    )


def simclr_view(
  images: jnp.ndarray, key: jax.Array, *, config: AugmentConfig
) -> jnp.ndarray:
  """One SimCLR view: crop, flip, colour jitter, grayscale, blur.

  Args:
    images: float32 [N, H, W, C] in [0, 1].
    key: PRNG key.
    config: a mapping with CONFIG_KEYS (see `default_config`); a zero
      probability or strength leaves its op out of the graph.

  Returns:
    float32 [N, H, W, C] in [0, 1].
  """
  _check_config(config)
  crop_key, flip_key, *appearance_keys = jax.random.split(key, 5)
  x = random_resized_crop(
    images, crop_key, scale=config["crop_scale"], ratio=config["crop_ratio"]
  )
  if config["flip"]:
    x = random_flip(x, flip_key)
  return _appearance(x, appearance_keys, config)


def _appearance(
  x: jnp.ndarray, keys: Sequence[jax.Array], config: AugmentConfig
) -> jnp.ndarray:
  """Colour jitter, grayscale and blur of a view (float32 [N, H, W, C] in
  [0, 1]) with their three keys; zero probabilities leave ops out."""
  color_key, gray_key, blur_key = keys
  if config["color_p"] > 0 and config["color_strength"] > 0:
    x = color_jitter(
      x, color_key, strength=config["color_strength"], p=config["color_p"]
    )
  if config["grayscale_p"] > 0:
    x = random_grayscale(x, gray_key, p=config["grayscale_p"])
  if config["blur_p"] > 0:
    x = gaussian_blur(x, blur_key, p=config["blur_p"])
  return x


def cropped_views(
  pairs_uint8: jnp.ndarray,
  key: jax.Array,
  *,
  config: AugmentConfig,
  mean: Sequence[float],
  std: Sequence[float],
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """`two_views` of streamed batches, whose two crops (and flips) per
  image the stream workers have made (jvision/data/stream.py): colour
  jitter, grayscale, blur and standardisation of each.

  Args:
    pairs_uint8: uint8 [N, 2, H, W, C], two crops of each image.
    key: PRNG key for this batch.
    config: as `simclr_view` (its crop and flip keys are not read here).
    mean: per-channel mean in [0, 1] units.
    std: per-channel standard deviation in [0, 1] units.

  Returns:
    (view1, view2), float32 [N, H, W, C] each, (x - mean) / std.
  """
  _check_config(config)
  _check_channels(pairs_uint8[:, 0])
  x = pairs_uint8.astype(jnp.float32) / 255.0  # [N, 2, H, W, C]
  mean = jnp.asarray(mean, jnp.float32)  # [C]
  std = jnp.asarray(std, jnp.float32)  # [C]
  views = []
  for i, view_key in enumerate(jax.random.split(key)):
    keys = jax.random.split(view_key, 5)[2:]  # as simclr_view's last three
    views.append((_appearance(x[:, i], keys, config) - mean) / std)
  return views[0], views[1]


def two_views(
  images_uint8: jnp.ndarray,
  key: jax.Array,
  *,
  config: AugmentConfig,
  mean: Sequence[float],
  std: Sequence[float],
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Two independent standardised SimCLR views of a uint8 batch.

  Args:
    images_uint8: uint8 [N, H, W, C].
    key: PRNG key for this batch; split in two, one per view.
    config: see `simclr_view`.
    mean: per-channel mean in [0, 1] units (as `augment.normalize`).
    std: per-channel standard deviation in [0, 1] units.

  Returns:
    (view1, view2), float32 [N, H, W, C] each, (x - mean) / std.
  """
  channels = _check_channels(images_uint8)
  if len(mean) != channels or len(std) != channels:
    raise ValueError(
      f"mean {tuple(mean)} and std {tuple(std)} need {channels} values, one"
      " per channel"
    )
  x = images_uint8.astype(jnp.float32) / 255.0  # [N, H, W, C] in [0, 1]
  mean = jnp.asarray(mean, jnp.float32)  # [C]
  std = jnp.asarray(std, jnp.float32)  # [C]
  key1, key2 = jax.random.split(key)
  view1 = simclr_view(x, key1, config=config)
  view2 = simclr_view(x, key2, config=config)
  return (view1 - mean) / std, (view2 - mean) / std
