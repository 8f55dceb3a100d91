"""Optax optimizers and learning-rate schedules built from a config section.

`create_optimizer` is the one place that reads the optimizer config. Its keys:

  name              "sgd" | "adamw" | "lars"                     (required)
  weight_decay      L2 (sgd, lars) or decoupled (adamw) factor   (required)
  momentum          sgd, lars                                    (required)
  nesterov          sgd; default False
  b1, b2, eps       adamw; defaults 0.9, 0.999, 1e-8
  trust_coefficient lars; default 0.001
  decay_bn_and_bias also decay 1-D parameters; default False
  bn_and_bias_lr_factor  learning-rate factor of 1-D parameters (batch-norm
                    scales and offsets, biases); default 1.0
  grad_clip_norm    clip gradients to this global norm; None (off) default

SGD uses the classic coupled L2 term (gradient + wd * param, then momentum),
as the ResNet and SimCLR recipes do; AdamW decays decoupled from the
moments; LARS (SimCLR) leaves batch-norm parameters and biases out of both
the weight decay and the trust-ratio adaptation.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax

SCHEDULES = ("cosine", "constant")
_REQUIRED = object()


def create_learning_rate_fn(
  *,
  base_learning_rate: float,
  num_train_steps: int,
  warmup_steps: int,
  schedule: str = "cosine",
  end_factor: float = 0.0,
) -> optax.Schedule:
  """Linear warmup from 0, then cosine decay (or a constant) to the end.

  Args:
    base_learning_rate: the peak rate, reached at step `warmup_steps`.
    num_train_steps: total steps; the cosine ends here at
      `end_factor * base_learning_rate` and stays there after.
    warmup_steps: steps of linear warmup, in [0, num_train_steps].
    schedule: "cosine" or "constant" (hold the peak after warmup).
    end_factor: final rate as a fraction of the peak (cosine only).

  Returns:
    A function from the integer step to the learning rate.
  """
  if schedule not in SCHEDULES:
    raise ValueError(
      f"Unknown schedule {schedule!r}; valid choices are {list(SCHEDULES)}."
    )
  if not 0 <= warmup_steps <= num_train_steps or num_train_steps <= 0:
    raise ValueError(
      f"Need 0 <= warmup_steps <= num_train_steps and num_train_steps > 0; "
      f"got warmup_steps={warmup_steps}, num_train_steps={num_train_steps}."
    )
  if schedule == "cosine":
    decay_steps = max(1, num_train_steps - warmup_steps)
    after = optax.cosine_decay_schedule(
      base_learning_rate, decay_steps, alpha=end_factor
    )
  else:
    after = optax.constant_schedule(base_learning_rate)
  if warmup_steps == 0:
    return after
  warmup = optax.linear_schedule(0.0, base_learning_rate, warmup_steps)
  return optax.join_schedules([warmup, after], [warmup_steps])


def weight_decay_mask(params: Any, *, decay_bn_and_bias: bool) -> Any:
  """Which parameters to decay (or adapt, for LARS).

  Args:
    params: a pytree of arrays (or `jax.ShapeDtypeStruct`s).
    decay_bn_and_bias: if True every leaf is True; else leaves with fewer
      than two dimensions (biases, batch-norm scales and offsets) are False.

  Returns:
    A pytree of Python bools with the structure of `params`.
  """
  return jax.tree.map(lambda p: decay_bn_and_bias or len(p.shape) > 1, params)


def _get(config: Mapping[str, Any], key: str, default: Any = _REQUIRED):
  """`config.get(key, default)`, raising a named error if a key is required."""
  value = config.get(key, default)
  if value is _REQUIRED:
    raise ValueError(
      f"Optimizer config lacks the required key {key!r} for optimizer "
      f"{config.get('name')!r}; it has {sorted(config.keys())}."
    )
  return value


def _decay_mask(config, params):
  decay_bn_and_bias = _get(config, "decay_bn_and_bias", False)
  return weight_decay_mask(params, decay_bn_and_bias=decay_bn_and_bias)


def _sgd(config, learning_rate_fn, params):
  """L2 added to the gradient, then heavy-ball (or Nesterov) SGD."""
  return optax.chain(
    optax.add_decayed_weights(
      _get(config, "weight_decay"), mask=_decay_mask(config, params)
    ),
    optax.sgd(
      learning_rate_fn,
      momentum=_get(config, "momentum"),
      nesterov=_get(config, "nesterov", False),
    ),
  )


def _adamw(config, learning_rate_fn, params):
  """Adam with decoupled weight decay."""
  return optax.adamw(
    learning_rate_fn,
    b1=_get(config, "b1", 0.9),
    b2=_get(config, "b2", 0.999),
    eps=_get(config, "eps", 1e-8),
    weight_decay=_get(config, "weight_decay"),
    mask=_decay_mask(config, params),
  )


def _lars(config, learning_rate_fn, params):
  """LARS; 1-D parameters are never trust-ratio adapted (SimCLR)."""
  return optax.lars(
    learning_rate_fn,
    weight_decay=_get(config, "weight_decay"),
    weight_decay_mask=_decay_mask(config, params),
    trust_coefficient=_get(config, "trust_coefficient", 0.001),
    trust_ratio_mask=weight_decay_mask(params, decay_bn_and_bias=False),
    momentum=_get(config, "momentum"),
  )


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
  "sgd": _sgd,
  "adamw": _adamw,
  "lars": _lars,
}


def create_optimizer(
  config: Mapping[str, Any],
  *,
  learning_rate_fn: optax.Schedule | float,
  params: Any,
) -> optax.GradientTransformation:
  """Builds the optimizer that `config` names (keys in the module docstring).

  Args:
    config: the optimizer section, an `ml_collections.ConfigDict` or a dict.
    learning_rate_fn: a schedule (see `create_learning_rate_fn`) or a float.
    params: the parameters (or their shapes) the masks are computed from.

  Returns:
    The optax transformation, gradient clipping first when configured.

  Raises:
    ValueError: for an unknown optimizer name or a missing required key.
  """
  name = _get(config, "name")
  if name not in OPTIMIZERS:
    hint = difflib.get_close_matches(str(name), OPTIMIZERS, n=1)
    raise ValueError(
      f"Unknown optimizer name={name!r}; valid choices are "
      f"{sorted(OPTIMIZERS)}." + (f" Did you mean {hint[0]!r}?" if hint else "")
    )
  tx = OPTIMIZERS[name](config, learning_rate_fn, params)
  factor = _get(config, "bn_and_bias_lr_factor", 1.0)
  if factor != 1.0:
    decayed = weight_decay_mask(params, decay_bn_and_bias=False)
    scales = jax.tree.map(lambda d: 1.0 if d else factor, decayed)
    tx = optax.chain(tx, scale_by_tree(scales))
  clip = _get(config, "grad_clip_norm", None)
  if clip is None:
    return tx
  return optax.chain(optax.clip_by_global_norm(clip), tx)


def scale_by_tree(scales: Any) -> optax.GradientTransformation:
  """Multiplies each update by its leaf of `scales` (a pytree of floats).

  Chained after an optimizer this is a per-parameter learning-rate factor
  (exact for SGD, AdamW and LARS, whose last step is the learning rate): 1
  for a new head, e.g. 0.1 for a pretrained backbone, 0 for frozen layers.
  """

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(lambda u, s: u * s, updates, scales), state

  return optax.GradientTransformation(init_fn, update_fn)
