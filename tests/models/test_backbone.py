"""Tests for jvision/models/backbone.py: the backbone/head split."""

import jax
import numpy as np

from jvision import models
from jvision.models.simclr import create_simclr_model

X = np.zeros((2, 16, 16, 3), np.float32)


def _init(module):
  return module.init(jax.random.key(0), X, train=False)


def test_a_classifiers_backbone_is_it_without_its_head():
  classifier = _init(models.create_model("resnet_tiny", num_classes=5))
  backbone = _init(models.create_model("resnet_tiny", num_classes=0))
  assert models.has_head(classifier) and not models.has_head(backbone)
  split = models.backbone_variables(classifier)
  assert jax.tree.structure(split) == jax.tree.structure(backbone)
  assert models.count_params(classifier["params"]) - models.count_params(
    split["params"]
  ) == models.count_params(classifier["params"][models.HEAD])
  assert models.backbone_variables(backbone) == backbone  # nothing to drop


def test_simclrs_backbone_is_its_backbone_field():
  backbone = models.create_model("resnet_tiny", num_classes=0)
  network = _init(
    create_simclr_model(backbone, num_classes=5, hidden_dims=(8,), out_dim=4)
  )
  assert not models.has_head(network)
  assert set(network["params"]) == {
    models.BACKBONE,
    models.PROJECTION,
    "probe",
  }
  split = models.backbone_variables(network)
  assert jax.tree.structure(split) == jax.tree.structure(_init(backbone))
  features = backbone.apply(split, X, train=False)
  assert features.shape == (2, 64)


def test_create_backbone_and_classifier_read_a_model_section():
  from jvision.train import defaults

  section = defaults.supervised_config().model
  section.name = "cnn"
  assert models.create_backbone(section).num_classes == 0
  assert models.create_classifier(section, 7).num_classes == 7
