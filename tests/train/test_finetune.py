"""Tests for jvision/train/finetune.py: loading, freezing, probing."""

import jax
import numpy as np
import pytest
from helpers import tiny_config

from jvision import checkpoint
from jvision.train import defaults, finetune


def _config(init_from, **overrides):
  config = defaults.finetune_config()
  base = tiny_config(**{"eval_every_steps": 0, **overrides})
  for key in base:
    config[key] = base[key]
  config.trainer = "finetune"
  config.init_from = str(init_from)
  return config


def _params(workdir):
  raw = checkpoint.Checkpointer(str(workdir / "checkpoints")).restore_raw()
  return raw["params"], raw.get("batch_stats") or {}


def _same(a, b):
  return all(
    np.array_equal(x, y)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def test_linear_probe_keeps_the_backbone_and_its_statistics(
  simclr_workdir, tmp_path
):
  pretrained, _ = simclr_workdir
  config = _config(pretrained, **{"model.name": "resnet_tiny"})
  config.finetune.mode = "linear"
  result = finetune.train_and_evaluate(config, str(tmp_path / "probe"))
  assert result["source"].startswith(f"init_from {pretrained} (simclr")
  params, stats = _params(tmp_path / "probe")
  pre_params, pre_stats = _params(pretrained)
  assert _same(
    {k: v for k, v in params.items() if k != "head"}, pre_params["backbone"]
  )
  assert _same(stats, pre_stats["backbone"])
  assert params["head"]["kernel"].shape == (64, 10)


def test_freezing_the_first_stage_trains_the_rest(simclr_workdir, tmp_path):
  pretrained, _ = simclr_workdir
  config = _config(pretrained, **{"model.name": "resnet_tiny"})
  config.finetune.freeze_stages = 1
  finetune.train_and_evaluate(config, str(tmp_path / "ft"))
  params, _ = _params(tmp_path / "ft")
  pre = _params(pretrained)[0]["backbone"]
  for name in ("stem_conv", "stage1_block1"):
    assert _same(params[name], pre[name]), name
  for name in ("stage2_block1", "stage4_block1"):
    assert not _same(params[name], pre[name]), name


def test_supervised_workdir_backbone_loads_without_its_head(
  trained_workdir, tmp_path
):
  config = _config(trained_workdir)
  result = finetune.train_and_evaluate(config, str(tmp_path / "ft"))
  assert "supervised" in result["source"]


def test_mismatched_model_lists_the_parameters(simclr_workdir, tmp_path):
  pretrained, _ = simclr_workdir
  config = _config(pretrained, **{"model.name": "resnet18"})
  config.model.width = 0.125
  config.model.stem = "cifar"
  with pytest.raises(finetune.CheckpointMismatchError) as error:
    finetune.train_and_evaluate(config, str(tmp_path / "bad"))
  message = str(error.value)
  assert "missing from the checkpoint" in message
  assert "stem_conv/kernel: checkpoint (7, 7, 1, 8), model (3, 3, 1, 8)" in (
    message
  )  # resnet_tiny has the ImageNet stem, this model the CIFAR one


def test_update_scales_by_mode():
  params = {
    "stem_conv": {"kernel": 1},
    "stage1_block0": {"w": 1},
    "stage2_block0": {"w": 1},
    "head": {"kernel": 1},
  }
  ft = defaults.finetune_config().finetune
  ft.freeze_stages = 1
  scales = finetune.update_scales(params, ft)
  assert scales == {
    "stem_conv": {"kernel": 0.0},
    "stage1_block0": {"w": 0.0},
    "stage2_block0": {"w": 0.1},
    "head": {"kernel": 1.0},
  }
  ft.mode = "linear"
  assert finetune.update_scales(params, ft)["stage2_block0"] == {"w": 0.0}
  cnn = {"conv1": 1, "conv2": 1, "fc1": 1, "fc2": 1}
  assert [finetune.stage_index(k) for k in cnn] == [1, 2, 3, 4]


def test_new_head_for_another_class_count(simclr_workdir, tmp_path):
  # Pretrained on 10 MNIST classes; fine-tuned on a 3-class image folder.
  from PIL import Image

  from jvision.data import sources

  mnist = sources.load("mnist", split="train", max_per_class=8)
  root = tmp_path / "three"
  for name, digit in (("zero", 0), ("one", 1), ("two", 2)):
    (root / name).mkdir(parents=True)
    for i, image in enumerate(mnist.images[mnist.labels == digit]):
      Image.fromarray(image[..., 0]).save(root / name / f"{i}.png")
  pretrained, _ = simclr_workdir
  config = _config(pretrained, **{"model.name": "resnet_tiny"})
  config.data.name = f"folder:{root}"
  config.data.max_per_class = None
  config.data.holdout_fraction = 0.25
  finetune.train_and_evaluate(config, str(tmp_path / "ft3"))
  params, _ = _params(tmp_path / "ft3")
  assert params["head"]["kernel"].shape == (64, 3)
  assert params["head"]["bias"].shape == (3,)


def test_unset_mean_and_std_take_the_preprocessing_of_init_from(tmp_path):
  from jvision import workdir as workdir_lib
  from jvision.ship import import_weights

  imported = import_weights.import_config(
    "resnet50_keras", weights="w.h5", sha256="0", data=None, image_size=64
  )
  workdir_lib.record(str(tmp_path), imported)
  config = defaults.finetune_config()
  config.init_from = str(tmp_path)
  taken = finetune.with_pretrained_preprocessing(config)
  assert taken.data.channel_order == "bgr"
  np.testing.assert_allclose(
    np.asarray(taken.data.mean) * 255, [103.939, 116.779, 123.68]
  )
  assert config.data.mean is None  # the caller's config is not changed
  config.data.mean, config.data.std = (0.5,) * 3, (0.2,) * 3
  assert finetune.with_pretrained_preprocessing(config) is config


def test_proj_layers_keeps_the_first_layer_of_the_projection_head(
  simclr_workdir, tmp_path
):
  # SimCLRv2's ft_proj_selector=1: backbone -> dense1/bn1 of the head -> new
  # classifier; a linear probe leaves the kept layer as pretrained.
  from jvision import inference
  from jvision import workdir as workdir_lib

  pretrained, _ = simclr_workdir
  config = _config(pretrained, **{"model.name": "resnet_tiny"})
  config.finetune.mode = "linear"
  config.finetune.proj_layers = 1
  result = finetune.train_and_evaluate(config, str(tmp_path / "probe"))
  assert result["source"].endswith("+ 1 projection-head layer(s)")
  params, stats = _params(tmp_path / "probe")
  pre_params, pre_stats = _params(pretrained)
  assert set(params) == {"backbone", "projection", "head"}
  assert _same(params["backbone"], pre_params["backbone"])
  for name in ("dense1", "bn1"):
    assert _same(params["projection"][name], pre_params["projection"][name])
  assert _same(stats["projection"]["bn1"], pre_stats["projection"]["bn1"])
  assert params["head"]["kernel"].shape == (32, 10)  # proj_hidden_dims (32,)
  recorded = workdir_lib.read_config(str(tmp_path / "probe"))
  assert tuple(recorded.model.proj_hidden_dims) == (32,)
  # Inference builds the same network from the record alone.
  model = inference.load(str(tmp_path / "probe"))
  images = np.zeros((3, 28, 28, 1), np.uint8)
  assert model.logits(images).shape == (3, 10)
  assert model.features(images).shape == (3, 32)


def test_proj_layers_beyond_the_head_or_without_simclr_are_refused(
  simclr_workdir, trained_workdir, tmp_path
):
  pretrained, _ = simclr_workdir
  config = _config(pretrained, **{"model.name": "resnet_tiny"})
  config.finetune.proj_layers = 2
  with pytest.raises(ValueError, match=r"has 1 hidden layer\(s\)"):
    finetune.train_and_evaluate(config, str(tmp_path / "two"))
  config = _config(trained_workdir)
  config.finetune.proj_layers = 1
  with pytest.raises(ValueError, match="trained by 'supervised'"):
    finetune.train_and_evaluate(config, str(tmp_path / "sup"))
  assert not (tmp_path / "two").exists() or not any(
    (tmp_path / "two").iterdir()
  )
