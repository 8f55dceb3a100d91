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
  config.augment.crop_padding = 2
  config.augment.flip = False
  config.optimizer.learning_rate = 0.05
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  defaults.set_epochs(
    config, epochs=15, train_examples=60_000, eval_every_epochs=5
  )
  defaults.apply_runlocal(config, arg)
  return config
