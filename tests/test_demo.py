"""`jvision demo`: the whole pipeline, run small (runlocal recipes)."""

import json

import numpy as np
import pytest
from PIL import Image

from jvision import configs_io, demo
from jvision import workdir as workdir_lib
from jvision.evaluate import plots


def test_fraction_tag():
  assert demo.fraction_tag(0.01) == "1pct"
  assert demo.fraction_tag(0.1) == "10pct"
  assert demo.fraction_tag(0.005) == "0p5pct"


def test_plan_runs_pairs_every_method_with_every_fraction(tmp_path):
  runs = demo.plan_runs(str(tmp_path))
  assert [(r.method, r.label_fraction) for r in runs] == [
    ("simclr_linear", 0.01),
    ("simclr_finetune", 0.01),
    ("simclr_distill", 0.01),
    ("supervised", 0.01),
    ("simclr_linear", 0.1),
    ("simclr_finetune", 0.1),
    ("simclr_distill", 0.1),
    ("supervised", 0.1),
  ]
  assert runs[0].config_spec.endswith("fashion_mnist_finetune.py:linear,0.01")
  assert runs[0].source == str(tmp_path / "simclr")
  # The distilled student's teacher is the fine-tune at the same fraction.
  assert runs[6].config_spec.endswith("fashion_mnist_distill.py:0.1")
  assert runs[6].source == str(tmp_path / "simclr_finetune_10pct")
  assert runs[7].workdir == str(tmp_path / "supervised_10pct")
  assert runs[7].source == ""
  runlocal = demo.plan_runs(str(tmp_path), (0.1,), "runlocal")
  assert runlocal[2].config_spec.endswith("distill.py:0.1,runlocal")


def test_format_table():
  rows = [
    {"method": "simclr_linear", "label_fraction": 0.01, "test_accuracy": 0.8},
    {"method": "supervised", "label_fraction": 0.01, "test_accuracy": 0.7},
    {"method": "simclr_linear", "label_fraction": 0.1, "test_accuracy": 0.85},
  ]
  lines = demo.format_table(rows).splitlines()
  assert lines[0].split() == ["labels", "simclr_linear", "supervised"]
  assert lines[1].split() == ["1%", "(600)", "0.8000", "0.7000"]
  assert lines[2].split() == ["10%", "(6000)", "0.8500", "-"]


def test_pretraining_gains_name_the_best_simclr_method():
  rows = [
    {"method": "simclr_linear", "label_fraction": 0.01, "test_accuracy": 0.7},
    {"method": "simclr_distill", "label_fraction": 0.01, "test_accuracy": 0.8},
    {"method": "supervised", "label_fraction": 0.01, "test_accuracy": 0.81},
    {"method": "simclr_finetune", "label_fraction": 0.1, "test_accuracy": 0.9},
    {"method": "supervised", "label_fraction": 0.1, "test_accuracy": 0.875},
    {"method": "simclr_linear", "label_fraction": 0.5, "test_accuracy": 0.9},
  ]
  assert demo.pretraining_gains(rows) == [
    "1% (600): simclr_distill 80.00%, -1.00 points over supervised (81.00%)",
    "10% (6000): simclr_finetune 90.00%, +2.50 points over supervised (87.50%)",
  ]


def test_describe_model_names_every_key_of_the_section():
  config = configs_io.load_config_file(
    f"{demo.experiments_dir()}/{demo.PRETRAIN_CONFIG}"
  )
  assert demo.describe_model(config.model) == (
    "fast_cifar (pool=flatten, stem_width=8, widths=(16, 32))"
  )
  config.model = type(config.model)({"name": "resnet18", "width": 0.125})
  assert demo.describe_model(config.model) == "resnet18 (width=0.125)"


def test_plot_label_efficiency(tmp_path):
  rows = [
    {"method": m, "label_fraction": f, "test_accuracy": a}
    for m, f, a in [("a", 0.01, 0.7), ("b", 0.01, 0.8), ("a", 0.1, 0.9)]
  ]
  path = plots.plot_label_efficiency(rows, tmp_path / "out" / "s.png")
  assert Image.open(path).size[0] > 200
  with pytest.raises(ValueError, match="lacks"):
    plots.plot_label_efficiency([{"method": "a"}], tmp_path / "x.png")


