"""Tests for jvision/evaluate/workdir.py (`jvision eval`)."""

import json

import numpy as np
import pytest

from jvision.evaluate import workdir as eval_workdir


def test_eval_writes_metrics_and_plots(trained_workdir):
  report = eval_workdir.evaluate_workdir(str(trained_workdir), "test")
  out = trained_workdir / "eval"
  saved = json.loads((out / "metrics.json").read_text())
  assert saved["accuracy"] == pytest.approx(report["accuracy"])
  assert saved["num_examples"] == 200  # max_per_class=20 of 10 digits
  assert saved["step"] == 6
  cm = np.asarray(saved["confusion_matrix"])
  assert cm.shape == (10, 10) and cm.sum(1).tolist() == [20] * 10
  assert saved["accuracy"] == pytest.approx(np.trace(cm) / 200)
  assert (out / "confusion_matrix.png").stat().st_size > 10_000
  assert (out / "training_curves.png").stat().st_size > 10_000


def test_eval_of_a_non_workdir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="not a jvision workdir"):
    eval_workdir.evaluate_workdir(str(tmp_path), "test")


def test_eval_of_a_simclr_workdir_points_to_finetuning(simclr_workdir):
  workdir, _ = simclr_workdir
  with pytest.raises(ValueError, match="init_from="):
    eval_workdir.evaluate_workdir(str(workdir), "test")


def test_flip_tta_averages_the_logits_of_both_mirror_images(trained_workdir):
  from jvision import models, parallel

  config = eval_workdir.read_config(str(trained_workdir))
  variables, _ = eval_workdir.load_variables(str(trained_workdir))
  model = models.create_model("cnn", num_classes=10)
  images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1), np.uint8)
  kw = dict(model=model, config=config, mesh=parallel.create_mesh())
  plain = eval_workdir.predict(variables, {"image": images}, **kw)
  mirrored = eval_workdir.predict(
    variables, {"image": images[:, :, ::-1]}, **kw
  )
  tta = eval_workdir.predict(variables, {"image": images}, tta="flip", **kw)
  np.testing.assert_allclose(tta, (plain + mirrored) / 2, rtol=1e-5, atol=1e-5)
  assert not np.allclose(tta, plain)


def test_unknown_tta_is_a_clear_error(trained_workdir):
  with pytest.raises(ValueError, match="config.eval_tta='crop'; use one of"):
    eval_workdir.evaluate_workdir(str(trained_workdir), "test", tta="crop")


def _imported_record(workdir, *, data, class_names):
  """config.json of an imported workdir (no checkpoint: eval stops first)."""
  from jvision.ship import import_weights
  from jvision.train import workdir as workdir_lib

  config = import_weights.import_config(
    "resnet18", weights="w.safetensors", sha256="0", data=data, image_size=32
  )
  workdir_lib.record(
    str(workdir), config, class_names=class_names, image_shape=(32, 32, 3)
  )


def test_eval_of_an_import_without_data_says_how_to_give_it(tmp_path):
  _imported_record(tmp_path, data=None, class_names=["a", "b"])
  with pytest.raises(ValueError, match="without a data spec.*--data=SPEC"):
    eval_workdir.evaluate_workdir(str(tmp_path))


def test_eval_of_an_imported_backbone_points_to_finetuning(tmp_path):
  _imported_record(tmp_path, data="mnist", class_names=[])
  with pytest.raises(ValueError, match="without a classifier"):
    eval_workdir.evaluate_workdir(str(tmp_path))


def test_eval_on_data_with_another_class_count_is_an_error(tmp_path):
  _imported_record(tmp_path, data="mnist", class_names=["a", "b", "c"])
  with pytest.raises(ValueError, match="has 3 classes but its data 'mnist'"):
    eval_workdir.evaluate_workdir(str(tmp_path))
