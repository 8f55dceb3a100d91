"""Distillation of a classifier into a student, on images without labels.

SimCLRv2's third stage (Chen et al. 2020, "Big Self-Supervised Models are
Strong Semi-Supervised Learners", section 2.3): a teacher fine-tuned on few
labels gives soft labels, its tempered softmax, for every training image;
a student (`config.model`, from scratch) learns them with the cross-entropy
of `losses.distillation`. The labels of the training split are not read,
except with `distill.label_weight` = a > 0, when the loss is
(1 - a) x distillation + a x cross-entropy on the examples of the seeded,
class-balanced `data.label_fraction` (`subsets.label_subset`, the subset a
teacher fine-tuned with that fraction and seed saw); the others count as
unlabelled. With `distill.init_student` the student starts from the
teacher's weights (self-distillation; the same `model` section) instead of
random ones.

Teacher and student see the same augmented view of each image. The
teacher's variables are constants of the compiled step (placed on every
device once, `parallel.compile_train_step`), so resuming re-reads them from
`distill.teacher`; its newest checkpoint step is recorded in config.json
(`distill.teacher_step`), so resuming after the teacher changed is refused.
Evaluation, checkpoints, jit/pmap, multi-host and streaming are the
supervised trainer's. The student records the teacher's classes, so it
may distil on an unlabelled source: its evaluation is then off (there are
no labels to score), and `jvision eval --data=SPEC` scores it on labelled
images.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jvision import losses, models, parallel
from jvision import workdir as workdir_lib
from jvision.data import subsets
from jvision.models import backbone
from jvision.train import finetune, loop, setup, supervised
from jvision.train import grads as grads_lib


def train_step(
  state,
  batch: dict,
  teacher: dict,
  *,
  teacher_apply,
  learning_rate_fn,
  preprocess,
  temperature: float,
  label_weight: float,
  accum_steps: int = 1,
  axis_name: str | None = None,
):
  """One optimisation step of the student on a global batch.

  Args:
    state: the student's train state.
    batch: {"image": uint8 [B, H, W, C], "label": int32 [B], -1 where the
      example counts as unlabelled}.
    teacher: the teacher's {"params", "batch_stats"} (a step constant).
    teacher_apply: the teacher module's `apply`.
    learning_rate_fn: step -> learning rate (for logging).
    preprocess: (uint8 images, key) -> float32 [B, H, W, C] views, seen by
      teacher and student alike.
    temperature: the softmax temperature of both.
    label_weight: a in [0, 1], the weight of the labelled cross-entropy.
    accum_steps: micro-batches per step (`config.grad_accum_steps`).
    axis_name: the pmap axis, or None under jit (as `supervised.train_step`).

  Returns:
    (new state, {"loss", "distill_loss", "teacher_agreement",
    "learning_rate"} scalars).
  """
  rng = jax.random.fold_in(state.rng, state.step)
  x = parallel.global_then_local(preprocess, batch["image"], rng, axis_name)
  teacher_logits = teacher_apply(teacher, x, train=False)  # [B, K]
  labels = batch["label"]  # [B]
  # The labelled term is a sum over the global batch's labelled examples
  # divided by their count, whatever the devices and micro-batches: each
  # micro-batch's sum is scaled so that the mean over them (and the pmean
  # over devices) gives exactly that.
  count = jnp.sum(labels >= 0).astype(jnp.float32)
  devices = 1.0
  if axis_name is not None:
    count = jax.lax.psum(count, axis_name)
    devices = jax.lax.psum(1.0, axis_name)
  labelled_scale = devices * accum_steps / jnp.maximum(count, 1.0)
  inputs = {"x": x, "label": labels, "teacher": teacher_logits}

  def loss_fn(params, micro, batch_stats):
    variables = {"params": params, "batch_stats": batch_stats}
    logits, updates = state.apply_fn(
      variables, micro["x"], train=True, mutable=["batch_stats"]
    )  # [b, K]
    distill = losses.distillation(
      student_logits=logits,
      teacher_logits=micro["teacher"],
      temperature=temperature,
    )
    labelled_sum, _ = losses.masked_cross_entropy(
      logits=logits, labels=micro["label"]
    )
    loss = (1.0 - label_weight) * distill + label_weight * (
      labelled_sum * labelled_scale
    )
    agreement = jnp.mean(
      (jnp.argmax(logits, -1) == jnp.argmax(micro["teacher"], -1)).astype(
        jnp.float32
      )
    )
    return loss, ((distill, agreement), updates.get("batch_stats", {}))

  (loss, ((distill, agreement), batch_stats)), grads = (
    grads_lib.accumulated_value_and_grad(
      loss_fn, state.params, inputs, state.batch_stats, steps=accum_steps
    )
  )
  grads, batch_stats = parallel.pmean((grads, batch_stats), axis_name)
  metrics = parallel.pmean(
    {
      "loss": loss,
      "distill_loss": jnp.mean(distill),  # [accum_steps] micro values
      "teacher_agreement": jnp.mean(agreement),
    },
    axis_name,
  )
  metrics["learning_rate"] = learning_rate_fn(state.step)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state, metrics


def check_settings(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the `distill` key that is unusable."""
  if not config.distill.teacher:
    raise ValueError(
      "config.distill.teacher must name a classifier workdir "
      "(--config.distill.teacher=DIR)"
    )
  if not config.distill.temperature > 0:
    raise ValueError(
      f"config.distill.temperature={config.distill.temperature}; must be > 0"
    )
  if not 0.0 <= config.distill.label_weight <= 1.0:
    raise ValueError(
      f"config.distill.label_weight={config.distill.label_weight}; must be "
      "in [0, 1]"
    )


