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


def _corrupt(step_dir):
  """Truncates every data file of a saved state (a torn write)."""
  for path in (step_dir / "state").rglob("*"):
    if path.is_file() and path.name != "commit_success.txt":
      path.write_bytes(path.read_bytes()[:7])


def test_unreadable_newest_checkpoint_falls_back_and_is_kept(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  good, newer = _state(1), _state(2)
  ckpt.save(1, good, {"step": 1})
  ckpt.save(2, newer, {"step": 2})
  ckpt.wait()
  _corrupt(tmp_path / "checkpoints" / "2")
  reader = checkpoint.Checkpointer(str(tmp_path / "checkpoints"))
  restored = reader.restore_or_init(_state(3))
  assert restored.source == "checkpoint step 1"
  assert restored.data == {"step": 1}
  np.testing.assert_array_equal(restored.state.params["w"], good.params["w"])
  [(step, moved, error)] = restored.unreadable
  assert step == 2 and error
  # Nothing deleted: the torn checkpoint sits beside, out of the way.
  assert moved == str(tmp_path / "checkpoints_unreadable" / "2")
  assert (tmp_path / "checkpoints_unreadable" / "2" / "state").is_dir()
  assert reader.all_steps() == [1]
  # The resumed run can save step 2 again.
  reader.save(2, newer, {"step": 2})
  reader.wait()
  assert reader.all_steps() == [1, 2]


def test_all_unreadable_means_scratch(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path / "c"))
  ckpt.save(5, _state(), {"step": 5})
  ckpt.wait()
  _corrupt(tmp_path / "c" / "5")
  fresh = _state(4)
  restored = checkpoint.Checkpointer(str(tmp_path / "c")).restore_or_init(fresh)
  assert restored.source == "scratch" and restored.state is fresh
  assert [s for s, _, _ in restored.unreadable] == [5]
