"""Where each tensor of another library's ResNet goes in jvision's ResNet.

Pure name mapping, no arrays: `torchvision_target("layer1.0.conv1.weight")`
and `keras_target("conv2_block1_1_conv/kernel")` give a `Target` (the
collection, the path in it, how the array changes), or None for a name the
layout does not have. Keras 3's `.weights.h5` numbers layers instead of
naming them; `keras3_names` turns those numbers back into names.

torchvision / timm: conv1, bn1, layer{i}.{j}.conv{k} / bn{k},
layer{i}.{j}.downsample.0 / .1, fc; conv kernels OIHW -> HWIO, fc's [K, C]
-> [C, K]; batch-norm weight / bias / running_mean / running_var -> scale /
bias / mean / var (num_batches_tracked has no place). Keras's ResNet50:
conv1_conv / conv1_bn, conv{s}_block{b}_{k}_conv / _bn (k = 0 is the
projection), predictions; kernels are HWIO already, gamma / beta /
moving_mean / moving_variance -> scale / bias / mean / var.
"""

from __future__ import annotations

import dataclasses
import re

from jvision import models

HEAD = models.HEAD


@dataclasses.dataclass(frozen=True)
class Target:
  """Where one file tensor goes: collection, path in it, how it changes."""

  collection: str  # "params" or "batch_stats"
  path: str  # "stage1_block1/conv1/kernel"
  transform: str = "none"  # "none", "oihw_to_hwio" or "transpose"


# --- torchvision / timm names ---------------------------------------------

_TORCH_BN_LEAVES = {
  "weight": ("params", "scale"),
  "bias": ("params", "bias"),
  "running_mean": ("batch_stats", "mean"),
  "running_var": ("batch_stats", "var"),
}
TORCH_IGNORED = re.compile(r".*num_batches_tracked$")
_TORCH_MODULE = re.compile(
  r"^(?:layer(?P<stage>\d)\.(?P<block>\d+)\.)?"
  r"(?P<module>conv\d|bn\d|downsample\.[01]|fc)\.(?P<leaf>\w+)$"
)


def torchvision_target(name: str) -> Target | None:
  """The jvision target of a torchvision/timm ResNet tensor, or None."""
  match = _TORCH_MODULE.match(name)
  if match is None:
    return None
  stage, block, module, leaf = match.group("stage", "block", "module", "leaf")
  if stage is None:
    prefix = {"conv1": "stem_conv", "bn1": "stem_bn", "fc": HEAD}.get(module)
  elif module == "fc":
    prefix = None
  else:
    layer = {"downsample.0": "proj_conv", "downsample.1": "proj_bn"}.get(
      module, module
    )
    prefix = f"stage{stage}_block{int(block) + 1}/{layer}"
  if prefix is None:
    return None
  if prefix == HEAD:
    leaves = {"weight": "kernel", "bias": "bias"}
    if leaf not in leaves:
      return None
    transform = "transpose" if leaf == "weight" else "none"
    return Target("params", f"{HEAD}/{leaves[leaf]}", transform)
  if module.startswith("conv") or module == "downsample.0":
    if leaf != "weight":
      return None
    return Target("params", f"{prefix}/kernel", "oihw_to_hwio")
  if leaf not in _TORCH_BN_LEAVES:
    return None
  collection, jleaf = _TORCH_BN_LEAVES[leaf]
  return Target(collection, f"{prefix}/{jleaf}")


# --- Keras names -------------------------------------------------------------

_KERAS_BN_LEAVES = {
  "gamma": ("params", "scale"),
  "beta": ("params", "bias"),
  "moving_mean": ("batch_stats", "mean"),
  "moving_variance": ("batch_stats", "var"),
}
_KERAS_LAYER = re.compile(r"^conv(?P<stage>\d)_block(?P<block>\d+)_(?P<k>\d)_")
# Keras 3 .weights.h5 lists each layer's weights by position, in this order.
_KERAS_WEIGHT_ORDER = {
  "conv2d": ("kernel", "bias"),
  "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
  "dense": ("kernel", "bias"),
}
KERAS_HEAD = "predictions"  # keras.applications.ResNet50's classifier
_KERNEL_BIAS = ("kernel", "bias")  # a Keras conv's or dense layer's weights


def keras_target(name: str) -> Target | None:
  """The jvision target of a Keras ResNet tensor "LAYER/WEIGHT", or None."""
  layer, _, leaf = name.rpartition("/")
  if layer == KERAS_HEAD:
    return Target("params", f"{HEAD}/{leaf}") if leaf in _KERNEL_BIAS else None
  kind = layer.rsplit("_", 1)[-1]
  if layer in ("conv1_conv", "conv1_bn"):
    prefix = "stem_conv" if kind == "conv" else "stem_bn"
  else:
    match = _KERAS_LAYER.match(layer)
    if match is None or kind not in ("conv", "bn"):
      return None
    stage, block, k = (int(g) for g in match.group("stage", "block", "k"))
    inner = f"proj_{kind}" if k == 0 else f"{kind}{k}"
    prefix = f"stage{stage - 1}_block{block}/{inner}"
  if kind == "conv":
    return (
      Target("params", f"{prefix}/{leaf}") if leaf in _KERNEL_BIAS else None
    )
  if leaf not in _KERAS_BN_LEAVES:
    return None
  collection, jleaf = _KERAS_BN_LEAVES[leaf]
  return Target(collection, f"{prefix}/{jleaf}")


def keras_layer_order(stage_sizes) -> dict[str, list[str]]:
  """Keras ResNet50's layer names by class, in its `model.layers` order.

  Keras 3's `.weights.h5` calls the i-th Conv2D layer "conv2d_i" ("conv2d"
  for the first), and so on for each class; this order turns those back into
  names. Within a first block of a stage Keras lists the 1x1, the 3x3, the
  projection, then the expanding 1x1 (convs, and batch norms alike).
  """
  order = ["conv1"]
  for s, blocks in enumerate(stage_sizes, start=2):
    for b in range(1, blocks + 1):
      ks = (1, 2, 0, 3) if b == 1 else (1, 2, 3)
      order += [f"conv{s}_block{b}_{k}" for k in ks]
  return {
    "conv2d": [f"{name}_conv" for name in order],
    "batch_normalization": [f"{name}_bn" for name in order],
    "dense": [KERAS_HEAD],
  }


def keras3_names(tensors: dict, stage_sizes) -> dict:
  """Keras 3 "conv2d_3/0"-style names turned into "LAYER/WEIGHT" names.

  Names of legacy files ("conv1_conv/kernel") and ones beyond the model's
  layers pass through unchanged (and are later reported as unexpected).
  """
  order = keras_layer_order(stage_sizes)
  out = {}
  for name, array in tensors.items():
    layer, _, index = name.rpartition("/")
    match = re.fullmatch(r"([a-z0-9_]+?)(?:_(\d+))?", layer)
    kind, number = match.groups() if match else (None, None)
    names = order.get(kind, [])
    i = int(number or 0)
    if index.isdigit() and i < len(names):
      weights = _KERAS_WEIGHT_ORDER[kind]
      if int(index) < len(weights):
        name = f"{names[i]}/{weights[int(index)]}"
    out[name] = array
  return out
