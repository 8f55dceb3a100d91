"""The train state shared by every trainer."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from jvision import optim, xla_defaults


class TrainState(train_state.TrainState):
  """Flax's TrainState plus batch-norm statistics and the run's PRNG key.

  `rng` is the run's root key; each step derives its own with
  `jax.random.fold_in(rng, step)`, so resuming needs no extra RNG state.
  """

  batch_stats: Any
  rng: jax.Array


def init_variables(model, *, image_shape, rng: jax.Array) -> dict:
  """Initial {"params", "batch_stats"} of `model` for images [H, W, C]."""
  x = jnp.zeros((1, *image_shape), jnp.float32)
  # One compiled program for the whole initialisation: eagerly, XLA:CPU
  # compiles every initializer of every shape on its own (a
  # random.normal takes 2 s to compile on a 2-core CPU). It runs once, so
  # it is compiled for compile time (xla_defaults.one_shot_options).
  init = xla_defaults.compile_once(
    lambda key: model.init({"params": key}, x, train=False), rng
  )
  variables = init(rng)
  return {
    "params": variables["params"],
    "batch_stats": variables.get("batch_stats", {}),
  }


def create_train_state(
  config,
  model,
  *,
  image_shape,
  learning_rate_fn,
  init_fn=None,
  update_scales_fn=None,
) -> TrainState:
  """A fresh state: initial parameters from `config.seed`, optimizer, rng.

  Args:
    config: the run's config (seed, optimizer).
    model: the flax module.
    image_shape: [H, W, C] of one input image.
    learning_rate_fn: the schedule.
    init_fn: optional `variables -> variables`, e.g. loading pretrained
      weights into the fresh ones.
    update_scales_fn: optional `params -> pytree of floats`, per-parameter
      learning-rate factors (`optim.scale_by_tree`).
  """
  init_rng, run_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  variables = init_variables(model, image_shape=image_shape, rng=init_rng)
  if init_fn is not None:
    variables = init_fn(variables)
  tx = optim.create_optimizer(
    config.optimizer,
    learning_rate_fn=learning_rate_fn,
    params=variables["params"],
  )
  if update_scales_fn is not None:
    tx = optax.chain(
      tx, optim.scale_by_tree(update_scales_fn(variables["params"]))
    )
  # TrainState.create's `tx.init`, as one program: eagerly, every
  # parameter shape compiled its own zeros (~20 programs for a ResNet-18).
  params = variables["params"]
  opt_state = xla_defaults.compile_once(tx.init, params)(params)
  return TrainState(
    step=0,
    apply_fn=model.apply,
    params=params,
    tx=tx,
    opt_state=opt_state,
    batch_stats=variables["batch_stats"],
    rng=run_rng,
  )
