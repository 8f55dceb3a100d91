"""The start of every run: config checks, data, mesh, workdir provenance."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jvision import checkpoint as checkpoint_lib
from jvision import configs_io, models, optim, parallel
from jvision import data as data_lib
from jvision.data import augment, feed
from jvision.data.from_config import load_split
from jvision.train import metric_writer
from jvision.train import workdir as workdir_lib
from jvision.train.state import create_train_state


@dataclasses.dataclass
class Run:
  """Everything a trainer needs before it builds its model and state."""

  config: ml_collections.ConfigDict  # resolved: mean/std filled in
  mesh: jax.sharding.Mesh
  train: data_lib.ArrayDataset
  eval: data_lib.ArrayDataset
  model_kwargs: dict


def channel_stats(images: np.ndarray) -> tuple[tuple, tuple]:
  """Per-channel mean and std in [0, 1] units of uint8 [N, H, W, C]."""
  flat = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
  mean = tuple(round(float(v), 4) for v in flat.mean(0))
  std = tuple(round(float(v), 4) for v in flat.std(0))
  return mean, std


def check_steps(config: ml_collections.ConfigDict) -> None:
  for key in (
    "num_train_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
  ):
    if config[key] < 0:
      raise ValueError(f"config.{key} must be >= 0, got {config[key]}")
  if config.num_train_steps == 0:
    raise ValueError("config.num_train_steps must be > 0")


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def model_dtype(config: ml_collections.ConfigDict):
  """The jnp dtype named by `config.dtype`."""
  configs_io.check_choice("dtype", config.dtype, DTYPES)
  return DTYPES[config.dtype]


def check_accumulation(config: ml_collections.ConfigDict, mesh) -> None:
  """Raises unless micro-batches split evenly over the devices."""
  k = config.grad_accum_steps
  if k < 1 or config.batch_size % (k * mesh.devices.size):
    raise ValueError(
      f"config.grad_accum_steps={k} must be >= 1 and batch_size="
      f"{config.batch_size} divisible by grad_accum_steps x "
      f"{mesh.devices.size} devices"
    )


def prepare_run(config: ml_collections.ConfigDict, workdir: str) -> Run:
  """Validates `config`, loads its data and checks `workdir` may take it.

  Nothing is written yet: the trainer calls `workdir.record` once its model,
  optimizer and state are built, so a config error leaves no trace.
  """
  check_steps(config)
  mesh = parallel.create_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  check_accumulation(config, mesh)
  configs_io.check_choice("parallel", config.parallel, parallel.FORMS)
  model_dtype(config)  # a bad name fails before any data loads
  configs_io.check_choice("data.feed", config.data.feed, feed.FEEDS)
  configs_io.check_choice("eval_tta", config.eval_tta, augment.TTA_MODES)
  configs_io.check_choice(
    "data.channel_order",
    config.data.get("channel_order", "rgb"),
    augment.CHANNEL_ORDERS,
  )
  parallel.check_batch_size(
    config.eval_batch_size, mesh, name="eval_batch_size"
  )
  progress = config.progress_bar and jax.process_index() == 0
  train = load_split(config, config.data.train_split, progress=progress)
  evaluation = load_split(config, config.data.eval_split, progress=progress)
  if config.data.label_fraction < 1.0:
    train = train.take(
      data_lib.label_subset(
        train.labels, config.data.label_fraction, seed=config.seed
      )
    )
  if train.images.shape[1:] != evaluation.images.shape[1:]:
    raise ValueError(
      f"train images are {train.images.shape[1:]} but eval images are "
      f"{evaluation.images.shape[1:]}; set config.data.image_size and "
      "config.data.channels"
    )
  config = ml_collections.ConfigDict(config.to_dict())  # a private copy
  if config.data.mean is None or config.data.std is None:
    config.data.mean, config.data.std = channel_stats(train.images)
    logging.info(
      "measured data mean %s std %s on the training split",
      config.data.mean,
      config.data.std,
    )
  workdir_lib.check(workdir, config)
  manifest = config.data.get("manifest")
  logging.info(
    "data %s: %d train, %d eval images of %s, %d classes, %d devices",
    f"manifest {manifest}" if manifest else config.data.name,
    len(train),
    len(evaluation),
    train.images.shape[1:],
    train.num_classes,
    mesh.devices.size,
  )
  model_kwargs = models.config_kwargs(config.model)
  model_kwargs["dtype"] = model_dtype(config)
  if config.parallel == "pmap" and "bn_axis_name" in models.model_fields(
    config.model.name
  ):
    model_kwargs["bn_axis_name"] = parallel.PMAP_AXIS  # global batch norm
  return Run(config, mesh, train, evaluation, model_kwargs)


def forget_metrics_after(workdir: str, step: int) -> None:
  """Drops metrics.jsonl records newer than the checkpoint being resumed."""
  dropped = metric_writer.drop_records_after(f"{workdir}/metrics.jsonl", step)
  if dropped:
    logging.info(
      "dropped %d metric records after step %d; they are logged again",
      dropped,
      step,
    )


@dataclasses.dataclass
class Started:
  """The state a trainer's loop starts from, and where it came from."""

  state: object  # TrainState on the mesh
  checkpointer: checkpoint_lib.Checkpointer
  learning_rate_fn: object
  start_step: int
  source: str  # "scratch" or "checkpoint step N"


