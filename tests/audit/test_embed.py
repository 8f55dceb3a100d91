"""Tests for jvision/audit/embed.py: an encoder's features and the built-in
ones, over the 8 fake CPU devices."""

import numpy as np

from jvision import models, workdir
from jvision.audit import embed
from jvision.data import augment

IMAGES = np.random.default_rng(0).integers(0, 256, (13, 28, 28, 1), np.uint8)


def test_encoder_embeddings_are_the_backbones_features(trained_workdir):
  features, described = embed.encoder_embeddings(
    str(trained_workdir), IMAGES, batch_size=8, progress=False
  )
  trained = workdir.load(str(trained_workdir))
  x = augment.normalize(IMAGES, **trained.preprocessing)
  expected = models.create_backbone(trained.config.model).apply(
    models.backbone_variables(trained.variables), x, train=False
  )  # [13, 84]
  assert features.shape == (13, 84) and features.dtype == np.float32
  np.testing.assert_allclose(features, expected, atol=1e-5)
  assert described == f"encoder {trained_workdir} (supervised, step 6)"


def test_builtin_embeddings_do_not_depend_on_the_batch_size():
  features, _ = embed.builtin_embeddings(IMAGES, progress=False)
  assert features.shape == (13, 8 * 8 + 17 * (48 + 32))
  small, _ = embed.builtin_embeddings(IMAGES, batch_size=3, progress=False)
  np.testing.assert_allclose(small, features, rtol=1e-5, atol=1e-5)
  empty, _ = embed.builtin_embeddings(IMAGES[:0], progress=False)
  assert empty.shape == (0, features.shape[1])
