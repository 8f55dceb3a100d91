"""Tests for jvision/data/augment.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvision.data import augment


def _images(n=6, h=8, w=8, c=3):
  rng = np.random.default_rng(0)
  return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


def test_normalize_matches_numpy():
  x = _images()
  out = augment.normalize(x, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
  ref = (x / 255.0 - np.array([0.5, 0.4, 0.3])) / np.array([0.2, 0.25, 0.3])
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  assert out.dtype == jnp.float32


def test_bgr_normalize_is_keras_caffe_preprocessing():
  # Keras's "caffe" mode: RGB -> BGR, minus [103.939, 116.779, 123.68] on
  # 0..255 values, no scaling; in [0, 1] units, mean / 255 and std 1 / 255.
  x = _images()
  caffe = np.array([103.939, 116.779, 123.68])
  out = augment.normalize(
    x, mean=tuple(caffe / 255), std=(1 / 255,) * 3, channel_order="bgr"
  )
  ref = x[..., ::-1].astype(np.float64) - caffe
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-4)


def test_unknown_channel_order_is_a_clear_error():
  with pytest.raises(ValueError, match="data.channel_order='gbr'; use one"):
    augment.normalize(
      _images(), mean=(0,) * 3, std=(1,) * 3, channel_order="gbr"
    )


def test_preprocessing_of_a_config_recorded_before_channel_order():
  import ml_collections

  data = ml_collections.ConfigDict({"mean": [0.5], "std": [0.25]})
  assert augment.preprocessing(data) == {
    "mean": (0.5,),
    "std": (0.25,),
    "channel_order": "rgb",
  }


def test_random_crop_is_a_shift_of_the_padded_image():
  x = jnp.asarray(_images(n=16, c=1), jnp.float32)
  out = augment.random_crop(x, jax.random.PRNGKey(0), padding=2)
  assert out.shape == x.shape
  padded = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(16):
    found = [
      (dy, dx)
      for dy in range(5)
      for dx in range(5)
      if np.array_equal(padded[i, dy : dy + 8, dx : dx + 8], out[i])
    ]
    assert found, f"image {i} is not a crop of its padded original"
  assert not np.array_equal(out, x)  # some images moved


def test_crop_padding_zero_is_identity():
  x = jnp.asarray(_images(), jnp.float32)
  out = augment.random_crop(x, jax.random.PRNGKey(0), padding=0)
  np.testing.assert_array_equal(out, x)


def test_flip_mirrors_about_half():
  x = jnp.asarray(_images(n=200, w=5), jnp.float32)
  out = augment.random_flip(x, jax.random.PRNGKey(1))
  same = np.all(np.asarray(out) == np.asarray(x), axis=(1, 2, 3))
  mirrored = np.all(
    np.asarray(out) == np.asarray(x)[:, :, ::-1], axis=(1, 2, 3)
  )
  assert np.all(same | mirrored)
  assert 70 < mirrored.sum() < 130


def test_train_preprocess_is_deterministic_per_key():
  x = _images()
  kwargs = dict(mean=(0.5,) * 3, std=(0.25,) * 3, crop_padding=2, flip=True)
  a = augment.train_preprocess(x, jax.random.PRNGKey(3), **kwargs)
  b = augment.train_preprocess(x, jax.random.PRNGKey(3), **kwargs)
  c = augment.train_preprocess(x, jax.random.PRNGKey(4), **kwargs)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_tta_logits_flip_is_the_mean_over_mirror_images():
  x = jax.random.normal(jax.random.key(0), (3, 4, 5, 2))
  apply = lambda v: v[:, 0, :, 0]  # [N, W]: the first row, channel 0
  np.testing.assert_array_equal(augment.tta_logits(apply, x, "none"), apply(x))
  flipped = augment.tta_logits(apply, x, "flip")
  np.testing.assert_allclose(
    flipped, (x[:, 0, :, 0] + x[:, 0, ::-1, 0]) / 2, rtol=1e-6
  )


def test_unknown_tta_mode_names_the_choices():
  with pytest.raises(ValueError, match="eval_tta='five_crop'.*'flip'"):
    augment.tta_logits(lambda v: v, jnp.zeros((1, 2, 2, 1)), "five_crop")
