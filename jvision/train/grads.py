"""Gradients over micro-batches (gradient accumulation inside one step)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def micro_batches(batch, steps: int):
  """[B, ...] leaves -> [steps, B / steps, ...], example i in micro i % steps.

  Interleaving (rather than contiguous slices) keeps every micro-batch
  spread over all devices when the batch axis is sharded.
  """

  def split(x):
    return x.reshape(x.shape[0] // steps, steps, *x.shape[1:]).swapaxes(0, 1)

  return jax.tree.map(split, batch)


def accumulated_value_and_grad(
  loss_fn: Callable, params, batch, carry, *, steps: int
):
  """Mean loss and gradient of `loss_fn` over `steps` micro-batches.

  Args:
    loss_fn: `(params, batch, carry) -> (loss, (aux, carry))`, the loss of a
      (micro-)batch; `carry` threads state through the micro-batches in
      order (e.g. batch-norm running statistics).
    params: the parameters to differentiate.
    batch: a pytree of [B, ...] arrays, B divisible by `steps`.
    carry: the initial carry.
    steps: the number of micro-batches; 1 is one plain value_and_grad.

  Returns:
    ((mean loss, (aux stacked [steps, ...], final carry)), mean gradient).
    With equal micro-batches the mean of their mean losses is the loss of
    the whole batch, so the gradient is the whole batch's (up to float
    summation order) for any model whose examples do not interact (no batch
    norm).
  """
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if steps == 1:
    (loss, (aux, carry)), grads = grad_fn(params, batch, carry)
    return (loss, (jax.tree.map(lambda a: a[None], aux), carry)), grads

  def body(accumulated, micro):
    grad_sum, carry = accumulated
    (loss, (aux, carry)), grads = grad_fn(params, micro, carry)
    return (jax.tree.map(jnp.add, grad_sum, grads), carry), (loss, aux)

  zeros = jax.tree.map(jnp.zeros_like, params)
  (grad_sum, carry), (losses, aux) = jax.lax.scan(
    body, (zeros, carry), micro_batches(batch, steps)
  )
  grads = jax.tree.map(lambda g: g / steps, grad_sum)
  return (jnp.mean(losses), (aux, carry)), grads
