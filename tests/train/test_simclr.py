"""Tests for jvision/train/simclr.py: a real (tiny) pretraining run."""

import json
import math

import numpy as np
from helpers import tiny_config
from PIL import Image

from jvision.train import defaults, simclr


def tiny_simclr_config():
  config = defaults.simclr_config()
  base = tiny_config()
  config.data = base.data
  config.model.name = "resnet_tiny"
  config.simclr.proj_hidden_dims = (32,)
  config.simclr.proj_dim = 16
  config.knn.k = 20
  for key in (
    "batch_size",
    "eval_batch_size",
    "num_train_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "progress_bar",
  ):
    config[key] = base[key]
  config.optimizer.warmup_steps = 2
  return config


def test_pretraining_run_logs_contrastive_knn_and_probe(tmp_path):
  workdir = tmp_path / "simclr"
  result = simclr.train_and_evaluate(tiny_simclr_config(), str(workdir))
  records = [
    json.loads(line)
    for line in (workdir / "metrics.jsonl").read_text().splitlines()
  ]
  train = [r for r in records if r["split"] == "train"]
  # At initialisation NT-Xent is near log(2B - 1) (all similarities alike).
  assert abs(train[0]["contrastive_loss"] - math.log(2 * 32 - 1)) < 1.0
  assert all(np.isfinite(r["loss"]) for r in train)
  evals = [r for r in records if r["split"] == "test"]
  assert [r["step"] for r in evals] == [3, 6]
  assert 0.0 <= result["eval"]["knn_accuracy"] <= 1.0
  assert 0.0 <= result["eval"]["probe_accuracy"] <= 1.0
  preview = Image.open(workdir / "augmentations.png")
  assert preview.size[0] > 200 and preview.size[1] > 200
