"""SimCLR on ImageNet with ResNet-50, streamed, and its linear evaluation.

    jvision train --config=experiments/imagenet_simclr_resnet50.py \
        --workdir=workdirs/in1k_simclr
    jvision train --config=experiments/imagenet_simclr_resnet50.py:linear \
        --config.init_from=workdirs/in1k_simclr --workdir=workdirs/in1k_lin

Pretraining follows google-research/simclr's ImageNet command (SimCLR v1,
Chen et al. 2020): ResNet-50, batch 4096, LARS at learning rate 0.3 x
4096 / 256 = 4.8 (linear scaling), weight decay 1e-6 (batch norm and biases
excluded), 10 warmup epochs then cosine decay, temperature 0.1, global
batch norm, a 2048-2048-128 projection head; two 224-px random-resized
crops (area 8-100%) and flips of each image made by the stream workers,
then colour jitter (strength 1.0, p 0.8), grayscale (p 0.2) and Gaussian
blur (p 0.5) on device. After 1000 epochs its linear evaluation reaches
69.3% top-1 (the paper's Table 6, on TPU v3 pods: 128 cores at batch 4096).

"linear" is that evaluation: a 1000-way linear head on the frozen backbone
of `config.init_from`, SGD with Nesterov momentum 0.9 at learning rate
0.1 x 4096 / 256 = 1.6, no weight decay, batch 4096, 90 epochs, random
crops and flips (the paper's linear protocol).

Data: `tfds:imagenet2012` prepared as ArrayRecord, or "data=folder:PATH"
(ImageNet's layout PATH/train/<wnid>/*.JPEG, PATH/val/<wnid>/*.JPEG; the
labels feed only the online probe and the kNN monitor), or "data=packed:DIR".

Arguments (comma-separated): "linear"; "data=SPEC"; "epochs=N" (shorter
pretraining, e.g. 100 or 300 as in the paper's ablations); "runlocal"
shrinks either stage to a CPU check on a small folder given with data=.
"""

from jvision.train import defaults

TRAIN_EXAMPLES = 1_281_167
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # [0, 1] units, ImageNet train
IMAGENET_STD = (0.229, 0.224, 0.225)


def _data(config, spec: str) -> None:
  """The streamed ImageNet data section both stages share."""
  config.data.name = spec
  config.data.eval_split = "validation" if spec.startswith("tfds:") else "val"
  config.data.image_size = 224
  config.data.channels = 3
  config.data.loading = "stream"
  config.data.mean = IMAGENET_MEAN
  config.data.std = IMAGENET_STD
  config.data.eval_crop_fraction = 224 / 256
  config.model.name = "resnet50"


def pretraining(epochs: int):
  config = defaults.simclr_config()
  config.batch_size = 4096
  config.eval_batch_size = 1000
  config.augment.crop_scale = (0.08, 1.0)
  config.augment.color_strength = 1.0
  config.augment.blur_p = 0.5
  config.simclr.temperature = 0.1
  config.simclr.proj_hidden_dims = (2048,)
  config.simclr.proj_dim = 128
  config.optimizer.name = "lars"
  config.optimizer.learning_rate = 0.3 * config.batch_size / 256  # linear
  config.optimizer.weight_decay = 1e-6
  config.knn.max_bank = 50_000  # the monitor votes with a seeded subset
  defaults.set_epochs(
    config,
    epochs=epochs,
    train_examples=TRAIN_EXAMPLES,
    warmup_epochs=10,
    eval_every_epochs=10,
  )
  return config


def linear_evaluation():
  config = defaults.finetune_config()
  config.finetune.mode = "linear"
  config.batch_size = 4096
  config.eval_batch_size = 1000
  config.augment.crop_scale = (0.08, 1.0)
  config.augment.flip = True
  config.optimizer.name = "sgd"
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.learning_rate = 0.1 * config.batch_size / 256
  config.optimizer.weight_decay = 0.0
  defaults.set_epochs(
    config,
    epochs=90,
    train_examples=TRAIN_EXAMPLES,
    warmup_epochs=0,
    eval_every_epochs=10,
  )
  return config


def get_config(arg: str | None = None):
  args = defaults.parse_recipe_arg(
    arg,
    recipe="imagenet_simclr_resnet50.py",
    words=("linear", "runlocal"),
    keys=("data", "epochs"),
  )
  if "linear" in args.words:
    config = linear_evaluation()
  else:
    config = pretraining(int(args.values.get("epochs", 1000)))
  _data(config, args.values.get("data", "tfds:imagenet2012"))
  if "runlocal" in args.words:
    defaults.apply_runlocal(config, "runlocal", steps=8)
    config.data.image_size = 32
    config.data.workers = 0  # in the training process: no start-up cost
    config.model.width = 0.125
    config.batch_size = 16
    config.eval_batch_size = 16
    scale = 0.1 if config.trainer == "finetune" else 0.3
    config.optimizer.learning_rate = scale * config.batch_size / 256
    if config.trainer == "simclr":
      config.simclr.proj_hidden_dims = (64,)
      config.knn.k = 5
  return config
