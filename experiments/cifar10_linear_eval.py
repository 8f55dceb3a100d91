"""Linear evaluation of a CIFAR-10 SimCLR workdir (the SimCLR README's).

    jvision train --config=experiments/cifar10_linear_eval.py \
        --config.init_from=workdirs/c10_simclr_r18 --workdir=workdirs/c10_lin

A new 10-way linear head on the frozen ResNet-18 of `config.init_from`
(backbone batch norm in inference mode): SGD with momentum 0.9 at learning
rate 0.1, no weight decay, no warmup, cosine decay, batch 512, 100 epochs,
random 4-pixel crops and flips, as in the README's fine-tuning command
(`--fine_tune_after_block=4`). The README expects about 91% test accuracy
after its 1000-epoch pretraining (experiments/cifar10_simclr_resnet18.py).

Arguments: "finetune" trains the whole network instead (backbone at a tenth
of the head's rate); a number in (0, 1] sets `data.label_fraction` (e.g.
0.01 for 500 labels); "runlocal" is a one-minute CPU check matching the
pretraining recipe's runlocal network.
"""

from jvision.train import defaults

TRAIN_EXAMPLES = 50_000


def get_config(arg: str | None = None):
  args = defaults.parse_recipe_arg(
    arg,
    recipe="cifar10_linear_eval.py",
    words=("linear", "finetune", "runlocal"),
    number="label fraction",
  )
  mode = "finetune" if "finetune" in args.words else "linear"
  fraction = 1.0 if args.number is None else args.number
  config = defaults.finetune_config()
  config.finetune.mode = mode
  config.finetune.backbone_lr_scale = 0.1
  config.data.name = "cifar10"
  config.data.mean = (0.4914, 0.4822, 0.4465)  # CIFAR-10 train, [0, 1]
  config.data.std = (0.2470, 0.2435, 0.2616)
  config.data.label_fraction = fraction
  config.model.name = "resnet18"
  config.model.stem = "cifar"
  config.batch_size = 512
  config.augment.crop_padding = 4
  config.augment.flip = True
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.learning_rate = 0.1
  config.optimizer.weight_decay = 0.0 if mode == "linear" else 5e-4
  labelled = int(round(TRAIN_EXAMPLES * fraction))
  defaults.set_epochs(
    config,
    epochs=100,
    train_examples=max(labelled, config.batch_size),
    warmup_epochs=0,
    eval_every_epochs=10,
  )
  if "runlocal" in args.words:
    defaults.apply_runlocal(config, "runlocal", steps=20)
    config.model.width = 0.25  # as cifar10_simclr_resnet18.py:runlocal
    config.batch_size = 64
    config.data.max_per_class = 100
  return config
