"""A small ResNet on Fashion-MNIST.

    jvision train --config=experiments/fashion_mnist_resnet.py \
        --workdir=workdirs/fmnist_resnet

ResNet-18 layout (BasicBlock, stages 2-2-2-2, CIFAR stem) at a quarter of
the width (16-32-64-128 channels), so that it trains on a 2-core CPU.

Measured on the 2-core AMD EPYC CPU (benchmarks/results/
accuracy_fashion_mnist_resnet.json): 93.90 +- 0.08% test accuracy over
seeds 0, 1, 2 (93.84, 93.86, 93.99) after 15 epochs, 27-34 min of training
each (about 545 images/s). 10 epochs reached 93.40% (seed 0).

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
  config.augment.crop_padding = 2
  config.augment.flip = True
  config.optimizer.learning_rate = 0.1
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.loss.label_smoothing = 0.1
  defaults.set_epochs(
    config, epochs=15, train_examples=60_000, eval_every_epochs=3
  )
  defaults.apply_runlocal(config, arg, steps=50)
  if arg == "runlocal":
    config.data.max_per_class = 100
  return config
