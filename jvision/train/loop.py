"""The training loop every trainer runs: steps, logging, eval, checkpoints.

A trainer supplies its compiled step, its initial state and an evaluation
function; the loop owns the order of events, so resumption, logging and
failure handling behave the same for every trainer:

  for step in [start, num_train_steps):
    state, metrics = train_step(state, batch(step))
    every log_every_steps:        mean train metrics -> metrics.jsonl, TB
    every eval_every_steps:       evaluate(state)    -> metrics.jsonl, TB
    every checkpoint_every_steps: Orbax save (async)

Batches come through `config.data.feed` (jvision/data/feed.py): from the
host through a prefetch thread, or gathered on the devices from a resident
copy of the split; the logged `data_wait_fraction` is the share of the
interval the loop spent waiting for them.

Metrics stay on device between log steps, so the host never waits on the
accelerator except when it logs or saves.

SIGTERM (a cluster pre-empting the job) is caught: the loop finishes the
step in flight, saves a checkpoint of it, waits for the write and raises
`Preempted`, so the same command later resumes from exactly that step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
import time
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging

from jvision import checkpoint as checkpoint_lib
from jvision import parallel
from jvision.data import feed as feed_lib
from jvision.data import pipeline, stream
from jvision.train import metric_writer


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite."""


class Preempted(RuntimeError):
  """SIGTERM arrived; a checkpoint of `step` was saved before stopping."""

  def __init__(self, step: int, workdir: str):
    super().__init__(
      f"stopped by SIGTERM after step {step}; saved a checkpoint of it in "
      f"{workdir}/checkpoints. Run the same command to resume."
    )
    self.step = step


@contextlib.contextmanager
def sigterm_flag():
  """Yields a `threading.Event` set when SIGTERM arrives (main thread only).

  The previous handler is restored on exit. Outside the main thread (where
  Python cannot install handlers) the event is never set.
  """
  event = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield event
    return
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: event.set())
  try:
    yield event
  finally:
    signal.signal(signal.SIGTERM, previous)


@dataclasses.dataclass
class Task:
  """What one trainer plugs into `run`.

  Attributes:
    state: the initial (or restored) train state, placed on the mesh.
    train_step: compiled `(state, batch) -> (state, metrics)`.
    train_arrays: the training split in memory, e.g. {"image", "label"}
      [N, ...], or a streamed split (`stream.Streamed`) whose workers make
      each batch.
    evaluate: `state -> {name: value}` on the eval split, or None.
    images_per_example: images the step sees per example (2 for SimCLR).
  """

  state: object
  train_step: Callable
  train_arrays: dict[str, np.ndarray] | stream.Streamed
  evaluate: Callable | None = None
  images_per_example: int = 1


def _every(step: int, period: int, last: int) -> bool:
  return step == last or (period > 0 and step % period == 0)


def data_position(step: int, config, num_examples: int) -> dict:
  """The data-iterator position saved beside the state at `step`."""
  epoch, position = pipeline.stream_position(
    step, batch_size=config.batch_size, num_examples=num_examples
  )
  return {
    "step": step,
    "epoch": epoch,
    "position": position,
    "seed": config.seed,
    "batch_size": config.batch_size,
  }


def _timed(iterator):
  """Yields (seconds spent waiting for the item, item) for each item."""
  while True:
    start = time.perf_counter()
    item = next(iterator, _timed)
    if item is _timed:
      return
    yield time.perf_counter() - start, item


