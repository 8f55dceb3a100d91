"""Label issues by confident learning on out-of-fold predictions.

The audit fits a softmax (multinomial logistic) classifier on image
embeddings in k folds, so every image gets predicted class probabilities
from a model that never saw its label, and hands them to `cleanlab`
(Northcutt et al., "Confident Learning", JAIR 2021), which flags the
examples whose given label the out-of-fold predictions contradict with more
confidence than the estimated noise rates allow.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm


def standardize(
  train: np.ndarray, *others: np.ndarray
) -> tuple[np.ndarray, ...]:
  """Scales features to zero mean and unit variance using `train`'s stats."""
  mean = train.mean(0)
  std = train.std(0) + 1e-6
  return tuple((x - mean) / std for x in (train, *others))


def project(features: np.ndarray, dims: int) -> np.ndarray:
  """The top `dims` principal components of float [N, D] (D <= dims: as is).

  Returns:
    float32 [N, min(D, dims)].
  """
  if features.shape[1] <= dims:
    return features.astype(np.float32)
  centred = features - features.mean(0)
  cov = centred.T @ centred / len(centred)  # [D, D]
  _, vectors = np.linalg.eigh(cov)
  return (centred @ vectors[:, ::-1][:, :dims]).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def fit_softmax(
  x: jnp.ndarray,
  labels: jnp.ndarray,
  *,
  num_classes: int,
  l2: float,
  steps: int,
  learning_rate: float,
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Fits softmax regression by full-batch Adam.

  Args:
    x: float32 [N, D] standardized features.
    labels: int32 [N].
    num_classes: K.
    l2: weight penalty (mean over examples + l2 * |W|^2).
    steps: optimisation steps.
    learning_rate: Adam's step size.

  Returns:
    (W float32 [D, K], b float32 [K]).
  """
  params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros((num_classes,)))
  optimizer = optax.adam(learning_rate)

  def loss_fn(params):
    w, b = params
    logits = x @ w + b  # [N, K]
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.mean(nll) + l2 * jnp.sum(w * w)

  def step(carry, _):
    params, opt_state = carry
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return (optax.apply_updates(params, updates), opt_state), None

  (params, _), _ = jax.lax.scan(
    step, (params, optimizer.init(params)), None, length=steps
  )
  return params


def fold_ids(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
  """A stratified fold id in [0, folds) per example (int [N])."""
  rng = np.random.default_rng(seed)
  ids = np.empty(len(labels), np.int64)
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    rng.shuffle(members)
    ids[members] = np.arange(len(members)) % folds
  return ids


def out_of_fold_probabilities(
  features: np.ndarray,
  labels: np.ndarray,
  num_classes: int,
  *,
  folds: int = 5,
  seed: int = 0,
  l2: float = 1e-4,
  steps: int = 300,
  learning_rate: float = 0.05,
  progress: bool = False,
) -> np.ndarray:
  """Class probabilities of each example from a model fit on the others.

  Args:
    features: float [N, D] embeddings.
    labels: int [N] given labels in [0, num_classes).
    num_classes: K.
    folds: k of k-fold cross-fitting (>= 2).
    seed: seeds the fold assignment.
    l2, steps, learning_rate: see `fit_softmax`.
    progress: show a tqdm bar over the folds.

  Returns:
    float32 [N, K] out-of-fold probabilities (rows sum to 1).
  """
  if folds < 2:
    raise ValueError(f"label_issue folds must be >= 2, got {folds}")
  assignment = fold_ids(labels, folds, seed)
  probs = np.zeros((len(labels), num_classes), np.float32)
  for fold in tqdm.trange(folds, desc="label folds", disable=not progress):
    held = assignment == fold
    train_x, test_x = standardize(features[~held], features[held])
    w, b = fit_softmax(
      jnp.asarray(train_x),
      jnp.asarray(labels[~held], jnp.int32),
      num_classes=num_classes,
      l2=l2,
      steps=steps,
      learning_rate=learning_rate,
    )
    probs[held] = np.asarray(jax.nn.softmax(jnp.asarray(test_x) @ w + b))
  return probs


def find_label_issues(
  labels: np.ndarray, probs: np.ndarray, *, filter_by: str = "both"
) -> tuple[np.ndarray, np.ndarray]:
  """Confident learning's flagged examples and a score for each.

  Args:
    labels: int [N] given labels.
    probs: float [N, K] out-of-fold probabilities.
    filter_by: cleanlab's rule; "both" (an example must be off-diagonal in
      the confident joint and among its class's most likely errors) flags
      fewer natural confusions than cleanlab's default
      "prune_by_noise_rate": on Fashion-MNIST test images with 3% planted
      label errors and a supervised CNN encoder, precision 0.59 vs 0.50 at
      recall 0.85 vs 0.87.

  Returns:
    (bool [N] flagged, float [N] score = 1 - p(given label) in [0, 1]).
  """
  import cleanlab.filter

  flagged = cleanlab.filter.find_label_issues(
    labels=np.asarray(labels, np.int64),
    pred_probs=np.asarray(probs, np.float64),
    filter_by=filter_by,
    n_jobs=1,  # cleanlab would fork; forking a process running JAX can hang
  )
  score = 1.0 - probs[np.arange(len(labels)), labels]
  return np.asarray(flagged, bool), score.astype(np.float32)
