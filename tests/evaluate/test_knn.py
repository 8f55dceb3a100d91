"""Tests for jvision/evaluate/knn.py on inputs with known answers."""

import numpy as np

from jvision.evaluate import knn


def test_nearest_neighbour_votes_by_cosine():
  bank = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
  labels = np.array([0, 0, 1, 1])
  queries = np.array([[5.0, 0.2], [0.3, 4.0], [-1.0, 0.1]])
  predicted = knn.knn_predict(
    bank, labels, queries, k=1, temperature=0.1, num_classes=2
  )
  # [-1, 0.1] is most similar to [0.1, 0.9] (cosine 0.0 vs -0.99 for [1, 0]).
  np.testing.assert_array_equal(predicted, [0, 1, 1])


def test_weights_break_a_count_tie():
  # Query [1, 0]: neighbours label 0 at cosine 1.0 and label 1 at cosines
  # 0.8 and 0.6; with k=3 the weighted vote exp(1/t) beats
  # exp(0.8/t) + exp(0.6/t) for t=0.1 (22026 vs 2981 + 403).
  bank = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]])
  labels = np.array([0, 1, 1])
  predicted = knn.knn_predict(
    bank, labels, np.array([[1.0, 0.0]]), k=3, temperature=0.1, num_classes=2
  )
  assert predicted.tolist() == [0]
  # With a high temperature the weights flatten and the majority wins.
  predicted = knn.knn_predict(
    bank, labels, np.array([[1.0, 0.0]]), k=3, temperature=100, num_classes=2
  )
  assert predicted.tolist() == [1]


def test_chunks_and_k_larger_than_bank():
  rng = np.random.default_rng(0)
  bank = rng.normal(size=(30, 8))
  labels = rng.integers(0, 3, 30)
  queries = bank[:25] + 1e-3 * rng.normal(size=(25, 8))
  one = knn.knn_predict(
    bank, labels, queries, k=1, temperature=0.1, num_classes=3, chunk=7
  )
  np.testing.assert_array_equal(one, labels[:25])
  many = knn.knn_predict(
    bank, labels, queries, k=500, temperature=0.1, num_classes=3
  )
  assert many.shape == (25,)
