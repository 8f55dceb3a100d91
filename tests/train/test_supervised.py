"""Tests for jvision/train/supervised.py and the shared loop."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from jvision import checkpoint, models
from jvision.train import loop, supervised


def test_smoke_run_leaves_a_complete_workdir(trained_workdir):
  record = json.loads((trained_workdir / "config.json").read_text())
  assert record["config"]["model"]["name"] == "cnn"
  assert record["versions"]["jax"] == jax.__version__
  assert "git_revision" in record
  lines = (trained_workdir / "metrics.jsonl").read_text().splitlines()
  records = [json.loads(line) for line in lines]
  train = [r for r in records if r["split"] == "train"]
  test = [r for r in records if r["split"] == "test"]
  assert [r["step"] for r in train] == [2, 3, 4, 6]  # log every 2 + saves
  assert [r["step"] for r in test] == [3, 6]
  assert all(np.isfinite(r["loss"]) for r in records)
  assert {
    "loss",
    "accuracy",
    "learning_rate",
    "images_per_sec",
    "data_wait_fraction",
  } <= set(train[0])
  assert all(0.0 <= r["data_wait_fraction"] <= 1.0 for r in train)
  ckpt = checkpoint.Checkpointer(str(trained_workdir / "checkpoints"))
  assert ckpt.all_steps() == [3, 6]
  assert any((trained_workdir / "tensorboard").iterdir())


def _final_params(workdir):
  raw = checkpoint.Checkpointer(str(workdir / "checkpoints")).restore_raw()
  return raw["params"], raw["opt_state"]


def test_resumed_run_matches_uninterrupted_run(tmp_path):
  overrides = {
    "optimizer.schedule": "constant",
    "eval_every_steps": 0,
    "checkpoint_every_steps": 0,
  }
  whole = tiny_config(num_train_steps=6, **overrides)
  supervised.train_and_evaluate(whole, str(tmp_path / "whole"))
  first = tiny_config(num_train_steps=3, **overrides)
  supervised.train_and_evaluate(first, str(tmp_path / "split"))
  result = supervised.train_and_evaluate(whole, str(tmp_path / "split"))
  assert result["source"] == "checkpoint step 3"
  a, b = _final_params(tmp_path / "whole"), _final_params(tmp_path / "split")
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_non_finite_loss_names_the_steps(tmp_path):
  config = tiny_config(**{"data.std": (0.0,), "eval_every_steps": 0})
  with pytest.raises(loop.NonFiniteLossError, match=r"steps 1\.\.2"):
    supervised.train_and_evaluate(config, str(tmp_path / "nan"))
  assert not (tmp_path / "nan" / "checkpoints").exists() or not list(
    (tmp_path / "nan" / "checkpoints").glob("[0-9]*")
  )


def test_refuses_a_foreign_directory(tmp_path):
  (tmp_path / "mine.txt").write_text("user data")
  with pytest.raises(FileExistsError, match="not a jvision workdir"):
    supervised.train_and_evaluate(tiny_config(), str(tmp_path))
  assert (tmp_path / "mine.txt").read_text() == "user data"


def test_resuming_with_another_config_lists_differences(trained_workdir):
  config = tiny_config(batch_size=16)
  with pytest.raises(ValueError, match=r"batch_size: 32 -> 16"):
    supervised.train_and_evaluate(config, str(trained_workdir))


@pytest.mark.devices(8)
def test_batch_size_must_split_over_devices(tmp_path):
  with pytest.raises(ValueError, match="batch_size=30 must be divisible"):
    supervised.train_and_evaluate(
      tiny_config(batch_size=30), str(tmp_path / "wd")
    )


@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      {"num_train_steps": 4, "optimizer.warmup_steps": 20},
      r"config.optimizer.warmup_steps=20 must be between 0 and "
      r"config.num_train_steps=4",
    ),
    (  # a split the source lacks: the key that asked for it, and choices
      {"data.eval_split": "val"},
      r"config.data.eval_split='val': mnist has splits \['train', 'test'\], "
      r"not 'val'; set --config.data.eval_split to one of",
    ),
  ],
  ids=["warmup", "split"],
)
def test_config_error_names_the_key_and_leaves_no_trace(
  tmp_path, overrides, message
):
  with pytest.raises(ValueError, match=message):
    supervised.train_and_evaluate(
      tiny_config(**overrides), str(tmp_path / "wd")
    )
  assert not (tmp_path / "wd").exists()


def _one_step_params(tmp_path, name, **overrides):
  config = tiny_config(
    num_train_steps=1,
    eval_every_steps=0,
    checkpoint_every_steps=1,
    **overrides,
  )
  result = supervised.train_and_evaluate(config, str(tmp_path / name))
  return _final_params(tmp_path / name), result


def test_gradient_accumulation_equals_the_whole_batch(tmp_path):
  # The seed CNN has no batch norm: 4 micro-batches of 8 = one batch of 32.
  whole, a = _one_step_params(tmp_path, "whole")
  accumulated, b = _one_step_params(tmp_path, "accum", grad_accum_steps=4)
  np.testing.assert_allclose(b["train"]["loss"], a["train"]["loss"], rtol=1e-5)
  for x, y in zip(
    jax.tree.leaves(whole), jax.tree.leaves(accumulated), strict=True
  ):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_accumulation_must_split_the_batch(tmp_path):
  with pytest.raises(ValueError, match="grad_accum_steps=3 must be"):
    supervised.train_and_evaluate(
      tiny_config(grad_accum_steps=3), str(tmp_path / "bad")
    )


def test_bfloat16_computes_in_bf16_with_float32_state(tmp_path):
  config = tiny_config(dtype="bfloat16", eval_every_steps=3)
  result = supervised.train_and_evaluate(config, str(tmp_path / "bf16"))
  assert np.isfinite(result["train"]["loss"])
  raw = checkpoint.Checkpointer(
    str(tmp_path / "bf16" / "checkpoints")
  ).restore_raw()
  for leaf in jax.tree.leaves((raw["params"], raw["opt_state"])):
    if np.issubdtype(np.asarray(leaf).dtype, np.floating):
      assert np.asarray(leaf).dtype == np.float32
  model = models.create_model("cnn", num_classes=10, dtype=jnp.bfloat16)
  logits = model.apply(
    {"params": raw["params"]}, jnp.zeros((2, 28, 28, 1)), train=False
  )
  assert logits.dtype == jnp.bfloat16


def test_unknown_dtype_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="config.dtype='float16'; use one of"):
    supervised.train_and_evaluate(
      tiny_config(dtype="float16"), str(tmp_path / "bad")
    )


def test_unknown_data_feed_is_an_error_before_anything_is_written(tmp_path):
  with pytest.raises(ValueError, match="config.data.feed='gpu'; use one of"):
    supervised.train_and_evaluate(
      tiny_config(**{"data.feed": "gpu"}), str(tmp_path / "bad")
    )
  assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", "lars"])
def test_the_first_optimizer_state_is_the_optimizers_own_init(optimizer):
  """create_train_state compiles `tx.init` as one program; its state must be
  what optax's eager `init` gives, leaf for leaf."""
  config = tiny_config()
  config.optimizer.name = optimizer
  model = models.create_model(
    config.model.name, num_classes=10, **models.config_kwargs(config.model)
  )
  state = supervised.create_train_state(
    config, model, image_shape=(28, 28, 1), learning_rate_fn=lambda step: 0.1
  )
  eager = state.tx.init(state.params)
  assert jax.tree.structure(state.opt_state) == jax.tree.structure(eager)
  for got, want in zip(
    jax.tree.leaves(state.opt_state), jax.tree.leaves(eager), strict=True
  ):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
  assert state.step == 0 and isinstance(state.step, int)
