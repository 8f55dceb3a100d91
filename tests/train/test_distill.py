"""Tests for jvision/train/distill.py: a student learns a teacher's soft
labels on the training images without their labels."""

import json

import jax
import numpy as np
import pytest
from helpers import tiny_config, tiny_distill_config, write_photo_folder

from jvision import checkpoint
from jvision.data import subsets
from jvision.evaluate import run as evaluate_run
from jvision.train import distill, supervised


def _config(teacher, **overrides):
  return tiny_distill_config(teacher, **{"eval_every_steps": 0, **overrides})


def _params(workdir):
  return checkpoint.Checkpointer(str(workdir / "checkpoints")).restore_raw()[
    "params"
  ]


def _records(workdir):
  with open(workdir / "metrics.jsonl") as f:
    return [json.loads(line) for line in f]


def test_student_learns_the_teacher_without_labels(trained_workdir, tmp_path):
  config = _config(
    trained_workdir,
    num_train_steps=12,
    eval_every_steps=12,
    **{"data.mean": None, "data.std": None},
  )
  config.distill.temperature = 2.0
  result = distill.train_and_evaluate(config, str(tmp_path / "student"))
  train = [r for r in _records(tmp_path / "student") if "distill_loss" in r]
  first, last = train[0], train[-1]  # steps 2 and 12
  assert last["distill_loss"] < first["distill_loss"]
  # The tiny teacher's soft labels are nearly flat (loss ~ ln 10), but
  # their arg-max is learnt: 0.02 -> 0.64 of the batch when written.
  assert last["teacher_agreement"] > first["teacher_agreement"] + 0.2
  assert 0.0 <= result["eval"]["accuracy"] <= 1.0
  with open(tmp_path / "student" / "config.json") as f:
    recorded = json.load(f)["config"]
  with open(trained_workdir / "config.json") as f:
    teacher = json.load(f)["config"]
  assert recorded["distill"]["teacher_step"] == teacher["num_train_steps"]
  # Unset mean and std take the teacher's preprocessing.
  assert recorded["data"]["mean"] == teacher["data"]["mean"]


def test_a_student_of_unlabelled_images_is_evaluated_on_labelled_ones(
  trained_workdir, tmp_path, caplog
):
  unlabelled = write_photo_folder(
    tmp_path / "photos", classes=(), per_class=40, splits=("train",)
  )
  config = _config(
    trained_workdir,
    num_train_steps=2,
    **{
      "data.name": f"folder:{unlabelled}",
      "data.eval_split": "train",  # its only split
      "data.max_per_class": None,
      "data.image_size": 28,
      "data.channels": 1,
    },
  )
  caplog.set_level("INFO")
  student = tmp_path / "student"
  result = distill.train_and_evaluate(config, str(student))
  # No accuracy against labels of -1: evaluation is off, and says so.
  assert result["eval"] == {}
  assert f"evaluation off: split 'train' of folder:{unlabelled} is " in (
    caplog.text
  )
  # The student's outputs are the teacher's classes.
  with open(student / "config.json") as f:
    assert json.load(f)["class_names"] == [str(d) for d in range(10)]
  report = evaluate_run.evaluate_workdir(
    str(student), "test", data="mnist", embedding_map=False
  )
  assert report["data"] == "mnist" and report["split"] == "test"
  assert report["num_examples"] == 10_000
  assert 0.0 <= report["accuracy"] <= 1.0
  lettered = write_photo_folder(tmp_path / "abc", splits=("test",))
  with pytest.raises(ValueError, match=r"has the classes \['0', '1'"):
    evaluate_run.evaluate_workdir(
      str(student), "test", data=f"folder:{lettered}", embedding_map=False
    )


