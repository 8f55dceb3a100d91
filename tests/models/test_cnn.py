"""Tests for jvision/models/cnn.py and the model registry."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvision import models
from jvision.models.cnn import SeedCNN, max_pool_2x2


def _init_shapes(model, shape):
  x = jnp.zeros(shape, jnp.float32)
  init = lambda: model.init(jax.random.key(0), x, train=False)
  return jax.eval_shape(init)


def test_seed_cnn_param_count_is_the_tutorial_nets():
  variables = _init_shapes(SeedCNN(num_classes=10), (1, 32, 32, 3))
  assert models.count_params(variables["params"]) == 62_006


def test_seed_cnn_same_padding_on_28x28_keeps_7x7_features():
  # conv1 156 + conv2 2,416 + fc1 (784 * 120 + 120) + fc2 10,164 + head 850
  variables = _init_shapes(SeedCNN(padding="SAME"), (1, 28, 28, 1))
  assert models.count_params(variables["params"]) == 107_786


@pytest.mark.parametrize(
  "shape, features", [((3, 32, 32, 3), 400), ((3, 28, 28, 1), 256)]
)
def test_seed_cnn_forward_shapes(shape, features):
  model = SeedCNN(num_classes=10)
  x = jax.random.normal(jax.random.key(1), shape)
  variables = model.init(jax.random.key(0), x, train=False)
  logits, state = model.apply(
    variables, x, train=False, mutable=["intermediates"]
  )
  assert logits.shape == (3, 10)
  assert logits.dtype == jnp.float32
  assert state["intermediates"]["pre_logits"][0].shape == (3, 84)
  assert variables["params"]["fc1"]["kernel"].shape == (features, 120)


def test_seed_cnn_without_classes_returns_features():
  model = SeedCNN(num_classes=0)
  x = jnp.ones((2, 28, 28, 1))
  variables = model.init(jax.random.key(0), x, train=False)
  assert "head" not in variables["params"]
  assert model.apply(variables, x, train=True).shape == (2, 84)


def test_seed_cnn_bfloat16_keeps_float32_params():
  model = SeedCNN(num_classes=10, dtype=jnp.bfloat16)
  x = jnp.ones((2, 32, 32, 3))
  variables = model.init(jax.random.key(0), x, train=False)
  dtypes = {p.dtype for p in jax.tree.leaves(variables["params"])}
  assert dtypes == {jnp.dtype(jnp.float32)}
  assert model.apply(variables, x, train=False).dtype == jnp.bfloat16


@pytest.mark.parametrize("shape", [(2, 8, 12, 3), (2, 9, 7, 3)])
def test_max_pool_2x2_matches_nn_max_pool(shape):
  x = jax.random.normal(jax.random.key(0), shape)
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(max_pool_2x2(x), reference(x))
  weights = jax.random.normal(jax.random.key(1), reference(x).shape)
  loss = lambda pool: lambda x: jnp.sum(pool(x) * weights)
  np.testing.assert_array_equal(
    jax.grad(loss(max_pool_2x2))(x), jax.grad(loss(reference))(x)
  )


def test_create_model_builds_registered_models():
  model = models.create_model("cnn", num_classes=7)
  assert isinstance(model, SeedCNN) and model.num_classes == 7
  tiny = models.create_model("resnet_tiny", num_classes=3, stem="cifar")
  assert tiny.stage_sizes == (1, 1, 1, 1)
  assert (tiny.width, tiny.stem) == (0.125, "cifar")


def test_create_model_unknown_name_lists_names():
  with pytest.raises(ValueError) as error:
    models.create_model("resnet81", num_classes=10)
  message = str(error.value)
  for name in models.MODELS:
    assert name in message
  assert "Did you mean 'resnet18'?" in message


def test_create_model_unknown_argument_names_it():
  expected = r"'cnn' has no argument\(s\) \['width'\]"
  with pytest.raises(ValueError, match=expected):
    models.create_model("cnn", num_classes=10, width=2.0)
