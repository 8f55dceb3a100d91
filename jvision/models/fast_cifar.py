"""A small, fast CIFAR-10 network for short runs.

    stem:   conv 2x2 (VALID, 24 channels, bias) - GELU        32 -> 31
    block:  conv 3x3 - max-pool 2x2 - BN - GELU - conv 3x3 - BN - GELU
            widths 64, 256, 256                               31 -> 15 -> 7 -> 3
    head:   global max-pool (or the map flattened) - dense (no bias)
            - x `logit_scale`

The layout of airbench94 (K. Jordan, "94% on CIFAR-10 in 3.29 seconds on a
single GPU", 2024), written here from its public description: the
fastest known recipe to 94% CIFAR-10 test accuracy. Batch norms have no
learned scale (a fixed 1 before GELU); the small logit scale (1/9) keeps
the early softmax soft. Not taken: airbench's whitening initialisation of
the stem, its lookahead averaging and its per-parameter-group learning
rates; jvision's optimizer, schedules and augmentation train it as they
train any model (experiments/cifar10_fast.py).

With 10 classes and 3 input channels it has 1,971,640 parameters (the
batch norms' biases included). The 256-wide max-pooled features are the
"pre_logits" intermediate. At widths 16-32 with an 8-channel stem and the
last 6x6x32 map flattened (`pool="flatten"`: 1,152-dim features, 28,936
parameters on 28x28 grey images) it is the network of the Fashion-MNIST
demo (experiments/fashion_mnist_simclr.py and its fine-tune and
distillation recipes): on centred garments where a feature sits says as
much as what it is, and SimCLR's kNN monitor read 80.2% from that map
against 77.7% from the max-pooled 64 features of widths 16-32-64 (means
of 3 seeds; benchmarks/NOTES.md, 2026-12-04).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jvision.models.cnn import max_pool_2x2

POOLS = ("max", "flatten")  # `FastCIFARNet.pool`


def global_max_pool(x: jnp.ndarray) -> jnp.ndarray:
  """[N, H, W, C] -> [N, C]: the maximum over all positions.

  A fold of `jnp.maximum` over the H * W positions rather than a reduction,
  so a NaN anywhere gives NaN (XLA:CPU's middle-axis max reduction drops
  NaN; see cnn._maximum) and a diverged run shows it.
  """
  n, h, w, c = x.shape
  positions = x.reshape(n, h * w, c)  # [N, H * W, C]
  out = positions[:, 0]
  for i in range(1, h * w):
    out = jnp.maximum(out, positions[:, i])
  return out


class FastCIFARNet(nn.Module):
  """The network of the module docstring.

  Attributes:
    num_classes: number of logits; None or 0 returns the pooled features.
    widths: channels of the three blocks.
    stem_width: channels of the 2x2 stem conv.
    logit_scale: the classifier's outputs are multiplied by this.
    bn_momentum: flax's batch-norm momentum (running = m * running + (1 - m)
      * batch); 0.4 is torch's momentum 0.6.
    dtype: computation dtype; parameters stay in `param_dtype`.
    param_dtype: dtype of the parameters (and batch statistics).
    bn_axis_name: the pmap axis to average batch statistics over.
    pool: how the last [N, h, w, C] map becomes features: "max" (global
      max-pool, [N, C]) or "flatten" ([N, h * w * C]; keeps where each
      feature is, and fixes the input size the head accepts).
  """

  num_classes: int | None = 10
  widths: Sequence[int] = (64, 256, 256)
  stem_width: int = 24
  logit_scale: float = 1 / 9
  bn_momentum: float = 0.4
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  bn_axis_name: str | None = None
  pool: str = "max"

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Runs the network.

    Args:
      x: [N, H, W, C] normalised images (H, W >= 16).
      train: use batch statistics and update the running averages
        (`mutable=["batch_stats"]`), else use the running averages.

    Returns:
      [N, num_classes] logits, or the features ([N, widths[-1]], or [N, h *
      w * widths[-1]] with `pool="flatten"`) when `num_classes` is None or 0.
    """
    if self.pool not in POOLS:
      raise ValueError(
        f"fast_cifar: model.pool={self.pool!r}; expected one of {POOLS}"
      )
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    conv = functools.partial(nn.Conv, kernel_size=(3, 3), use_bias=False, **kw)
    norm = functools.partial(
      nn.BatchNorm,
      use_running_average=not train,
      momentum=self.bn_momentum,
      epsilon=1e-5,
      use_scale=False,
      axis_name=self.bn_axis_name,
      **kw,
    )
    x = jnp.asarray(x, self.dtype)
    x = nn.Conv(self.stem_width, (2, 2), padding="VALID", name="stem", **kw)(x)
    x = nn.gelu(x)  # [N, H - 1, W - 1, stem_width]
    for i, width in enumerate(self.widths):
      x = conv(width, name=f"block{i + 1}_conv1")(x)
      x = max_pool_2x2(x)  # [N, h / 2, w / 2, width]
      x = nn.gelu(norm(name=f"block{i + 1}_bn1")(x))
      x = conv(width, name=f"block{i + 1}_conv2")(x)
      x = nn.gelu(norm(name=f"block{i + 1}_bn2")(x))
    if self.pool == "flatten":
      x = x.reshape(x.shape[0], -1)  # [N, h * w * widths[-1]]
    else:
      x = global_max_pool(x)  # [N, widths[-1]]
    self.sow("intermediates", "pre_logits", x)
    if not self.num_classes:
      return x
    head = nn.Dense(self.num_classes, use_bias=False, name="head", **kw)
    return head(x) * self.logit_scale
