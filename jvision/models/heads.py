"""Heads that sit on backbone features: a linear classifier, an MLP projector.

`MLPHead` is SimCLR's projection head: Dense - BN - ReLU per hidden layer,
then a final Dense, optionally followed by a batch norm without scale or
centre. With batch norm on, the dense layers carry no bias (the norm's
centre replaces it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class LinearHead(nn.Module):
  """A single dense layer: the classifier of a linear probe or fine-tune.

  Attributes:
    num_classes: number of logits.
    dtype: computation dtype; parameters stay in `param_dtype`.
    param_dtype: dtype of the parameters.
  """

  num_classes: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool = False) -> jnp.ndarray:
    """Args: x [N, D] features; train unused. Returns: [N, num_classes]."""
    del train  # Same computation in training and evaluation.
    dense = nn.Dense(
      self.num_classes,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="dense",
    )
    return dense(jnp.asarray(x, self.dtype))


class MLPHead(nn.Module):
  """SimCLR's projection head.

  Attributes:
    hidden_dims: width of each hidden layer, e.g. (2048,) for SimCLR v1.
    out_dim: width of the output (the projection), e.g. 128.
    use_bn: batch norm after each hidden dense layer (and allows
      `final_bn`); dense layers followed by batch norm have no bias.
    final_bn: batch norm without scale or centre after the last dense
      layer (only when `use_bn`).
    bn_axis_name: the pmap axis to average batch statistics over (None under
      jit, where batch norm already sees the global batch).
    dtype: computation dtype; parameters stay in `param_dtype`.
    param_dtype: dtype of the parameters.
  """

  hidden_dims: Sequence[int]
  out_dim: int
  use_bn: bool = True
  final_bn: bool = True
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Projects features.

    Args:
      x: [N, D] backbone features.
      train: use batch statistics and update the running averages
        (`mutable=["batch_stats"]`), else use the running averages.

    Returns:
      [N, out_dim] projections.
    """
    x = jnp.asarray(x, self.dtype)
    for i, dim in enumerate(self.hidden_dims):
      x = self._dense(dim, name=f"dense{i + 1}")(x)
      if self.use_bn:
        x = self._norm(train=train, name=f"bn{i + 1}")(x)
      x = nn.relu(x)
    last_bn = self.use_bn and self.final_bn
    x = self._dense(self.out_dim, name="dense_out", use_bias=not last_bn)(x)
    if last_bn:
      x = self._norm(train=train, name="bn_out", affine=False)(x)
    return x  # [N, out_dim]

  def _dense(self, features, *, name, use_bias=None):
    return nn.Dense(
      features,
      use_bias=not self.use_bn if use_bias is None else use_bias,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=name,
    )

  def _norm(self, *, train, name, affine=True):
    return nn.BatchNorm(
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      use_scale=affine,
      use_bias=affine,
      axis_name=self.bn_axis_name,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=name,
    )
