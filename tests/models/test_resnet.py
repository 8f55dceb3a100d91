"""Tests for jvision/models/resnet.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvision.models import count_params, create_model
from jvision.models.resnet import (
  ResNet18,
  ResNet34,
  ResNet50,
  ResNet50Keras,
  ResNetTiny,
  scaled_width,
)


def _init_shapes(model, shape):
  x = jnp.zeros(shape, jnp.float32)
  init = lambda: model.init(jax.random.key(0), x, train=False)
  return jax.eval_shape(init)


@pytest.mark.parametrize(
  "model, shape, expected",
  [
    # The counts torchvision (ImageNet) and the usual CIFAR ResNets report.
    (ResNet18(num_classes=10, stem="cifar"), (1, 32, 32, 3), 11_173_962),
    (ResNet18(num_classes=1000), (1, 224, 224, 3), 11_689_512),
    (ResNet34(num_classes=1000), (1, 224, 224, 3), 21_797_672),
    (ResNet50(num_classes=1000), (1, 224, 224, 3), 25_557_032),
  ],
)
def test_param_counts_match_torchvision(model, shape, expected):
  assert count_params(_init_shapes(model, shape)["params"]) == expected


def test_keras_resnet50_counts_match_keras():
  # keras.applications.ResNet50().count_params() is 25,636,712: its trainable
  # weights plus the batch-norm moving means and variances
  # (tests/ship/test_import_weights.py checks it against Keras itself).
  shapes = _init_shapes(ResNet50Keras(num_classes=1000), (1, 224, 224, 3))
  assert count_params(shapes["params"]) == 25_583_592
  assert count_params(shapes["batch_stats"]) == 53_120
  assert count_params(shapes) == 25_636_712


def test_keras_resnet50_has_conv_biases_and_stage_shapes():
  shapes = _init_shapes(ResNet50Keras(num_classes=0), (1, 64, 64, 3))
  block = shapes["params"]["stage2_block1"]
  assert block["conv1"]["kernel"].shape == (1, 1, 256, 128)
  assert block["conv1"]["bias"].shape == (128,)
  model = ResNet50Keras(num_classes=0)
  x = jnp.zeros((1, 64, 64, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
  stages = [state["intermediates"][f"stage{i}"][0].shape for i in (1, 2, 3, 4)]
  assert stages == [
    (1, 16, 16, 256),
    (1, 8, 8, 512),
    (1, 4, 4, 1024),
    (1, 2, 2, 2048),
  ]


def test_imagenet_stem_feature_shapes():
  model = ResNet50(num_classes=0)
  out = jax.eval_shape(
    lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False
    )
  )[0]
  assert out.shape == (1, 2048)


def test_width_scaling():
  assert [scaled_width(b, 0.125) for b in (64, 128, 256, 512)] == [
    8,
    16,
    32,
    64,
  ]
  assert scaled_width(64, 0.001) == 1
  assert scaled_width(64, 0.3) == 19


@pytest.fixture(scope="module", params=[(32, 3), (28, 1)], ids=str)
def tiny(request):
  """ResNetTiny (CIFAR stem), a batch of two images and its variables."""
  hw, channels = request.param
  model = ResNetTiny(num_classes=10, stem="cifar")
  x = jax.random.normal(jax.random.key(1), (2, hw, hw, channels)) + 3.0
  return model, x, model.init(jax.random.key(0), x, train=False)


def test_tiny_intermediates(tiny):
  model, x, variables = tiny
  sizes = {32: (32, 16, 8, 4), 28: (28, 14, 7, 4)}[x.shape[1]]
  logits, state = model.apply(
    variables, x, train=False, mutable=["intermediates"]
  )
  inter = state["intermediates"]
  assert logits.shape == (2, 10)
  for i, (size, width) in enumerate(
    zip(sizes, (8, 16, 32, 64), strict=True), start=1
  ):
    assert inter[f"stage{i}"][0].shape == (2, size, size, width)
  assert inter["pre_logits"][0].shape == (2, 64)
  np.testing.assert_allclose(
    inter["pre_logits"][0], inter["stage4"][0].mean(axis=(1, 2)), rtol=1e-6
  )


def test_train_updates_batch_stats_and_eval_does_not(tiny):
  model, x, variables = tiny
  before = variables["batch_stats"]
  _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
  _, kept = model.apply(variables, x, train=False, mutable=["batch_stats"])
  changed = jax.tree.map(
    lambda a, b: bool(jnp.any(a != b)), before, updated["batch_stats"]
  )
  assert all(jax.tree.leaves(changed))
  jax.tree.map(np.testing.assert_array_equal, before, kept["batch_stats"])


def test_without_classes_returns_features(tiny):
  model, x, variables = tiny
  backbone = create_model("resnet_tiny", num_classes=0, stem="cifar")
  assert "head" not in _init_shapes(backbone, x.shape)["params"]
  features = backbone.apply(variables, x, train=False)
  _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
  pre_logits = state["intermediates"]["pre_logits"][0]
  np.testing.assert_array_equal(features, pre_logits)


def test_zero_init_residual_zeroes_last_bn_scale():
  model = ResNetTiny(num_classes=10, stem="cifar", zero_init_residual=True)
  x = jnp.zeros((1, 16, 16, 3))
  params = model.init(jax.random.key(0), x, train=False)["params"]
  for i in range(1, 5):
    block = params[f"stage{i}_block1"]
    np.testing.assert_array_equal(block["bn2"]["scale"], 0.0)
    np.testing.assert_array_equal(block["bn1"]["scale"], 1.0)


def test_projection_shortcut_only_where_shape_changes():
  params = _init_shapes(ResNet18(num_classes=10, stem="cifar"), (1, 32, 32, 3))
  params = params["params"]
  with_projection = sorted(k for k, v in params.items() if "proj_conv" in v)
  assert with_projection == ["stage2_block1", "stage3_block1", "stage4_block1"]
  bottleneck = _init_shapes(ResNet50(num_classes=10), (1, 64, 64, 3))
  assert "proj_conv" in bottleneck["params"]["stage1_block1"]


def test_bottleneck_strides_on_its_3x3_conv():
  model = ResNet50(num_classes=10, width=0.125)
  x = jnp.zeros((1, 64, 64, 3))
  variables = _init_shapes(model, x.shape)
  _, state = jax.eval_shape(
    lambda v: model.apply(v, x, train=False, capture_intermediates=True),
    variables,
  )
  block = state["intermediates"]["stage2_block1"]
  assert block["conv1"]["__call__"][0].shape == (1, 16, 16, 16)
  assert block["conv2"]["__call__"][0].shape == (1, 8, 8, 16)
  assert block["__call__"][0].shape == (1, 8, 8, 64)


def test_unknown_stem_is_an_error():
  with pytest.raises(ValueError, match="Unknown stem 'cifar10'"):
    _init_shapes(ResNetTiny(num_classes=10, stem="cifar10"), (1, 8, 8, 3))


@pytest.mark.parametrize(
  "stem, stage1_hw, stage4_hw", [("cifar", 28, 4), ("small", 14, 2)]
)
def test_small_stem_halves_the_resolution_once(stem, stage1_hw, stage4_hw):
  # ResNet-18 layout at 1/8 width on 28x28 grey images (the Fashion-MNIST
  # demo's backbone until 2026-12-02).
  model = ResNet18(num_classes=0, width=0.125, stem=stem)
  x = jnp.zeros((2, 28, 28, 1))
  (features, state) = jax.eval_shape(
    lambda: model.init_with_output(
      jax.random.key(0),
      x,
      train=False,
      mutable=["params", "batch_stats", "intermediates"],
    )
  )
  inter = state["intermediates"]
  assert inter["stage1"][0].shape == (2, stage1_hw, stage1_hw, 8)
  assert inter["stage4"][0].shape == (2, stage4_hw, stage4_hw, 64)
  assert features.shape == (2, 64)
  # Same layers either way: the stem's stride changes no parameter shape.
  # By hand: stem 3x3x1x8 conv + BN (88), stages of 8, 16, 32 and 64
  # channels (2,368 + 8,352 + 33,088 + 131,712), no head.
  assert count_params(state["params"]) == 175_608
