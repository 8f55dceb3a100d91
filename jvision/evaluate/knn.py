"""k-nearest-neighbour classification on embeddings (the SimCLR monitor).

Each query takes the k most cosine-similar bank embeddings and lets each
vote for its label with weight exp(similarity / temperature) (Wu et al.,
2018; the kNN monitor of solo-learn and lightly uses k=200, t=0.1).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jvision import losses


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _vote(bank, bank_labels, queries, *, k, temperature, num_classes):
  sims = queries @ bank.T  # [Q, B]
  top_sims, top_idx = jax.lax.top_k(sims, k)  # [Q, k]
  weights = jnp.exp(top_sims / temperature)  # [Q, k]
  votes = jax.nn.one_hot(bank_labels[top_idx], num_classes)  # [Q, k, K]
  return jnp.argmax(jnp.sum(votes * weights[..., None], axis=1), -1)  # [Q]


def knn_predict(
  bank: np.ndarray,
  bank_labels: np.ndarray,
  queries: np.ndarray,
  *,
  k: int,
  temperature: float,
  num_classes: int,
  chunk: int = 1024,
) -> np.ndarray:
  """Predicted labels of `queries` by weighted kNN votes over `bank`.

  Args:
    bank: [B, F] embeddings with known labels (normalised here).
    bank_labels: int [B].
    queries: [Q, F] embeddings to classify (normalised here).
    k: neighbours per query (capped at B).
    temperature: vote weight exp(cosine / temperature).
    num_classes: K.
    chunk: queries per compiled call (bounds the [chunk, B] similarity).

  Returns:
    int [Q] predicted labels.
  """
  bank = losses.l2_normalize(jnp.asarray(bank, jnp.float32))
  queries = losses.l2_normalize(jnp.asarray(queries, jnp.float32))
  bank_labels = jnp.asarray(bank_labels, jnp.int32)
  k = min(k, bank.shape[0])
  out = []
  for start in range(0, queries.shape[0], chunk):
    part = queries[start : start + chunk]
    out.append(
      _vote(
        bank,
        bank_labels,
        part,
        k=k,
        temperature=temperature,
        num_classes=num_classes,
      )
    )
  return np.asarray(jnp.concatenate(out))
