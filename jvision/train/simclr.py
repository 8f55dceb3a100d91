"""SimCLR pretraining: NT-Xent on two augmented views, on device.

`train_step` makes two SimCLR views of the global batch (jvision.data.
simclr_augment), runs backbone + projection head on both with global batch
norm, and minimises NT-Xent plus the online linear probe's cross-entropy on
stop-gradient features (the probe never shapes the features). Every
`eval_every_steps` a kNN monitor (k, temperature from `config.knn`) and the
probe classify the eval split from backbone features.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jvision import losses, models, parallel, xla_defaults
from jvision.data import (
  augment,
  feed,
  from_config,
  preview,
  simclr_augment,
  stream,
)
from jvision.evaluate import knn
from jvision.models.simclr import create_simclr_model
from jvision.train import loop, setup
from jvision.train.state import TrainState, create_train_state

VIEWS_PER_IMAGE = 2  # augmented views of each image a step sees (NT-Xent)

__all__ = [
  "create_train_state",
  "embed_step",
  "train_and_evaluate",
  "train_step",
]


def train_step(
  state: TrainState,
  batch: dict,
  *,
  learning_rate_fn,
  views,
  temperature: float,
  probe_weight: float,
  decoupled: bool = False,
  axis_name: str | None = None,
):
  """One SimCLR step on a global batch (or, under pmap, its slice).

  Args:
    state: the train state of a SimCLRModel.
    batch: {"image": uint8 [B, H, W, C], "label": int32 [B]} (labels feed
      only the online probe).
    learning_rate_fn: step -> learning rate (for logging).
    views: (uint8 images, key) -> two float32 [B, H, W, C] views.
    temperature: NT-Xent temperature.
    decoupled: NT-Xent without the positive in its denominator (DCL).
    probe_weight: weight of the probe's cross-entropy in the total loss.
    axis_name: the pmap axis: NT-Xent gathers its negatives over it,
      gradients, metrics and batch statistics are averaged over it, and the
      views are drawn as for the global batch; None under jit.

  Returns:
    (new state, {"loss", "contrastive_loss", "probe_loss",
    "probe_accuracy", "learning_rate"}).
  """
  rng = jax.random.fold_in(state.rng, state.step)
  view1, view2 = parallel.global_then_local(
    views, batch["image"], rng, axis_name
  )  # [B, H, W, C] each
  x = jnp.concatenate([view1, view2])  # [2B, H, W, C]
  labels = jnp.concatenate([batch["label"], batch["label"]])  # [2B]

  def loss_fn(params):
    out, updates = state.apply_fn(
      {"params": params, "batch_stats": state.batch_stats},
      x,
      train=True,
      mutable=["batch_stats"],
    )
    z1, z2 = jnp.split(out["projection"], 2)  # [B, D] each
    contrastive = losses.nt_xent(
      z1=z1,
      z2=z2,
      temperature=temperature,
      decoupled=decoupled,
      axis_name=axis_name,
    )
    probe = losses.softmax_cross_entropy(
      logits=out["probe_logits"], labels=labels
    )
    aux = (contrastive, probe, out["probe_logits"], updates["batch_stats"])
    return contrastive + probe_weight * probe, aux

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  (loss, aux), grads = grad_fn(state.params)
  contrastive, probe, probe_logits, batch_stats = aux
  grads, batch_stats = parallel.pmean((grads, batch_stats), axis_name)
  metrics = parallel.pmean(
    {
      "loss": loss,
      "contrastive_loss": contrastive,
      "probe_loss": probe,
      "probe_accuracy": losses.accuracy(logits=probe_logits, labels=labels),
    },
    axis_name,
  )
  metrics["learning_rate"] = learning_rate_fn(state.step)
  return state.apply_gradients(grads=grads, batch_stats=batch_stats), metrics


def embed_step(state: TrainState, batch: dict, *, preprocess) -> dict:
  """Backbone features and probe logits of un-augmented images.

  Returns:
    {"features": [B, F], "probe_logits": [B, K]}.
  """
  out = state.apply_fn(
    {"params": state.params, "batch_stats": state.batch_stats},
    preprocess(batch["image"]),
    train=False,
  )
  return {"features": out["features"], "probe_logits": out["probe_logits"]}


def evaluate(
  state, *, bank, queries, step_fn, mesh, config, with_probe: bool = True
) -> dict:
  """kNN-monitor and online-probe accuracy on the eval split.

  `bank` and `queries` are labelled splits, in memory or streamed; the
  probe's accuracy is left out when `with_probe` is False (a probe that
  had no labels to learn from)."""
  embed = functools.partial(
    parallel.map_split,
    step_fn,
    state,
    mesh=mesh,
    batch_size=config.eval_batch_size,
  )
  bank_out, query_out = embed(bank), embed(queries)
  bank_split, query_split = _examples(bank), _examples(queries)
  predicted = knn.knn_predict(
    bank_out["features"],
    bank_split.labels,
    query_out["features"],
    k=config.knn.k,
    temperature=config.knn.temperature,
    num_classes=query_split.num_classes,
  )
  metrics = {"knn_accuracy": float(np.mean(predicted == query_split.labels))}
  if with_probe:
    probe_predicted = query_out["probe_logits"].argmax(-1)
    metrics["probe_accuracy"] = float(
      np.mean(probe_predicted == query_split.labels)
    )
  return metrics


def _examples(split):
  """An ArrayDataset, or a streamed split's SplitIndex (labels, classes)."""
  return split.index if isinstance(split, stream.Streamed) else split


