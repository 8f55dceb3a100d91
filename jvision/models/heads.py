"""Heads that sit on backbone features: a linear classifier, an MLP projector.

`MLPHead` is SimCLR's projection head: Dense - BN - ReLU per hidden layer,
then a final Dense, optionally followed by a batch norm without scale or
centre. With batch norm on, the dense layers carry no bias (the norm's
centre replaces it). `ProjectedNetwork` is a backbone followed by the first
hidden layers of such a head (and a classifier): the network SimCLRv2
fine-tunes when it keeps part of the projection head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jvision.models.backbone import HEAD, PROJECTION


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
    out_dim: width of the output (the projection), e.g. 128; 0 or None
      ends the head after its hidden layers (no output layer).
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
  out_dim: int | None
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
      [N, out_dim] projections ([N, hidden_dims[-1]] without an output
      layer).
    """
    x = jnp.asarray(x, self.dtype)
    for i, dim in enumerate(self.hidden_dims):
      x = self._dense(dim, name=f"dense{i + 1}")(x)
      if self.use_bn:
        x = self._norm(train=train, name=f"bn{i + 1}")(x)
      x = nn.relu(x)
    if not self.out_dim:
      return x  # [N, hidden_dims[-1]]
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


class ProjectedNetwork(nn.Module):
  """A backbone, the first hidden layers of a SimCLR projection head, and
  optionally a linear classifier: SimCLRv2's fine-tuning "from a middle
  layer of the projection head" (its `ft_proj_selector`).

  Its variables are {BACKBONE: the backbone's, PROJECTION: {dense1, bn1,
  ...} named as in `MLPHead`, HEAD: the classifier's}, so the kept layers
  load from a SimCLR checkpoint's projection head by name
  (jvision/models/backbone.py).

  Attributes:
    backbone: a model built with num_classes=0 ([N, F] features).
    hidden_dims: widths of the kept layers (Dense - BN - ReLU each).
    num_classes: logits of the classifier; None or 0 returns the output of
      the kept layers (this network's pre-logits features).
    bn_axis_name: the pmap axis of the kept layers' batch norm.
    dtype: computation dtype; parameters stay float32.
  """

  backbone: nn.Module
  hidden_dims: Sequence[int]
  num_classes: int | None
  bn_axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Args: x [N, H, W, C] normalised images. Returns: [N, num_classes]
    logits, or [N, hidden_dims[-1]] features without a classifier."""
    features = self.backbone(x, train=train)  # [N, F]
    hidden = MLPHead(
      hidden_dims=tuple(self.hidden_dims),
      out_dim=None,
      bn_axis_name=self.bn_axis_name,
      dtype=self.dtype,
      name=PROJECTION,
    )(features, train=train)  # [N, hidden_dims[-1]]
    self.sow("intermediates", "pre_logits", hidden)
    if not self.num_classes:
      return hidden
    return nn.Dense(self.num_classes, dtype=self.dtype, name=HEAD)(hidden)
