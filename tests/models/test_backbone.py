"""Tests for jvision/models/backbone.py: the backbone/head split."""

import jax
import numpy as np
import pytest

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


def _simclr(hidden_dims=(8, 6)):
  backbone = models.create_model("resnet_tiny", num_classes=0)
  module = create_simclr_model(
    backbone, num_classes=5, hidden_dims=hidden_dims, out_dim=4
  )
  return module, _init(module)


def test_a_projected_network_keeps_the_first_layers_of_a_simclr_head():
  simclr_module, simclr = _simclr()
  for layers, dims in ((1, (8,)), (2, (8, 6))):
    kept = models.backbone_variables(simclr, projection_layers=layers)
    backbone = models.create_model(
      "resnet_tiny", num_classes=0, proj_hidden_dims=dims
    )
    assert jax.tree.structure(kept) == jax.tree.structure(_init(backbone))
    assert set(kept["params"]["projection"]) == {
      f"{kind}{i}" for i in range(1, layers + 1) for kind in ("dense", "bn")
    }
    # Its features are the output of the head's layer `layers`: computed
    # independently here from the SimCLR network's own modules.
    features = simclr_module.apply(simclr, X, train=False)["features"]
    head = simclr["params"]["projection"]
    stats = simclr["batch_stats"]["projection"]
    h = np.asarray(features)
    for i in range(1, layers + 1):
      h = h @ np.asarray(head[f"dense{i}"]["kernel"])
      bn, mv = head[f"bn{i}"], stats[f"bn{i}"]
      h = (h - mv["mean"]) / np.sqrt(mv["var"] + 1e-5) * bn["scale"] + bn[
        "bias"
      ]
      h = np.maximum(h, 0)
    np.testing.assert_allclose(
      backbone.apply(kept, X, train=False), h, rtol=1e-5, atol=1e-6
    )


def test_a_projected_classifiers_backbone_is_everything_but_its_head():
  dims = (8,)
  classifier = models.create_model(
    "resnet_tiny", num_classes=5, proj_hidden_dims=dims
  )
  variables = _init(classifier)
  assert set(variables["params"]) == {"backbone", "projection", "head"}
  assert models.has_head(variables)
  assert variables["params"]["head"]["kernel"].shape == (8, 5)
  split = models.backbone_variables(variables)
  backbone = models.create_model(
    "resnet_tiny", num_classes=0, proj_hidden_dims=dims
  )
  assert jax.tree.structure(split) == jax.tree.structure(_init(backbone))
  assert models.count_params(variables["params"]) == (
    models.count_params(split["params"]) + 8 * 5 + 5
  )
  assert models.hidden_projection_layers(variables) == 0


def test_keeping_more_layers_than_the_head_has_is_refused():
  _, simclr = _simclr(hidden_dims=(8,))
  assert models.hidden_projection_layers(simclr) == 1
  with pytest.raises(ValueError, match="has 1 hidden layer"):
    models.backbone_variables(simclr, projection_layers=2)
  classifier = _init(models.create_model("resnet_tiny", num_classes=5))
  with pytest.raises(ValueError, match="not a SimCLR network"):
    models.backbone_variables(classifier, projection_layers=1)
