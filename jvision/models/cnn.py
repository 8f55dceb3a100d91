"""The seed CNN: the classic two-conv, three-dense CIFAR-10 tutorial network.

conv 5x5x6 (VALID) - ReLU - max-pool 2x2 - conv 5x5x16 (VALID) - ReLU -
max-pool 2x2 - flatten - dense 120 - ReLU - dense 84 - ReLU - dense K.

On 32x32x3 inputs with 10 classes it has exactly 62,006 parameters. The
84-wide activation before the classifier is recorded as the "pre_logits"
intermediate (read it with `mutable=["intermediates"]`).

Each conv - ReLU - pool triple runs as one `ConvReLUPool`: the same
parameters and values as `nn.Conv` followed by ReLU and a 2x2 max-pool, but
computed as a stride-1 conv on the 2x2 space-to-depth input whose output
channels are the four pool positions. On XLA:CPU that is 2-5x faster than
the plain form for these thin convs (3 or 6 input channels), forward and
backward; see benchmarks/NOTES.md.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

PADDINGS = ("VALID", "SAME")
DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def space_to_depth_2x2(x: jnp.ndarray) -> jnp.ndarray:
  """Folds each 2x2 block of pixels into the channels.

  Args:
    x: [N, H, W, C] with H and W even.

  Returns:
    [N, H / 2, W / 2, 4 C]; channel (2 * pi + pj) * C + c holds
    x[:, 2 u + pi, 2 v + pj, c] at position (u, v).
  """
  n, h, w, c = x.shape
  x = x.reshape(n, h // 2, 2, w // 2, 2, c)  # [N, u, pi, v, pj, C]
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2, w // 2, 4 * c)


def pooled_phase_kernel(kernel: jnp.ndarray) -> jnp.ndarray:
  """The kernel that convolves space-to-depth inputs into the 4 pool phases.

  Output pixel (2 u + qi, 2 v + qj) of a stride-1 VALID conv with `kernel`
  sums x[2 u + qi + di, 2 v + qj + dj] * kernel[di, dj]. Shifting the kernel
  by (qi, qj) inside a zero kernel of even size and cutting that into 2x2
  cells gives, per phase (qi, qj), a conv over `space_to_depth_2x2(x)`;
  the four phases side by side form one kernel. Built from pads, reshapes
  and a transpose only, so gradients reach `kernel` exactly.

  Args:
    kernel: [KH, KW, C_in, C_out] (HWIO).

  Returns:
    [A, B, 4 C_in, 4 C_out] with A = ceil((KH + 1) / 2) and likewise B;
    output channel (2 * qi + qj) * C_out + o is phase (qi, qj) of channel o.
  """
  kh, kw, c_in, c_out = kernel.shape
  a, b = (kh + 2) // 2, (kw + 2) // 2  # cells per side
  phases = [
    jnp.pad(
      kernel, ((qi, 2 * a - kh - qi), (qj, 2 * b - kw - qj), (0, 0), (0, 0))
    )
    for qi in (0, 1)
    for qj in (0, 1)
  ]  # each [2A, 2B, C_in, C_out]
  k = jnp.stack(phases, axis=-2)  # [2A, 2B, C_in, 4, C_out]
  k = k.reshape(a, 2, b, 2, c_in, 4, c_out)  # [A, pi, B, pj, C_in, q, C_out]
  k = k.transpose(0, 2, 1, 3, 4, 5, 6)  # [A, B, pi, pj, C_in, q, C_out]
  return k.reshape(a, b, 4 * c_in, 4 * c_out)


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
  return _maximum(*(x[:, :, i, :, j] for i in (0, 1) for j in (0, 1)))


def _maximum(a, b, c, d):
  """Elementwise max of four arrays, NaN in any giving NaN.

  Written with jnp.maximum because XLA:CPU (jaxlib 0.10.2) drops NaNs in a
  max-reduction over a middle axis: jnp.max(y, axis=3) of an all-NaN
  [2, 14, 14, 4, 6] array has no NaN. A diverged run must show NaN.
  """
  return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


def _pixel_padding(padding: str, kernel_size: int) -> tuple[int, int]:
  """(before, after) zero pixels of a stride-1 conv, as flax pads them."""
  if padding == "VALID":
    return 0, 0
  if padding == "SAME":  # the odd pixel goes after
    return (kernel_size - 1) // 2, kernel_size - 1 - (kernel_size - 1) // 2
  raise ValueError(f"padding {padding!r}: expected one of {PADDINGS}")


def conv_relu_pool(
  x: jnp.ndarray, kernel: jnp.ndarray, bias: jnp.ndarray, padding: str
) -> jnp.ndarray:
  """relu(conv(x, kernel) + bias), then a 2x2 stride-2 max-pool.

  Equal to `nn.max_pool(nn.relu(conv + bias), (2, 2), strides=(2, 2))`
  (VALID pooling drops an odd last row or column) up to float rounding.
  Inputs of even height and width take the fast form: a stride-1 conv of
  `space_to_depth_2x2(x)` with `pooled_phase_kernel`, then the max over the
  four phases. An odd number of padding pixels before the image becomes one
  more zero tap at the front of the kernel, so the padding is whole 2x2
  cells and goes to the conv itself (no pad op on x, which also keeps ONNX
  export working with a symbolic batch). Odd sizes take the plain form.

  Args:
    x: [N, H, W, C_in] inputs.
    kernel: [KH, KW, C_in, C_out] conv kernel (stride 1).
    bias: [C_out].
    padding: "VALID" or "SAME" (flax's: the odd pixel goes after).

  Returns:
    [N, H_out // 2, W_out // 2, C_out], H_out the conv's output height.
  """
  kh, kw, _, c_out = kernel.shape
  pads = [_pixel_padding(padding, k) for k in (kh, kw)]
  sizes = x.shape[1:3]
  pooled = [
    (n + lo + hi - k + 1) // 2
    for n, (lo, hi), k in zip(sizes, pads, (kh, kw), strict=True)
  ]
  if any(n % 2 for n in sizes):
    y = jax.lax.conv_general_dilated(
      x, kernel, (1, 1), pads, dimension_numbers=DIMENSIONS
    )
    return max_pool_2x2(nn.relu(y + bias))
  shifts = [lo % 2 for lo, _ in pads]  # extra front taps
  kernel = jnp.pad(kernel, ((shifts[0], 0), (shifts[1], 0), (0, 0), (0, 0)))
  phase_kernel = pooled_phase_kernel(kernel)  # [A, B, 4 C_in, 4 C_out]
  cell_pads = []
  for n, (lo, _), shift, cells, p in zip(
    sizes, pads, shifts, phase_kernel.shape[:2], pooled, strict=True
  ):
    before = (lo + shift) // 2
    after = max(0, p - (n // 2 + before - cells + 1))  # zeros past the end
    cell_pads.append((before, after))
  y = jax.lax.conv_general_dilated(
    space_to_depth_2x2(x),
    phase_kernel,
    window_strides=(1, 1),
    padding=cell_pads,
    dimension_numbers=DIMENSIONS,
  )  # [N, >= pooled[0], >= pooled[1], 4 * C_out]
  y = y[:, : pooled[0], : pooled[1]]
  phases = [y[..., i * c_out : (i + 1) * c_out] for i in range(4)]
  return nn.relu(_maximum(*phases) + bias)


class ConvReLUPool(nn.Module):
  """A stride-1 conv + bias, ReLU and 2x2 max-pool in one (see conv_relu_pool).

  Its parameters ("kernel" [KH, KW, C_in, C_out], "bias" [C_out]) have the
  names, shapes and initialisers of `nn.Conv`'s, so checkpoints and
  parameter counts are those of the plain layers.

  Attributes:
    features: output channels.
    kernel_size: (KH, KW).
    padding: "VALID" or "SAME".
    dtype: computation dtype.
    param_dtype: dtype of the parameters.
  """

  features: int
  kernel_size: tuple[int, int] = (5, 5)
  padding: str = "VALID"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """Args: x [N, H, W, C_in]. Returns: [N, H_out // 2, W_out // 2, C_out]."""
    shape = (*self.kernel_size, x.shape[-1], self.features)
    kernel = self.param(
      "kernel", nn.initializers.lecun_normal(), shape, self.param_dtype
    )
    bias = self.param(
      "bias", nn.initializers.zeros, (self.features,), self.param_dtype
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return conv_relu_pool(x, kernel, bias, self.padding)


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
    block = functools.partial(ConvReLUPool, padding=self.padding, **kw)
    dense = functools.partial(nn.Dense, **kw)
    x = jnp.asarray(x, self.dtype)
    x = block(6, name="conv1")(x)  # [N, H' / 2, W' / 2, 6]
    x = block(16, name="conv2")(x)  # [N, h, w, 16]
    x = x.reshape(x.shape[0], -1)  # [N, h * w * 16]
    x = nn.relu(dense(120, name="fc1")(x))
    x = nn.relu(dense(84, name="fc2")(x))  # [N, 84]
    self.sow("intermediates", "pre_logits", x)
    if not self.num_classes:
      return x
    return dense(self.num_classes, name="head")(x)
