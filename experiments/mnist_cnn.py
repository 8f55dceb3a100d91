"""The seed CNN on MNIST (../shared/data/mnist IDX files).

    jvision train --config=experiments/mnist_cnn.py --workdir=workdirs/mnist_cnn

Digits are not mirror-symmetric, so no flips; 2-pixel random shifts only.

Measured (2-core CPU): see benchmarks/results/accuracy.json.

Arguments: "runlocal" is a one-minute check.
"""

from jvision.train import defaults


def get_config(arg: str | None = None):
  config = defaults.supervised_config()
  config.data.name = "mnist"
  config.data.mean = (0.1307,)  # MNIST train split, [0, 1] units
  config.data.std = (0.3081,)
  config.model.name = "cnn"
  config.batch_size = 128
  steps_per_epoch = 60_000 // config.batch_size
  config.num_train_steps = 15 * steps_per_epoch
  config.augment.crop_padding = 2
  config.augment.flip = False
  config.optimizer.learning_rate = 0.05
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.warmup_steps = steps_per_epoch
  config.eval_every_steps = 5 * steps_per_epoch
  config.checkpoint_every_steps = 5 * steps_per_epoch
  if arg == "runlocal":
    config.num_train_steps = 200
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
    config.log_every_steps = 20
    config.optimizer.warmup_steps = 20
  elif arg:
    raise ValueError(f"unknown argument {arg!r}; use runlocal")
  return config
