"""Reading experiment config files outside absl's flag parsing."""

from __future__ import annotations

import importlib.util
import os

import ml_collections


def load_config_file(spec: str) -> ml_collections.ConfigDict:
  """`get_config(arg)` of a config file named `path[:arg]`."""
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path} does not exist")
  module_spec = importlib.util.spec_from_file_location("_jvision_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def check_choice(key: str, value, choices) -> None:
  """Raises a ValueError naming `config.<key>`, its value and the choices,
  unless `value` is one of `choices`."""
  if value not in choices:
    raise ValueError(
      f"config.{key}={value!r}; use one of {', '.join(map(repr, choices))}"
    )


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list:
  """Dotted names of every leaf of `config`."""
  keys = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      keys += flat_keys(value, f"{prefix}{key}.")
    else:
      keys.append(f"{prefix}{key}")
  return keys
