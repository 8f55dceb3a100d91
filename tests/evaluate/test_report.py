"""Tests for jvision/evaluate/report.py (`DIR/eval/report.html`)."""

import json
import re

import numpy as np

from jvision.evaluate import report as report_lib
from jvision.evaluate import run as evaluate_run

HEADINGS = (
  "Metrics",
  "Per-class scores",
  "Confusion matrix",
  "Most confused pairs",
  "Worst misclassifications",
  "Calibration",
  "Training curves",
  "Embedding map",
)


def test_stratified_sample_keeps_class_shares_and_is_seeded():
  labels = np.repeat([0, 1, 2], [600, 300, 100])
  sample = report_lib.stratified_sample(labels, 100, seed=3)
  assert sample.shape == (100,) and len(set(sample.tolist())) == 100
  assert np.bincount(labels[sample]).tolist() == [60, 30, 10]
  again = report_lib.stratified_sample(labels, 100, seed=3)
  np.testing.assert_array_equal(sample, again)
  other = report_lib.stratified_sample(labels, 100, seed=4)
  assert not np.array_equal(sample, other)
  np.testing.assert_array_equal(
    report_lib.stratified_sample(labels[:50], 100, seed=0), np.arange(50)
  )


def test_confused_pairs_are_the_largest_off_diagonal_cells():
  cm = np.array([[50, 3, 0], [7, 40, 3], [1, 0, 60]])
  pairs = report_lib.confused_pairs(cm, top=3)
  assert pairs == [(1, 0, 7), (0, 1, 3), (1, 2, 3)]
  assert report_lib.confused_pairs(np.eye(3, dtype=int) * 5) == []


def test_worst_misclassifications_and_pair_examples():
  probs = np.array(
    [
      [0.9, 0.1],  # right
      [0.6, 0.4],  # wrong, 0.6
      [0.2, 0.8],  # right
      [0.95, 0.05],  # wrong, 0.95
      [0.3, 0.7],  # wrong, 0.7
    ]
  )
  labels = np.array([0, 1, 1, 1, 0])
  worst = report_lib.worst_misclassifications(labels, probs, count=2)
  assert worst.tolist() == [3, 4]
  assert report_lib.pair_examples(labels, probs, 1, 0, 5).tolist() == [3, 1]


def _expected_thumbnails(metrics: dict) -> int:
  cm = np.asarray(metrics["confusion_matrix"])
  pairs = report_lib.confused_pairs(cm)
  per_pair = sum(min(c, report_lib.EXAMPLES_PER_PAIR) for _, _, c in pairs)
  wrong = int(cm.sum() - np.trace(cm))
  return per_pair + min(wrong, report_lib.WORST_SHOWN)


def test_eval_writes_a_self_contained_report(trained_workdir):
  returned = evaluate_run.evaluate_workdir(str(trained_workdir), "test")
  out = trained_workdir / "eval"
  page = (out / "report.html").read_text()
  metrics = json.loads((out / "metrics.json").read_text())

  for heading in HEADINGS:
    assert f"<h2>{heading}</h2>" in page
  accuracy = f"{100 * metrics['accuracy']:.2f}%"
  assert f"<th>accuracy</th><td class='num'>{accuracy}</td>" in page

  # Per-class chart, confusion matrix, reliability diagram, training
  # curves and the t-SNE map; thumbnails of pairs and worst mistakes.
  assert page.count("<img class='figure") == 5
  assert page.count("<img class='thumb'") == _expected_thumbnails(metrics)
  assert page.count("src='data:image/png;base64,") == page.count("<img ")
  assert not re.search(r"(src|href)=['\"]https?:", page)

  assert 0.0 <= metrics["ece"] <= 1.0
  assert returned["ece"] == metrics["ece"]
  assert len(metrics["calibration_bins"]) == 15
  assert sum(b["count"] for b in metrics["calibration_bins"]) == 200
  assert 0.0 <= metrics["top5_accuracy"] <= 1.0  # K = 10 > 5
  assert metrics["top5_accuracy"] >= metrics["accuracy"]
