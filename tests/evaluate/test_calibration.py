"""Tests for jvision/evaluate/calibration.py."""

import numpy as np
import pytest

from jvision.evaluate import calibration


def _reference_ece(probabilities, labels, num_bins):
  """ECE by an explicit loop over bins (lower, upper]."""
  confidence = probabilities.max(axis=1)
  correct = probabilities.argmax(axis=1) == labels
  total = 0.0
  for m in range(num_bins):
    lower, upper = m / num_bins, (m + 1) / num_bins
    members = [
      i
      for i, c in enumerate(confidence)
      if lower < c <= upper or (m == 0 and c == 0)
    ]
    if members:
      acc = np.mean([correct[i] for i in members])
      conf = np.mean([confidence[i] for i in members])
      total += len(members) / len(labels) * abs(acc - conf)
  return total


def _two_class(confidences):
  """[N, 2] probabilities whose top class is 0 with these confidences."""
  c = np.asarray(confidences, np.float64)
  return np.stack([c, 1 - c], axis=1)


def test_softmax_matches_a_direct_formula_and_is_stable():
  logits = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0]])
  p = calibration.softmax(logits)
  e = np.exp([1.0, 2.0, 3.0])
  np.testing.assert_allclose(p[0], e / e.sum())
  np.testing.assert_allclose(p[1], [0.5, 0.5, 0.0], atol=1e-12)


def test_perfectly_calibrated_bins_give_zero():
  # 10 examples at confidence 0.8, 8 right; 4 at 0.5 (bin 7), 2 right.
  probs = _two_class([0.8] * 10 + [0.5] * 4)
  labels = np.array([0] * 8 + [1] * 2 + [0] * 2 + [1] * 2)
  assert calibration.expected_calibration_error(probs, labels) == (
    pytest.approx(0.0, abs=1e-12)
  )


def test_all_confident_and_wrong():
  # Confidence 0.9 and 0.99, every prediction wrong: ECE is the mean
  # confidence, (3 * 0.9 + 1 * 0.99) / 4.
  probs = _two_class([0.9, 0.9, 0.9, 0.99])
  labels = np.ones(4, np.int64)
  ece = calibration.expected_calibration_error(probs, labels)
  assert ece == pytest.approx(0.9225)


def test_hand_computed_mixed_bins():
  # Bin (0.6, 0.667]: conf 0.65, 0.65, acc 1/2 -> gap 0.15, weight 2/5.
  # Bin (0.933, 1]: conf 0.95, 0.95, 0.95, acc 1 -> gap 0.05, weight 3/5.
  probs = _two_class([0.65, 0.65, 0.95, 0.95, 0.95])
  labels = np.array([0, 1, 0, 0, 0])
  ece = calibration.expected_calibration_error(probs, labels)
  assert ece == pytest.approx(2 / 5 * 0.15 + 3 / 5 * 0.05)


def test_matches_a_loop_on_random_data():
  rng = np.random.default_rng(0)
  for k, n in [(2, 50), (10, 1000), (100, 300)]:
    probs = calibration.softmax(3 * rng.normal(size=(n, k)))
    labels = rng.integers(0, k, size=n)
    for num_bins in (1, 10, 15):
      got = calibration.expected_calibration_error(probs, labels, num_bins)
      want = _reference_ece(probs, labels, num_bins)
      assert got == pytest.approx(want, abs=1e-12)


def test_bins_are_json_ready_and_cover_every_example():
  rng = np.random.default_rng(1)
  probs = calibration.softmax(rng.normal(size=(200, 5)))
  labels = rng.integers(0, 5, size=200)
  report = calibration.calibration_report(probs, labels)
  bins = report["calibration_bins"]
  assert len(bins) == calibration.NUM_BINS == 15
  assert sum(b["count"] for b in bins) == 200
  assert bins[0]["lower"] == 0.0 and bins[-1]["upper"] == 1.0
  assert all(isinstance(b["count"], int) for b in bins)
  assert 0.0 <= report["ece"] <= 1.0
  assert report["ece"] == pytest.approx(calibration.ece_from_bins(bins))


def test_bin_edges_are_closed_on_the_right():
  index = calibration.bin_index([0.0, 0.05, 0.5, 0.51, 1.0], num_bins=10)
  assert index.tolist() == [0, 0, 4, 5, 9]


def test_shape_mismatch_is_an_error():
  with pytest.raises(ValueError, match=r"\[3, K\]"):
    calibration.expected_calibration_error(np.ones((2, 2)) / 2, [0, 1, 1])
