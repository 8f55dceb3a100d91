"""Pixel hashes, template-matching similarity and the near-duplicate search."""

import io

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import shifted
from PIL import Image

from jvision.audit import duplicates


@pytest.fixture(scope="module")
def digits(shared_data):
  """300 real MNIST test digits as float [N, 28, 28] in [0, 1]."""
  from jvision import data

  ds = data.load(f"idx:{shared_data / 'mnist'}", "test", progress=False)
  return ds.images[:300, ..., 0].astype(np.float32) / 255


def _jpeg(x, quality):
  buffer = io.BytesIO()
  Image.fromarray((x * 255).astype(np.uint8)).save(
    buffer, "JPEG", quality=quality
  )
  return np.asarray(Image.open(buffer), np.float32) / 255


def test_pixel_hash_and_exact_groups():
  a = np.zeros((4, 4, 1), np.uint8)
  b = a.copy()
  c = a.copy()
  c[0, 0, 0] = 1
  d = np.zeros((2, 8, 1), np.uint8)  # same bytes, other shape
  hashes = [duplicates.pixel_hash(x) for x in (a, b, c, d)] + [None]
  assert hashes[0] == hashes[1] != hashes[2]
  assert hashes[0] != hashes[3]
  assert duplicates.exact_groups(hashes) == [[0, 1]]


def test_pair_similarity_of_copies_and_strangers(digits):
  a = digits[:4]
  copies = np.stack(
    [
      shifted(a[0], 2, -3),  # shifted
      np.clip(a[1] * 0.7, 0, 1),  # darker
      _jpeg(a[2], 60),  # re-encoded
      digits[100],  # another digit
    ]
  )
  blur = lambda x: jnp.asarray(duplicates.gaussian_blur(x, 0.7))
  sims = np.asarray(duplicates.pair_similarity(blur(a), blur(copies), radius=3))
  assert sims[0] == pytest.approx(1.0, abs=1e-4)
  assert sims[1] == pytest.approx(1.0, abs=1e-4)
  assert sims[2] > 0.99
  assert sims[3] < 0.9
  # A constant image matches nothing (no division by zero).
  flat = np.full((1, 28, 28), 0.5, np.float32)
  assert duplicates.pair_similarity(jnp.asarray(flat), blur(a[:1]), radius=3)[
    0
  ] == pytest.approx(0.0)


def test_zoom_keeps_the_centre():
  x = jnp.zeros((1, 28, 28)).at[0, 13:15, 13:15].set(1.0)
  zoomed = np.asarray(duplicates.zoom(x, 1.2))
  assert zoomed.shape == (1, 28, 28)
  assert zoomed[0, 13:15, 13:15].min() > 0.5  # still at the centre
  assert zoomed[0].sum() > np.asarray(x)[0].sum()  # and larger


def test_search_finds_planted_copies_among_real_digits(digits):
  base = digits[:200]
  copies = [
    shifted(base[0], 3, 1),
    np.clip(base[1] * 1.2, 0, 1),
    _jpeg(base[2], 50),
    np.asarray(duplicates.zoom(jnp.asarray(base[3][None]), 1.1))[0],
  ]
  gray = np.concatenate([base, np.stack(copies)]).astype(np.float32)
  pairs, sims = duplicates.search(
    gray,
    neighbours=8,
    grid=7,
    descriptor_blur=1.0,
    blur=0.7,
    radius=3,
    zooms=(1.1,),
    zoom_neighbours=4,
    progress=False,
  )
  found = {tuple(p) for p, s in zip(pairs, sims, strict=True) if s >= 0.99}
  for i in range(4):
    assert (i, 200 + i) in found
  # Distinct handwritten digits are not near duplicates of each other.
  strangers = [p for p in found if p[1] < 200]
  assert len(strangers) <= 2


def test_best_per_pair_keeps_the_highest_similarity():
  pairs = np.array([[3, 1], [1, 3], [2, 5]])
  sims = np.array([0.5, 0.9, 0.7], np.float32)
  kept, best = duplicates.best_per_pair(pairs, sims)
  assert kept.tolist() == [[1, 3], [2, 5]]
  np.testing.assert_allclose(best, [0.9, 0.7])
