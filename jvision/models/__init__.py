"""Image models (flax.linen modules only) and the registry that builds them.

Every model follows one contract: `model.apply(variables, x, train=...)`
takes normalised float images x [N, H, W, C] and returns logits
[N, num_classes], or the pre-logits features when `num_classes` is None or
0. Models record the "pre_logits" intermediate (ResNets also "stage1".."stage4")
for callers that pass `mutable=["intermediates"]`. Models never read configs:
a trainer passes the config's `model` section, minus `name`
(`config_kwargs`), as keyword arguments to `create_model`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jvision.models.backbone import (
  BACKBONE,
  HEAD,
  PROJECTION,
  backbone_variables,
  has_head,
  hidden_projection_layers,
  is_head,
)
from jvision.models.cnn import SeedCNN
from jvision.models.fast_cifar import FastCIFARNet
from jvision.models.heads import LinearHead, MLPHead, ProjectedNetwork
from jvision.models.resnet import (
  BasicBlock,
  BottleneckBlock,
  ResNet,
  ResNet18,
  ResNet34,
  ResNet50,
  ResNet50Keras,
  ResNetTiny,
)

__all__ = [
  "BACKBONE",
  "HEAD",
  "MODELS",
  "PROJ_HIDDEN_DIMS",
  "PROJECTION",
  "BasicBlock",
  "BottleneckBlock",
  "FastCIFARNet",
  "LinearHead",
  "MLPHead",
  "ProjectedNetwork",
  "ResNet",
  "ResNet18",
  "ResNet34",
  "ResNet50",
  "ResNet50Keras",
  "ResNetTiny",
  "SeedCNN",
  "backbone_variables",
  "config_kwargs",
  "count_params",
  "create_backbone",
  "create_classifier",
  "create_model",
  "has_head",
  "hidden_projection_layers",
  "is_head",
  "model_fields",
]

MODELS: dict[str, Callable[..., nn.Module]] = {
  "cnn": SeedCNN,
  "fast_cifar": FastCIFARNet,
  "resnet18": ResNet18,
  "resnet34": ResNet34,
  "resnet50": ResNet50,
  "resnet50_keras": ResNet50Keras,
  "resnet_tiny": ResNetTiny,
}

# Module fields that are flax plumbing, not model hyper-parameters.
_NOT_HYPERPARAMETERS = ("parent", "name")
# The `model` key (every registered model takes it) of the projection-head
# layers a network keeps between its backbone and its classifier: their
# widths, () for none (`ProjectedNetwork`, jvision/models/heads.py).
PROJ_HIDDEN_DIMS = "proj_hidden_dims"


def _hyperparameters(factory: Callable[..., nn.Module]) -> list[str]:
  """The keyword arguments a registered model class or partial accepts."""
  cls = factory.func if isinstance(factory, functools.partial) else factory
  fields = dataclasses.fields(cls)
  names = [f.name for f in fields if f.name not in _NOT_HYPERPARAMETERS]
  return sorted([*names, PROJ_HIDDEN_DIMS])


def _unknown_name_error(name: str) -> ValueError:
  hint = difflib.get_close_matches(name, MODELS, n=1)
  did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
  return ValueError(
    f"Unknown model {name!r}; valid names are {sorted(MODELS)}.{did_you_mean}"
  )


def model_fields(name: str) -> list[str]:
  """The keyword arguments the registered model `name` accepts."""
  if name not in MODELS:
    raise _unknown_name_error(name)
  return _hyperparameters(MODELS[name])


def config_kwargs(model_section) -> dict:
  """The `create_model` keyword arguments in a config's `model` section:
  every field but `name`."""
  return {k: v for k, v in model_section.items() if k != "name"}


def create_model(
  name: str, *, num_classes: int | None, dtype: Any = jnp.float32, **kwargs
) -> nn.Module:
  """Builds a registered model.

  Args:
    name: a key of `MODELS`, e.g. "resnet18".
    num_classes: number of logits; None or 0 builds a backbone that returns
      its pre-logits features.
    dtype: computation dtype (parameters stay float32).
    **kwargs: further fields of the model, e.g. `width`, `stem`,
      `zero_init_residual` for the ResNets; `proj_hidden_dims` (any model)
      puts that many Dense-BN-ReLU layers of the given widths between the
      backbone and the classifier (a `ProjectedNetwork`).

  Returns:
    The (unbound) flax module.

  Raises:
    ValueError: for an unknown name (listing the valid names and the closest
      match) or a keyword the model does not have (listing those it has).
  """
  if name not in MODELS:
    raise _unknown_name_error(name)
  factory = MODELS[name]
  valid = _hyperparameters(factory)
  unknown = sorted(set(kwargs) - set(valid))
  if unknown:
    raise ValueError(
      f"Model {name!r} has no argument(s) {unknown}; valid arguments are "
      f"{valid}."
    )
  hidden_dims = tuple(kwargs.pop(PROJ_HIDDEN_DIMS, None) or ())
  if not hidden_dims:
    return factory(num_classes=num_classes, dtype=dtype, **kwargs)
  return ProjectedNetwork(
    backbone=factory(num_classes=0, dtype=dtype, **kwargs),
    hidden_dims=hidden_dims,
    num_classes=num_classes,
    bn_axis_name=kwargs.get("bn_axis_name"),
    dtype=dtype,
  )


def create_backbone(model_section, *, dtype: Any = jnp.float32) -> nn.Module:
  """The backbone of a config's `model` section: its model built with
  num_classes=0, returning pooled features [N, F]. Its variables are
  `backbone_variables` of the whole network's (jvision/models/backbone.py).
  """
  return create_model(
    model_section.name,
    num_classes=0,
    dtype=dtype,
    **config_kwargs(model_section),
  )


def create_classifier(
  model_section, num_classes: int, *, dtype: Any = jnp.float32
) -> nn.Module:
  """The classifier of a config's `model` section: backbone + `HEAD` with
  `num_classes` logits."""
  return create_model(
    model_section.name,
    num_classes=num_classes,
    dtype=dtype,
    **config_kwargs(model_section),
  )


def count_params(params) -> int:
  """Number of scalars in a pytree of arrays (or of `jax.ShapeDtypeStruct`s).

  Args:
    params: e.g. `variables["params"]`, possibly from `jax.eval_shape`.

  Returns:
    The total element count over all leaves.
  """
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
