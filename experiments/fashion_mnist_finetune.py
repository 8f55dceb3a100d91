"""Few-label training on Fashion-MNIST from a SimCLR workdir, or without one.

    jvision train --config=experiments/fashion_mnist_finetune.py:linear,0.01 \
        --config.init_from=workdirs/fmnist_simclr --workdir=workdirs/probe_1pct

The argument is `MODE[,FRACTION][,runlocal]`:
  linear    a linear probe: a new 10-way head on the frozen backbone of
            `config.init_from` (batch norm in inference mode).
  finetune  the whole pretrained network trains, the backbone at the head's
            learning rate (SimCLRv2's fine-tuning; a tenth of it cost the
            earlier ResNet 2.4 points at 10% labels, benchmarks/NOTES.md);
            it keeps the first layer of the SimCLR projection head
            (SimCLRv2's fine-tuning from the head's middle,
            `finetune.proj_layers` 1; set it to 0 for an init_from that is
            not a SimCLR run).
  scratch   the same network trained from random weights with the
            supervised trainer on the same labels: the baseline that
            pretraining has to beat.
FRACTION (default 0.01) is `data.label_fraction`: the class-balanced, seeded
subset of the 60,000 training labels (0.01 is 600 images, 60 per class; the
subset depends only on `seed`, so the three modes see the same images). The
step count follows the number of labelled images: 20 epochs, at least 600
steps (128 epochs of 1%'s 600 images), with one evaluation on the test
split at the end. Each mode has its own SGD rate (`LEARNING_RATES`: linear
0.1, not swept; fine-tune 0.2 and scratch 0.4, each the best of one 3-seed
sweep, so the baseline is tuned as hard as the fine-tune it is compared
with). The backbone matches
experiments/fashion_mnist_simclr.py; `jvision demo` runs all three modes at
1% and 10% of the labels.
"""

from jvision.train import defaults

MODES = ("linear", "finetune", "scratch")
# SGD rates at batch 128. The fine-tune's and scratch's are the best of a
# sweep over 3 seeds at 1% and 10% labels (benchmarks/NOTES.md, 2026-12-04
# later; the linear probe's is not swept): the network trained from
# scratch gained 1.9 points at 1% and 2.8 at 10% from 0.05 to 0.4; the
# fine-tune 0.2 and 0.4 points from 0.05 to 0.2 (0.4 cost it 1.8 at 1%: the
# pretrained weights are washed out).
LEARNING_RATES = {"linear": 0.1, "finetune": 0.2, "scratch": 0.4}
TRAIN_EXAMPLES = 60_000
EPOCHS = 20  # passes over the labelled images (at least 600 steps)


def _parse(arg: str | None) -> tuple[str, float, bool]:
  """(mode, label fraction, runlocal) of the config-file argument."""
  args = defaults.parse_recipe_arg(
    arg,
    recipe="fashion_mnist_finetune.py",
    words=(*MODES, "runlocal"),
    number="label fraction",
  )
  modes = sorted(args.words & set(MODES))
  if len(modes) > 1:
    raise ValueError(f"fashion_mnist_finetune.py takes one mode, got {modes}")
  fraction = 0.01 if args.number is None else args.number
  return (modes or ["finetune"])[0], fraction, "runlocal" in args.words


def get_config(arg: str | None = None):
  mode, fraction, runlocal = _parse(arg)
  if mode == "scratch":
    config = defaults.supervised_config()
  else:
    config = defaults.finetune_config()
    config.finetune.mode = mode
    if mode == "finetune":  # (a linear probe's backbone is frozen)
      config.finetune.backbone_lr_scale = 1.0
      config.finetune.proj_layers = 1
  config.data.name = "fashion_mnist"
  config.data.mean = (0.286,)  # Fashion-MNIST train split, [0, 1] units
  config.data.std = (0.353,)
  config.data.label_fraction = fraction
  config.model.name = "fast_cifar"  # the backbone of fashion_mnist_simclr.py
  config.model.widths = (16, 32)
  config.model.pool = "flatten"
  config.model.stem_width = 8
  config.batch_size = 128
  config.augment.crop_padding = 2
  config.augment.flip = True
  config.optimizer.name = "sgd"
  config.optimizer.nesterov = True
  config.optimizer.learning_rate = LEARNING_RATES[mode]
  config.optimizer.weight_decay = 0.0 if mode == "linear" else 5e-4
  labelled = int(round(TRAIN_EXAMPLES * fraction))
  steps = max(600, EPOCHS * labelled // config.batch_size)
  config.num_train_steps = steps
  config.optimizer.warmup_steps = steps // 20
  config.log_every_steps = max(1, steps // 20)
  config.eval_every_steps = steps
  config.checkpoint_every_steps = steps
  config.keep_checkpoints = 1
  if runlocal:
    defaults.apply_runlocal(config, "runlocal", steps=20)
    config.data.max_per_class = 100
  return config
