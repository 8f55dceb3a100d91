"""The seed CNN on CIFAR-10 (the JPEG-q75 copy in ../shared/data).

    jvision train --config=experiments/cifar10_cnn.py --workdir=workdirs/c10_cnn

The network of the classic CIFAR-10 tutorial (62,006 parameters), trained
longer than the tutorial's 2 epochs of batch 4: SGD with Nesterov momentum,
cosine decay, 4-pixel random crops and flips. Accuracies on the q75 copy are
close to, not comparable with, published CIFAR-10 numbers.

Measured (2-core CPU): see benchmarks/results/accuracy.json.

Arguments: "runlocal" is a one-minute check.
"""

from jvision.train import defaults


def get_config(arg: str | None = None):
  config = defaults.supervised_config()
  config.data.name = "cifar10"
  config.data.mean = (0.4914, 0.4822, 0.4465)  # CIFAR-10 train, [0, 1]
  config.data.std = (0.2470, 0.2435, 0.2616)
  config.model.name = "cnn"
  config.batch_size = 128
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.optimizer.learning_rate = 0.05
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  defaults.set_epochs(
    config, epochs=30, train_examples=50_000, eval_every_epochs=5
  )
  defaults.apply_runlocal(config, arg)
  if arg == "runlocal":
    config.data.max_per_class = 200
  return config
