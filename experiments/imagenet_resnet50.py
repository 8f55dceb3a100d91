"""Supervised ResNet-50 on ImageNet, streamed: the Flax ImageNet example.

    jvision train --config=experiments/imagenet_resnet50.py \
        --workdir=workdirs/in1k_r50
    jvision train \
        --config=experiments/imagenet_resnet50.py:data=folder:/data/imagenet \
        --workdir=workdirs/in1k_r50

The recipe of the Flax example (examples/imagenet, configs/v100_x8.py):
ResNet-50 (torchvision's v1.5 layout), 224 px Inception-style random-resized
crops (area 8-100%, aspect 3/4-4/3) and flips made by the stream workers,
centre crops of 87.5% of the shorter side for evaluation, batch 512, SGD
with Nesterov momentum 0.9 at learning rate 0.1 x 512 / 256 = 0.2 (linear
scaling), 5 warmup epochs then cosine decay over 100 epochs, weight decay
1e-4 on every parameter, float32. Its published result: 76.63% top-1 on 8 x
V100 (16 GB) in 13 h 25 m; with mixed precision (batch 2048): 76.39% in
6 h 4 m (`--config.dtype=bfloat16 --config.batch_size=2048
--config.optimizer.learning_rate=0.8`).

Data: `tfds:imagenet2012` prepared as ArrayRecord (its "validation" split
is evaluated), or "data=folder:PATH" for ImageNet's layout
PATH/train/<wnid>/*.JPEG and PATH/val/<wnid>/*.JPEG (or `jvision pack` it
first and use "data=packed:DIR"). The 1.28 M training images are streamed
(`data.loading`), never decoded into memory; `--config.data.workers` sets
the worker processes (default: one per core).

Arguments (comma-separated): "data=SPEC" as above; "runlocal" shrinks the
run to a CPU check (32 px, an eighth-width ResNet-50,
batch 16, 8 steps) on a small folder given with data=.
"""

from jvision.train import defaults

TRAIN_EXAMPLES = 1_281_167
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # [0, 1] units, ImageNet train
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_split_of(spec: str) -> str:
  """ImageNet's held-out split: "validation" in TFDS, "val" in folders."""
  return "validation" if spec.startswith("tfds:") else "val"


def get_config(arg: str | None = None):
  args = defaults.parse_recipe_arg(
    arg, recipe="imagenet_resnet50.py", words=("runlocal",), keys=("data",)
  )
  config = defaults.supervised_config()
  config.data.name = args.values.get("data", "tfds:imagenet2012")
  config.data.eval_split = eval_split_of(config.data.name)
  config.data.image_size = 224
  config.data.channels = 3
  config.data.loading = "stream"
  config.data.mean = IMAGENET_MEAN
  config.data.std = IMAGENET_STD
  config.data.eval_crop_fraction = 224 / 256  # resize to 256, crop 224
  config.augment.crop_scale = (0.08, 1.0)
  config.augment.crop_ratio = (3 / 4, 4 / 3)
  config.augment.flip = True
  config.model.name = "resnet50"
  config.batch_size = 512
  config.eval_batch_size = 500
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.learning_rate = 0.1 * config.batch_size / 256  # linear
  config.optimizer.weight_decay = 1e-4
  config.optimizer.decay_bn_and_bias = True  # the example decays every leaf
  config.log_every_steps = 100
  defaults.set_epochs(
    config,
    epochs=100,
    train_examples=TRAIN_EXAMPLES,
    warmup_epochs=5,
    eval_every_epochs=5,
  )
  if "runlocal" in args.words:
    apply_runlocal(config)
  return config


def apply_runlocal(config) -> None:
  """A CPU check of the streamed pipeline and model on a small folder."""
  defaults.apply_runlocal(config, "runlocal", steps=8)
  config.data.image_size = 32
  config.data.workers = 0  # in the training process: no start-up cost
  config.model.width = 0.125
  config.batch_size = 16
  config.eval_batch_size = 16
  config.optimizer.learning_rate = 0.1 * config.batch_size / 256
