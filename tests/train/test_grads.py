"""Tests for jvision/train/grads.py: micro-batch gradient accumulation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvision.train import grads


def test_micro_batches_interleave():
  batch = {"x": jnp.arange(12).reshape(6, 2), "y": jnp.arange(6)}
  micro = grads.micro_batches(batch, 3)
  assert micro["x"].shape == (3, 2, 2)
  np.testing.assert_array_equal(micro["y"], [[0, 3], [1, 4], [2, 5]])


def _loss(params, batch, carry):
  pred = batch["x"] @ params["w"] + params["b"]  # [b]
  loss = jnp.mean((pred - batch["y"]) ** 2)
  return loss, (jnp.max(pred), carry + 1)


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_accumulated_equals_whole_batch(steps):
  rng = np.random.default_rng(0)
  batch = {
    "x": jnp.asarray(rng.normal(size=(16, 5)), jnp.float32),
    "y": jnp.asarray(rng.normal(size=(16,)), jnp.float32),
  }
  params = {"w": jnp.ones((5,)), "b": jnp.float32(0.5)}
  (loss, _), expected = jax.value_and_grad(_loss, has_aux=True)(
    params, batch, 0
  )
  (got_loss, (aux, carry)), got = grads.accumulated_value_and_grad(
    _loss, params, batch, 0, steps=steps
  )
  np.testing.assert_allclose(got_loss, loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert aux.shape == (steps,)  # one aux per micro-batch
  assert carry == steps  # threaded through every micro-batch in order
