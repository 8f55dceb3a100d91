"""Tests for benchmarks/memory.py's options (its runs are in test_gpu_sh)."""

import pytest

from benchmarks import memory
from jvision import configs_io


def test_recipe_spec_adds_runlocal_unless_full():
  spec = memory.recipe_spec("cifar10_linear_eval.py:finetune", full=False)
  assert spec == f"{memory.REPO}/experiments/cifar10_linear_eval.py:" + (
    "finetune,runlocal"
  )
  assert memory.recipe_spec("cifar10_fast.py", full=True) == (
    f"{memory.REPO}/experiments/cifar10_fast.py"
  )


def test_results_name_keeps_the_readme_default():
  assert memory.results_name("fashion_mnist", "cpu") == "memory"
  assert memory.results_name("cifar10", "gpu") == "memory_gpu_cifar10"


def test_overrides_parse_json_or_strings_and_need_existing_keys():
  assert memory.parse_override("batch_size=16") == ("batch_size", 16)
  assert memory.parse_override("model.name=resnet_tiny") == (
    "model.name",
    "resnet_tiny",
  )
  with pytest.raises(ValueError, match="expected KEY=VALUE"):
    memory.parse_override("batch_size")
  config = configs_io.load_config_file(
    memory.recipe_spec("cifar10_simclr_resnet18.py", full=False)
  )
  memory.apply_overrides(config, {"batch_size": 16, "model.name": "x"})
  assert (config.batch_size, config.model.name) == (16, "x")
  with pytest.raises(ValueError, match="--set=model.depth"):
    memory.apply_overrides(config, {"model.depth": 3})


def test_every_recipe_set_has_the_three_trainers():
  for recipes in memory.RECIPES.values():
    assert sorted(recipes) == ["finetune", "simclr", "supervised"]
    for trainer, recipe in recipes.items():
      config = configs_io.load_config_file(memory.recipe_spec(recipe, True))
      assert config.trainer == trainer
