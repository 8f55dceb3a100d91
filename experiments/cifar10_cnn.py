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
  steps_per_epoch = 50_000 // config.batch_size
  config.num_train_steps = 30 * steps_per_epoch
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.optimizer.learning_rate = 0.05
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.warmup_steps = steps_per_epoch
  config.eval_every_steps = 5 * steps_per_epoch
  config.checkpoint_every_steps = 5 * steps_per_epoch
  if arg == "runlocal":
    config.data.max_per_class = 200
    config.num_train_steps = 200
    config.eval_every_steps = 100
    config.checkpoint_every_steps = 100
    config.log_every_steps = 20
    config.optimizer.warmup_steps = 20
  elif arg:
    raise ValueError(f"unknown argument {arg!r}; use runlocal")
  return config
