"""Training on streamed data: the ImageNet recipes' runlocal forms on a
generated folder of JPEGs of varied sizes, unlabelled pretraining, the
automatic choice, and bit-identical resumption after SIGKILL with real
worker processes."""

import json
import signal
import time

import jax
import numpy as np
import pytest
from helpers import REPO, tiny_config, train_process, write_photo_folder

from jvision import checkpoint, configs_io
from jvision import workdir as workdir_lib
from jvision.evaluate import run as evaluate_run
from jvision.train import finetune, simclr, supervised


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """ImageNet's layout: train/ and val/ of 3 classes, 8 JPEGs each."""
  return write_photo_folder(tmp_path_factory.mktemp("photos") / "in")


def _recipe(name, arg):
  return configs_io.load_config_file(str(REPO / "experiments" / f"{name}{arg}"))


def _records(workdir):
  with open(workdir / "metrics.jsonl") as f:
    return [json.loads(line) for line in f]


def test_imagenet_recipe_streams_and_evaluates(photos, tmp_path):
  config = _recipe("imagenet_resnet50.py", f":runlocal,data=folder:{photos}")
  workdir = tmp_path / "r50"
  result = supervised.train_and_evaluate(config, str(workdir))
  assert np.isfinite(result["train"]["loss"])
  assert 0.0 <= result["eval"]["accuracy"] <= 1.0
  record = workdir_lib.read_record(str(workdir))
  assert record["config"]["data"]["loading"] == "stream"
  assert record["image_shape"] == [32, 32, 3]
  assert record["class_names"] == ["a", "b", "c"]
  report = evaluate_run.evaluate_workdir(str(workdir), split="val")
  assert sum(report["per_class"][c]["support"] for c in "abc") == 24
  assert (workdir / "eval" / "report.html").exists()


def test_simclr_recipe_and_its_linear_evaluation(photos, tmp_path):
  data = f"data=folder:{photos}"
  pretrain = _recipe("imagenet_simclr_resnet50.py", f":runlocal,{data}")
  result = simclr.train_and_evaluate(pretrain, str(tmp_path / "simclr"))
  assert np.isfinite(result["train"]["contrastive_loss"])
  assert 0.0 <= result["eval"]["knn_accuracy"] <= 1.0
  assert (tmp_path / "simclr" / "augmentations.png").exists()
  linear = _recipe("imagenet_simclr_resnet50.py", f":linear,runlocal,{data}")
  linear.init_from = str(tmp_path / "simclr")
  out = finetune.train_and_evaluate(linear, str(tmp_path / "linear"))
  assert out["source"].startswith(f"init_from {tmp_path / 'simclr'}")
  assert 0.0 <= out["eval"]["accuracy"] <= 1.0


def test_unlabelled_folder_pretrains_with_a_monitor(photos, tmp_path, caplog):
  unlabelled = write_photo_folder(
    tmp_path / "unl", classes=(), per_class=12, splits=("train",)
  )
  config = _recipe(
    "imagenet_simclr_resnet50.py", f":runlocal,data=folder:{unlabelled}"
  )
  config.data.eval_split = "train"
  config.num_train_steps = 4
  off = simclr.train_and_evaluate(config, str(tmp_path / "off"))
  assert off["eval"] == {}
  assert "probe_loss" in off["train"] and off["train"]["probe_loss"] == 0.0
  config.knn.monitor_data = f"folder:{photos}"
  config.knn.monitor_splits = ("train", "val")
  on = simclr.train_and_evaluate(config, str(tmp_path / "on"))
  assert set(on["eval"]) == {"knn_accuracy"}  # no probe without labels


def test_auto_streams_only_above_the_memory_limit(photos, tmp_path, caplog):
  base = tiny_config(
    **{
      "data.name": f"folder:{photos}",
      "data.eval_split": "val",
      "data.max_per_class": None,
      "data.image_size": 28,
      "data.channels": 1,
      "data.mean": None,
      "data.std": None,
      "data.workers": 0,
      "num_train_steps": 2,
      "eval_every_steps": 2,
    }
  )
  caplog.set_level("INFO")
  supervised.train_and_evaluate(base, str(tmp_path / "memory"))
  assert "data loading: memory (the decoded training split of 24" in caplog.text
  base.data.max_memory_gib = 1e-6
  supervised.train_and_evaluate(base, str(tmp_path / "stream"))
  assert "data loading: stream (the decoded training split of 24" in caplog.text
  recorded = workdir_lib.read_config(str(tmp_path / "stream"))
  assert recorded.data.loading == "stream"
  assert len(recorded.data.mean) == 1  # measured on a sample, 1 channel


def test_stream_needs_a_streamable_source_and_a_size(tmp_path):
  config = tiny_config(**{"data.loading": "stream"})  # mnist: memory only
  with pytest.raises(ValueError, match="loaded in memory only"):
    supervised.train_and_evaluate(config, str(tmp_path / "a"))
  config = tiny_config(**{"data.loading": "streamed"})
  with pytest.raises(ValueError, match="data.loading"):
    supervised.train_and_evaluate(config, str(tmp_path / "b"))
  assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


STEPS = 240
CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from helpers import tiny_config


def get_config():
  return tiny_config(**{{
    "data.name": "folder:{photos}",
    "data.eval_split": "val",
    "data.max_per_class": None,
    "data.image_size": 28,
    "data.channels": 1,
    "data.loading": "stream",
    "data.workers": 2,
    "num_train_steps": {steps},
    "checkpoint_every_steps": 20,
    "eval_every_steps": 0,
    "log_every_steps": 20,
    "batch_size": 8,
    "optimizer.learning_rate": 0.02,
  }})
"""


def _final(workdir):
  ckpt = checkpoint.Checkpointer(str(workdir / "checkpoints"))
  assert ckpt.latest_step() == STEPS
  return ckpt.restore_raw()


@pytest.mark.slow
def test_streamed_run_killed_and_rerun_is_bit_identical(photos, tmp_path):
  config = tmp_path / "config.py"
  config.write_text(
    CONFIG.format(tests=str(REPO / "tests"), photos=photos, steps=STEPS)
  )
  whole = train_process(config, tmp_path / "whole")
  _, err = whole.communicate(timeout=600)
  assert whole.returncode == 0, err[-3000:]
  assert "data feed: stream (2 worker process(es)" in err
  killed = tmp_path / "killed"
  process = train_process(config, killed)
  deadline = time.monotonic() + 300
  ckpts = killed / "checkpoints"
  while not (ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())):
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert time.monotonic() < deadline, "no checkpoint appeared"
    time.sleep(0.05)
  time.sleep(0.5)
  process.send_signal(signal.SIGKILL)
  process.communicate(timeout=60)
  rerun = train_process(config, killed)
  out, err = rerun.communicate(timeout=600)
  assert rerun.returncode == 0, err[-3000:]
  assert "from checkpoint step" in out + err
  expected, got = _final(tmp_path / "whole"), _final(killed)
  for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
    np.testing.assert_array_equal(x, y)
