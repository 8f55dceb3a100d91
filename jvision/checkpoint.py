"""Orbax CheckpointManager wrapper: save, restore-or-init, latest.

A checkpoint holds two items: "state" (the train state pytree: params,
batch_stats, opt_state, step, rng) and "data" (JSON: the data-iterator
position, so a resumed run reads the batches the uninterrupted one would).
Saves are asynchronous; `wait` blocks until the last one is on disk.

A newest checkpoint that cannot be read (a file truncated or lost by a
crash, a disk fault) is reported and moved aside to
DIR/checkpoints_unreadable/<step>/, never deleted, and the next older one is
restored; Orbax never lists a save that did not finish (it writes into a
temporary directory and renames it when complete).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
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
  # (step, where it was moved, the error) of newer unreadable checkpoints.
  unreadable: list = dataclasses.field(default_factory=list)


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
    """The newest readable checkpoint restored into `state`'s structure.

    Args:
      state: a freshly initialised train state; its structure, dtypes and
        shardings are the restore target, and it is returned unchanged when
        the directory holds no readable checkpoint.

    A checkpoint that fails to restore is logged as a warning, moved to
    DIR/checkpoints_unreadable/<step> (so that the resumed run can save that
    step again) and listed in `Restored.unreadable`; the next older one is
    tried.
    """
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    unreadable = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        restored = self._manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target),
            data=ocp.args.JsonRestore(),
          ),
        )
      except Exception as error:  # noqa: BLE001 - Orbax raises many kinds
        moved = self._set_aside(step)
        logging.warning(
          "checkpoint step %d in %s is unreadable (%s: %s); moved it to %s "
          "and trying the previous one",
          step,
          self.directory,
          type(error).__name__,
          str(error).splitlines()[0][:300] if str(error) else "",
          moved,
        )
        unreadable.append((step, moved, f"{type(error).__name__}: {error}"))
        continue
      logging.info("restored checkpoint step %d from %s", step, self.directory)
      return Restored(
        state=restored.state,
        data=restored.data,
        source=f"checkpoint step {step}",
        unreadable=unreadable,
      )
    return Restored(
      state=state, data=None, source="scratch", unreadable=unreadable
    )

  def _set_aside(self, step: int) -> str:
    """Moves the directory of `step` to DIR/checkpoints_unreadable/."""
    aside = f"{self.directory.rstrip(os.sep)}_unreadable"
    os.makedirs(aside, exist_ok=True)
    target = os.path.join(aside, str(step))
    if os.path.exists(target):  # an earlier one of the same step
      target = f"{target}.{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.move(os.path.join(self.directory, str(step)), target)
    self._manager.reload()
    return target

  def restore_raw(self, step: int | None = None) -> dict:
    """The saved state as a plain tree of arrays (no target needed).

    For readers that need only part of the state, such as evaluation,
    which uses params and batch_stats and ignores the optimizer. Arrays
    land on this process's first device whatever topology saved them (8
    devices, 2 hosts), so a multi-host run can be evaluated on a laptop.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    metadata = ocp.StandardCheckpointer().metadata(
      os.path.join(self.directory, str(step), "state")
    )
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
      metadata.item_metadata,
    )
    restored = self._manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
    )
    return restored.state

  def wait(self):
    """Blocks until pending asynchronous saves are complete."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.close()
