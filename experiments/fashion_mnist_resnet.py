"""A small ResNet on Fashion-MNIST.

    jvision train --config=experiments/fashion_mnist_resnet.py \
        --workdir=workdirs/fmnist_resnet

ResNet-18 layout (BasicBlock, stages 2-2-2-2, CIFAR stem) at a quarter of
the width (16-32-64-128 channels), so that it trains on a 2-core CPU.

Measured (2-core CPU): see benchmarks/results/accuracy.json.

Arguments: "runlocal" is a one-minute check.
"""

from jvision.train import defaults


def get_config(arg: str | None = None):
  config = defaults.supervised_config()
  config.data.name = "fashion_mnist"
  config.data.mean = (0.286,)  # Fashion-MNIST train split, [0, 1] units
  config.data.std = (0.353,)
  config.model.name = "resnet18"
  config.model.width = 0.25
  config.model.stem = "cifar"
  config.batch_size = 128
  steps_per_epoch = 60_000 // config.batch_size
  config.num_train_steps = 10 * steps_per_epoch
  config.augment.crop_padding = 2
  config.augment.flip = True
  config.optimizer.learning_rate = 0.1
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.warmup_steps = steps_per_epoch
  config.loss.label_smoothing = 0.1
  config.eval_every_steps = 2 * steps_per_epoch
  config.checkpoint_every_steps = 2 * steps_per_epoch
  if arg == "runlocal":
    config.num_train_steps = 50
    config.eval_every_steps = 50
    config.checkpoint_every_steps = 50
    config.log_every_steps = 10
    config.optimizer.warmup_steps = 5
    config.data.max_per_class = 100
  elif arg:
    raise ValueError(f"unknown argument {arg!r}; use runlocal")
  return config
