"""The start of every run: the workdir lock, config checks, data, mesh,
workdir provenance.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jvision import checkpoint as checkpoint_lib
from jvision import configs_io, models, optim, parallel
from jvision import data as data_lib
from jvision import workdir as workdir_lib
from jvision.data import augment, feed, from_config, stream
from jvision.train import metric_writer
from jvision.train.state import create_train_state

Split = data_lib.ArrayDataset | stream.Streamed


@dataclasses.dataclass
class Run:
  """Everything a trainer needs before it builds its model and state.

  `train` and `eval` are in memory (ArrayDataset) or streamed
  (`stream.Streamed`), as `config.data.loading` (recorded resolved) says.
  """

  config: ml_collections.ConfigDict  # resolved: mean/std, loading filled in
  mesh: jax.sharding.Mesh
  train: Split
  eval: Split
  model_kwargs: dict
  image_shape: tuple[int, int, int]  # [H, W, C] of the step's images

  @property
  def streamed(self) -> bool:
    return isinstance(self.train, stream.Streamed)

  @property
  def train_split(self):
    """The training examples' ArrayDataset or SplitIndex (labels, ids,
    class names)."""
    return self.train.index if self.streamed else self.train

  @property
  def eval_split(self):
    """The evaluation examples' ArrayDataset or SplitIndex."""
    return self.eval.index if self.streamed else self.eval


_STATS_CHUNK = 4096  # images per float64 chunk of channel_stats


def channel_stats(images: np.ndarray) -> tuple[tuple, tuple]:
  """Per-channel mean and std in [0, 1] units of uint8 [N, H, W, C].

  Sums run over chunks, so the float64 copy is one chunk, not the split.
  """
  channels = images.shape[-1]
  total, total_sq, count = np.zeros(channels), np.zeros(channels), 0
  for start in range(0, len(images), _STATS_CHUNK):
    chunk = images[start : start + _STATS_CHUNK].reshape(-1, channels)
    chunk = chunk.astype(np.float64) / 255.0
    total += chunk.sum(0)
    total_sq += np.square(chunk).sum(0)
    count += len(chunk)
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
  return tuple(round(float(v), 4) for v in mean), tuple(
    round(float(v), 4) for v in std
  )


def sample_stats(split: stream.Streamed, sample: int, seed: int):
  """Mean and std (as `channel_stats`) of a seeded sample of at most
  `sample` examples of a streamed split, centre-cropped as in evaluation."""
  n = len(split.index)
  order = np.random.default_rng(seed).permutation(n)[: min(sample, n)]
  subset = split.take(np.sort(order))
  images = [  # every process measures the whole sample: the same stats
    b["image"][b["mask"] > 0]
    for b in stream.eval_batches(
      subset.index,
      subset.settings,
      batch_size=min(256, len(order)),
      workers=subset.workers,
    )
  ]
  return channel_stats(np.concatenate(images))


def _image_shape(split) -> tuple[int, int, int]:
  """[H, W, C] of a split's step images (a streamed split: of its first
  readable example's centre crop)."""
  if isinstance(split, data_lib.ArrayDataset):
    return tuple(int(d) for d in split.images.shape[1:])
  first = split.index.take(np.arange(min(8, len(split.index))))  # 1 readable
  batch = stream.EvalBatch(first, split.settings, batch_size=len(first))(0)
  return tuple(int(d) for d in batch["image"].shape[1:])


def check_steps(config: ml_collections.ConfigDict) -> None:
  """Raises, naming the key, for a negative step count, a run of no steps
  or a warmup longer than the run."""
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
  # A recipe's warmup kept while num_train_steps was shortened on the
  # command line: named here, before any data loads.
  warmup, steps = config.optimizer.warmup_steps, config.num_train_steps
  if not 0 <= warmup <= steps:
    raise ValueError(
      f"config.optimizer.warmup_steps={warmup} must be between 0 and "
      f"config.num_train_steps={steps}; a shortened run needs a shorter "
      "warmup too (--config.optimizer.warmup_steps=N)"
    )


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


def one_writer(train_and_evaluate):
  """Makes a trainer's `train_and_evaluate(config, workdir)` hold the lock.

  The lock (`workdir.hold_lock`) is taken before anything is loaded or
  written and released however the run ends, so a second trainer on the
  same workdir is refused at once with the holder named.
  """

  @functools.wraps(train_and_evaluate)
  def locked(config: ml_collections.ConfigDict, workdir: str):
    with workdir_lib.hold_lock(workdir):
      return train_and_evaluate(config, workdir)

  return locked