def start_state(
  run: Run, model, workdir: str, *, init_fn=None, update_scales_fn=None
) -> Started:
  """Builds the optimizer and state, records the run, resumes if it can.

  Resume order: the newest checkpoint in DIR/checkpoints, else the
  initialisation `init_fn` gives (e.g. `config.init_from`), else scratch.
  `init_fn` and `update_scales_fn` are passed to `create_train_state`.
  """
  config = run.config
  learning_rate_fn = optim.create_learning_rate_fn(
    base_learning_rate=config.optimizer.learning_rate,
    num_train_steps=config.num_train_steps,
    warmup_steps=config.optimizer.warmup_steps,
    schedule=config.optimizer.schedule,
    end_factor=config.optimizer.end_factor,
  )
  state = create_train_state(
    config,
    model,
    image_shape=run.train.images.shape[1:],
    learning_rate_fn=learning_rate_fn,
    init_fn=init_fn,
    update_scales_fn=update_scales_fn,
  )
  state = parallel.replicate(state, run.mesh)
  workdir_lib.record(  # the config is valid: record it
    workdir,
    config,
    class_names=run.train.class_names,
    image_shape=run.train.images.shape[1:],
  )
  checkpointer = checkpoint_lib.Checkpointer(
    f"{workdir}/checkpoints",
    max_to_keep=config.keep_checkpoints,
    async_save=config.async_checkpointing,
  )
  restored = checkpointer.restore_or_init(state)
  if restored.source == "scratch" and init_fn is not None:
    restored.source = getattr(init_fn, "source", "initialisation")
  if restored.unreadable:
    steps = ", ".join(str(step) for step, _, _ in restored.unreadable)
    restored.source += (
      f" (newer checkpoint(s) {steps} unreadable, moved to "
      f"{workdir}/checkpoints_unreadable/)"
    )
  start_step = int(jax.device_get(restored.state.step))
  logging.info("starting from %s (step %d)", restored.source, start_step)
  forget_metrics_after(workdir, start_step)
  return Started(
    restored.state, checkpointer, learning_rate_fn, start_step, restored.source
  )


def run_loop(run: Run, started: Started, task, workdir: str) -> dict:
  """Runs `task` from `started` to the end; closes the checkpointer.

  Returns:
    {"train", "eval": last logged metrics, "source", "start_step"}.
  """
  from jvision.train import loop

  last = loop.run(
    run.config,
    workdir,
    task,
    mesh=run.mesh,
    checkpointer=started.checkpointer,
    start_step=started.start_step,
  )
  started.checkpointer.close()
  return {**last, "source": started.source, "start_step": started.start_step}
