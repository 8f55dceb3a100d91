"""Tests for jvision/checkpoint.py: real Orbax round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jvision import checkpoint
from jvision.train.state import TrainState


def _state(seed=0):
  params = {"w": jax.random.normal(jax.random.PRNGKey(seed), (3, 4))}
  return TrainState.create(
    apply_fn=None,
    params=params,
    tx=optax.sgd(0.1, momentum=0.9),
    batch_stats={"mean": jnp.arange(4.0)},
    rng=jax.random.PRNGKey(7),
  )


def test_save_and_restore_round_trip(tmp_path):
  state = _state()
  grads = {"w": jnp.ones((3, 4))}
  state = state.apply_gradients(grads=grads)  # non-trivial momentum
  ckpt = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2)
  ckpt.save(1, state, {"step": 1, "epoch": 0, "position": 32})
  ckpt.wait()
  restored = checkpoint.Checkpointer(str(tmp_path)).restore_or_init(_state(1))
  assert restored.source == "checkpoint step 1"
  assert restored.data == {"step": 1, "epoch": 0, "position": 32}
  for a, b in zip(
    jax.tree.leaves(state), jax.tree.leaves(restored.state), strict=True
  ):
    np.testing.assert_array_equal(a, b)


def test_empty_directory_means_scratch(tmp_path):
  fresh = _state()
  restored = checkpoint.Checkpointer(str(tmp_path)).restore_or_init(fresh)
  assert restored.source == "scratch" and restored.data is None
  assert restored.state is fresh


def test_keeps_the_newest_k(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2)
  for step in (1, 2, 3):
    ckpt.save(step, _state(), {"step": step})
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3]
  assert ckpt.latest_step() == 3
  raw = ckpt.restore_raw()
  assert set(raw) >= {"params", "opt_state", "step", "batch_stats", "rng"}
