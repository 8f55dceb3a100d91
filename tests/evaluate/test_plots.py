"""Tests for jvision.evaluate.plots."""

import json
import math

import numpy as np
import pytest
from helpers import FASHION_NAMES
from matplotlib import colormaps
from PIL import Image

from jvision.evaluate import plots


def _assert_png(path, min_side=300, max_side=4000):
  """Checks that `path` is a PNG that PIL can decode, of a sane size."""
  assert path.is_file()
  with Image.open(path) as image:
    assert image.format == "PNG"
    image.load()
    width, height = image.size
  assert min_side <= width <= max_side
  assert min_side <= height <= max_side
  return width, height


def _records(num_steps=300, eval_every=100):
  """Synthetic metrics.jsonl lines for a train and a test split."""
  records = []
  for step in range(0, num_steps + 1, 10):
    records.append(
      {
        "step": step,
        "split": "train",
        "loss": 2.3 * math.exp(-step / 100) + 0.1,
        "accuracy": 1 - 0.9 * math.exp(-step / 80),
        "learning_rate": 0.1 * min(1.0, step / 50),
        "images_per_sec": 1000.0,
      }
    )
    if step % eval_every == 0:
      records.append(
        {
          "step": step,
          "split": "test",
          "loss": 2.3 * math.exp(-step / 100) + 0.3,
          "accuracy": 0.95 - 0.85 * math.exp(-step / 80),
        }
      )
  return records


@pytest.mark.parametrize("normalize", [True, False])
def test_confusion_matrix_png(tmp_path, normalize):
  rng = np.random.default_rng(0)
  cm = rng.integers(0, 50, size=(10, 10)) + np.diag(np.full(10, 900))
  cm[3] = 0  # A class with no support must not produce NaNs.
  path = tmp_path / "eval" / "confusion_matrix.png"
  with np.errstate(all="raise"):
    written = plots.plot_confusion_matrix(
      cm, FASHION_NAMES, path, normalize=normalize
    )
  assert written == path
  width, height = _assert_png(path)
  # 10 classes at the default dpi: a large, roughly square image.
  assert width >= 800 and height >= 800


def test_confusion_matrix_many_classes_skips_cell_text(tmp_path):
  k = plots.MAX_ANNOTATED_CLASSES + 5
  cm = np.eye(k, dtype=np.int64) * 10
  names = [f"class_{i}" for i in range(k)]
  path = plots.plot_confusion_matrix(cm, names, tmp_path / "cm.png", dpi=60)
  _assert_png(path)


def test_confusion_matrix_rejects_mismatched_names(tmp_path):
  with pytest.raises(ValueError, match=r"expected \(3, 3\) for 3 class"):
    plots.plot_confusion_matrix(np.eye(4), ["a", "b", "c"], tmp_path / "x")


def test_text_contrasts_with_cell_colour():
  cmap = colormaps["Blues"]
  colors = plots._text_colors(np.array([[0.0, 100.0]]), cmap, vmax=100.0)
  assert colors.tolist() == [["black", "white"]]


def test_cell_labels_blank_zeros_and_percentages():
  cm = np.array([[3, 1, 0], [0, 0, 0], [0, 1, 1999]])
  labels = plots._cell_labels(cm, normalize=True)
  assert labels.tolist() == [
    ["75", "25", ""],
    ["", "", ""],
    ["", "0.1", "99.9"],  # 1999/2000 = 99.95% is not shown as 100.
  ]
  assert plots._cell_labels(cm, normalize=False)[0].tolist() == ["3", "1", ""]


def test_training_curves_png_with_both_splits(tmp_path):
  path = plots.plot_training_curves(_records(), tmp_path / "curves.png")
  width, height = _assert_png(path)
  assert width > 2 * height  # Three panels side by side.


def test_training_curves_skip_missing_metrics(tmp_path):
  records = [
    {"step": s, "split": "train", "loss": 1.0 / (s + 1)} for s in range(5)
  ]
  path = plots.plot_training_curves(records, tmp_path / "loss.png")
  width, height = _assert_png(path)
  assert width < 1.5 * height  # A single panel.


def test_training_curves_single_record(tmp_path):
  records = [{"step": 0, "split": "test", "loss": 2.3, "accuracy": 0.1}]
  _assert_png(plots.plot_training_curves(records, tmp_path / "one.png"))


def test_training_curves_resumed_run_and_non_finite_values(tmp_path):
  records = _records(num_steps=50) + _records(num_steps=50)  # Steps repeat.
  records.append({"step": 60, "split": "train", "loss": float("nan")})
  records.append({"step": 70, "split": "train", "loss": None})
  steps, values = plots._series(records, "loss")["train"]
  np.testing.assert_array_equal(steps, [0, 10, 20, 30, 40, 50])
  assert np.all(np.isfinite(values))
  _assert_png(plots.plot_training_curves(records, tmp_path / "r.png"))


def test_training_curves_errors(tmp_path):
  with pytest.raises(ValueError, match="No metric records"):
    plots.plot_training_curves([], tmp_path / "empty.png")
  with pytest.raises(ValueError, match=r"Record 1 lacks \['split'\]"):
    plots.plot_training_curves(
      [{"step": 0, "split": "train", "loss": 1.0}, {"step": 1, "loss": 1.0}],
      tmp_path / "bad.png",
    )
  with pytest.raises(ValueError, match="keys found: .*images_per_sec"):
    plots.plot_training_curves(
      [{"step": 0, "split": "train", "images_per_sec": 9.0}],
      tmp_path / "none.png",
    )
  assert not list(tmp_path.iterdir())


def test_read_metrics_jsonl_round_trip(tmp_path):
  records = _records(num_steps=30)
  path = tmp_path / "metrics.jsonl"
  lines = [json.dumps(r) for r in records]
  path.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n")
  assert plots.read_metrics_jsonl(path) == records


@pytest.mark.parametrize(
  "bad_line, match",
  [
    ('{"step": 2, "split": "tr', r"metrics.jsonl:3: malformed JSON"),
    ("[1, 2]", r"metrics.jsonl:3: expected a JSON object, got list"),
  ],
)
def test_read_metrics_jsonl_names_bad_line(tmp_path, bad_line, match):
  path = tmp_path / "metrics.jsonl"
  good = '{"step": 0, "split": "train", "loss": 1.0}'
  path.write_text("\n".join([good, good, bad_line, good]) + "\n")
  with pytest.raises(ValueError, match=match):
    plots.read_metrics_jsonl(path)
