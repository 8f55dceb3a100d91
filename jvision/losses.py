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


def distillation(
  *,
  student_logits: jnp.ndarray,
  teacher_logits: jnp.ndarray,
  temperature: float = 1.0,
) -> jnp.ndarray:
  """Mean cross-entropy of the student's tempered softmax against the
  teacher's (SimCLRv2's distillation loss, Chen et al. 2020, eq. 3):
  -sum_y p_T(y | x; t) log p_S(y | x; t), with p(y | x; t) = softmax(
  logits / t). No gradient flows into the teacher.

  Args:
    student_logits: [N, K].
    teacher_logits: [N, K], the teacher's on the same inputs.
    temperature: t > 0; above 1 softens both distributions.

  Returns:
    Scalar float32 mean over the N examples.
  """
  teacher = jax.lax.stop_gradient(jnp.asarray(teacher_logits, jnp.float32))
  targets = jax.nn.softmax(teacher / temperature, axis=-1)  # [N, K]
  student = jnp.asarray(student_logits, jnp.float32) / temperature
  log_probs = jax.nn.log_softmax(student, axis=-1)  # [N, K]
  return -jnp.mean(jnp.sum(targets * log_probs, axis=-1))


def masked_cross_entropy(
  *, logits: jnp.ndarray, labels: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Softmax cross-entropy summed over the examples with a label.

  Args:
    logits: [N, K].
    labels: [N] class ids, -1 for an example without a label.

  Returns:
    (sum of the labelled examples' losses, their count): float32 scalars,
    so that means over devices or micro-batches weigh examples equally.
  """
  logits = jnp.asarray(logits, jnp.float32)
  labelled = labels >= 0  # [N]
  log_probs = jax.nn.log_softmax(logits, axis=-1)  # [N, K]
  picked = jnp.take_along_axis(
    log_probs, jnp.maximum(labels, 0)[:, None], axis=-1
  )[:, 0]  # [N]
  mask = labelled.astype(jnp.float32)
  return -jnp.sum(picked * mask), jnp.sum(mask)


# Replaces the logit of an anchor with itself: its exp() is exactly 0 in
# float32, while its gradient stays finite (-inf would give NaN gradients).
_SELF_LOGIT = -1e9
# Smallest squared norm a projection is divided by; guards all-zero rows.
_MIN_SQUARED_NORM = 1e-12


def l2_normalize(x: jnp.ndarray, eps: float = _MIN_SQUARED_NORM) -> jnp.ndarray:
  """Rows of `x` [M, D] scaled to unit L2 norm (zero rows stay zero): NT-Xent's
  projections, kNN's and retrieval's embeddings."""
  squared_norm = jnp.sum(x * x, axis=-1, keepdims=True)  # [M, 1]
  return x / jnp.sqrt(jnp.maximum(squared_norm, eps))


def nt_xent(
  *,
  z1: jnp.ndarray,
  z2: jnp.ndarray,
  temperature: float,
  decoupled: bool = False,
  axis_name: str | None = None,
) -> jnp.ndarray:
  """SimCLR's normalized temperature-scaled cross-entropy (NT-Xent).

  Row i of `z1` and row i of `z2` are projections of two views of image i.
  Each of the 2N views is an anchor whose positive is the other view of its
  image and whose negatives are the remaining 2N - 2 views; the loss is the
  softmax cross-entropy of the cosine similarities / temperature, averaged
  over the 2N anchors (Chen et al. 2020, eq. 1). With `decoupled` the
  positive is left out of each anchor's denominator (Yeh et al. 2022,
  "Decoupled Contrastive Learning"): -s_pos / tau + logsumexp over the
  negatives alone, so a well-matched pair no longer shrinks the gradient
  of its negatives.

  Without `axis_name` the batch is global: under `jax.jit` with the batch
  sharded over a mesh (`jvision.parallel.jit_data_parallel`) XLA gathers the
  negatives across devices itself. Inside `jax.pmap` or `shard_map` over
  `axis_name`, `z1` and `z2` are the local [n, D] shards: the normalized
  projections of all devices are all-gathered into the global candidates
  [2N, D], the positive of local row i is global row axis_index * n + i,
  and the local anchors' mean is `pmean`-ed so every device returns the
  global mean (the SimCLR tf2 objective and MoCo v3). Gradients flow back
  through the gather to the device that owns each row. Under shard_map the
  gradient of a local shard is that of the global loss; pmap differentiates
  the sum of the devices' outputs, so there it is num_devices times that,
  and `pmean` of replicated parameters' gradients gives the exact global
  gradient (the usual pmap train step).

  Args:
    z1: [N, D] projections of the first views (any float dtype; [n, D] per
      device with `axis_name`).
    z2: [N, D] projections of the second views, paired row by row with z1.
    temperature: positive softmax temperature tau.
    decoupled: leave the positive out of the denominator (DCL).
    axis_name: name of the mapped device axis to gather negatives over, or
      None for a global batch.

  Returns:
    Scalar float32 mean over the 2N anchors (identical on every device).
  """
  if z1.shape != z2.shape or z1.ndim != 2:
    raise ValueError(
      f"z1 and z2 must both be [N, D]; got {z1.shape} and {z2.shape}"
    )
  if isinstance(temperature, int | float) and temperature <= 0:
    raise ValueError(f"temperature must be positive, got {temperature}")
  h1 = l2_normalize(jnp.asarray(z1, jnp.float32))  # [n, D]
  h2 = l2_normalize(jnp.asarray(z2, jnp.float32))  # [n, D]
  num_local = h1.shape[0]
  if axis_name is None:
    g1, g2, offset = h1, h2, 0
  else:
    g1 = jax.lax.all_gather(h1, axis_name, tiled=True)  # [N, D]
    g2 = jax.lax.all_gather(h2, axis_name, tiled=True)  # [N, D]
    offset = jax.lax.axis_index(axis_name) * num_local
  num_global = g1.shape[0]

  anchors = jnp.concatenate([h1, h2])  # [2n, D]
  candidates = jnp.concatenate([g1, g2])  # [2N, D]: all views 1, then 2
  # HIGHEST keeps the matmul in float32 on TPU/GPU (default is bf16/TF32).
  similarity = jnp.matmul(
    anchors, candidates.T, precision=jax.lax.Precision.HIGHEST
  )  # [2n, 2N]
  logits = similarity / temperature  # [2n, 2N]

  image = offset + jnp.arange(num_local)  # [n] global image index
  self_index = jnp.concatenate([image, image + num_global])  # [2n]
  positive_index = jnp.concatenate([image + num_global, image])  # [2n]
  candidate = jnp.arange(2 * num_global)  # [2N] column index
  is_self = self_index[:, None] == candidate  # [2n, 2N]
  logits = jnp.where(is_self, _SELF_LOGIT, logits)  # [2n, 2N]
  if decoupled:
    # [2n, 1]: each anchor's positive logit, then its negatives alone.
    positive = jnp.take_along_axis(logits, positive_index[:, None], axis=-1)
    is_positive = positive_index[:, None] == candidate  # [2n, 2N]
    negatives = jnp.where(is_positive, _SELF_LOGIT, logits)  # [2n, 2N]
    loss = jnp.mean(jax.nn.logsumexp(negatives, axis=-1) - positive[:, 0])
  else:
    loss = softmax_cross_entropy(logits=logits, labels=positive_index)
  if axis_name is not None:
    loss = jax.lax.pmean(loss, axis_name)
  return loss
