"""The config keys every trainer honours, with their defaults.

Experiment files in `experiments/` start from `supervised_config()` and
override fields, so every valid key exists in the returned ConfigDict and a
misspelt `--config.KEY=VALUE` is caught by ml_collections (the CLI then
lists the close valid keys).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import ml_collections
from ml_collections import config_dict


def data_config() -> ml_collections.ConfigDict:
  """Where the images come from and how they are shaped."""
  return ml_collections.ConfigDict(
    {
      # A data spec (DESIGN.md): fashion_mnist | mnist | cifar10 |
      # tfds:NAME[:CONFIG] | folder:PATH | idx:DIR.
      "name": "fashion_mnist",
      # An audit manifest (`jvision audit`'s OUT/manifest.jsonl): when set,
      # the run reads exactly its examples, labels and class names, from
      # the source the manifest names; data.name, label_spec and
      # holdout_fraction are then not read. train_split and eval_split name
      # manifest splits; image_size, channels, data_dir and max_per_class
      # apply as usual.
      "manifest": config_dict.placeholder(str),
      "image_size": config_dict.placeholder(int),  # None: the source's own
      "channels": config_dict.placeholder(int),  # None: the source's own
      "data_dir": config_dict.placeholder(str),  # TFDS data_dir
      "label_spec": config_dict.placeholder(str),  # label spec JSON path
      "train_split": "train",
      "eval_split": "test",
      # Folder sources without split folders: this part becomes "test".
      "holdout_fraction": 0.1,
      "max_per_class": config_dict.placeholder(int),  # for quick runs
      # Class-balanced, seeded fraction of the training labels to use.
      "label_fraction": 1.0,
      # Per-channel mean and std in [0, 1] units; None: measured on the
      # training split at start and written into DIR/config.json.
      "mean": config_dict.placeholder(tuple),
      "std": config_dict.placeholder(tuple),
      # The channel order the network takes: "rgb", or "bgr" (Keras's
      # caffe-style ResNets, e.g. from `jvision import`). Images are read
      # as RGB; mean and std are per channel in this order.
      "channel_order": "rgb",
      # How batches reach the devices (jvision/data/feed.py): "host" (a
      # prefetch thread copies each batch), "device" (the split is kept on
      # every device and batches are gathered there) or "auto" ("device"
      # on GPU/TPU when the split fits in a quarter of a device's memory).
      "feed": "auto",
      # Whether the splits are decoded into memory or streamed
      # (jvision/data/stream.py): "memory", "stream" (folder, zip, tfds and
      # packed sources, with data.image_size set), or "auto": stream when
      # the decoded training split would take more than max_memory_gib.
      "loading": "auto",
      "max_memory_gib": 4.0,
      # Streaming: worker processes that read, decode and crop (None: one
      # per core; 0: in the training process).
      "workers": config_dict.placeholder(int),
      # Streaming evaluation: the centre crop of this fraction of the
      # shorter side (224 of 256 for ImageNet), resized to image_size.
      "eval_crop_fraction": 0.875,
      # Streaming: images of the seeded sample that mean/std are measured on.
      "stats_sample": 2000,
    }
  )


def optimizer_config() -> ml_collections.ConfigDict:
  """Keys read by `jvision.optim.create_optimizer` and the schedule."""
  return ml_collections.ConfigDict(
    {
      "name": "sgd",  # sgd | adamw | lars
      "learning_rate": 0.1,  # peak, after warmup
      "schedule": "cosine",  # cosine | constant
      "warmup_steps": 0,
      "end_factor": 0.0,  # final lr as a fraction of the peak
      "momentum": 0.9,
      "nesterov": False,
      "weight_decay": 5e-4,
      "decay_bn_and_bias": False,
      # Learning-rate factor of batch-norm parameters and biases (1-D).
      "bn_and_bias_lr_factor": 1.0,
      "b1": 0.9,
      "b2": 0.999,
      "eps": 1e-8,
      "trust_coefficient": 0.001,
      "grad_clip_norm": config_dict.placeholder(float),
    }
  )


def supervised_config() -> ml_collections.ConfigDict:
  """Defaults for the supervised trainer (`trainer="supervised"`)."""
  config = ml_collections.ConfigDict()
  config.trainer = "supervised"
  config.seed = 0
  config.num_train_steps = 1000
  config.batch_size = 128  # global, over all devices and hosts
  # Split each batch into this many micro-batches whose gradients are
  # averaged before one update: the same step as the whole batch (for
  # models without batch norm, whose statistics are per micro-batch), with
  # a micro-batch's activation memory.
  config.grad_accum_steps = 1
  # Computation dtype of the model: "float32" or "bfloat16" (parameters,
  # optimizer state, losses and batch-norm statistics stay float32).
  config.dtype = "float32"
  config.eval_batch_size = 1000
  # Test-time augmentation of evaluations (the trainer's and `jvision
  # eval`'s): "none", or "flip" (mean logits of each image and its mirror).
  config.eval_tta = "none"
  config.log_every_steps = 100
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.async_checkpointing = True
  config.progress_bar = True
  config.parallel = "jit"
  config.data = data_config()
  config.augment = ml_collections.ConfigDict(
    {
      "crop_padding": 4,  # in-memory path: pad-and-crop shift (pixels)
      "flip": True,
      # Streaming path: Inception-style random-resized crop of the stored
      # image (area fraction, aspect ratio w / h) instead of pad-and-crop.
      "crop_scale": (0.08, 1.0),
      "crop_ratio": (3 / 4, 4 / 3),
    }
  )
  config.model = ml_collections.ConfigDict({"name": "cnn"})
  config.optimizer = optimizer_config()
  config.loss = ml_collections.ConfigDict({"label_smoothing": 0.0})
  return config


def simclr_config() -> ml_collections.ConfigDict:
  """Defaults for SimCLR pretraining (`trainer="simclr"`).

  The supervised keys, with SimCLR's augmentations in `augment`, LARS, and
  the `simclr` (objective, projection head) and `knn` (monitor) sections.
  """
  from jvision.data import simclr_augment

  config = supervised_config()
  config.trainer = "simclr"
  config.augment = simclr_augment.default_config()
  config.simclr = ml_collections.ConfigDict(
    {
      "temperature": 0.5,
      "proj_hidden_dims": (512,),
      "proj_dim": 128,
      "probe_weight": 1.0,  # online linear probe on stop-gradient features
      # Leave the positive out of NT-Xent's denominator (DCL, Yeh et al.).
      "decoupled": False,
    }
  )
  config.knn = ml_collections.ConfigDict(
    {
      "k": 200,
      "temperature": 0.1,
      # Bank size cap for the periodic monitor; None: the whole train split.
      "max_bank": config_dict.placeholder(int),
      # A labelled data spec the monitor reads instead of the training
      # data (needed when that is unlabelled): its monitor_splits are the
      # bank and the queries. None: the training data's own splits.
      "monitor_data": config_dict.placeholder(str),
      "monitor_splits": ("train", "test"),
    }
  )
  config.optimizer.name = "lars"
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-6
  config.optimizer.learning_rate = 1.0 * config.batch_size / 256
  config.optimizer.warmup_steps = 100
  return config


def finetune_config() -> ml_collections.ConfigDict:
  """Defaults for fine-tuning or probing a pretrained workdir.

  `init_from` names the workdir (SimCLR or supervised) whose newest
  checkpoint supplies the backbone; a new linear head is trained for the
  data's classes. `finetune.mode` "linear" trains only the head on frozen
  features (backbone batch norm in inference mode); "finetune" trains all
  but the first `freeze_stages` stages, the backbone at
  `backbone_lr_scale` times the head's learning rate. `init_head` loads
  `init_from`'s head as well. `proj_layers` = k > 0 (SimCLRv2's
  `ft_proj_selector`) keeps the first k hidden layers of a SimCLR
  `init_from`'s projection head between the backbone and the new head
  (recorded as `model.proj_hidden_dims`). Unset data.mean and data.std
  take `init_from`'s preprocessing.
  """
  config = supervised_config()
  config.trainer = "finetune"
  config.init_from = config_dict.placeholder(str)
  config.finetune = ml_collections.ConfigDict(
    {
      "mode": "finetune",
      "backbone_lr_scale": 0.1,
      "freeze_stages": 0,
      # Also load init_from's head (its classes must be this data's): the
      # second stage of a transfer schedule.
      "init_head": False,
      # SimCLRv2's ft_proj_selector: how many hidden layers of a SimCLR
      # init_from's projection head the classifier keeps (0: none, the
      # new head sits on the backbone's features).
      "proj_layers": 0,
    }
  )
  return config


def distill_config() -> ml_collections.ConfigDict:
  """Defaults for distilling a classifier into a student
  (`trainer="distill"`, SimCLRv2's third stage).

  The student (`config.model`, trained from scratch) learns the
  temperature-scaled soft labels of `distill.teacher` (any classifier
  workdir: fine-tuned, supervised or imported) on every training image,
  without their labels. With `distill.label_weight` = a > 0 the loss is
  (1 - a) x distillation + a x cross-entropy on the labelled examples:
  those of the seeded, class-balanced `data.label_fraction` (the subset a
  fine-tuned teacher with the same fraction and seed saw). With
  `distill.init_student` the student starts from the teacher's weights
  (same model). Unset data.mean and data.std take the teacher's
  preprocessing.
  """
  config = supervised_config()
  config.trainer = "distill"
  config.distill = ml_collections.ConfigDict(
    {
      "teacher": config_dict.placeholder(str),  # a classifier workdir
      "temperature": 1.0,  # SimCLRv2's choice on ImageNet
      "label_weight": 0.0,  # 0: the teacher's soft labels alone
      # Start the student from the teacher's weights (self-distillation:
      # the same model section) instead of random ones.
      "init_student": False,
      # The teacher's checkpoint step, set at start and recorded so that a
      # resume after the teacher changed is refused; None: its newest.
      "teacher_step": config_dict.placeholder(int),
    }
  )
  return config


def set_epochs(
  config: ml_collections.ConfigDict,
  *,
  epochs: int,
  train_examples: int,
  warmup_epochs: int = 1,
  eval_every_epochs: int = 5,
) -> None:
  """Sets the step counts of `config` from epochs of `train_examples`.

  num_train_steps, optimizer.warmup_steps, and eval and checkpoint periods
  (both every `eval_every_epochs`), for the config's batch_size.
  """
  steps_per_epoch = train_examples // config.batch_size
  config.num_train_steps = epochs * steps_per_epoch
  config.optimizer.warmup_steps = warmup_epochs * steps_per_epoch
  config.eval_every_steps = eval_every_epochs * steps_per_epoch
  config.checkpoint_every_steps = eval_every_epochs * steps_per_epoch


@dataclasses.dataclass(frozen=True)
class RecipeArgs:
  """A parsed recipe argument such as "linear,0.01,runlocal"."""

  words: frozenset  # the bare words given, e.g. {"linear", "runlocal"}
  number: float | None  # the one number given, if any
  values: dict  # KEY=VALUE items, values as strings


def parse_recipe_arg(
  arg: str | None,
  *,
  recipe: str,
  words: Sequence[str] = (),
  number: str | None = None,
  keys: Sequence[str] = (),
) -> RecipeArgs:
  """Splits a recipe's comma-separated argument into its parts.

  Args:
    arg: what follows ":" in `--config=experiments/FILE.py:ARG`.
    recipe: the file name, for error messages.
    words: the bare words it accepts.
    number: what a number means (e.g. "label fraction"); None: no number.
    keys: the KEY=VALUE keys it accepts.

  Raises:
    ValueError: naming the item not understood and what the recipe takes.
  """
  found, value, pairs = set(), None, {}
  accepted = [*words, *(f"{k}=N" for k in keys)]
  if number:
    accepted.append(f"a number ({number})")
  for item in filter(None, (arg or "").split(",")):
    key, eq, text = item.partition("=")
    if item in words:
      found.add(item)
    elif eq and key in keys:
      pairs[key] = text
    else:
      try:
        if number is None or value is not None:
          raise ValueError
        value = float(item)
      except ValueError:
        raise ValueError(
          f"unknown argument {item!r} for {recipe}; it takes "
          f"comma-separated: {', '.join(accepted)}"
        ) from None
  return RecipeArgs(words=frozenset(found), number=value, values=pairs)


def apply_runlocal(config: ml_collections.ConfigDict, arg, *, steps=200):
  """The config-file argument every recipe takes: "runlocal" or none.

  "runlocal" shrinks the run to `steps` steps (a minute or two on a laptop),
  evaluating and checkpointing half-way and at the end.
  """
  if arg == "runlocal":
    config.num_train_steps = steps
    config.eval_every_steps = steps // 2
    config.checkpoint_every_steps = steps // 2
    config.log_every_steps = max(1, steps // 10)
    config.optimizer.warmup_steps = steps // 10
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use runlocal or none")
