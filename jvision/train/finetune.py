"""Fine-tuning and linear probing of a pretrained backbone.

`config.init_from` names a workdir (SimCLR or supervised); its newest
checkpoint's backbone is loaded into a classifier with a new linear head for
this data's classes. Modes (`config.finetune.mode`):

  linear    only the head trains, on frozen features: the backbone runs in
            inference mode (batch-norm running statistics) under
            stop_gradient.
  finetune  everything trains except the first `freeze_stages` stages
            (stem + stages 1..k); the backbone's learning rate is
            `backbone_lr_scale` times the head's.

With `finetune.proj_layers` = k > 0 (SimCLRv2's `ft_proj_selector`) the
classifier keeps the first k hidden layers of a SimCLR `init_from`'s
projection head, pretrained weights included, between the backbone and the
new head; the run's config records their widths as
`model.proj_hidden_dims`, so inference and export build the same network.

With `finetune.init_head` the head of `init_from` loads too (its classes
must be this data's): the second stage of a transfer schedule, which trains
the whole network from the head a `linear` stage trained. A config that
leaves `data.mean` and `data.std` unset takes the preprocessing of
`init_from` (mean, std, channel order): what the pretrained weights expect,
e.g. ImageNet statistics for a workdir of `jvision import`.

The train and eval steps are the supervised ones; only the state (which
parameters load, which train, at what rate) and the batch-norm mode differ.
Resume order: the newest checkpoint of this workdir, then `init_from`.
"""

from __future__ import annotations

import functools
import re

import jax
import ml_collections
import numpy as np
from absl import logging

from jvision import inference, models
from jvision import workdir as workdir_lib
from jvision.data import augment
from jvision.train import setup, supervised


class CheckpointMismatchError(ValueError):
  """A pretrained checkpoint does not fit the model being fine-tuned."""


def _flat(tree, prefix=()) -> dict:
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flat(value, (*prefix, key)))
    return out
  return {"/".join(prefix): tree}


def _unflat(flat: dict) -> dict:
  tree = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split("/")
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = value
  return tree


def _pretrained(workdir: str) -> inference.Inference:
  """`config.init_from`'s trained network."""
  try:
    return inference.load(workdir)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"config.init_from={workdir}: {e}") from e


def pretrained_backbone(
  workdir: str, *, projection_layers: int = 0
) -> tuple[dict, dict, str]:
  """(params, batch_stats, description) of `config.init_from`'s backbone,
  with the first `projection_layers` hidden layers of its projection head."""
  pretrained = _pretrained(workdir)
  try:
    backbone = models.backbone_variables(
      pretrained.variables, projection_layers=projection_layers
    )
  except ValueError as e:
    raise ValueError(
      f"config.finetune.proj_layers={projection_layers} with "
      f"config.init_from={workdir}: {e}"
    ) from e
  kept = (
    f" + {projection_layers} projection-head layer(s)"
    if projection_layers
    else ""
  )
  return (
    backbone["params"],
    backbone.get("batch_stats") or {},
    f"init_from {pretrained.describe()}{kept}",
  )


def pretrained_variables(workdir: str) -> tuple[dict, dict, str]:
  """(params, batch_stats, description) of `init_from`, head included."""
  pretrained = _pretrained(workdir)
  return (
    pretrained.variables["params"],
    pretrained.variables.get("batch_stats") or {},
    f"init_from {workdir} (with its head, step {pretrained.step})",
  )


def merge_backbone(
  fresh: dict, pretrained: dict, *, what: str, with_head: bool = False
) -> dict:
  """`fresh` with every non-head leaf (every leaf, `with_head`) replaced by
  the pretrained one.

  Raises:
    CheckpointMismatchError: listing the parameters missing from the
      checkpoint, those it has in excess, and those whose shapes differ.
  """
  fresh_flat, pre_flat = _flat(fresh), _flat(pretrained)
  wanted = {
    p for p in fresh_flat if with_head or not models.is_head(p.split("/")[0])
  }
  missing = sorted(wanted - set(pre_flat))
  unexpected = sorted(set(pre_flat) - wanted)
  shapes = sorted(
    f"{p}: checkpoint {tuple(np.shape(pre_flat[p]))}, model "
    f"{tuple(np.shape(fresh_flat[p]))}"
    for p in wanted & set(pre_flat)
    if np.shape(pre_flat[p]) != np.shape(fresh_flat[p])
  )
  if missing or unexpected or shapes:
    lines = [f"the pretrained {what} does not fit this model:"]
    for title, items in (
      ("missing from the checkpoint", missing),
      ("in the checkpoint but not the model", unexpected),
      ("shape differs", shapes),
    ):
      if items:
        lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]))
    raise CheckpointMismatchError("\n".join(lines))
  merged = {
    p: (pre_flat[p] if p in wanted else v) for p, v in fresh_flat.items()
  }
  return _unflat(merged)


def stage_index(top_level_name: str) -> int | None:
  """Depth of a backbone layer: stem 0, ResNet stage i or CNN layer i."""
  if top_level_name.startswith("stem"):
    return 0
  match = re.match(r"(?:stage|conv|fc)(\d+)", top_level_name)
  if match is None:
    return None
  offset = 2 if top_level_name.startswith("fc") else 0  # after conv1, conv2
  return int(match.group(1)) + offset


