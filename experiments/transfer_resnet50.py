"""Transfer learning: an imported ImageNet ResNet-50 on a folder of images.

The two-stage schedule practitioners use, from weights trained elsewhere
(`jvision import`), on `folder:PATH` (PATH/<class>/*.jpg, or with
train/ and test/ split folders):

    jvision import --weights=resnet50.safetensors --arch=resnet50 \
        --workdir=workdirs/r50_imagenet
    jvision train --config=experiments/transfer_resnet50.py:head \
        --config.data.name=folder:PATH \
        --config.init_from=workdirs/r50_imagenet --workdir=workdirs/r50_head
    jvision train --config=experiments/transfer_resnet50.py:full \
        --config.data.name=folder:PATH \
        --config.init_from=workdirs/r50_head --workdir=workdirs/r50_pets

The argument is `STAGE[,runlocal]` (STAGE: head unless given):
  head  a new head for the folder's classes on frozen features (the
        backbone runs in inference mode: `finetune.mode="linear"`), SGD at
        0.1 for 1,000 steps of 64 images.
  full  the whole network from the head stage's workdir (its head loads
        too: `finetune.init_head`), the head at 0.01 and the backbone at a
        tenth of that, for 2,000 steps.
Both run at 224 px with pad-and-crop (28 px) and flips, the augmentation
until random-resized crops land. data.mean and data.std stay unset, so each
stage takes the preprocessing of its `init_from` (ImageNet statistics for
torchvision weights; BGR caffe means with `--config.model.name=
resnet50_keras` for Keras weights). Set `--config.num_train_steps` for your
folder's size (the defaults are ~10 and ~20 epochs of 6,400 images).
`runlocal` shrinks a stage to 4 steps of 8 images at 32 px, for tests.
Accuracy not yet measured on named hardware: there are no downloaded
ImageNet weights on the machines this was written on.
"""

from jvision.train import defaults

STAGES = ("head", "full")


def _parse(arg: str | None) -> tuple[str, bool]:
  """(stage, runlocal) of the config-file argument."""
  args = defaults.parse_recipe_arg(
    arg, recipe="transfer_resnet50.py", words=(*STAGES, "runlocal")
  )
  stages = sorted(args.words & set(STAGES))
  if len(stages) > 1:
    raise ValueError(f"transfer_resnet50.py takes one stage, got {stages}")
  return (stages or ["head"])[0], "runlocal" in args.words


def get_config(arg: str | None = None):
  stage, runlocal = _parse(arg)
  config = defaults.finetune_config()
  config.data.name = "folder:PATH"  # set on the command line
  config.data.image_size = 224
  config.data.channels = 3
  config.model.name = "resnet50"  # the --arch given to `jvision import`
  config.batch_size = 64
  config.eval_batch_size = 64
  config.augment.crop_padding = 28  # an eighth of the side
  config.augment.flip = True
  config.optimizer.name = "sgd"
  config.optimizer.nesterov = True
  config.optimizer.momentum = 0.9
  if stage == "head":
    config.finetune.mode = "linear"
    config.optimizer.learning_rate = 0.1
    config.optimizer.weight_decay = 0.0
    config.num_train_steps = 1000
  else:
    config.finetune.mode = "finetune"
    config.finetune.init_head = True
    config.finetune.backbone_lr_scale = 0.1  # the lower rate of stage 2
    config.optimizer.learning_rate = 0.01
    config.optimizer.weight_decay = 1e-4
    config.num_train_steps = 2000
  config.optimizer.warmup_steps = config.num_train_steps // 20
  config.log_every_steps = config.num_train_steps // 20
  config.eval_every_steps = config.num_train_steps
  config.checkpoint_every_steps = config.num_train_steps
  config.keep_checkpoints = 1
  if runlocal:
    defaults.apply_runlocal(config, "runlocal", steps=4)
    config.data.image_size = 32
    config.augment.crop_padding = 4
    config.batch_size = 8
    config.eval_batch_size = 8
    config.progress_bar = False
  return config
