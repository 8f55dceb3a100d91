"""Tests for jvision/evaluate/run.py (`jvision eval`)."""

import json

import numpy as np
import pytest

from jvision.evaluate import run as evaluate_run


def test_eval_writes_metrics_and_plots(trained_workdir):
  report = evaluate_run.evaluate_workdir(str(trained_workdir), "test")
  out = trained_workdir / "eval"
  saved = json.loads((out / "metrics.json").read_text())
  assert saved["accuracy"] == pytest.approx(report["accuracy"])
  assert saved["num_examples"] == 200  # max_per_class=20 of 10 digits
  assert saved["step"] == 6 and saved["data"] == "mnist"
  cm = np.asarray(saved["confusion_matrix"])
  assert cm.shape == (10, 10) and cm.sum(1).tolist() == [20] * 10
  assert saved["accuracy"] == pytest.approx(np.trace(cm) / 200)
  assert (out / "confusion_matrix.png").stat().st_size > 10_000
  assert (out / "training_curves.png").stat().st_size > 10_000


def test_eval_without_the_embedding_map_says_so(trained_workdir, tmp_path):
  import shutil

  workdir = tmp_path / "copy"
  shutil.copytree(trained_workdir, workdir)
  report = evaluate_run.evaluate_workdir(
    str(workdir), "test", embedding_map=False
  )
  html = (workdir / "eval" / "report.html").read_text()
  assert "Not computed (`jvision demo` leaves it out" in html
  assert "t-SNE (scikit-learn" not in html
  assert report["num_examples"] == 200


def test_eval_of_a_non_workdir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a jvision workdir"):
    evaluate_run.evaluate_workdir(str(tmp_path), "test")


def test_eval_of_a_simclr_workdir_points_to_finetuning(simclr_workdir):
  workdir, _ = simclr_workdir
  for data in (None, "fashion_mnist"):  # not "its classes differ"
    with pytest.raises(ValueError, match="no classifier.*init_from="):
      evaluate_run.evaluate_workdir(str(workdir), "test", data=data)


def test_unknown_tta_is_a_clear_error(trained_workdir):
  with pytest.raises(ValueError, match="config.eval_tta='crop'; use one of"):
    evaluate_run.evaluate_workdir(str(trained_workdir), "test", tta="crop")


def _imported_record(workdir, *, data, class_names):
  """config.json of an imported workdir (no checkpoint: eval stops first)."""
  from jvision import workdir as workdir_lib
  from jvision.ship import import_weights

  config = import_weights.import_config(
    "resnet18", weights="w.safetensors", sha256="0", data=data, image_size=32
  )
  workdir_lib.record(
    str(workdir), config, class_names=class_names, image_shape=(32, 32, 3)
  )


def test_eval_of_an_import_without_data_says_how_to_give_it(tmp_path):
  _imported_record(tmp_path, data=None, class_names=["a", "b"])
  with pytest.raises(ValueError, match="without a data spec.*--data=SPEC"):
    evaluate_run.evaluate_workdir(str(tmp_path))


def test_eval_of_an_imported_backbone_points_to_finetuning(tmp_path):
  _imported_record(tmp_path, data="mnist", class_names=[])
  with pytest.raises(ValueError, match="without a classifier"):
    evaluate_run.evaluate_workdir(str(tmp_path))


def test_eval_on_data_with_another_class_count_is_an_error(tmp_path):
  _imported_record(tmp_path, data="mnist", class_names=["a", "b", "c"])
  with pytest.raises(ValueError, match="has 3 classes but its data 'mnist'"):
    evaluate_run.evaluate_workdir(str(tmp_path))