def knn_bank(train, max_bank: int | None, seed: int):
  """The training examples the kNN monitor votes with (a seeded subset)."""
  size = feed.split_size(train)
  if max_bank is None or max_bank >= size:
    return train
  order = np.random.default_rng(seed).permutation(size)[:max_bank]
  return train.take(np.sort(order))


def monitor_splits(run):
  """(bank, queries) of the kNN monitor and probe, or None when off.

  The training data's own splits, or `config.knn.monitor_data`'s (needed
  when the training data is unlabelled)."""
  config = run.config
  if config.knn.monitor_data:
    monitor = from_config.reading(config, config.knn.monitor_data)
    monitor.data.train_split, monitor.data.eval_split = (
      config.knn.monitor_splits
    )
    loading, why, (bank, queries) = from_config.open_splits(
      monitor, tuple(config.knn.monitor_splits), progress=False
    )
    logging.info(
      "kNN monitor: bank and queries from %s splits %s (%s: %s)",
      config.knn.monitor_data,
      tuple(config.knn.monitor_splits),
      loading,
      why,
    )
  elif not run.train_split.labelled:
    logging.info(
      "kNN monitor and online probe off: %s is unlabelled; set "
      "config.knn.monitor_data to a labelled data spec to monitor",
      config.data.name,
    )
    return None
  else:
    bank, queries = run.train, run.eval
  return knn_bank(bank, config.knn.max_bank, config.seed), queries


def write_preview(workdir, images, views_fn, rng, *, mean, std) -> None:
  """DIR/augmentations.png: 8 training images and 4 views of each.

  `images` is what `views_fn` takes: uint8 [8, H, W, C], or the streamed
  [8, 2, H, W, C] two crops per image (the first crop is shown as the
  image)."""
  images = images[:8]
  # One program for both calls, compiled for compile time: it runs twice
  # (at XLA:CPU's default -O2 its compile took 3.8 s of a SimCLR run's
  # start on a 2-core CPU).
  keys = [jax.random.fold_in(rng, i) for i in range(2)]
  views_of = xla_defaults.compile_once(views_fn, images, keys[0])
  views = []
  for key in keys:
    views += [np.asarray(v) for v in views_of(images, key)]
  shown = images[:, 0] if images.ndim == 5 else images
  path = os.path.join(workdir, "augmentations.png")
  preview.save_view_grid(shown, views, path, mean=mean, std=std)
  logging.info("wrote the augmentation preview %s", path)


def view_fn(config, *, streamed: bool):
  """(uint8 batch, key) -> two standardised views: the whole SimCLR view on
  device for in-memory data; colour, grayscale and blur of the two crops
  the stream workers made for streamed data ([B, 2, H, W, C])."""
  make = simclr_augment.cropped_views if streamed else simclr_augment.two_views
  return functools.partial(
    make, config=config.augment, mean=config.data.mean, std=config.data.std
  )


