"""Tests for jvision/data/simclr_augment.py and jvision/data/preview.py."""

import colorsys
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jvision.data import preview
from jvision.data import simclr_augment as sa

MEAN3, STD3 = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


# Tests share batch shapes so that compiled primitives are reused: eager ops
# are cached per shape, and each jitted two_views is compiled once.


def _images(n=8, h=16, w=16, c=3, seed=0):
  """float32 [n, h, w, c] in [0, 1]."""
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.random((n, h, w, c)), jnp.float32)


def _uint8(n=8, h=16, w=16, c=3):
  rng = np.random.default_rng(1)
  return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _config(**overrides):
  config = sa.default_config()
  config.update(overrides)
  return config


_TRACES = {1: [], 3: []}


@functools.cache
def _two_views_fn(channels):
  """A jitted two_views (blur on) that records each trace in _TRACES."""
  mean, std = (MEAN3, STD3) if channels == 3 else ((0.3,), (0.4,))

  def fn(images, key):
    _TRACES[channels].append(images.shape)
    config = _config(blur_p=0.5)
    return sa.two_views(images, key, config=config, mean=mean, std=std)

  return jax.jit(fn)


def _destandardise(view, channels):
  mean, std = (MEAN3, STD3) if channels == 3 else ((0.3,), (0.4,))
  return np.asarray(view) * np.asarray(std) + np.asarray(mean)


def test_default_config_is_simclr_cifar():
  config = sa.default_config()
  assert config.crop_scale == (0.08, 1.0)
  assert config.crop_ratio == pytest.approx((3 / 4, 4 / 3))
  assert config.flip is True
  assert (config.color_strength, config.color_p) == (0.5, 0.8)
  assert (config.grayscale_p, config.blur_p) == (0.2, 0.0)


@pytest.mark.parametrize("channels", [3, 1])
def test_two_views_shapes_dtypes_and_range(channels):
  x = _uint8(c=channels)
  view1, view2 = _two_views_fn(channels)(x, jax.random.key(0))
  for view in (view1, view2):
    assert view.shape == x.shape
    assert view.dtype == jnp.float32
    unit = _destandardise(view, channels)
    assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5
  assert not np.allclose(view1, view2)  # the two views differ


def test_two_views_deterministic_per_key():
  x = _uint8()
  fn = _two_views_fn(3)
  a = fn(x, jax.random.key(3))
  b = fn(x, jax.random.key(3))
  c = fn(x, jax.random.key(4))
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.allclose(a[0], c[0])


def test_two_views_jit_traces_once():
  fn = _two_views_fn(3)
  x = _uint8()
  outputs = [fn(x, jax.random.key(i))[0] for i in range(3)]
  assert _TRACES[3] == [x.shape]  # no Python-side randomness
  assert not np.allclose(outputs[0], outputs[1])


def test_two_views_checks_mean_length_and_config_keys():
  with pytest.raises(ValueError, match="need 1 values"):
    sa.two_views(
      _uint8(c=1), jax.random.key(0), config=_config(), mean=MEAN3, std=STD3
    )
  config = dict(_config())
  del config["grayscale_p"]
  with pytest.raises(KeyError, match="grayscale_p"):
    sa.simclr_view(_images(), jax.random.key(0), config=config)


def test_crop_full_scale_square_is_identity():
  x = _images()
  out = sa.random_resized_crop(
    x, jax.random.key(0), scale=(1.0, 1.0), ratio=(1.0, 1.0)
  )
  np.testing.assert_allclose(out, x, atol=1e-5)


def test_crop_of_constant_image_is_constant():
  x = jnp.full((8, 16, 16, 3), 0.37, jnp.float32)
  out = sa.random_resized_crop(x, jax.random.key(1))
  np.testing.assert_allclose(out, 0.37, atol=1e-6)


def test_crop_is_per_example():
  x = jnp.broadcast_to(_images(n=1), (8, 16, 16, 3))  # one image, 8 times
  out = np.asarray(sa.random_resized_crop(x, jax.random.key(2)))
  distinct = {out[i].tobytes() for i in range(8)}
  assert len(distinct) == 8


def test_crop_box_resize_matches_jax_image_resize():
  image = _images(n=1, h=16, w=16)[0]
  box = (2, 3, 8, 4)  # top, left, h, w: a 2x vertical, 4x horizontal zoom
  out = sa._resize_box(image, box, (16, 16), antialias=True)
  ref = jax.image.resize(image[2:10, 3:7], (16, 16, 3), "linear")
  np.testing.assert_allclose(out, ref, atol=1e-5)
  box = (4, 0, 12, 16)  # shrink 3x and 4x: the antialiased triangle filter
  out = sa._resize_box(image, box, (4, 4), antialias=True)
  ref = jax.image.resize(image[4:16], (4, 4, 3), "linear", antialias=True)
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_crop_falls_back_to_the_central_box():
  # No 4:1 to 5:1 box covers 90% of a square, so every attempt fails and
  # the box is the full width, 16 / 4 = 4 rows high, centred (rows 6..9).
  x = _images()
  out = sa.random_resized_crop(
    x, jax.random.key(0), scale=(0.9, 1.0), ratio=(4.0, 5.0), out_size=(4, 16)
  )
  np.testing.assert_allclose(out, x[:, 6:10], atol=1e-5)


