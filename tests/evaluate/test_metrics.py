"""Tests for jvision.evaluate.metrics."""

import json

import numpy as np
import pytest

from jvision.evaluate import metrics

# A 3-class example worked by hand.
#   labels      = 0 0 0 0 1 1 1 2 2 2
#   predictions = 0 0 1 2 1 1 0 2 2 1
# Confusion matrix (rows true, columns predicted):
#   [[2, 1, 1],
#    [1, 2, 0],
#    [0, 1, 2]]
# Column sums (predicted) 3 4 3; row sums (support) 4 3 3; diagonal 2 2 2.
# precision = 2/3, 2/4, 2/3      recall = 2/4, 2/3, 2/3
# F1_0 = 2 (2/3)(1/2) / (2/3 + 1/2) = (2/3) / (7/6) = 4/7; F1_1 = 4/7 too.
# F1_2 = 2/3.  macro F1 = (4/7 + 4/7 + 2/3) / 3 = 76/126 = 38/63.
# accuracy = 6/10.
LABELS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDICTIONS = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]
NAMES = ["cat", "dog", "bird"]


def _reference_report(labels, predictions, num_classes):
  """Per-class metrics by explicit counting, written independently."""
  out = []
  for c in range(num_classes):
    tp = fp = fn = 0
    for y, p in zip(labels, predictions, strict=True):
      tp += y == c and p == c
      fp += y != c and p == c
      fn += y == c and p != c
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    out.append((precision, recall, f1, tp + fn))
  return out


def test_confusion_matrix_hand_computed():
  cm = metrics.confusion_matrix(LABELS, PREDICTIONS, 3)
  np.testing.assert_array_equal(cm, [[2, 1, 1], [1, 2, 0], [0, 1, 2]])
  assert cm.dtype == np.int64


def test_confusion_matrix_loops_on_random_data():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 7, size=500)
  predictions = rng.integers(0, 7, size=500)
  expected = np.zeros((7, 7), dtype=np.int64)
  for y, p in zip(labels, predictions, strict=True):
    expected[y, p] += 1
  cm = metrics.confusion_matrix(labels, predictions, 7)
  np.testing.assert_array_equal(cm, expected)


def test_confusion_matrix_empty_input_is_zero():
  cm = metrics.confusion_matrix(np.array([], np.int32), [], 4)
  np.testing.assert_array_equal(cm, np.zeros((4, 4)))


@pytest.mark.parametrize(
  "labels, predictions, match",
  [
    ([0, 3], [0, 1], r"labels\[1\] = 3 is outside \[0, 3\)"),
    ([0, 1], [0, -1], r"predictions\[1\] = -1"),
    ([0, 1], [0], "differ in length: 2 vs 1"),
    ([0.0, 1.0], [0, 1], "must hold integers"),
    ([[0, 1]], [[0, 1]], "must be 1-D"),
  ],
)
def test_confusion_matrix_rejects_bad_input(labels, predictions, match):
  with pytest.raises(ValueError, match=match):
    metrics.confusion_matrix(labels, predictions, 3)


def test_report_hand_computed():
  report = metrics.classification_report(LABELS, PREDICTIONS, NAMES)
  assert report["accuracy"] == pytest.approx(0.6)
  assert report["macro_f1"] == pytest.approx(38 / 63)
  assert report["num_examples"] == 10
  assert report["class_names"] == NAMES
  assert report["confusion_matrix"] == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
  expected = {
    "cat": (2 / 3, 1 / 2, 4 / 7, 4),
    "dog": (1 / 2, 2 / 3, 4 / 7, 3),
    "bird": (2 / 3, 2 / 3, 2 / 3, 3),
  }
  for name, (precision, recall, f1, support) in expected.items():
    row = report["per_class"][name]
    assert row["precision"] == pytest.approx(precision)
    assert row["recall"] == pytest.approx(recall)
    assert row["f1"] == pytest.approx(f1)
    assert row["support"] == support


def test_report_has_the_workdir_json_shape():
  report = metrics.classification_report(
    np.array(LABELS, np.int32), np.array(PREDICTIONS, np.int32), NAMES
  )
  assert set(report) == {
    "accuracy",
    "macro_f1",
    "num_examples",
    "per_class",
    "confusion_matrix",
    "class_names",
  }
  assert list(report["per_class"]) == NAMES
  for row in report["per_class"].values():
    assert set(row) == {"precision", "recall", "f1", "support"}
    assert type(row["support"]) is int
    assert type(row["f1"]) is float
  assert type(report["num_examples"]) is int
  assert json.loads(json.dumps(report)) == report


