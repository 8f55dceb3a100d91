"""Every recipe in experiments/ loads, in full and runlocal form."""

import pytest
from helpers import REPO

from jvision import configs_io, models
from jvision.train import defaults

RECIPES = sorted((REPO / "experiments").glob("*.py"))
DEFAULTS = {
  "supervised": defaults.supervised_config,
  "simclr": defaults.simclr_config,
  "finetune": defaults.finetune_config,
  "distill": defaults.distill_config,
}


def _load(name: str, arg: str = ""):
  path = REPO / "experiments" / f"{name}.py"
  return configs_io.load_config_file(f"{path}:{arg}" if arg else str(path))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
@pytest.mark.parametrize("arg", ["", ":runlocal"])
def test_recipe_loads_with_known_keys(path, arg):
  config = configs_io.load_config_file(f"{path}{arg}")
  known = set(configs_io.flat_keys(DEFAULTS[config.trainer]()))
  extra = set(configs_io.flat_keys(config)) - known
  assert all(key.startswith("model.") for key in extra), extra
  assert config.model.name in models.MODELS
  assert 0 <= config.optimizer.warmup_steps <= config.num_train_steps
  assert config.eval_every_steps <= config.num_train_steps


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_unknown_argument_is_an_error(path):
  with pytest.raises(ValueError, match="unknown .*argument.*'fast'"):
    configs_io.load_config_file(f"{path}:fast")


def test_recipes_are_the_documented_ones():
  assert {p.stem for p in RECIPES} >= {
    "fashion_mnist_cnn",
    "fashion_mnist_resnet",
    "fashion_mnist_simclr",
    "fashion_mnist_finetune",
    "mnist_cnn",
    "cifar10_cnn",
    "cifar10_simclr_resnet18",
    "cifar10_linear_eval",
  }


@pytest.mark.parametrize(
  "arg, trainer, mode, fraction, rate",
  [
    ("linear", "finetune", "linear", 0.01, 0.1),
    ("finetune,0.1", "finetune", "finetune", 0.1, 0.2),
    ("scratch,0.1", "supervised", None, 0.1, 0.4),
  ],
)
def test_finetune_recipe_modes(arg, trainer, mode, fraction, rate):
  config = _load("fashion_mnist_finetune", arg)
  assert config.trainer == trainer
  assert config.data.label_fraction == fraction
  # Each mode's best rate of the 3-seed sweep (benchmarks/NOTES.md).
  assert config.optimizer.learning_rate == rate
  if mode:
    assert config.finetune.mode == mode
  # 20 epochs of the labelled images, at least 600 steps.
  assert config.num_train_steps == max(600, 20 * int(60_000 * fraction) // 128)
  # Only the fine-tune keeps a layer of the SimCLR projection head.
  if config.trainer == "finetune":
    assert config.finetune.proj_layers == (1 if mode == "finetune" else 0)


def test_fashion_mnist_simclr_epochs():
  steps_per_epoch = 60_000 // 256
  assert _load("fashion_mnist_simclr").num_train_steps == 3 * steps_per_epoch
  assert _load("fashion_mnist_simclr", "epochs=8").num_train_steps == (
    8 * steps_per_epoch
  )
  long = _load("fashion_mnist_simclr", "long")
  assert long.num_train_steps == 30 * steps_per_epoch
  # The head the fine-tune keeps a layer of: SimCLRv2's three layers.
  assert tuple(long.simclr.proj_hidden_dims) == (256, 256)


@pytest.mark.parametrize(
  "pretrain, downstream",
  [
    ("fashion_mnist_simclr", "fashion_mnist_finetune"),
    ("cifar10_simclr_resnet18", "cifar10_linear_eval"),
    ("fashion_mnist_simclr", "fashion_mnist_distill"),
  ],
)
@pytest.mark.parametrize("arg", ["", "runlocal"])
def test_downstream_backbone_matches_pretraining(pretrain, downstream, arg):
  # init_from loads the pretrained backbone only if the model sections agree
  # (a fine-tune's kept projection-head layers are added at run time).
  assert _load(pretrain, arg).model == _load(downstream, arg).model


def test_cifar10_simclr_recipe_is_the_published_one():
  config = _load("cifar10_simclr_resnet18")
  assert config.batch_size == 512
  assert config.optimizer.name == "lars"
  assert config.optimizer.learning_rate == 2.0  # 1.0 x 512 / 256
  assert config.simclr.temperature == 0.5
  assert config.augment.color_strength == 0.5
  assert config.num_train_steps == 1000 * (50_000 // 512)
  short = _load("cifar10_simclr_resnet18", "epochs=200")
  assert short.num_train_steps == 200 * (50_000 // 512)