def test_crop_out_size_and_range():
  x = _images()
  out = sa.random_resized_crop(x, jax.random.key(0), out_size=10)
  assert out.shape == (8, 10, 10, 3) and out.dtype == jnp.float32
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 + 1e-6


def test_flip_is_identity_or_mirror_about_half():
  x = _images(n=200, h=2, w=5)  # mirrors are told apart by pixel values
  out = np.asarray(sa.random_flip(x, jax.random.key(1)))
  same = np.all(out == np.asarray(x), axis=(1, 2, 3))
  mirrored = np.all(out == np.asarray(x)[:, :, ::-1], axis=(1, 2, 3))
  assert np.all(same | mirrored)
  assert 70 < mirrored.sum() < 130


def test_grayscale_has_equal_channels_of_luma():
  x = _images()
  out = np.asarray(sa.random_grayscale(x, jax.random.key(0), p=1.0))
  luma = np.asarray(x) @ np.array([0.2989, 0.587, 0.114])
  for channel in range(3):
    np.testing.assert_allclose(out[..., channel], luma, atol=1e-6)


def test_grayscale_fraction_and_single_channel_noop():
  x = _images(n=500, h=2, w=2)
  out = np.asarray(sa.random_grayscale(x, jax.random.key(5), p=0.2))
  changed = np.any(out != np.asarray(x), axis=(1, 2, 3))
  assert 0.13 <= changed.mean() <= 0.27
  gray = _images(c=1)
  assert sa.random_grayscale(gray, jax.random.key(0), p=1.0) is gray


def test_rgb_hsv_matches_colorsys_and_round_trips():
  x = _images(n=1, h=8, w=8)
  hsv = np.asarray(sa._rgb_to_hsv(x))
  ref = [colorsys.rgb_to_hsv(*pixel) for pixel in np.asarray(x).reshape(-1, 3)]
  np.testing.assert_allclose(hsv.reshape(-1, 3), ref, atol=1e-6)
  np.testing.assert_allclose(sa._hsv_to_rgb(hsv), x, atol=1e-6)


@pytest.mark.parametrize("channels", [3, 1])
def test_color_jitter_strength_zero_is_identity(channels):
  x = _images(c=channels)
  out = sa.color_jitter(x, jax.random.key(0), strength=0.0, p=1.0)
  np.testing.assert_allclose(out, x, atol=1e-5)


@pytest.mark.parametrize("channels", [3, 1])
def test_color_jitter_changes_every_image_at_p1_and_none_at_p0(channels):
  x = _images(c=channels)
  out = np.asarray(sa.color_jitter(x, jax.random.key(0), strength=0.5, p=1.0))
  assert out.shape == x.shape and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 1.0
  changed = np.any(np.abs(out - np.asarray(x)) > 1e-3, axis=(1, 2, 3))
  assert changed.all()
  out = sa.color_jitter(x, jax.random.key(0), strength=0.5, p=0.0)
  np.testing.assert_array_equal(out, x)


def test_blur_keeps_constants_and_smooths_a_checkerboard():
  constant = jnp.full((8, 16, 16, 3), 0.6, jnp.float32)
  out = sa.gaussian_blur(constant, jax.random.key(0), p=1.0)
  np.testing.assert_allclose(out, 0.6, atol=1e-6)
  board = np.indices((16, 16)).sum(0) % 2  # [16, 16]
  x = jnp.broadcast_to(
    jnp.asarray(board, jnp.float32)[:, :, None], (8, 16, 16, 3)
  )
  out = sa.gaussian_blur(x, jax.random.key(0), p=1.0, sigma=(1.0, 2.0))
  out = np.asarray(out)
  assert out.min() >= 0.0 and out.max() <= 1.0
  assert np.all(out.std(axis=(1, 2, 3)) < 0.5 * board.std())
  untouched = sa.gaussian_blur(x, jax.random.key(0), p=0.0)
  np.testing.assert_array_equal(untouched, x)


def test_blur_radius_follows_simclr():
  assert sa._blur_radius(32, 0.1) == 1  # 3 taps at CIFAR size
  assert sa._blur_radius(224, 0.1) == 11  # 23 taps, as SimCLR's 224 // 10


@pytest.mark.parametrize("channels", [3, 1])
def test_preview_png_opens(tmp_path, channels):
  x = _uint8(c=channels)
  views = list(_two_views_fn(channels)(x, jax.random.key(0)))
  mean, std = (MEAN3, STD3) if channels == 3 else ((0.3,), (0.4,))
  path = tmp_path / "views.png"
  preview.save_view_grid(x, views, path, mean=mean, std=std, max_images=4)
  with Image.open(path) as image:
    image.verify()
  with Image.open(path) as image:
    assert image.format == "PNG"
    size = image.size
  assert size == (360, 510)  # 3 columns x 4 rows of 1.2 in, titles, 100 dpi