def update_scales(params: dict, finetune) -> dict:
  """Per-parameter learning-rate factors for `finetune`'s mode (kept
  projection-head layers count as the backbone's last layers)."""

  def scale(path, _):
    name = path[0].key
    if name == models.BACKBONE:  # a ProjectedNetwork's backbone
      name = path[1].key
    if models.is_head(name):
      return 1.0
    if finetune.mode == "linear":
      return 0.0
    stage = stage_index(name)
    if stage is not None and stage <= finetune.freeze_stages:
      return 0.0 if finetune.freeze_stages > 0 else finetune.backbone_lr_scale
    return finetune.backbone_lr_scale

  return jax.tree_util.tree_map_with_path(scale, params)


def make_init_fn(
  workdir: str, *, with_head: bool = False, projection_layers: int = 0
):
  """`variables -> variables` loading `workdir`'s backbone (with the first
  `projection_layers` layers of its projection head; or, `with_head`, its
  whole network), with `.source`."""
  if with_head:
    params, stats, source = pretrained_variables(workdir)
  else:
    params, stats, source = pretrained_backbone(
      workdir, projection_layers=projection_layers
    )
  part = "network" if with_head else "backbone"

  def init(variables):
    out = {
      "params": merge_backbone(
        variables["params"],
        params,
        what=f"{part} of {workdir}",
        with_head=with_head,
      ),
      "batch_stats": variables["batch_stats"],
    }
    if variables["batch_stats"]:
      out["batch_stats"] = merge_backbone(
        variables["batch_stats"],
        stats,
        what=f"batch statistics of {workdir}",
        with_head=with_head,
      )
    return out

  init.source = source
  return init


def with_pretrained_preprocessing(
  config: ml_collections.ConfigDict, *, key: str = "init_from"
) -> ml_collections.ConfigDict:
  """`config` with the mean, std and channel order of the workdir that
  config key `key` (dotted) names, when it leaves data.mean and data.std
  unset; else `config` itself."""
  if config.data.mean is not None or config.data.std is not None:
    return config
  source = functools.reduce(getattr, key.split("."), config)
  try:
    pretrained = workdir_lib.read_config(source)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"config.{key}={source}: {e}") from e
  preprocessing = augment.preprocessing(pretrained.data)
  config = ml_collections.ConfigDict(config.to_dict())  # a private copy
  config.data.update(preprocessing)
  logging.info("preprocessing of %s: %s", source, preprocessing)
  return config


def with_projection_layers(
  config: ml_collections.ConfigDict,
) -> ml_collections.ConfigDict:
  """`config` with `model.proj_hidden_dims` set to the widths of the first
  `finetune.proj_layers` hidden layers of `init_from`'s SimCLR projection
  head; `config` itself when `proj_layers` is 0.

  Raises:
    ValueError: a negative count, an init_from that is not a SimCLR run, a
      head with fewer hidden layers, or a `model.proj_hidden_dims` the
      config sets otherwise.
  """
  layers = config.finetune.get("proj_layers", 0)
  if not layers:
    return config
  if layers < 0:
    raise ValueError(f"config.finetune.proj_layers={layers}; expected >= 0")
  if config.finetune.get("init_head", False):
    raise ValueError(
      "config.finetune.proj_layers and config.finetune.init_head cannot be "
      "combined: init_head loads a classifier's whole network"
    )
  try:
    pretrained = workdir_lib.read_config(config.init_from)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"config.init_from={config.init_from}: {e}") from e
  hidden = tuple(pretrained.get("simclr", {}).get("proj_hidden_dims", ()))
  if pretrained.get("trainer") != "simclr":
    raise ValueError(
      f"config.finetune.proj_layers={layers} keeps layers of a SimCLR "
      f"projection head, but config.init_from={config.init_from} was "
      f"trained by {pretrained.get('trainer')!r}"
    )
  if layers > len(hidden):
    raise ValueError(
      f"config.finetune.proj_layers={layers}, but the projection head of "
      f"config.init_from={config.init_from} has {len(hidden)} hidden "
      f"layer(s) (simclr.proj_hidden_dims={hidden})"
    )
  dims = hidden[:layers]
  configured = tuple(config.model.get(models.PROJ_HIDDEN_DIMS) or ())
  if configured and configured != dims:
    raise ValueError(
      f"config.model.{models.PROJ_HIDDEN_DIMS}={configured} differs from "
      f"the {layers} kept layer(s) of config.init_from's head {dims}"
    )
  config = ml_collections.ConfigDict(config.to_dict())  # a private copy
  config.model[models.PROJ_HIDDEN_DIMS] = dims
  return config


@setup.one_writer
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str):
  """Fine-tunes or probes `config.init_from` in `workdir`.

  Returns:
    {"train", "eval", "source", "start_step"} like the supervised trainer.
  """
  if not config.init_from:
    raise ValueError(
      "config.init_from must name a pretrained workdir (--config.init_from=DIR)"
    )
  if config.finetune.mode not in ("linear", "finetune"):
    raise ValueError(
      f"config.finetune.mode={config.finetune.mode!r}; use linear or finetune"
    )
  config = with_projection_layers(with_pretrained_preprocessing(config))
  run = setup.prepare_run(config, workdir)
  config = run.config
  model = models.create_model(
    config.model.name,
    num_classes=run.train_split.num_classes,
    **run.model_kwargs,
  )
  scales = functools.partial(update_scales, finetune=config.finetune)
  started = setup.start_state(
    run,
    model,
    workdir,
    init_fn=make_init_fn(
      config.init_from,
      with_head=config.finetune.get("init_head", False),
      projection_layers=config.finetune.get("proj_layers", 0),
    ),
    update_scales_fn=scales,
  )
  linear = config.finetune.mode == "linear"
  task = supervised.build_task(
    run,
    started,
    bn_train=not linear,
    frozen=scales if linear or config.finetune.freeze_stages else None,
  )
  return setup.run_loop(run, started, task, workdir)