SMALL_STEPS = 16


def _shrunk(load):
  """`configs_io.load_config_file` whose recipes run SMALL_STEPS steps of
  32 images on 20 images per class: the demo's own recipes and models
  (runlocal takes minutes on 2 cores), small enough for a test."""

  def load_small(spec):
    config = load(spec)
    config.num_train_steps = SMALL_STEPS
    config.eval_every_steps = SMALL_STEPS
    config.checkpoint_every_steps = SMALL_STEPS // 2
    config.log_every_steps = SMALL_STEPS // 2
    config.optimizer.warmup_steps = 1
    config.batch_size = 32
    config.eval_batch_size = 64
    config.data.max_per_class = 20
    return config

  return load_small


@pytest.mark.slow
def test_demo_pipeline_writes_summary_and_resumes(
  tmp_path, capsys, monkeypatch
):
  monkeypatch.setattr(
    configs_io, "load_config_file", _shrunk(configs_io.load_config_file)
  )
  workdir = str(tmp_path / "demo")
  kwargs = {
    "pretrain_arg": "runlocal",
    "downstream_arg": "runlocal",
    "fractions": (0.1,),
  }
  rows = demo.run_demo(workdir, **kwargs)
  summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
  assert summary == rows
  assert [r["method"] for r in summary] == [
    "simclr_linear",
    "simclr_finetune",
    "simclr_distill",
    "supervised",
  ]
  for row in summary:
    assert set(row) == {"method", "label_fraction", "test_accuracy"}
    assert row["label_fraction"] == 0.1
    assert 0.0 <= row["test_accuracy"] <= 1.0
  # Ten balanced classes: a classifier that predicts one class scores
  # exactly 0.1. After 16 steps some are near it (the student of a 16-step
  # teacher can be at it); together they must be above it.
  assert np.mean([r["test_accuracy"] for r in summary]) > 0.11
  assert (tmp_path / "demo" / "summary.png").is_file()
  assert (tmp_path / "demo" / "simclr" / "augmentations.png").is_file()
  # Each row is its run's own evaluation of the test split.
  for row, run in zip(
    summary,
    (
      "simclr_linear_10pct",
      "simclr_finetune_10pct",
      "simclr_distill_10pct",
      "supervised_10pct",
    ),
    strict=True,
  ):
    path = tmp_path / "demo" / run / "eval" / "metrics.json"
    report = json.loads(path.read_text())
    assert report["split"] == "test" and report["step"] == SMALL_STEPS
    assert row["test_accuracy"] == report["accuracy"]
  out = capsys.readouterr().out
  assert "[1/5] SimCLR pretraining" in out
  assert "10% (6000)" in out
  assert "monitors at the end of pretraining: {" in out
  assert "knn" in out.split("monitors at the end of pretraining:")[1]
  # A second demo in the same workdir finds every run finished: the same
  # numbers, nothing trained or evaluated again.
  again = demo.run_demo(workdir, **kwargs)
  assert again == rows
  out = capsys.readouterr().out
  assert out.count("already trained and evaluated") == 4
  # A run whose evaluation is missing is evaluated again, not retrained.
  (tmp_path / "demo" / "supervised_10pct" / "eval" / "metrics.json").unlink()
  assert demo.run_demo(workdir, **kwargs) == rows
  assert capsys.readouterr().out.count("already trained and evaluated") == 3


def test_a_run_of_another_seed_is_not_taken_as_finished(tmp_path):
  spec = demo.plan_runs(str(tmp_path), (0.01,))[1].config_spec  # finetune
  config = configs_io.load_config_file(spec)
  config.init_from = str(tmp_path / "simclr")
  recorded = configs_io.load_config_file(spec)
  recorded.init_from = config.init_from
  recorded.model.proj_hidden_dims = (256,)  # filled in by the trainer
  recorded.data.loading = "memory"  # resolved from "auto"
  workdir_lib.record(str(tmp_path / "run"), recorded)
  assert demo._same_config(config, str(tmp_path / "run"))
  config.seed = 2
  assert not demo._same_config(config, str(tmp_path / "run"))
