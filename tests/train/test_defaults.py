"""Tests for jvision/train/defaults.py: recipe arguments and epochs."""

import pytest

from jvision.train import defaults


def test_parse_recipe_arg_splits_words_number_and_values():
  args = defaults.parse_recipe_arg(
    "linear,0.1,epochs=20,runlocal",
    recipe="r.py",
    words=("linear", "runlocal"),
    number="label fraction",
    keys=("epochs",),
  )
  assert args.words == {"linear", "runlocal"}
  assert args.number == 0.1
  assert args.values == {"epochs": "20"}
  empty = defaults.parse_recipe_arg(None, recipe="r.py", words=("a",))
  assert (empty.words, empty.number, empty.values) == (frozenset(), None, {})


@pytest.mark.parametrize(
  "arg, bad", [("fast", "'fast'"), ("0.1,0.2", "'0.2'"), ("k=1", "'k=1'")]
)
def test_parse_recipe_arg_names_what_it_did_not_understand(arg, bad):
  with pytest.raises(ValueError, match=f"unknown argument {bad} for r.py"):
    defaults.parse_recipe_arg(arg, recipe="r.py", words=("a",), number="n")


def test_set_epochs():
  config = defaults.supervised_config()
  config.batch_size = 100
  defaults.set_epochs(config, epochs=3, train_examples=1050, warmup_epochs=1)
  assert config.num_train_steps == 30  # 10 full batches an epoch
  assert config.optimizer.warmup_steps == 10
