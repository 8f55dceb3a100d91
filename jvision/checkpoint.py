"""Orbax CheckpointManager wrapper: save, restore-or-init, latest.

A checkpoint holds two items: "state" (the train state pytree: params,
batch_stats, opt_state, step, rng) and "data" (JSON: the data-iterator
position, so a resumed run reads the batches the uninterrupted one would).
Saves are asynchronous; `wait` blocks until the last one is on disk.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


@dataclasses.dataclass
class Restored:
  """What `Checkpointer.restore_or_init` found."""

  state: Any
  data: dict | None
  source: str  # "checkpoint step N" or "scratch"


class Checkpointer:
  """Checkpoints of one workdir (DIR/checkpoints)."""

  def __init__(
    self,
    directory: str,
    *,
    max_to_keep: int = 3,
    async_save: bool = True,
  ):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      enable_async_checkpointing=async_save,
      create=True,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """The newest saved step, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, data: dict, *, force: bool = False):
    """Starts saving `state` and the data position `data` at `step`."""
    self._manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data),
      ),
      force=force,
    )

  def restore_or_init(self, state) -> Restored:
    """The newest checkpoint restored into `state`'s structure and sharding.

    Args:
      state: a freshly initialised train state; its structure, dtypes and
        shardings are the restore target, and it is returned unchanged when
        the directory holds no checkpoint.
    """
    step = self.latest_step()
    if step is None:
      return Restored(state=state, data=None, source="scratch")
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = self._manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target),
        data=ocp.args.JsonRestore(),
      ),
    )
    logging.info("restored checkpoint step %d from %s", step, self.directory)
    return Restored(
      state=restored.state,
      data=restored.data,
      source=f"checkpoint step {step}",
    )

  def restore_raw(self, step: int | None = None) -> dict:
    """The saved state as a plain tree of arrays (no target needed).

    For readers that need only part of the state, such as evaluation,
    which uses params and batch_stats and ignores the optimizer.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self._manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
    return restored.state

  def wait(self):
    """Blocks until pending asynchronous saves are complete."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()