def _mean_metrics(buffered: list[dict], first: int, last: int) -> dict:
  host = jax.device_get(buffered)
  means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
  if not np.isfinite(means.get("loss", 0.0)):
    bad = [first + i for i, m in enumerate(host) if not np.isfinite(m["loss"])]
    raise NonFiniteLossError(
      f"loss became {means['loss']} in steps {first + 1}..{last} (first "
      f"non-finite at step {bad[0] + 1 if bad else '?'}); the run stops "
      "and the last good checkpoint is kept"
    )
  return means


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  task: Task,
  *,
  mesh,
  checkpointer: checkpoint_lib.Checkpointer,
  start_step: int,
) -> dict:
  """Trains from `start_step` to `config.num_train_steps`.

  Returns:
    The last logged train metrics and eval metrics, as {"train": ..., "eval":
    ...}.
  """
  total = config.num_train_steps
  writer = metric_writer.MetricWriter(workdir)
  num_examples = feed_lib.split_size(task.train_arrays)
  state, buffered, last = task.state, [], {"train": {}, "eval": {}}
  interval_start, interval_step = time.perf_counter(), start_step
  paused = 0.0  # seconds spent in evaluation during the current interval
  waited = 0.0  # seconds spent waiting for batches during the interval
  batches = _batches(config, task, mesh, start_step)
  bar = tqdm.tqdm(
    total=total,
    initial=start_step,
    desc="train",
    unit="step",
    dynamic_ncols=True,
    disable=not config.progress_bar or jax.process_index() != 0,
  )
  stack = contextlib.ExitStack()
  terminated = stack.enter_context(sigterm_flag())
  try:
    for wait, (step, batch) in _timed(batches):
      waited += wait
      state, metrics = task.train_step(state, batch)
      buffered.append(metrics)
      done = step + 1
      bar.update(1)
      saving = _every(done, config.checkpoint_every_steps, total)
      if _every(done, config.log_every_steps, total) or saving:
        means = _mean_metrics(buffered, interval_step, done)
        seconds = time.perf_counter() - interval_start - paused
        images = (done - interval_step) * config.batch_size
        means["images_per_sec"] = images * task.images_per_example / seconds
        # Time the loop stood waiting for the next batch: the accelerator
        # starves when this is above 0 (the input path is the bottleneck).
        means["data_wait_fraction"] = min(1.0, waited / seconds)
        writer.write(done, "train", means)
        bar.set_postfix(
          loss=f"{means['loss']:.4f}", img_s=f"{means['images_per_sec']:.0f}"
        )
        last["train"], buffered = means, []
        interval_start, interval_step = time.perf_counter(), done
        paused, waited = 0.0, 0.0
      if task.evaluate is not None and _every(
        done, config.eval_every_steps, total
      ):
        eval_start = time.perf_counter()
        last["eval"] = task.evaluate(state)
        writer.write(done, config.data.eval_split, last["eval"])
        logging.info("step %d eval %s", done, _fmt(last["eval"]))
        paused += time.perf_counter() - eval_start  # not step time
      if saving or terminated.is_set():
        checkpointer.save(
          done,
          state,
          data_position(done, config, num_examples),
          force=terminated.is_set(),
        )
      if terminated.is_set() and done < total:
        logging.warning("SIGTERM: saved step %d, stopping", done)
        raise Preempted(done, workdir)
  finally:
    bar.close()
    checkpointer.wait()
    writer.close()
    stack.close()
  return last


def _batches(config, task: Task, mesh, start_step: int):
  """(step, global batch) from `start_step` on, through the run's feed."""
  where = dict(
    start=start_step,
    stop=config.num_train_steps,
    batch_size=config.batch_size,
    seed=config.seed,
  )
  if isinstance(task.train_arrays, stream.Streamed):
    streamed = task.train_arrays
    logging.info(
      "data feed: stream (%d worker process(es) read, decode and crop)",
      streamed.workers,
    )
    skip_log = stream.SkipLog(streamed.index.source)
    return parallel.streamed_batches(streamed, mesh, skip_log=skip_log, **where)
  nbytes = feed_lib.split_bytes(task.train_arrays)
  feed = feed_lib.choose_feed(
    config.data.feed,
    nbytes=nbytes,
    memory_bytes=feed_lib.device_memory_bytes(mesh.local_devices),
    backend=jax.default_backend(),
  )
  logging.info(
    "data feed: %s (config.data.feed=%r, split %.1f MB)",
    feed,
    config.data.feed,
    nbytes / 1e6,
  )
  return parallel.train_batches(task.train_arrays, mesh, feed=feed, **where)


def _fmt(metrics: dict) -> str:
  return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
