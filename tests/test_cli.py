"""Tests for jvision/cli.py, run as a user runs it (subprocesses)."""

import json

from helpers import REPO, run_cli


def jvision(*args, cwd=REPO):
  return run_cli(*args, cwd=cwd)


def test_unknown_config_key_lists_close_keys(tmp_path):
  out = jvision(
    "train",
    "--config=experiments/fashion_mnist_cnn.py:runlocal",
    f"--workdir={tmp_path}/wd",
    "--config.optimizer.learning_rat=0.1",
  )
  assert out.returncode == 2
  assert "unknown config key 'optimizer.learning_rat'" in out.stderr
  assert "optimizer.learning_rate" in out.stderr
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
    "--config.progress_bar=False",
  )
  assert out.returncode == 0, out.stderr[-3000:]
  config = json.loads((wd / "config.json").read_text())["config"]
  assert config["num_train_steps"] == 4
  out = jvision("eval", f"--workdir={wd}")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "accuracy" in out.stdout
  assert (wd / "eval" / "metrics.json").exists()
