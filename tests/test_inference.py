"""Tests for jvision/inference.py: one runner of a trained network.

Outputs are checked against the network's own `apply` on the same images,
on 1 device against the 8 fake CPU devices of conftest, and with batch
sizes that leave a padded last batch or do not divide over the devices.
"""

import jax
import numpy as np
import pytest

from jvision import inference, models, parallel
from jvision.data import augment

N = 21  # images: not a multiple of any batch size used here


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
  """uint8 [N, 28, 28, 1] random images at the tiny run's input shape."""
  return np.random.default_rng(0).integers(0, 256, (N, 28, 28, 1), np.uint8)


def _apply(module, variables, images, preprocessing) -> np.ndarray:
  x = augment.normalize(images, **preprocessing)
  return np.asarray(module.apply(variables, x, train=False))


def test_outputs_equal_the_networks_own_apply(trained_workdir, digits):
  runner = inference.load(str(trained_workdir), batch_size=8)
  logits = _apply(
    runner.classifier, runner.variables, digits, runner.preprocessing
  )  # [N, 10]
  features = _apply(
    runner.backbone,
    models.backbone_variables(runner.variables),
    digits,
    runner.preprocessing,
  )  # [N, 84]
  assert logits.shape == (N, 10) and features.shape == (N, 84)
  np.testing.assert_allclose(runner.logits(digits), logits, atol=1e-5)
  np.testing.assert_allclose(
    runner.probabilities(digits), jax.nn.softmax(logits), atol=1e-6
  )
  np.testing.assert_allclose(runner.features(digits), features, atol=1e-5)
  unit = features / np.linalg.norm(features, axis=1, keepdims=True)
  np.testing.assert_allclose(runner.embeddings(digits), unit, atol=1e-6)


@pytest.mark.devices(8)
def test_one_device_equals_eight(trained_workdir, digits):
  assert jax.device_count() == 8
  one = inference.load(
    str(trained_workdir),
    mesh=parallel.create_mesh(jax.devices()[:1]),
    batch_size=8,
  )
  eight = inference.load(str(trained_workdir), batch_size=8)
  assert eight.mesh.devices.size == 8 and one.mesh.devices.size == 1
  for name in ("logits", "probabilities", "features", "embeddings"):
    a, b = getattr(one, name)(digits), getattr(eight, name)(digits)
    assert a.shape == b.shape and a.shape[0] == N
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("batch_size", [1, 5, 20])
def test_any_batch_size_gives_the_same_outputs(
  trained_workdir, digits, batch_size
):
  """Batches are rounded up to the 8 devices and the last one is padded."""
  runner = inference.load(str(trained_workdir), batch_size=batch_size)
  whole = runner.logits(digits, batch_size=N + 3)  # one padded batch of 24
  np.testing.assert_allclose(runner.logits(digits), whole, atol=1e-5)
  single = runner.logits(digits[:1])  # 1 image, padded to a device multiple
  np.testing.assert_allclose(single, whole[:1], atol=1e-5)


def test_a_whole_split_and_its_arrays_give_the_same_logits(trained_workdir):
  from helpers import tiny_config

  from jvision.data import from_config

  split = from_config.open_split(tiny_config(), "test")  # 200 digits
  runner = inference.load(str(trained_workdir), batch_size=64)
  logits = runner.logits(split)
  assert logits.shape == (200, 10)
  np.testing.assert_allclose(
    logits, runner.logits(split.images), rtol=1e-6, atol=1e-6
  )


def test_no_images_give_an_empty_result(trained_workdir, digits):
  runner = inference.load(str(trained_workdir))
  assert runner.embeddings(digits[:0]).shape[0] == 0


def test_flip_tta_averages_the_logits_of_both_mirror_images(trained_workdir):
  runner = inference.load(str(trained_workdir))
  images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1), np.uint8)
  plain = runner.logits(images)
  mirrored = runner.logits(images[:, :, ::-1])
  tta = runner.logits(images, tta="flip")
  np.testing.assert_allclose(tta, (plain + mirrored) / 2, rtol=1e-5, atol=1e-5)
  assert not np.allclose(tta, plain)


def test_simclr_embeddings_are_its_backbone_features(simclr_workdir, digits):
  from helpers import tiny_simclr_config

  from jvision.train import simclr

  workdir, _ = simclr_workdir
  runner = inference.load(str(workdir), batch_size=16)
  assert runner.classifier is None and runner.class_names == ()
  with pytest.raises(ValueError, match="no classifier; fine-tune it first"):
    runner.logits(digits)
  network = simclr.build_model(tiny_simclr_config(), 10)
  x = augment.normalize(digits, **runner.preprocessing)
  out = network.apply(runner.variables, x, train=False)
  np.testing.assert_allclose(
    runner.features(digits), out["features"], atol=1e-5
  )


def test_built_from_parts(digits):
  """A network that no workdir holds: a fresh tiny CNN."""
  classifier = models.create_model("cnn", num_classes=3)
  variables = classifier.init(
    jax.random.key(0), np.zeros((1, 28, 28, 1)), train=False
  )
  preprocessing = {"mean": (0.5,), "std": (0.25,), "channel_order": "rgb"}
  runner = inference.Inference(
    variables=variables,
    preprocessing=preprocessing,
    backbone=models.create_model("cnn", num_classes=0),
    classifier=classifier,
    batch_size=4,
  )
  assert runner.step is None and runner.describe() == "a network in memory"
  expected = _apply(classifier, variables, digits, preprocessing)
  np.testing.assert_allclose(runner.logits(digits), expected, atol=1e-5)
  with pytest.raises(ValueError, match="records no image shape"):
    runner.prepare([digits[0]])


def test_batch_size_must_be_a_positive_integer():
  with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
    inference.Inference(
      variables={}, preprocessing={}, backbone=None, batch_size=0
    )
