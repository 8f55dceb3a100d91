"""CIFAR-10 in 10 epochs with the fast CIFAR network (supervised).

    jvision train --config=experiments/cifar10_fast.py --workdir=workdirs/c10

A short-schedule recipe after airbench94's (models/fast_cifar.py): batch
1024, 10 epochs, SGD with Nesterov momentum 0.85, label smoothing 0.2,
2-pixel random translations and flips. airbench's learning rate 11.5 and
weight decay 0.0153 "per 1024 examples" on a summed loss are, in jvision's
mean-loss SGD with coupled L2, a learning rate of 11.5 / (1 + 1 / 0.15) =
1.5 and an L2 coefficient of 0.0153 / 11.5 = 1.33e-3; batch-norm biases
learn 64x faster (`optimizer.bn_and_bias_lr_factor`, airbench's
bias_scaler). Warm-up for 2 epochs, then cosine decay. Evaluations
average each test image's logits with its mirror image's (eval_tta). The
training split stays on the device on GPUs (config.data.feed "auto").

Not reproduced here: airbench's whitened stem initialisation, lookahead
averaging and its translation views at test time, which with the above
take airbench to 94.0% in 2.59 s on an A100. Accuracy
on the JPEG-q75 copy is close to, not comparable with, published numbers.

Measured on the 2-core CPU (seed 0, 31 min of training each):
88.97% test accuracy (benchmarks/results/accuracy_cifar10_fast.json);
88.15% (88.78% with flip TTA) before the 64x bias learning rate. The 5
points to airbench's 94% are open: its whitening, lookahead and schedule,
and the q75 JPEG copy, are to be tried where a run takes seconds (a GPU).

Arguments: "runlocal" is a short check.
"""

from jvision.train import defaults


def get_config(arg: str | None = None):
  config = defaults.supervised_config()
  config.data.name = "cifar10"
  config.data.mean = (0.4914, 0.4822, 0.4465)  # CIFAR-10 train, [0, 1]
  config.data.std = (0.2470, 0.2435, 0.2616)
  config.model.name = "fast_cifar"
  config.batch_size = 1024
  config.eval_batch_size = 1000
  config.augment.crop_padding = 2
  config.augment.flip = True
  config.loss.label_smoothing = 0.2
  config.optimizer.learning_rate = 1.5
  config.optimizer.momentum = 0.85
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 1.33e-3
  config.optimizer.bn_and_bias_lr_factor = 64.0  # airbench's bias_scaler
  config.eval_tta = "flip"
  defaults.set_epochs(
    config,
    epochs=10,
    train_examples=50_000,
    warmup_epochs=2,
    eval_every_epochs=5,
  )
  config.log_every_steps = 12
  defaults.apply_runlocal(config, arg, steps=20)
  if arg == "runlocal":
    config.data.max_per_class = 500
    config.batch_size = 256
  return config
