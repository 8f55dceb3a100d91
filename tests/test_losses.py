"""Tests for jvision/losses.py."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jvision import losses

LOGITS = np.array(
  [[2.0, 1.0, 0.1], [0.5, 2.5, -1.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]
)
LABELS = np.array([0, 1, 0, 2])


def _reference_xent(logits, labels, smoothing=0.0):
  """Float64 numpy cross-entropy with smoothed one-hot targets."""
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  k = logits.shape[1]
  targets = np.full(logits.shape, smoothing / k)
  targets[np.arange(len(labels)), labels] += 1.0 - smoothing
  return -(targets * log_probs).sum(axis=1).mean()


def test_cross_entropy_matches_float64_reference():
  loss = losses.softmax_cross_entropy(logits=LOGITS, labels=LABELS)
  assert loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, _reference_xent(LOGITS, LABELS), rtol=1e-6)


def test_cross_entropy_uniform_logits_is_log_k():
  loss = losses.softmax_cross_entropy(
    logits=jnp.zeros((5, 7)), labels=jnp.arange(5)
  )
  np.testing.assert_allclose(loss, np.log(7.0), rtol=1e-6)


def test_label_smoothing_hand_computed():
  # Logits [0, ln 3] give probabilities [1/4, 3/4]. With eps = 0.2 and K = 2
  # the target for label 1 is [0.1, 0.9], so the loss is
  # -(0.1 ln(1/4) + 0.9 ln(3/4)) = 0.2 ln 2 + 0.9 ln(4/3).
  logits = jnp.array([[0.0, np.log(3.0)]])
  loss = losses.softmax_cross_entropy(
    logits=logits, labels=jnp.array([1]), label_smoothing=0.2
  )
  expected = 0.2 * np.log(2.0) + 0.9 * np.log(4.0 / 3.0)
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  np.testing.assert_allclose(
    losses.softmax_cross_entropy(
      logits=LOGITS, labels=LABELS, label_smoothing=0.1
    ),
    _reference_xent(LOGITS, LABELS, smoothing=0.1),
    rtol=1e-6,
  )


def test_cross_entropy_equals_optax_without_smoothing():
  logits = jax.random.normal(jax.random.key(0), (16, 10)) * 3.0
  labels = jax.random.randint(jax.random.key(1), (16,), 0, 10)
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  np.testing.assert_allclose(
    losses.softmax_cross_entropy(logits=logits, labels=labels),
    expected.mean(),
    rtol=1e-6,
  )


def test_cross_entropy_is_float32_for_bfloat16_logits():
  logits = jnp.asarray(LOGITS, jnp.bfloat16)
  loss = losses.softmax_cross_entropy(logits=logits, labels=LABELS)
  assert loss.dtype == jnp.float32
  reference = _reference_xent(np.asarray(logits, np.float64), LABELS)
  np.testing.assert_allclose(loss, reference, rtol=1e-6)


def test_accuracy():
  # Arg-maxes are [0, 1, 2, 0] (a tie picks the first): hits on rows 0, 1.
  acc = losses.accuracy(logits=LOGITS, labels=LABELS)
  assert acc.dtype == jnp.float32
  assert float(acc) == 0.5


def test_losses_are_keyword_only():
  with pytest.raises(TypeError):
    losses.softmax_cross_entropy(LOGITS, LABELS)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_distillation_matches_torch_soft_target_cross_entropy(temperature):
  import torch

  rng = np.random.default_rng(3)
  student = rng.normal(size=(6, 5)).astype(np.float32) * 3
  teacher = rng.normal(size=(6, 5)).astype(np.float32) * 3
  got = losses.distillation(
    student_logits=student, teacher_logits=teacher, temperature=temperature
  )
  targets = torch.softmax(torch.from_numpy(teacher) / temperature, dim=-1)
  want = torch.nn.functional.cross_entropy(
    torch.from_numpy(student) / temperature, targets
  )  # probability targets: -sum p log q, mean over the batch
  np.testing.assert_allclose(float(got), float(want), rtol=1e-6)


def test_distillation_gradient_reaches_the_student_only():
  student = jnp.asarray(LOGITS, jnp.float32)
  teacher = jnp.asarray(LOGITS[::-1], jnp.float32)
  g_student, g_teacher = jax.grad(
    lambda s, t: losses.distillation(
      student_logits=s, teacher_logits=t, temperature=2.0
    ),
    argnums=(0, 1),
  )(student, teacher)
  assert np.abs(g_student).max() > 1e-3
  np.testing.assert_array_equal(g_teacher, 0.0)
  # The student equal to the teacher is the minimum: zero gradient.
  g_same = jax.grad(
    lambda s: losses.distillation(
      student_logits=s, teacher_logits=student, temperature=2.0
    )
  )(student)
  np.testing.assert_allclose(g_same, 0.0, atol=1e-7)


def test_masked_cross_entropy_sums_only_the_labelled_examples():
  labels = np.array([0, -1, 0, -1])
  total, count = losses.masked_cross_entropy(logits=LOGITS, labels=labels)
  assert float(count) == 2.0
  want = _reference_xent(LOGITS[[0, 2]], LABELS[[0, 2]]) * 2
  np.testing.assert_allclose(float(total), want, rtol=1e-6)
  none, zero = losses.masked_cross_entropy(logits=LOGITS, labels=np.full(4, -1))
  assert float(none) == 0.0 and float(zero) == 0.0