def load_teacher(workdir: str, *, dtype):
  """(module, variables, `workdir_lib.Trained`) of the classifier in
  `workdir`, the module computing in `dtype`.

  Raises:
    FileNotFoundError: `workdir` is not a workdir or has no checkpoint.
    ValueError: it holds no classifier (a SimCLR run or a bare backbone).
  """
  where = f"config.distill.teacher={workdir}"
  try:
    trained = workdir_lib.load(workdir)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{where}: {e}") from e
  if not backbone.has_head(trained.variables) or not trained.class_names:
    raise ValueError(
      f"{where} is a {trained.trainer} run without a classifier; distil a "
      "fine-tuned, supervised or imported classifier workdir"
    )
  module = models.create_classifier(
    trained.config.model, len(trained.class_names), dtype=dtype
  )
  variables = {
    "params": trained.variables["params"],
    "batch_stats": trained.variables.get("batch_stats") or {},
  }
  return module, variables, trained


def with_student_from_teacher(
  config: ml_collections.ConfigDict, teacher_model
) -> ml_collections.ConfigDict:
  """`config` whose student starts from the teacher's weights
  (`distill.init_student`): the student's `model` section must be the
  teacher's, except `model.proj_hidden_dims`, which it takes from the
  teacher (a fine-tune that kept projection-head layers). `config` itself
  when `init_student` is off.

  Raises:
    ValueError: naming the model keys where the two differ.
  """
  if not config.distill.get("init_student", False):
    return config
  key = models.PROJ_HIDDEN_DIMS
  mine = {k: v for k, v in config.model.to_dict().items() if k != key}
  theirs = {k: v for k, v in teacher_model.to_dict().items() if k != key}
  differ = workdir_lib.changed_keys(theirs, mine)
  if differ:
    raise ValueError(
      "config.distill.init_student starts the student from the teacher's "
      f"weights, but config.model differs from the teacher's in "
      f"{sorted(differ)}: "
      + "; ".join(
        f"teacher -> student {workdir_lib.change_line(key, *pair)}"
        for key, pair in differ.items()
      )
    )
  config = ml_collections.ConfigDict(config.to_dict())  # a private copy
  config.model[key] = tuple(teacher_model.get(key) or ())
  return config