def preview_images(run) -> np.ndarray:
  """The first 8 training images as the views see them: uint8 [8, H, W, C]
  in memory, or the two stream crops of each [8, 2, H, W, C]."""
  if not run.streamed:
    return run.train.images[:8]
  first = run.train.take(np.arange(min(8, len(run.train.index))))
  pairs = stream.TrainBatch(
    first.index,
    dataclasses.replace(first.settings, views=2),
    batch_size=len(first.index),
    seed=run.config.seed,
  )(0)
  return pairs["image"]


def build_model(config, num_classes: int, model_kwargs: dict | None = None):
  """The SimCLRModel of `config`: backbone + projection head + probe.

  `model_kwargs` are the backbone's keyword arguments, `Run.model_kwargs`
  of `setup.prepare_run` (the config's `model` section with the dtype and,
  under pmap, `bn_axis_name`, which the projection head shares); default:
  the `model` section alone.
  """
  if model_kwargs is None:
    model_kwargs = models.config_kwargs(config.model)
  backbone = models.create_model(
    config.model.name, num_classes=0, **model_kwargs
  )
  return create_simclr_model(
    backbone,
    num_classes=num_classes,
    hidden_dims=config.simclr.proj_hidden_dims,
    out_dim=config.simclr.proj_dim,
    dtype=model_kwargs.get("dtype", jnp.float32),
    bn_axis_name=model_kwargs.get("bn_axis_name"),
  )


@setup.one_writer
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Pretrains `config` in `workdir`, resuming from its newest checkpoint.

  Returns:
    {"train": last train metrics, "eval": last monitor metrics,
     "source": where the state came from, "start_step"}.
  """
  if config.grad_accum_steps != 1:
    raise ValueError(
      f"config.grad_accum_steps={config.grad_accum_steps}: SimCLR draws its "
      "negatives from the batch, so micro-batches would change the loss "
      "(fewer negatives), not just its memory; use 1 and a batch that fits"
    )
  channel_order = config.data.get("channel_order", "rgb")
  if channel_order != "rgb":
    raise ValueError(
      f"config.data.channel_order={channel_order!r}: SimCLR's colour "
      "augmentations take RGB images; use 'rgb'"
    )
  run = setup.prepare_run(config, workdir)
  config, mesh = run.config, run.mesh
  if run.streamed:  # two crops of each image, made by the stream workers
    two = dataclasses.replace(run.train.settings, views=2)
    run.train = dataclasses.replace(run.train, settings=two)
  labelled = run.train_split.labelled
  # Unlabelled data (labels -1): the probe has nothing to learn from.
  probe_weight = config.simclr.probe_weight if labelled else 0.0
  num_classes = run.train_split.num_classes if labelled else 1
  model = build_model(config, num_classes, run.model_kwargs)
  started = setup.start_state(run, model, workdir)
  views = view_fn(config, streamed=run.streamed)
  if started.start_step == 0 and jax.process_index() == 0:
    write_preview(
      workdir,
      preview_images(run),
      views,
      started.state.rng,
      mean=config.data.mean,
      std=config.data.std,
    )
  step = functools.partial(
    train_step,
    learning_rate_fn=started.learning_rate_fn,
    views=views,
    temperature=config.simclr.temperature,
    probe_weight=probe_weight,
    decoupled=config.simclr.decoupled,
  )
  normalize = functools.partial(
    augment.normalize, **augment.preprocessing(config.data)
  )
  embed_fn = jax.jit(
    functools.partial(embed_step, preprocess=normalize),
    in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
    out_shardings=parallel.replicated(mesh),
  )
  monitor = monitor_splits(run)
  task = loop.Task(
    state=started.state,
    train_step=parallel.compile_train_step(step, mesh, form=config.parallel),
    train_arrays=run.train
    if run.streamed
    else {"image": run.train.images, "label": run.train.labels},
    evaluate=None
    if monitor is None
    else functools.partial(
      evaluate,
      bank=monitor[0],
      queries=monitor[1],
      step_fn=embed_fn,
      mesh=mesh,
      config=config,
      with_probe=labelled,
    ),
    images_per_example=VIEWS_PER_IMAGE,
  )
  return setup.run_loop(run, started, task, workdir)
