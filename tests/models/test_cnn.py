"""Tests for jvision/models/cnn.py and the model registry."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvision import models
from jvision.models.cnn import (
  ConvReLUPool,
  SeedCNN,
  conv_relu_pool,
  max_pool_2x2,
  pooled_phase_kernel,
  space_to_depth_2x2,
)


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


def _plain_conv_relu_pool(x, kernel, bias, padding):
  """The textbook form: flax's conv, ReLU, flax's max-pool."""
  y = jax.lax.conv_general_dilated(
    x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  return nn.max_pool(nn.relu(y + bias), (2, 2), strides=(2, 2))


def test_space_to_depth_puts_each_2x2_block_in_the_channels():
  x = jnp.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3)
  y = space_to_depth_2x2(x)
  assert y.shape == (2, 2, 3, 12)
  # channel (2 * pi + pj) * C + c at (u, v) is x[2u + pi, 2v + pj, c]
  np.testing.assert_array_equal(y[1, 1, 2, 3 * 3 + 2], x[1, 3, 5, 2])
  np.testing.assert_array_equal(y[0, 0, 1, 1 * 3 + 0], x[0, 0, 3, 0])


def test_pooled_phase_kernel_places_each_tap():
  kernel = jax.random.normal(jax.random.key(0), (5, 5, 2, 3))
  k = pooled_phase_kernel(kernel)
  assert k.shape == (3, 3, 8, 12)
  # phase (qi, qj) = (1, 0), out channel 2; input cell (a, b) = (2, 1),
  # position (pi, pj) = (0, 1), channel 1: tap (2a + pi - qi, 2b + pj - qj)
  np.testing.assert_array_equal(
    k[2, 1, (0 * 2 + 1) * 2 + 1, (1 * 2 + 0) * 3 + 2], kernel[3, 3, 1, 2]
  )
  # taps outside the 5x5 kernel are zero: 13 of 36 per (phase, c_in, c_out)
  assert int(jnp.sum(k == 0)) == 4 * 2 * 3 * (36 - 25)


@pytest.mark.parametrize(
  "shape, kernel_shape, padding",
  [
    ((2, 32, 32, 3), (5, 5, 3, 6), "VALID"),
    ((2, 14, 14, 6), (5, 5, 6, 16), "VALID"),
    ((2, 28, 28, 1), (5, 5, 1, 6), "SAME"),
    ((2, 12, 10, 2), (4, 3, 2, 4), "SAME"),  # 1 pixel before: kernel shift
    ((2, 10, 12, 2), (4, 4, 2, 3), "VALID"),  # odd conv output, dropped row
    ((2, 13, 10, 2), (5, 5, 2, 4), "VALID"),  # odd input: the plain form
    ((2, 11, 9, 2), (4, 3, 2, 4), "SAME"),
  ],
)
def test_conv_relu_pool_equals_conv_relu_max_pool(shape, kernel_shape, padding):
  keys = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(keys[0], shape)
  kernel = jax.random.normal(keys[1], kernel_shape)
  bias = 0.1 * jax.random.normal(keys[2], kernel_shape[-1:])
  # Each side jitted whole: one compile, not one per eager op (the eager
  # gradients took most of this test's time on the 2-core machine).
  forward = lambda f: jax.jit(f, static_argnums=3)
  expected = forward(_plain_conv_relu_pool)(x, kernel, bias, padding)
  got = forward(conv_relu_pool)(x, kernel, bias, padding)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  weights = jax.random.normal(keys[3], expected.shape)
  loss = lambda f: lambda *a: jnp.sum(f(*a, padding) * weights)
  gradient = lambda f: jax.jit(jax.grad(loss(f), argnums=(0, 1, 2)))
  grads = gradient(conv_relu_pool)(x, kernel, bias)
  refs = gradient(_plain_conv_relu_pool)(x, kernel, bias)
  for grad, ref in zip(grads, refs, strict=True):
    np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-4)


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


def test_conv_relu_pool_rejects_unknown_padding():
  x, kernel = jnp.ones((1, 8, 8, 1)), jnp.ones((3, 3, 1, 1))
  with pytest.raises(ValueError, match="'CIRCULAR'.*VALID"):
    conv_relu_pool(x, kernel, jnp.zeros(1), "CIRCULAR")


def test_conv_relu_pool_module_has_nn_conv_parameters():
  x = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
  fused = ConvReLUPool(8, padding="SAME").init(jax.random.key(0), x)
  plain = nn.Conv(8, (5, 5), padding="SAME").init(jax.random.key(0), x)
  jax.tree.map(np.testing.assert_array_equal, fused, plain)


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


def test_nan_inputs_give_nan_outputs():
  # XLA:CPU's max-reduction over a middle axis drops NaN; the pools must not.
  x = jnp.full((2, 28, 28, 1), jnp.nan)
  kernel, bias = jnp.ones((5, 5, 1, 6)), jnp.zeros(6)
  assert jnp.isnan(jax.jit(max_pool_2x2)(x)).all()
  pool = jax.jit(conv_relu_pool, static_argnames="padding")
  assert jnp.isnan(pool(x, kernel, bias, padding="SAME")).all()