def with_teacher_step(config, step: int) -> ml_collections.ConfigDict:
  """`config` with `distill.teacher_step` set to the teacher's newest
  checkpoint step: recorded in config.json, so that resuming after the
  teacher changed is refused like any other config change."""
  recorded = config.distill.get("teacher_step")
  if recorded is not None and recorded != step:
    raise ValueError(
      f"config.distill.teacher_step={recorded}, but the newest checkpoint "
      f"of {config.distill.teacher} is step {step}"
    )
  config = ml_collections.ConfigDict(config.to_dict())  # a private copy
  config.distill.teacher_step = step
  return config


def hidden_labels(labels: np.ndarray, config) -> np.ndarray:
  """int32 [N]: the labels the student may read, -1 for the others: the
  seeded `data.label_fraction` subset when `distill.label_weight` > 0,
  none otherwise."""
  shown = np.full(labels.shape, -1, np.int32)
  if config.distill.label_weight > 0 and (labels >= 0).any():
    keep = subsets.label_subset(
      labels, config.data.label_fraction, seed=config.seed
    )
    shown[keep] = labels[keep]
  return shown


def _train_arrays(run, config):
  """The training split as the loop reads it, labels hidden."""
  if run.streamed:
    index = run.train.index
    hidden = hidden_labels(index.labels, config)
    return dataclasses.replace(
      run.train, index=dataclasses.replace(index, labels=hidden)
    )
  return {
    "image": run.train.images,
    "label": hidden_labels(run.train.labels, config),
  }


@setup.one_writer
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Distils `config.distill.teacher` into `config.model` in `workdir`.

  Returns:
    {"train", "eval", "source", "start_step"} like the supervised trainer.
  """
  check_settings(config)
  teacher_dir = config.distill.teacher
  teacher, teacher_variables, trained = load_teacher(
    teacher_dir, dtype=setup.model_dtype(config)
  )
  config = with_teacher_step(config, trained.step)
  config = with_student_from_teacher(config, trained.config.model)
  config = finetune.with_pretrained_preprocessing(config, key="distill.teacher")
  run = setup.prepare_run(config, workdir, label_subset=False)
  config = run.config
  class_names = trained.class_names
  data_classes = tuple(run.train_split.class_names)
  if data_classes and data_classes != class_names:
    raise ValueError(
      f"config.distill.teacher={teacher_dir} classifies {list(class_names)} "
      f"but data {config.data.name!r} has classes {list(data_classes)}"
    )
  student = models.create_model(
    config.model.name, num_classes=len(class_names), **run.model_kwargs
  )
  init_fn = None
  if config.distill.get("init_student", False):
    init_fn = finetune.make_init_fn(teacher_dir, with_head=True)
  started = setup.start_state(
    run, student, workdir, init_fn=init_fn, class_names=class_names
  )
  logging.info(
    "distilling %s (%s) into %s; temperature %s, label weight %s",
    trained.describe(),
    trained.config.model.name,
    config.model.name,
    config.distill.temperature,
    config.distill.label_weight,
  )
  step = functools.partial(
    train_step,
    teacher_apply=teacher.apply,
    learning_rate_fn=started.learning_rate_fn,
    preprocess=supervised.train_preprocess(config, streamed=run.streamed),
    temperature=config.distill.temperature,
    label_weight=config.distill.label_weight,
    accum_steps=config.grad_accum_steps,
  )
  task = loop.Task(
    state=started.state,
    train_step=parallel.compile_train_step(
      step, run.mesh, form=config.parallel, constants=teacher_variables
    ),
    train_arrays=_train_arrays(run, config),
    evaluate=supervised.build_evaluate(run),
  )
  return setup.run_loop(run, started, task, workdir)
