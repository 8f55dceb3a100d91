"""Tests for jvision/cli.py, run as a user runs it (subprocesses)."""

import json

import ml_collections
import pytest
from helpers import REPO, run_cli

from jvision import cli


def jvision(*args, cwd=REPO):
  return run_cli(*args, cwd=cwd)


@pytest.mark.parametrize(
  "override, key, close",
  [
    (
      "--config.optimizer.learning_rat=0.1",
      "optimizer.learning_rat",
      "optimizer.learning_rate",
    ),
    (  # unsetting a key
      "--config.data.max_per_clas=None",
      "data.max_per_clas",
      "data.max_per_class",
    ),
  ],
)
def test_unknown_config_key_lists_close_keys(tmp_path, override, key, close):
  out = jvision(
    "train",
    "--config=experiments/fashion_mnist_cnn.py:runlocal",
    f"--workdir={tmp_path}/wd",
    override,
  )
  assert out.returncode == 2
  assert f"unknown config key {key!r}" in out.stderr
  assert close in out.stderr
  assert not (tmp_path / "wd").exists()


def test_unknown_command_suggests(tmp_path):
  out = jvision("trian")
  assert out.returncode != 0
  assert "did you mean train" in out.stderr


def test_train_then_eval_from_the_command_line(tmp_path):
  wd = tmp_path / "wd"
  out = jvision(
    "train",
    "--config=experiments/mnist_cnn.py:runlocal",
    f"--workdir={wd}",
    "--config.num_train_steps=4",
    "--config.optimizer.warmup_steps=0",
    "--config.data.max_per_class=10",
    "--config.data.manifest=None",  # ml_collections alone: the path "None"
    "--config.progress_bar=False",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  config = json.loads((wd / "config.json").read_text())["config"]
  assert config["num_train_steps"] == 4
  assert config["data"]["manifest"] is None
  out = jvision("eval", f"--workdir={wd}")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "accuracy" in out.stdout
  assert (wd / "eval" / "metrics.json").exists()


def test_none_overrides_are_taken_out_of_argv():
  argv = [
    "jvision",
    "train",
    "--config=x.py",
    "--config.data.max_per_class=None",
    "--config.init_from",
    "None",
    "--config.seed=3",
    "--workdir",
    "None",
    "--audit.near_duplicate.threshold=None",
  ]
  kept, unset = cli.none_overrides(argv)
  assert kept == [
    "jvision",
    "train",
    "--config=x.py",
    "--config.seed=3",
    "--workdir",
    "None",
  ]
  assert unset == [
    ("config", "data.max_per_class"),
    ("config", "init_from"),
    ("audit", "near_duplicate.threshold"),
  ]


def test_unset_keys_sets_none_and_names_what_it_cannot():
  config = ml_collections.ConfigDict({"data": {"max_per_class": 100}})
  cli.unset_keys({"config": config}, [("config", "data.max_per_class")], [])
  assert config.data.max_per_class is None
  with pytest.raises(KeyError, match="data.max_per_clas"):
    cli.unset_keys({"config": config}, [("config", "data.max_per_clas")], [])
  with pytest.raises(ValueError, match="data is a section"):
    cli.unset_keys({"config": config}, [("config", "data")], [])
  with pytest.raises(ValueError, match="also given a value"):
    cli.unset_keys(
      {"config": config},
      [("config", "data.max_per_class")],
      ["--config.data.max_per_class=5"],
    )
  with pytest.raises(ValueError, match="needs --config=FILE"):
    cli.unset_keys({"config": None}, [("config", "seed")], [])
