"""Tests for jvision/train/simclr.py: a real (tiny) pretraining run."""

import json
import math

import numpy as np
from PIL import Image


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
