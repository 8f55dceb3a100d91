"""Trainers. Each module has create_train_state, train_step, eval_step and
train_and_evaluate(config, workdir); `TRAINERS` maps `config.trainer` to it.
"""

from __future__ import annotations

import difflib


def get_trainer(name: str):
  """The `train_and_evaluate` of the trainer called `name`."""
  from jvision.train import distill, finetune, simclr, supervised

  trainers = {
    "supervised": supervised.train_and_evaluate,
    "simclr": simclr.train_and_evaluate,
    "finetune": finetune.train_and_evaluate,
    "distill": distill.train_and_evaluate,
  }
  if name not in trainers:
    close = difflib.get_close_matches(name, trainers, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(
      f"config.trainer={name!r} is not a trainer{hint}; valid: "
      + ", ".join(sorted(trainers))
    )
  return trainers[name]
