"""Every recipe in experiments/ loads, in full and runlocal form."""

import pytest
from helpers import REPO

from jvision import configs_io, models
from jvision.train import defaults

RECIPES = sorted((REPO / "experiments").glob("*.py"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
@pytest.mark.parametrize("arg", ["", ":runlocal"])
def test_recipe_loads_with_known_keys(path, arg):
  config = configs_io.load_config_file(f"{path}{arg}")
  known = set(configs_io.flat_keys(defaults.supervised_config()))
  extra = set(configs_io.flat_keys(config)) - known
  assert all(key.startswith("model.") for key in extra), extra
  assert config.model.name in models.MODELS
  assert 0 <= config.optimizer.warmup_steps <= config.num_train_steps


def test_unknown_argument_is_an_error():
  with pytest.raises(ValueError, match="unknown config argument 'fast'"):
    configs_io.load_config_file(f"{RECIPES[0]}:fast")


def test_recipes_are_the_documented_ones():
  assert {p.stem for p in RECIPES} >= {
    "fashion_mnist_cnn",
    "fashion_mnist_resnet",
    "mnist_cnn",
    "cifar10_cnn",
  }
