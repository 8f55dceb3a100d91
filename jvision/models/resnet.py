"""ResNet family (v1.5, the torchvision layout, and Keras's v1) in flax.linen.

The block structure matches torchvision so parameter counts agree:
ResNet-18 with the CIFAR stem and 10 classes has 11,173,962 parameters,
ResNet-50 with the ImageNet stem and 1000 classes has 25,557,032. As in
torchvision, a bottleneck block strides on its 3x3 conv, convs have no bias
(batch norm follows) and a 1x1 conv + batch norm projection shortcut is used
whenever a block changes the shape. Convs use torchvision's explicit padding,
so odd spatial sizes (e.g. 28 -> 14 -> 7 -> 4) line up on both branches.

On XLA:CPU each conv's input passes through `jax.lax.optimization_barrier`
(see `fence_conv_inputs`): without it XLA fuses the whole batch-norm - ReLU -
residual chain into the layout transposes of the weight-gradient convs and
recomputes it there, 140-210 ms per 32 MB transpose instead of ~22 ms; with
it (and the XLA flag in jvision/xla_defaults.py that keeps barriers through
compilation) the ResNet-18 train step runs ~1.25x faster. Values are the same.

`ResNet50Keras` is the layout of `keras.applications.ResNet50` (ResNet v1):
a bottleneck strides on its first 1x1 conv (and its projection), convs have
biases, batch norm uses epsilon 1.001e-5. With its 1000-class head it has
25,583,592 parameters and 53,120 batch statistics, the 25,636,712 that Keras
counts (Keras counts the moving means and variances as weights). Its stem
(zero padding 3, 7x7 conv, zero padding 1, 3x3 max-pool) computes what the
torchvision stem does: the pooled values follow a ReLU, so zero padding and
-inf padding give the same maxima.

Recorded intermediates (read them with `mutable=["intermediates"]`; each is
a 1-tuple, flax's `sow` convention): "stage1".."stage4", the [N, h, w, C]
output of each stage, and "pre_logits", the [N, C] globally pooled features.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

BASE_WIDTHS = (64, 128, 256, 512)
STEMS = ("cifar", "small", "imagenet")

# He (fan-out) init for convs, as torchvision does.
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def scaled_width(base: int, width: float) -> int:
  """Channels for a base width under a width multiplier.

  Truncates `base * width` to an int (any multiplier that should give an
  integer, i.e. k / base, is exact in floating point) and keeps at least one
  channel.

  Args:
    base: channels at width 1.0 (64, 128, 256 or 512).
    width: the multiplier, e.g. 0.125 for the test-sized ResNetTiny.

  Returns:
    max(1, int(base * width)).
  """
  return max(1, int(base * width))


def fence_by_default() -> bool:
  """Whether conv inputs are fenced when `fence_conv_inputs` is None: on the
  CPU backend, where it was measured (benchmarks/NOTES.md); elsewhere XLA
  keeps its own fusion choices."""
  return jax.default_backend() == "cpu"


class _Layers(nn.Module):
  """Shared fields and layer factories of the blocks and the ResNet.

  Attributes:
    dtype: computation dtype.
    param_dtype: dtype of the parameters (and batch statistics).
    bn_axis_name: the pmap axis to average batch statistics over.
    fence_conv_inputs: put an optimization barrier on each conv's input, so
      XLA materialises it once instead of fusing its producers into every
      consumer; None: `fence_by_default()`.
    conv_bias: give every conv a bias (Keras's layout; torchvision has none).
    norm_epsilon: batch norm's epsilon (torchvision 1e-5, Keras 1.001e-5).
  """

  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  bn_axis_name: str | None = None
  fence_conv_inputs: bool | None = None
  conv_bias: bool = False
  norm_epsilon: float = 1e-5

  def conv(self, features, kernel, strides=1, *, name):
    """A conv with torchvision's symmetric padding (kernel // 2 a side)."""
    pad = kernel // 2
    layer = nn.Conv(
      features,
      (kernel, kernel),
      strides=(strides, strides),
      padding=((pad, pad), (pad, pad)),
      use_bias=self.conv_bias,
      kernel_init=conv_init,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=name,
    )
    fence = self.fence_conv_inputs
    if not (fence_by_default() if fence is None else fence):
      return layer
    return lambda x: layer(jax.lax.optimization_barrier(x))

  def norm(self, *, train, name, zero_scale=False):
    """Batch norm with torchvision's momentum (0.1 there, 0.9 here)."""
    return nn.BatchNorm(
      use_running_average=not train,
      momentum=0.9,
      epsilon=self.norm_epsilon,
      scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
      axis_name=self.bn_axis_name,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name=name,
    )


class _Block(_Layers):
  """Fields and shortcut shared by BasicBlock and BottleneckBlock.

  Attributes:
    filters: the block's inner width; it outputs `filters * expansion`.
    strides: spatial stride of the block (1 or 2).
    zero_init_residual: start the last batch norm's scale at zero, so the
      block is the identity at init (Goyal et al., 2017).
    stride_in_1x1: a bottleneck strides on its first 1x1 conv (ResNet v1,
      Keras) instead of its 3x3 conv (v1.5, torchvision).
  """

  expansion: ClassVar[int] = 1
  filters: int = 64
  strides: int = 1
  zero_init_residual: bool = False
  stride_in_1x1: bool = False

  def shortcut(self, x, *, train):
    """Identity, or a 1x1 conv + batch norm projection if shapes change."""
    out = self.filters * self.expansion
    if self.strides == 1 and x.shape[-1] == out:
      return x
    x = self.conv(out, 1, self.strides, name="proj_conv")(x)
    return self.norm(train=train, name="proj_bn")(x)


class BasicBlock(_Block):
  """Two 3x3 convs (ResNet-18/34); the first one strides."""

  expansion: ClassVar[int] = 1

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Args: x [N, H, W, C_in]. Returns: [N, H / s, W / s, filters]."""
    y = self.conv(self.filters, 3, self.strides, name="conv1")(x)
    y = nn.relu(self.norm(train=train, name="bn1")(y))
    y = self.conv(self.filters, 3, name="conv2")(y)
    z = self.zero_init_residual
    y = self.norm(train=train, name="bn2", zero_scale=z)(y)
    return nn.relu(y + self.shortcut(x, train=train))


class BottleneckBlock(_Block):
  """1x1 reduce, 3x3, 1x1 expand by 4 (ResNet-50); the 3x3 strides (v1.5)
  or, with `stride_in_1x1`, the first 1x1 (v1)."""

  expansion: ClassVar[int] = 4

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Args: x [N, H, W, C_in]. Returns: [N, H / s, W / s, 4 * filters]."""
    s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
    y = self.conv(self.filters, 1, s1, name="conv1")(x)
    y = nn.relu(self.norm(train=train, name="bn1")(y))
    y = self.conv(self.filters, 3, s3, name="conv2")(y)
    y = nn.relu(self.norm(train=train, name="bn2")(y))
    y = self.conv(self.filters * self.expansion, 1, name="conv3")(y)
    z = self.zero_init_residual
    y = self.norm(train=train, name="bn3", zero_scale=z)(y)
    return nn.relu(y + self.shortcut(x, train=train))


class ResNet(_Layers):
  """A ResNet: stem, four stages of residual blocks, pooling, classifier.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block_cls: BasicBlock or BottleneckBlock.
    num_classes: number of logits; None or 0 returns the pooled pre-logits
      features instead (a backbone, e.g. for SimCLR).
    width: multiplier on the base widths 64/128/256/512; a stage gets
      `max(1, int(base * width))` channels (the stem gets stage 1's).
    stem: "cifar" (3x3 conv, stride 1, no pooling), "small" (3x3 conv,
      stride 2: halves 28 x 28 images once, a quarter of the cifar stem's
      compute) or "imagenet" (7x7 conv, stride 2, then 3x3 max-pool,
      stride 2).
    zero_init_residual: zero-init the last batch-norm scale of every block.
    dtype: computation dtype; parameters stay in `param_dtype`.
    param_dtype: dtype of the parameters (and batch statistics).
    bn_axis_name: the pmap axis to average batch statistics over (None under
      jit, where batch norm already sees the global batch).
    fence_conv_inputs: optimization barriers on conv inputs (see _Layers);
      None: on for the CPU backend.
    conv_bias, norm_epsilon: see _Layers.
    stride_in_1x1: see _Block (only bottlenecks read it).
  """

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block_cls: type[_Block] = BasicBlock
  num_classes: int | None = 1000
  width: float = 1.0
  stem: str = "imagenet"
  zero_init_residual: bool = False
  stride_in_1x1: bool = False

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Runs the network.

    Args:
      x: [N, H, W, C] normalised images.
      train: use batch statistics and update the running averages
        (`mutable=["batch_stats"]`), else use the running averages.

    Returns:
      [N, num_classes] logits, or [N, 512 * width * expansion] features when
      `num_classes` is None or 0.
    """
    x = self._stem(jnp.asarray(x, self.dtype), train=train)
    for i, num_blocks in enumerate(self.stage_sizes):
      x = self._stage(x, i, num_blocks, train=train)
      self.sow("intermediates", f"stage{i + 1}", x)
    x = jnp.mean(x, axis=(1, 2))  # [N, C]
    self.sow("intermediates", "pre_logits", x)
    if not self.num_classes:
      return x
    head = nn.Dense(
      self.num_classes,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="head",
    )
    return head(x)

  def _stem(self, x, *, train):
    """[N, H, W, C] -> [N, H, W, w] (cifar), [N, H / 2, W / 2, w] (small)
    or [N, H / 4, W / 4, w] (imagenet)."""
    if self.stem not in STEMS:
      raise ValueError(f"Unknown stem {self.stem!r}; choose one of {STEMS}.")
    features = scaled_width(BASE_WIDTHS[0], self.width)
    if self.stem in ("cifar", "small"):
      strides = 1 if self.stem == "cifar" else 2
      x = self.conv(features, 3, strides, name="stem_conv")(x)
      return nn.relu(self.norm(train=train, name="stem_bn")(x))
    x = self.conv(features, 7, 2, name="stem_conv")(x)
    x = nn.relu(self.norm(train=train, name="stem_bn")(x))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

  def _stage(self, x, index, num_blocks, *, train):
    """Stage `index` (0-based): the first block strides unless index is 0."""
    block = functools.partial(
      self.block_cls,
      filters=scaled_width(BASE_WIDTHS[index], self.width),
      zero_init_residual=self.zero_init_residual,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      bn_axis_name=self.bn_axis_name,
      fence_conv_inputs=self.fence_conv_inputs,
      conv_bias=self.conv_bias,
      norm_epsilon=self.norm_epsilon,
      stride_in_1x1=self.stride_in_1x1,
    )
    for j in range(num_blocks):
      strides = 2 if index > 0 and j == 0 else 1
      name = f"stage{index + 1}_block{j + 1}"
      x = block(strides=strides, name=name)(x, train=train)
    return x


ResNet18 = functools.partial(
  ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock
)
ResNet34 = functools.partial(
  ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock
)
ResNet50 = functools.partial(
  ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock
)
# keras.applications.ResNet50's layout (ResNet v1; see the module docstring).
ResNet50Keras = functools.partial(
  ResNet50, stride_in_1x1=True, conv_bias=True, norm_epsilon=1.001e-5
)
# One block per stage at 1/8 width (8/16/32/64 channels): for tests.
ResNetTiny = functools.partial(
  ResNet, stage_sizes=(1, 1, 1, 1), block_cls=BasicBlock, width=0.125
)
