"""Tests for jvision/optim.py."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jvision import optim

PARAMS = {
  "conv": {"kernel": jnp.array([[[[1.0, -2.0]]], [[[0.5, 3.0]]]])},  # 4-D
  "dense": {"kernel": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "bias": jnp.ones(2)},
  "bn": {"scale": jnp.array([1.0, 2.0]), "bias": jnp.array([0.5, -0.5])},
}
GRADS = [
  {
    "conv": {"kernel": jnp.array([[[[0.1, 0.2]]], [[[-0.3, 0.4]]]])},
    "dense": {
      "kernel": jnp.array([[0.5, -1.0], [0.25, 2.0]]),
      "bias": jnp.array([1.0, -2.0]),
    },
    "bn": {"scale": jnp.array([0.3, 0.1]), "bias": jnp.array([-0.2, 0.6])},
  },
  {
    "conv": {"kernel": jnp.array([[[[-0.2, 0.1]]], [[[0.3, 0.0]]]])},
    "dense": {
      "kernel": jnp.array([[0.0, 1.0], [-0.5, 1.5]]),
      "bias": jnp.array([0.5, 0.5]),
    },
    "bn": {"scale": jnp.array([-0.1, 0.2]), "bias": jnp.array([0.4, 0.0])},
  },
]
ONE_D = (("dense", "bias"), ("bn", "scale"), ("bn", "bias"))
MULTI_D = (("conv", "kernel"), ("dense", "kernel"))


def _leaf(tree, path):
  return np.asarray(tree[path[0]][path[1]], np.float64)


def _updates(tx, grads_sequence):
  """The updates `tx` emits for each gradient, starting from PARAMS."""
  params, state, out = PARAMS, tx.init(PARAMS), []
  for grads in grads_sequence:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    out.append(updates)
  return out


# Schedules.


def test_warmup_cosine_values():
  lr = optim.create_learning_rate_fn(
    base_learning_rate=0.1, num_train_steps=100, warmup_steps=10, end_factor=0.1
  )
  # Warmup 0 -> 0.1 over 10 steps, then cosine from 0.1 to 0.01 over 90.
  expected = {0: 0.0, 5: 0.05, 10: 0.1, 55: 0.055, 100: 0.01, 150: 0.01}
  for step, value in expected.items():
    np.testing.assert_allclose(lr(step), value, rtol=1e-6, atol=1e-9)


def test_constant_and_no_warmup():
  lr = optim.create_learning_rate_fn(
    base_learning_rate=0.5,
    num_train_steps=100,
    warmup_steps=4,
    schedule="constant",
  )
  for step, value in {0: 0.0, 2: 0.25, 4: 0.5, 60: 0.5, 100: 0.5}.items():
    np.testing.assert_allclose(lr(step), value, rtol=1e-6)
  cosine = optim.create_learning_rate_fn(
    base_learning_rate=0.5, num_train_steps=10, warmup_steps=0
  )
  np.testing.assert_allclose([cosine(0), cosine(5)], [0.5, 0.25], rtol=1e-6)


def test_schedule_errors():
  with pytest.raises(ValueError, match="valid choices are"):
    optim.create_learning_rate_fn(
      base_learning_rate=1.0, num_train_steps=10, warmup_steps=0, schedule="x"
    )
  with pytest.raises(ValueError, match="warmup_steps=20, num_train_steps=10"):
    optim.create_learning_rate_fn(
      base_learning_rate=1.0, num_train_steps=10, warmup_steps=20
    )


# Masks.


def test_weight_decay_mask_excludes_1d_leaves():
  mask = optim.weight_decay_mask(PARAMS, decay_bn_and_bias=False)
  assert mask == {
    "conv": {"kernel": True},
    "dense": {"kernel": True, "bias": False},
    "bn": {"scale": False, "bias": False},
  }
  everything = optim.weight_decay_mask(PARAMS, decay_bn_and_bias=True)
  assert all(v for group in everything.values() for v in group.values())


# Optimizers.


def test_sgd_momentum_weight_decay_matches_hand_computation():
  lr, mu, wd = 0.1, 0.9, 0.01
  config = {"name": "sgd", "momentum": mu, "weight_decay": wd}
  tx = optim.create_optimizer(config, learning_rate_fn=lr, params=PARAMS)
  first, second = _updates(tx, GRADS)
  for path in MULTI_D + ONE_D:
    decay = wd if path in MULTI_D else 0.0  # 1-D leaves are not decayed.
    w0, g0, g1 = (_leaf(tree, path) for tree in (PARAMS, *GRADS))
    m0 = g0 + decay * w0
    w1 = w0 - lr * m0
    m1 = mu * m0 + g1 + decay * w1
    np.testing.assert_allclose(_leaf(first, path), -lr * m0, rtol=1e-6)
    np.testing.assert_allclose(_leaf(second, path), -lr * m1, rtol=1e-6)


def test_bn_and_bias_lr_factor_scales_only_1d_updates():
  lr, mu, wd, k = 0.1, 0.9, 0.01, 64.0
  config = {
    "name": "sgd",
    "momentum": mu,
    "nesterov": True,
    "weight_decay": wd,
    "bn_and_bias_lr_factor": k,
  }
  tx = optim.create_optimizer(config, learning_rate_fn=lr, params=PARAMS)
  first, second = _updates(tx, GRADS)
  for path in MULTI_D + ONE_D:
    decay, rate = (wd, lr) if path in MULTI_D else (0.0, k * lr)
    w0, g0, g1 = (_leaf(tree, path) for tree in (PARAMS, *GRADS))
    d0 = g0 + decay * w0  # Nesterov: step along gradient + mu * momentum
    w1 = w0 - rate * (d0 + mu * d0)
    d1 = g1 + decay * w1
    m1 = mu * d0 + d1
    np.testing.assert_allclose(
      _leaf(first, path), -rate * (d0 + mu * d0), rtol=1e-6
    )
    np.testing.assert_allclose(
      _leaf(second, path), -rate * (d1 + mu * m1), rtol=1e-6
    )


def test_adamw_decays_only_matrices():
  lr, wd = 0.1, 0.5
  config = ml_collections.ConfigDict({"name": "adamw", "weight_decay": wd})
  tx = optim.create_optimizer(config, learning_rate_fn=lr, params=PARAMS)
  zeros = jax.tree.map(jnp.zeros_like, PARAMS)
  (updates,) = _updates(tx, [zeros])  # Zero gradients: only the decay moves.
  for path in MULTI_D:
    np.testing.assert_allclose(
      _leaf(updates, path), -lr * wd * _leaf(PARAMS, path), rtol=1e-6
    )
  for path in ONE_D:
    np.testing.assert_array_equal(_leaf(updates, path), 0.0)


def test_lars_leaves_bn_and_bias_to_momentum_sgd():
  lr, mu, wd, eta = 0.1, 0.9, 1e-3, 0.001
  lars_config = {"name": "lars", "momentum": mu, "weight_decay": wd}
  sgd_config = {"name": "sgd", "momentum": mu, "weight_decay": 0.0}
  lars = _updates(
    optim.create_optimizer(lars_config, learning_rate_fn=lr, params=PARAMS),
    GRADS,
  )
  sgd = _updates(
    optim.create_optimizer(sgd_config, learning_rate_fn=lr, params=PARAMS),
    GRADS,
  )
  for step in range(2):
    for path in ONE_D:
      np.testing.assert_allclose(
        _leaf(lars[step], path), _leaf(sgd[step], path), rtol=1e-6
      )
  for path in MULTI_D:  # First step: trust ratio eta * |w| / |g + wd w|.
    w, g = _leaf(PARAMS, path), _leaf(GRADS[0], path)
    d = g + wd * w
    ratio = eta * np.linalg.norm(w) / np.linalg.norm(d)
    np.testing.assert_allclose(_leaf(lars[0], path), -lr * ratio * d, rtol=1e-5)


def test_grad_clip_norm():
  config = {
    "name": "sgd",
    "momentum": 0.0,
    "weight_decay": 0.0,
    "grad_clip_norm": 1.0,
  }
  tx = optim.create_optimizer(config, learning_rate_fn=1.0, params=PARAMS)
  (updates,) = _updates(tx, GRADS[:1])
  np.testing.assert_allclose(optax.tree.norm(updates), 1.0, rtol=1e-6)


def test_unknown_optimizer_lists_choices():
  with pytest.raises(ValueError) as error:
    optim.create_optimizer(
      {"name": "sdg", "weight_decay": 0.0}, learning_rate_fn=0.1, params=PARAMS
    )
  message = str(error.value)
  assert "['adamw', 'lars', 'sgd']" in message
  assert "Did you mean 'sgd'?" in message


def test_missing_key_is_named():
  with pytest.raises(ValueError, match="required key 'momentum'"):
    optim.create_optimizer(
      {"name": "sgd", "weight_decay": 0.0}, learning_rate_fn=0.1, params=PARAMS
    )