def test_report_perfect_predictor():
  labels = [2, 0, 1, 1, 0, 2, 2]
  report = metrics.classification_report(labels, labels, NAMES)
  assert report["accuracy"] == 1.0
  assert report["macro_f1"] == 1.0
  for row in report["per_class"].values():
    assert (row["precision"], row["recall"], row["f1"]) == (1.0, 1.0, 1.0)
  assert report["confusion_matrix"] == [[2, 0, 0], [0, 2, 0], [0, 0, 3]]


def test_report_class_never_predicted_scores_zero():
  # Class 2 ("bird") has support 2 but is never predicted.
  # dog: tp=1, fp=2 (both birds), fn=0 -> precision 1/3, recall 1, F1 1/2.
  report = metrics.classification_report([0, 1, 2, 2], [0, 1, 1, 1], NAMES)
  assert report["per_class"]["bird"] == {
    "precision": 0.0,
    "recall": 0.0,
    "f1": 0.0,
    "support": 2,
  }
  assert report["per_class"]["dog"]["f1"] == pytest.approx(0.5)
  assert report["macro_f1"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_report_class_without_support_counts_in_macro_f1():
  # Nothing is a dog or a bird; one cat is predicted as a dog.
  # cat: precision 1, recall 1/2, F1 2/3; dog and bird: all 0.
  report = metrics.classification_report([0, 0], [0, 1], NAMES)
  assert report["per_class"]["dog"] == {
    "precision": 0.0,
    "recall": 0.0,
    "f1": 0.0,
    "support": 0,
  }
  assert report["per_class"]["bird"]["support"] == 0
  assert report["macro_f1"] == pytest.approx((2 / 3) / 3)


def test_report_matches_loop_reference_on_random_data():
  rng = np.random.default_rng(1)
  num_classes = 6
  labels = rng.integers(0, num_classes, size=300)
  # Mostly right, and class 5 is never predicted.
  predictions = np.where(
    rng.random(300) < 0.6, labels, rng.integers(0, num_classes, size=300)
  )
  predictions = np.where(predictions == 5, 4, predictions)
  names = [f"class_{i}" for i in range(num_classes)]
  report = metrics.classification_report(labels, predictions, names)
  reference = _reference_report(labels, predictions, num_classes)
  for name, (precision, recall, f1, support) in zip(
    names, reference, strict=True
  ):
    row = report["per_class"][name]
    assert row["precision"] == pytest.approx(precision)
    assert row["recall"] == pytest.approx(recall)
    assert row["f1"] == pytest.approx(f1)
    assert row["support"] == support
  assert report["macro_f1"] == pytest.approx(
    sum(f1 for _, _, f1, _ in reference) / num_classes
  )
  assert report["accuracy"] == pytest.approx(np.mean(labels == predictions))


def test_report_rejects_repeated_names_and_no_examples():
  with pytest.raises(ValueError, match="repeat.*'cat'"):
    metrics.classification_report([0], [0], ["cat", "cat"])
  with pytest.raises(ValueError, match="at least one example"):
    metrics.classification_report([], [], NAMES)


def test_accuracy():
  assert metrics.accuracy(LABELS, PREDICTIONS) == pytest.approx(0.6)
  with pytest.raises(ValueError, match="zero examples"):
    metrics.accuracy([], [])


def test_top_k_accuracy_hand_computed():
  scores = np.array(
    [
      [0.1, 0.7, 0.2],  # label 0 is third
      [0.5, 0.3, 0.2],  # label 1 is second
      [0.2, 0.3, 0.5],  # label 2 is first
      [0.6, 0.1, 0.3],  # label 0 is first
    ]
  )
  labels = [0, 1, 2, 0]
  assert metrics.top_k_accuracy(labels, scores, 1) == pytest.approx(0.5)
  assert metrics.top_k_accuracy(labels, scores, 2) == pytest.approx(0.75)
  assert metrics.top_k_accuracy(labels, scores, 3) == 1.0


def test_top_1_accuracy_equals_argmax_accuracy():
  rng = np.random.default_rng(2)
  scores = rng.normal(size=(200, 10))
  labels = rng.integers(0, 10, size=200)
  expected = metrics.accuracy(labels, scores.argmax(axis=1))
  assert metrics.top_k_accuracy(labels, scores, 1) == pytest.approx(expected)


def test_top_k_accuracy_rejects_bad_k_and_shapes():
  scores = np.zeros((2, 3))
  with pytest.raises(ValueError, match=r"k must be in \[1, 3\], got 4"):
    metrics.top_k_accuracy([0, 1], scores, 4)
  with pytest.raises(ValueError, match="shape"):
    metrics.top_k_accuracy([0, 1, 2], scores, 1)
