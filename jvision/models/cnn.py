"""The seed CNN: the classic two-conv, three-dense CIFAR-10 tutorial network.

conv 5x5x6 (VALID) - ReLU - max-pool 2x2 - conv 5x5x16 (VALID) - ReLU -
max-pool 2x2 - flatten - dense 120 - ReLU - dense 84 - ReLU - dense K.

On 32x32x3 inputs with 10 classes it has exactly 62,006 parameters. The
84-wide activation before the classifier is recorded as the "pre_logits"
intermediate (read it with `mutable=["intermediates"]`).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


def max_pool_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """2x2 max pooling with stride 2, written as a reshape and a max.

  Gives the values of `nn.max_pool(x, (2, 2), strides=(2, 2))` (VALID
  padding: an odd last row or column is dropped) with a cheaper backward
  pass than `reduce_window` on XLA:CPU.

  Args:
    x: [N, H, W, C] activations.

  Returns:
    [N, H // 2, W // 2, C] maxima over non-overlapping 2x2 windows.
  """
  n, h, w, c = x.shape
  x = x[:, : h // 2 * 2, : w // 2 * 2, :]
  x = x.reshape(n, h // 2, 2, w // 2, 2, c)  # [N, H/2, 2, W/2, 2, C]
  return x.max(axis=(2, 4))


class SeedCNN(nn.Module):
  """The classic CIFAR-10 tutorial CNN.

  Attributes:
    num_classes: number of logits; None or 0 returns the 84-wide pre-logits
      features instead (a backbone without a classifier).
    dtype: computation dtype; parameters stay in `param_dtype`.
    param_dtype: dtype of the parameters.
    padding: "VALID" (the tutorial's; 32x32 -> 5x5x16 = 400 features) or
      "SAME" (keeps more of a small image: 28x28 -> 7x7x16 = 784 features).
  """

  num_classes: int | None = 10
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  padding: str = "VALID"

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    """Runs the network.

    Args:
      x: [N, H, W, C] normalised images (H, W >= 16 so both convs fit).
      train: unused (no dropout or batch norm); kept for the model contract.

    Returns:
      [N, num_classes] logits, or [N, 84] features when `num_classes` is
      None or 0.
    """
    del train  # Same computation in training and evaluation.
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    conv = functools.partial(
      nn.Conv, kernel_size=(5, 5), padding=self.padding, **kw
    )
    dense = functools.partial(nn.Dense, **kw)
    x = jnp.asarray(x, self.dtype)
    x = max_pool_2x2(nn.relu(conv(6, name="conv1")(x)))
    x = max_pool_2x2(nn.relu(conv(16, name="conv2")(x)))
    x = x.reshape(x.shape[0], -1)  # [N, h * w * 16]
    x = nn.relu(dense(120, name="fc1")(x))
    x = nn.relu(dense(84, name="fc2")(x))  # [N, 84]
    self.sow("intermediates", "pre_logits", x)
    if not self.num_classes:
      return x
    return dense(self.num_classes, name="head")(x)
