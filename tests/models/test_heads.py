"""Tests for jvision/models/heads.py."""

import jax
import jax.numpy as jnp
import numpy as np

from jvision.models import count_params
from jvision.models.heads import LinearHead, MLPHead


def _shapes(tree):
  return jax.tree.map(lambda a: a.shape, tree)


def test_linear_head_shape_and_params():
  head = LinearHead(num_classes=10)
  x = jnp.ones((4, 64))
  variables = head.init(jax.random.key(0), x)
  assert count_params(variables["params"]) == 64 * 10 + 10
  assert head.apply(variables, x, train=True).shape == (4, 10)


def test_mlp_head_is_simclr_projection_head():
  head = MLPHead(hidden_dims=(32,), out_dim=8)
  x = jax.random.normal(jax.random.key(1), (6, 16))
  variables = head.init(jax.random.key(0), x, train=False)
  assert _shapes(variables["params"]) == {
    "dense1": {"kernel": (16, 32)},
    "bn1": {"scale": (32,), "bias": (32,)},
    "dense_out": {"kernel": (32, 8)},
  }
  assert _shapes(variables["batch_stats"]) == {
    "bn1": {"mean": (32,), "var": (32,)},
    "bn_out": {"mean": (8,), "var": (8,)},
  }
  z, _ = head.apply(variables, x, train=True, mutable=["batch_stats"])
  assert z.shape == (6, 8)
  # The final norm has no scale or centre: each output unit is standardised.
  np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(z.var(axis=0), 1.0, rtol=1e-3)


def test_mlp_head_without_bn_uses_biases():
  head = MLPHead(hidden_dims=(32, 32), out_dim=8, use_bn=False)
  x = jnp.ones((2, 16))
  variables = head.init(jax.random.key(0), x, train=False)
  assert "batch_stats" not in variables
  expected = (16 * 32 + 32) + (32 * 32 + 32) + (32 * 8 + 8)
  assert count_params(variables["params"]) == expected
  assert head.apply(variables, x, train=True).shape == (2, 8)


def test_mlp_head_without_final_bn():
  head = MLPHead(hidden_dims=(), out_dim=4, final_bn=False)
  variables = head.init(jax.random.key(0), jnp.ones((2, 16)), train=False)
  assert _shapes(variables["params"]) == {
    "dense_out": {"kernel": (16, 4), "bias": (4,)}
  }