def _open_splits(config, progress: bool):
  """`from_config.open_splits` of the train and eval splits; a split the
  source lacks is an error naming the config key that asked for it."""
  d = config.data
  try:
    return from_config.open_splits(
      config, (d.train_split, d.eval_split), progress=progress
    )
  except data_lib.UnknownSplitError as error:
    key = "train_split" if error.split == d.train_split else "eval_split"
    raise data_lib.DataError(
      f"config.data.{key}={error.split!r}: {error}; set "
      f"--config.data.{key} to one of {list(error.available)}"
    ) from error


def prepare_run(
  config: ml_collections.ConfigDict, workdir: str, *, label_subset: bool = True
) -> Run:
  """Validates `config`, loads its data and checks `workdir` may take it.

  With `label_subset` a `data.label_fraction` below 1 keeps only that
  fraction of the training split; without, the whole split is kept (the
  distill trainer trains on every image and hides the other labels).

  Nothing is written yet but the lock (`one_writer`, removed with the
  directory it made if the run fails here): the trainer calls
  `workdir.record` once its model, optimizer and state are built, so a
  config error leaves no trace.
  """
  check_steps(config)
  mesh = parallel.create_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  check_accumulation(config, mesh)
  configs_io.check_choice("parallel", config.parallel, parallel.FORMS)
  model_dtype(config)  # a bad name fails before any data loads
  configs_io.check_choice("data.feed", config.data.feed, feed.FEEDS)
  configs_io.check_choice(
    "data.loading", config.data.loading, from_config.LOADINGS
  )
  from_config.stream_workers(config)  # a bad count fails before data loads
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
  loading, why, (train, evaluation) = _open_splits(config, progress)
  logging.info("data loading: %s (%s)", loading, why)
  train_labels = (train.index if loading == "stream" else train).labels
  if config.data.label_fraction < 1.0 and label_subset:
    if (train_labels < 0).all():
      raise ValueError(
        f"config.data.label_fraction={config.data.label_fraction}: data "
        f"{config.data.name!r} is unlabelled"
      )
    train = train.take(
      data_lib.label_subset(
        train_labels, config.data.label_fraction, seed=config.seed
      )
    )
  image_shape = _image_shape(train)
  if image_shape != _image_shape(evaluation):
    raise ValueError(
      f"train images are {image_shape} but eval images are "
      f"{_image_shape(evaluation)}; set config.data.image_size and "
      "config.data.channels"
    )
  config = ml_collections.ConfigDict(config.to_dict())  # a private copy
  config.data.loading = loading  # recorded resolved: resumes read the same
  if config.data.mean is None or config.data.std is None:
    if loading == "stream":
      config.data.mean, config.data.std = sample_stats(
        train, config.data.stats_sample, config.seed
      )
      where = f"a seeded sample of {config.data.stats_sample} training images"
    else:
      config.data.mean, config.data.std = channel_stats(train.images)
      where = "the training split"
    logging.info(
      "measured data mean %s std %s on %s",
      config.data.mean,
      config.data.std,
      where,
    )
  workdir_lib.check(workdir, config)
  manifest = config.data.get("manifest")
  examples = train.index if loading == "stream" else train
  logging.info(
    "data %s: %d train, %d eval images of %s, %d classes, %d devices",
    f"manifest {manifest}" if manifest else config.data.name,
    feed.split_size(train),
    feed.split_size(evaluation),
    image_shape,
    examples.num_classes,
    mesh.devices.size,
  )
  model_kwargs = models.config_kwargs(config.model)
  model_kwargs["dtype"] = model_dtype(config)
  if config.parallel == "pmap" and "bn_axis_name" in models.model_fields(
    config.model.name
  ):
    model_kwargs["bn_axis_name"] = parallel.PMAP_AXIS  # global batch norm
  return Run(config, mesh, train, evaluation, model_kwargs, image_shape)


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
  run: Run,
  model,
  workdir: str,
  *,
  init_fn=None,
  update_scales_fn=None,
  class_names=None,
) -> Started:
  """Builds the optimizer and state, records the run, resumes if it can.

  Resume order: the newest checkpoint in DIR/checkpoints, else the
  initialisation `init_fn` gives (e.g. `config.init_from`), else scratch.
  `init_fn` and `update_scales_fn` are passed to `create_train_state`.
  `class_names` are the classes recorded for the network's outputs (None:
  the training split's; a student takes its teacher's).
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
    image_shape=run.image_shape,
    learning_rate_fn=learning_rate_fn,
    init_fn=init_fn,
    update_scales_fn=update_scales_fn,
  )
  state = parallel.replicate(state, run.mesh)
  workdir_lib.record(  # the config is valid: record it
    workdir,
    config,
    class_names=(
      run.train_split.class_names if class_names is None else class_names
    ),
    image_shape=run.image_shape,
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