def test_resumed_distillation_matches_uninterrupted(trained_workdir, tmp_path):
  overrides = {"optimizer.schedule": "constant", "checkpoint_every_steps": 0}
  whole = _config(trained_workdir, num_train_steps=6, **overrides)
  whole.distill.label_weight = 0.5
  distill.train_and_evaluate(whole, str(tmp_path / "whole"))
  first = _config(trained_workdir, num_train_steps=3, **overrides)
  first.distill.label_weight = 0.5
  distill.train_and_evaluate(first, str(tmp_path / "split"))
  result = distill.train_and_evaluate(whole, str(tmp_path / "split"))
  assert result["source"] == "checkpoint step 3"
  a, b = _params(tmp_path / "whole"), _params(tmp_path / "split")
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_resuming_after_the_teacher_changed_is_refused(tmp_path):
  teacher = tmp_path / "teacher"
  supervised.train_and_evaluate(tiny_config(num_train_steps=3), str(teacher))
  student = tmp_path / "student"
  distill.train_and_evaluate(_config(teacher, num_train_steps=3), str(student))
  supervised.train_and_evaluate(tiny_config(num_train_steps=6), str(teacher))
  with pytest.raises(ValueError, match=r"distill.teacher_step: 3 -> 6"):
    distill.train_and_evaluate(
      _config(teacher, num_train_steps=6), str(student)
    )


def test_a_simclr_workdir_is_not_a_teacher(simclr_workdir, tmp_path):
  pretrained, _ = simclr_workdir
  with pytest.raises(ValueError, match="simclr run without a classifier"):
    distill.train_and_evaluate(_config(pretrained), str(tmp_path / "s"))


@pytest.mark.parametrize(
  "key, value, message",
  [
    ("teacher", None, "must name a classifier workdir"),
    ("temperature", 0.0, "must be > 0"),
    ("label_weight", 1.5, r"must be in \[0, 1\]"),
  ],
)
def test_bad_settings_name_the_key(
  trained_workdir, tmp_path, key, value, message
):
  config = _config(trained_workdir)
  config.distill[key] = value
  with pytest.raises(ValueError, match=f"config.distill.{key}.*{message}"):
    distill.train_and_evaluate(config, str(tmp_path / "s"))
  assert not (tmp_path / "s").exists()


def test_labels_are_hidden_unless_weighted():
  labels = np.repeat(np.arange(4, dtype=np.int32), 10)  # 40 examples
  config = _config("unused")
  config.data.label_fraction = 0.2
  np.testing.assert_array_equal(distill.hidden_labels(labels, config), -1)
  config.distill.label_weight = 0.3
  shown = distill.hidden_labels(labels, config)
  keep = subsets.label_subset(labels, 0.2, seed=config.seed)
  np.testing.assert_array_equal(np.flatnonzero(shown >= 0), keep)
  np.testing.assert_array_equal(shown[keep], labels[keep])


def test_init_student_starts_from_the_teachers_weights(
  trained_workdir, tmp_path
):
  config = _config(
    trained_workdir,
    num_train_steps=2,
    **{"data.mean": None, "data.std": None},
  )
  config.distill.init_student = True
  config.optimizer.learning_rate = 0.0  # nothing moves: the start is kept
  config.optimizer.weight_decay = 0.0
  result = distill.train_and_evaluate(config, str(tmp_path / "self"))
  assert result["source"].startswith(f"init_from {trained_workdir}")
  student, teacher = _params(tmp_path / "self"), _params(trained_workdir)
  assert jax.tree.structure(student) == jax.tree.structure(teacher)
  for a, b in zip(
    jax.tree.leaves(student), jax.tree.leaves(teacher), strict=True
  ):
    np.testing.assert_array_equal(a, b)
  # Another student model cannot start from the teacher's weights.
  config = _config(trained_workdir, **{"model.name": "resnet_tiny"})
  config.distill.init_student = True
  with pytest.raises(
    ValueError, match=r"differs from the teacher's in \['name'"
  ):
    distill.train_and_evaluate(config, str(tmp_path / "other"))
