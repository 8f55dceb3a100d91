"""Supervised training with cross-entropy.

`train_step` and `eval_step` are pure functions of (state, batch); every
number they use is bound from the config with `functools.partial` in
`train_and_evaluate`, and they are compiled over the device mesh by
`jvision.parallel.jit_data_parallel`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from jvision import inference, losses, models, parallel
from jvision.data import augment, feed
from jvision.train import grads as grads_lib
from jvision.train import loop, setup
from jvision.train.state import TrainState, create_train_state

__all__ = [
  "create_train_state",
  "eval_step",
  "train_and_evaluate",
  "train_step",
]


def train_step(
  state: TrainState,
  batch: dict,
  *,
  learning_rate_fn,
  preprocess,
  label_smoothing: float,
  bn_train: bool = True,
  frozen=None,
  accum_steps: int = 1,
  axis_name: str | None = None,
):
  """One optimisation step on a global batch (or, under pmap, its slice).

  Args:
    state: the train state.
    batch: {"image": uint8 [B, H, W, C], "label": int32 [B]}.
    learning_rate_fn: step -> learning rate (for logging).
    preprocess: (uint8 images, key) -> float32 [B, H, W, C] training views.
    label_smoothing: cross-entropy label smoothing.
    bn_train: batch norm uses (and updates) batch statistics; False keeps
      the running statistics (a frozen backbone under a linear probe).
    frozen: optional `params -> pytree of floats`; parameters whose factor
      is 0 are held constant (stop_gradient), so no backward pass is spent
      on them.
    accum_steps: micro-batches the batch is split into, their gradients
      averaged (`config.grad_accum_steps`); batch norm then normalises each
      micro-batch on its own.
    axis_name: the pmap axis (`jvision.parallel.pmap_data_parallel`):
      gradients, metrics and batch statistics are averaged over it and the
      augmentation draws as for the global batch; None under jit.

  Returns:
    (new state, {"loss", "accuracy", "learning_rate"} scalars).
  """
  rng = jax.random.fold_in(state.rng, state.step)
  x = parallel.global_then_local(preprocess, batch["image"], rng, axis_name)
  inputs = {"x": x, "label": batch["label"]}  # [B, H, W, C], [B]

  def loss_fn(params, micro, batch_stats):
    x, labels = micro["x"], micro["label"]  # [b, H, W, C], [b]
    if frozen is not None:
      params = jax.tree.map(
        lambda p, s: jax.lax.stop_gradient(p) if s == 0 else p,
        params,
        frozen(params),
      )
    variables = {"params": params, "batch_stats": batch_stats}
    if bn_train:
      logits, updates = state.apply_fn(
        variables, x, train=True, mutable=["batch_stats"]
      )  # [b, K]
      batch_stats = updates.get("batch_stats", {})
    else:
      logits = state.apply_fn(variables, x, train=False)  # [b, K]
    loss = losses.softmax_cross_entropy(
      logits=logits, labels=labels, label_smoothing=label_smoothing
    )
    accuracy = losses.accuracy(logits=logits, labels=labels)
    return loss, (accuracy, batch_stats)

  (loss, (accuracy, batch_stats)), grads = grads_lib.accumulated_value_and_grad(
    loss_fn, state.params, inputs, state.batch_stats, steps=accum_steps
  )
  grads, batch_stats = parallel.pmean((grads, batch_stats), axis_name)
  metrics = parallel.pmean(
    {
      "loss": loss,
      "accuracy": jnp.mean(accuracy),  # [accum_steps] micro-batch values
    },
    axis_name,
  )
  metrics["learning_rate"] = learning_rate_fn(state.step)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state, metrics


def eval_step(
  state: TrainState, batch: dict, *, preprocessing: dict, tta: str = "none"
) -> dict:
  """Sums of loss and correct predictions over the real examples of a batch.

  Args:
    state: the train state.
    batch: {"image": uint8 [B, H, W, C], "label": int32 [B],
      "mask": float32 [B] (0 for padding)}.
    preprocessing: `augment.normalize`'s mean, std and channel_order (no
      augmentation).
    tta: test-time augmentation, `augment.tta_logits`'s mode.

  Returns:
    {"loss_sum", "correct", "count"} scalars.
  """
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  logits = inference.logits_step(
    variables,
    batch,
    apply_fn=state.apply_fn,
    preprocessing=preprocessing,
    tta=tta,
  )  # [B, K]
  labels, mask = batch["label"], batch["mask"]
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return {
    "loss_sum": jnp.sum(nll * mask),
    "correct": jnp.sum(correct * mask),
    "count": jnp.sum(mask),
  }


def evaluate(state, split, *, step_fn, mesh, batch_size: int) -> dict:
  """Mean loss and accuracy of `state` on a whole split (an ArrayDataset
  or a `stream.Streamed` split)."""
  sums = None
  for local in feed.eval_batches(split, batch_size=batch_size):
    out = step_fn(state, parallel.shard_batch(local, mesh))
    sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
  sums = jax.device_get(sums)
  return {
    "loss": float(sums["loss_sum"] / sums["count"]),
    "accuracy": float(sums["correct"] / sums["count"]),
  }


def train_preprocess(config, *, streamed: bool):
  """(uint8 images, key) -> float32 training views: pad-crop and flip on
  device for in-memory data; for streamed data the workers have cropped
  and flipped, and the device only normalises."""
  preprocessing = augment.preprocessing(config.data)
  if streamed:
    return functools.partial(augment.normalize_views, **preprocessing)
  return functools.partial(
    augment.train_preprocess,
    **preprocessing,
    crop_padding=config.augment.crop_padding,
    flip=config.augment.flip,
  )


def build_task(run, started, *, bn_train: bool = True, frozen=None):
  """The supervised loop task: compiled train and eval steps on `run`'s data.

  `bn_train` and `frozen` are passed to `train_step` (the fine-tune trainer
  freezes parameters and batch norm with them).
  """
  config, mesh = run.config, run.mesh
  step = functools.partial(
    train_step,
    learning_rate_fn=started.learning_rate_fn,
    preprocess=train_preprocess(config, streamed=run.streamed),
    label_smoothing=config.loss.label_smoothing,
    bn_train=bn_train,
    frozen=frozen,
    accum_steps=config.grad_accum_steps,
  )
  return loop.Task(
    state=started.state,
    train_step=parallel.compile_train_step(step, mesh, form=config.parallel),
    train_arrays=run.train
    if run.streamed
    else {"image": run.train.images, "label": run.train.labels},
    evaluate=build_evaluate(run),
  )


def build_evaluate(run):
  """`state -> {"loss", "accuracy"}` on `run`'s eval split, compiled; None
  (evaluation off, logged) when that split is unlabelled, as a student
  distilled on unlabelled images may be."""
  config = run.config
  if not run.eval_split.labelled:
    logging.info(
      "evaluation off: split %r of %s is unlabelled; evaluate on labelled "
      "images with `jvision eval --workdir=DIR --data=SPEC`",
      config.data.eval_split,
      config.data.name,
    )
    return None
  p_eval = parallel.jit_data_parallel(
    functools.partial(
      eval_step,
      preprocessing=augment.preprocessing(config.data),
      tta=config.eval_tta,
    ),
    run.mesh,
  )
  return functools.partial(
    evaluate,
    split=run.eval,
    step_fn=p_eval,
    mesh=run.mesh,
    batch_size=config.eval_batch_size,
  )


@setup.one_writer
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Trains `config` in `workdir`, resuming from its newest checkpoint.

  Returns:
    {"train": last train metrics, "eval": last eval metrics,
     "source": where the state came from, "start_step"}.
  """
  run = setup.prepare_run(config, workdir)
  model = models.create_model(
    run.config.model.name,
    num_classes=run.train_split.num_classes,
    **run.model_kwargs,
  )
  started = setup.start_state(run, model, workdir)
  return setup.run_loop(run, started, build_task(run, started), workdir)
