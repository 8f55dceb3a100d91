"""Tests for jvision/train/simclr.py: a real (tiny) pretraining run."""

import json
import math

import numpy as np
import pytest
from helpers import tiny_simclr_config
from PIL import Image

from jvision.train import simclr


def test_pretraining_run_logs_contrastive_knn_and_probe(simclr_workdir):
  workdir, result = simclr_workdir
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


def test_bfloat16_pretraining_runs(tmp_path):
  config = tiny_simclr_config()
  config.dtype = "bfloat16"
  config.num_train_steps = 2
  config.eval_every_steps = 2
  result = simclr.train_and_evaluate(config, str(tmp_path / "bf16"))
  assert np.isfinite(result["train"]["contrastive_loss"])


def test_gradient_accumulation_is_refused(tmp_path):
  config = tiny_simclr_config()
  config.grad_accum_steps = 2
  with pytest.raises(ValueError, match="fewer negatives"):
    simclr.train_and_evaluate(config, str(tmp_path / "x"))


def test_decoupled_objective_reaches_the_step(tmp_path):
  # The first step's NT-Xent with and without the positive in the
  # denominator, from the same seed: DCL drops log(1 + e^pos / sum neg) >
  # 0 from each anchor, about log(1 + 1/62) at initialisation (B = 32).
  losses = {}
  for decoupled in (False, True):
    config = tiny_simclr_config()
    config.simclr.decoupled = decoupled
    config.num_train_steps = 1
    config.optimizer.warmup_steps = 0
    config.eval_every_steps = 1
    config.log_every_steps = 1
    result = simclr.train_and_evaluate(config, str(tmp_path / f"{decoupled}"))
    losses[decoupled] = result["train"]["contrastive_loss"]
  assert 0.0 < losses[False] - losses[True] < 0.1
