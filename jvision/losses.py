"""Losses and batch metrics: keyword-only pure functions of arrays.

Every function computes in float32 whatever the dtype of its inputs (bf16
logits from a mixed-precision model included) and returns a scalar mean over
the batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_cross_entropy(
  *, logits: jnp.ndarray, labels: jnp.ndarray, label_smoothing: float = 0.0
) -> jnp.ndarray:
  """Mean softmax cross-entropy against integer labels.

  With label smoothing eps the target of an example with label y over K
  classes is (1 - eps) * one_hot(y) + eps / K.

  Args:
    logits: [N, K] unnormalised scores.
    labels: [N] integer class ids in [0, K).
    label_smoothing: eps in [0, 1).

  Returns:
    Scalar float32 mean over the N examples.
  """
  logits = jnp.asarray(logits, jnp.float32)
  num_classes = logits.shape[-1]
  targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)  # [N, K]
  targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
  log_probs = jax.nn.log_softmax(logits, axis=-1)  # [N, K]
  return -jnp.mean(jnp.sum(targets * log_probs, axis=-1))


def accuracy(*, logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
  """Fraction of examples whose arg-max logit is the label.

  Args:
    logits: [N, K] scores.
    labels: [N] integer class ids.

  Returns:
    Scalar float32 in [0, 1].
  """
  hits = jnp.argmax(logits, axis=-1) == labels  # [N]
  return jnp.mean(hits.astype(jnp.float32))
