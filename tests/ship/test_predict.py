"""Tests for jvision/ship/predict.py (`jvision predict`).

Real MNIST test digits are written as PNGs (lossless, so the decoded arrays
equal the originals) beside broken files, and the CSV is checked against the
trained model applied directly to the same arrays.
"""

import csv
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
from helpers import jpeg_bytes, png_bytes

from jvision import data, inference
from jvision.ship import predict

NUM_DIGITS = 20
BATCH = 8  # Smaller than the folder, so predictions stream in 4 batches.
BROKEN = ("broken/cut.jpg", "broken/empty.png", "broken/truncated.png")


@pytest.fixture(scope="module")
def digits(shared_data) -> dict[str, np.ndarray]:
  """{relative path: uint8 [28, 28, 1]} of 20 MNIST test digits."""
  test = data.load(f"idx:{shared_data / 'mnist'}", "test", progress=False)
  return {
    f"digits/{i % 3}/{i:04d}.png": test.images[i] for i in range(NUM_DIGITS)
  }


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory, digits) -> pathlib.Path:
  """The digits, three broken images and files that are not images."""
  root = tmp_path_factory.mktemp("predict") / "images"
  files = {name: png_bytes(image[..., 0]) for name, image in digits.items()}
  png = png_bytes(digits["digits/0/0000.png"][..., 0])
  files["broken/empty.png"] = b""
  files["broken/truncated.png"] = png[: len(png) // 2]
  cut = jpeg_bytes(next(iter(digits.values()))[..., 0])
  files["broken/cut.jpg"] = cut[: len(cut) // 2]
  files[".hidden.png"] = png  # Hidden: skipped.
  files[".cache/x.png"] = png  # In a hidden folder: skipped.
  files["notes.txt"] = b"not an image"  # Not an image extension: skipped.
  for name, content in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
  return root


@pytest.fixture(scope="module")
def model(trained_workdir) -> inference.Inference:
  return inference.load(str(trained_workdir))


@pytest.fixture(scope="module")
def expected(model, digits) -> dict[str, np.ndarray]:
  """{path: float32 [K] probabilities} from applying the Model directly."""
  names = sorted(digits)
  prepared = model.prepare([digits[n] for n in names])
  probs = model.probabilities(prepared, batch_size=BATCH)
  return dict(zip(names, probs, strict=True))


def _read(path) -> tuple[list[str], list[dict]]:
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    return reader.fieldnames, list(reader)


def _run(workdir, images, out, **kwargs):
  kwargs.setdefault("batch_size", BATCH)
  return predict.run_predict(
    str(workdir), str(images), str(out), progress=False, **kwargs
  )


def _check_predictions(rows, expected, class_names, top_k):
  """Each good row holds the model's top_k classes and rounded scores."""
  for row in rows:
    probs = expected[row["path"]]
    order = np.argsort(-probs, kind="stable")[:top_k]
    keys = [("label", "score")] + [
      (f"label_{i}", f"score_{i}") for i in range(2, top_k + 1)
    ]
    scores = [float(row[s]) for _, s in keys]
    assert [row[label] for label, _ in keys] == [class_names[i] for i in order]
    np.testing.assert_allclose(scores, probs[order], atol=1e-4)
    assert all(len(row[s].split(".")[1]) == 4 for _, s in keys)
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert row["error"] == ""


def test_folder_predictions_match_the_model(
  trained_workdir, image_dir, digits, model, expected, tmp_path
):
  out = tmp_path / "preds.csv"
  summary = _run(trained_workdir, image_dir, out)
  header, rows = _read(out)
  assert header == [
    "path",
    "label",
    "score",
    "label_2",
    "score_2",
    "label_3",
    "score_3",
    "error",
  ]
  paths = [row["path"] for row in rows]
  assert paths == sorted([*digits, *BROKEN])
  good = [row for row in rows if row["path"] in digits]
  _check_predictions(good, expected, model.class_names, top_k=3)
  bad = {row["path"]: row for row in rows if row["path"] in BROKEN}
  assert bad["broken/empty.png"]["error"] == "empty file (0 bytes)"
  assert "truncated" in bad["broken/truncated.png"]["error"]
  assert "truncated" in bad["broken/cut.jpg"]["error"]
  for row in bad.values():
    assert [row[k] for k in header[1:-1]] == [""] * 6
  assert summary["images"] == NUM_DIGITS + 3
  assert summary["predicted"] == NUM_DIGITS
  assert [p for p, _ in summary["unreadable"]] == list(BROKEN)
  assert summary["unreadable"][1] == (
    "broken/empty.png",
    "empty file (0 bytes)",
  )
  assert summary["out"] == str(out)
  top1 = [model.class_names[np.argmax(p)] for p in expected.values()]
  assert summary["class_counts"] == {n: top1.count(n) for n in set(top1)}
  assert list(summary["class_counts"].values()) == sorted(
    summary["class_counts"].values(), reverse=True
  )


def test_zip_gives_the_same_csv_as_the_folder(
  trained_workdir, image_dir, tmp_path
):
  archive = tmp_path / "images.zip"
  with zipfile.ZipFile(archive, "w") as z:
    for path in sorted(image_dir.rglob("*")):
      if path.is_file():
        z.write(path, path.relative_to(image_dir).as_posix())
  _run(trained_workdir, image_dir, tmp_path / "folder.csv")
  summary = _run(trained_workdir, archive, tmp_path / "zip.csv", batch_size=5)
  assert summary["images"] == NUM_DIGITS + 3
  folder_csv = (tmp_path / "folder.csv").read_text()
  assert (tmp_path / "zip.csv").read_text() == folder_csv


def test_single_file_with_top_1(
  trained_workdir, image_dir, model, expected, tmp_path
):
  out = tmp_path / "one.csv"
  image = image_dir / "digits/1/0004.png"
  summary = _run(trained_workdir, image, out, top_k=1)
  header, rows = _read(out)
  assert header == ["path", "label", "score", "error"]
  assert [row["path"] for row in rows] == ["0004.png"]
  rows[0]["path"] = "digits/1/0004.png"
  _check_predictions(rows, expected, model.class_names, top_k=1)
  assert summary["predicted"] == 1 and summary["unreadable"] == []


def test_single_unreadable_file_is_a_row_not_a_crash(
  trained_workdir, image_dir, tmp_path
):
  out = tmp_path / "one.csv"
  _run(trained_workdir, image_dir / "broken/empty.png", out)
  _, rows = _read(out)
  assert rows == [
    {
      "path": "empty.png",
      **{k: "" for k in ("label", "score", "label_2", "score_2")},
      **{k: "" for k in ("label_3", "score_3")},
      "error": "empty file (0 bytes)",
    }
  ]


def test_top_k_below_one_is_an_error(trained_workdir, image_dir, tmp_path):
  out = tmp_path / "preds.csv"
  with pytest.raises(ValueError, match="top_k must be .* >= 1, got 0"):
    _run(trained_workdir, image_dir, out, top_k=0)
  assert not out.exists()
  assert list(tmp_path.iterdir()) == []  # No temporary file left behind.


def test_top_k_above_the_class_count_writes_every_class(
  trained_workdir, image_dir, tmp_path, expected, model
):
  out = tmp_path / "preds.csv"
  summary = _run(trained_workdir, image_dir, out, top_k=11)
  header, rows = _read(out)
  assert summary["top_k"] == 10
  assert header == predict.csv_header(10)
  assert header[-3:] == ["label_10", "score_10", "error"]
  good = [row for row in rows if not row["error"]]
  assert len(good) == NUM_DIGITS
  _check_predictions(good, expected, model.class_names, 10)


def test_refuses_to_overwrite_a_file_that_is_not_predictions(
  trained_workdir, image_dir, tmp_path
):
  for content in ("my notes\n", "path,label\nx,y\n", ""):
    out = tmp_path / "notes.csv"
    out.write_text(content)
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
      _run(trained_workdir, image_dir, out)
    assert out.read_text() == content
  binary = tmp_path / "photo.png"
  binary.write_bytes(b"\x89PNG\xff\xfe")
  with pytest.raises(FileExistsError, match=str(binary)):
    _run(trained_workdir, image_dir, binary)


def test_rerun_over_its_own_csv_inside_the_folder(
  trained_workdir, image_dir, tmp_path
):
  images = tmp_path / "images"
  shutil.copytree(image_dir, images)
  out = images / "preds.csv"
  first = _run(trained_workdir, images, out)
  text = out.read_text()
  second = _run(trained_workdir, images, out, top_k=2)
  assert second["images"] == first["images"]  # The CSV is not an image.
  assert out.read_text().splitlines()[0].endswith("score_2,error")
  third = _run(trained_workdir, images, out)
  assert out.read_text() == text and third == first
  assert sorted(p.name for p in images.iterdir() if p.is_file()) == [
    ".hidden.png",
    "notes.txt",
    "preds.csv",
  ]


def test_missing_or_empty_images_path_is_an_error(trained_workdir, tmp_path):
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError, match=f"--images={missing}"):
    _run(trained_workdir, missing, tmp_path / "p.csv")
  empty = tmp_path / "empty"
  empty.mkdir()
  (empty / "readme.txt").write_text("no images here")
  with pytest.raises(ValueError, match=f"--images={empty} holds no images"):
    _run(trained_workdir, empty, tmp_path / "p.csv")


def test_a_directory_that_is_not_a_workdir_is_an_error(image_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match="not a jvision workdir"):
    _run(tmp_path, image_dir, tmp_path / "p.csv")
  assert not (tmp_path / "p.csv").exists()


def test_format_summary_lists_counts_classes_and_unreadable_files():
  summary = {
    "images": 15,
    "predicted": 3,
    "unreadable": [
      (f"bad/{i:02d}.png", "empty file (0 bytes)") for i in range(12)
    ],
    "out": "preds.csv",
    "class_counts": {"7": 2, "1": 1},
  }
  text = predict.format_summary(summary)
  assert text.splitlines()[0] == "predicted 3 of 15 images; 12 unreadable"
  assert "top classes: 7 2, 1 1" in text
  assert "  bad/09.png: empty file (0 bytes)" in text
  assert "bad/10.png" not in text and "... and 2 more" in text
  assert text.splitlines()[-1] == "wrote preds.csv"


def test_a_simclr_workdir_without_classifier_is_an_error(
  simclr_workdir, image_dir, tmp_path
):
  workdir, _ = simclr_workdir
  with pytest.raises(ValueError, match="no classifier; fine-tune it first"):
    _run(workdir, image_dir, tmp_path / "p.csv")
  assert list(tmp_path.iterdir()) == []
