"""Confidence calibration: softmax, reliability bins and ECE, in numpy.

A classifier is calibrated when, among the examples it predicts with
confidence p, a fraction p is right. The expected calibration error (ECE;
Naeini et al. 2015, Guo et al. 2017) splits (0, 1] into M equal-width bins
B_m = ((m - 1) / M, m / M] by the top-class confidence and sums

    ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|

where acc is the fraction of correct predictions in the bin and conf the
mean confidence there. Empty bins add nothing. A confidence of exactly 0
(impossible after a softmax) falls in the first bin.
"""

import numpy as np

from jvision.evaluate import metrics

NUM_BINS = 15  # Guo et al. 2017


def softmax(logits) -> np.ndarray:
  """Class probabilities of logits, computed stably in float64.

  Args:
    logits: float array [N, K].

  Returns:
    float64 array [N, K] whose rows sum to 1.
  """
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=-1, keepdims=True)  # [N, K]
  exp = np.exp(shifted)
  return exp / exp.sum(axis=-1, keepdims=True)


def _confidence_and_correct(probabilities, labels):
  """(top-class probability [N], prediction == label [N]) or ValueError."""
  labels = np.asarray(labels)
  probabilities = metrics.check_scores(
    np.asarray(probabilities, np.float64),
    labels,
    name="probabilities",
    what="calibration",
  )
  confidence = probabilities.max(axis=1)
  correct = probabilities.argmax(axis=1) == labels
  return confidence, correct


def bin_index(confidence, num_bins: int = NUM_BINS) -> np.ndarray:
  """The bin ((m - 1) / M, m / M] of each confidence, as m - 1.

  Args:
    confidence: float array [N] in [0, 1].
    num_bins: M, the number of equal-width bins.

  Returns:
    int64 array [N] in [0, M).
  """
  confidence = np.asarray(confidence, np.float64)
  index = np.ceil(confidence * num_bins).astype(np.int64) - 1
  return np.clip(index, 0, num_bins - 1)


def reliability_bins(
  confidence, correct, num_bins: int = NUM_BINS
) -> list[dict]:
  """Per-bin counts, accuracy and mean confidence.

  Args:
    confidence: float array [N], the top-class probability of each example.
    correct: bool array [N], whether its top class is the label.
    num_bins: M, the number of equal-width bins over (0, 1].

  Returns:
    M JSON-ready dicts, in order: {"lower": float, "upper": float,
    "count": int, "accuracy": float, "confidence": float}; accuracy and
    confidence are 0.0 for an empty bin.
  """
  confidence = np.asarray(confidence, np.float64)
  correct = np.asarray(correct, np.float64)
  index = bin_index(confidence, num_bins)
  count = np.bincount(index, minlength=num_bins)  # [M]
  hits = np.bincount(index, weights=correct, minlength=num_bins)
  total = np.bincount(index, weights=confidence, minlength=num_bins)
  safe = np.maximum(count, 1)
  return [
    {
      "lower": m / num_bins,
      "upper": (m + 1) / num_bins,
      "count": int(count[m]),
      "accuracy": float(hits[m] / safe[m]),
      "confidence": float(total[m] / safe[m]),
    }
    for m in range(num_bins)
  ]


def ece_from_bins(bins: list[dict]) -> float:
  """The expected calibration error of `reliability_bins`' output."""
  n = sum(b["count"] for b in bins)
  if n == 0:
    raise ValueError("ECE of zero examples is undefined.")
  gaps = [b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins]
  return float(sum(gaps) / n)


def expected_calibration_error(
  probabilities, labels, num_bins: int = NUM_BINS
) -> float:
  """ECE of a classifier's probabilities (see the module docstring).

  Args:
    probabilities: float array [N, K], rows summing to 1.
    labels: int array [N], true classes in [0, K).
    num_bins: M, the number of equal-width confidence bins.

  Returns:
    The ECE in [0, 1].
  """
  return calibration_report(probabilities, labels, num_bins)["ece"]


def calibration_report(probabilities, labels, num_bins: int = NUM_BINS) -> dict:
  """The calibration keys of `DIR/eval/metrics.json`.

  Args:
    probabilities: float array [N, K], rows summing to 1.
    labels: int array [N], true classes in [0, K).
    num_bins: M, the number of equal-width confidence bins.

  Returns:
    {"ece": float, "calibration_bins": M dicts of `reliability_bins`}.
  """
  confidence, correct = _confidence_and_correct(probabilities, labels)
  bins = reliability_bins(confidence, correct, num_bins)
  return {"ece": ece_from_bins(bins), "calibration_bins": bins}
