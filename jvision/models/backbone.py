"""The backbone/head split: which part of a network gives its features.

Every network jvision trains or imports is a backbone (a registered model
built with num_classes=0, returning pooled features [N, F]) with something
on top, in one of two layouts of its variables:

  classifier  everything but the final dense layer `HEAD` is the backbone
              (supervised, fine-tuned and distilled runs, weights imported
              with their classifier). Usually the registered model's layers
              sit at the top level; a classifier that kept the first layers
              of SimCLR's projection head (`model.proj_hidden_dims`,
              SimCLRv2's fine-tuning from a middle layer of the head) is a
              `ProjectedNetwork`: {BACKBONE, PROJECTION, HEAD}, and its
              "backbone" is the registered model followed by those layers.
              Without `HEAD` (an imported backbone) the tree is the
              backbone's alone.
  SimCLR      `SimCLRModel`'s fields: the backbone under `BACKBONE`, the
              projection head under `PROJECTION`, the online probe; no
              `HEAD`.

The layout is read from the tree itself, so no caller asks which trainer
made it. `backbone_variables` and `jvision.models.create_backbone` are one
contract: the variables the first returns are those the module of the
second takes (for the same `model` section).
"""

from __future__ import annotations

HEAD = "head"  # the classifier: the top-level name of its dense layer
BACKBONE = "backbone"  # SimCLRModel's backbone field
PROJECTION = "projection"  # SimCLRModel's projection head field


def is_head(top_level_name: str) -> bool:
  """Whether a top-level variable name is the classifier's (`HEAD`)."""
  return top_level_name == HEAD


def has_head(variables: dict) -> bool:
  """Whether a network's variables hold a classifier (`HEAD`)."""
  return HEAD in variables["params"]


def _is_simclr(variables: dict) -> bool:
  params = variables["params"]
  return BACKBONE in params and HEAD not in params


def hidden_projection_layers(variables: dict) -> int:
  """How many hidden layers a SimCLR network's projection head has (0 for
  a network in the classifier layout)."""
  if not _is_simclr(variables):
    return 0
  names = variables["params"].get(PROJECTION, {})
  return sum(
    1 for name in names if name.startswith("dense") and name[5:].isdigit()
  )


def _kept_projection(tree: dict, layers: int) -> dict:
  """The first `layers` hidden layers (dense1, bn1, ...) of a projection
  head's variables in one collection."""
  kept = {
    f"{kind}{i}" for i in range(1, layers + 1) for kind in ("dense", "bn")
  }
  return {name: value for name, value in tree.items() if name in kept}


def backbone_variables(variables: dict, *, projection_layers: int = 0) -> dict:
  """The backbone's part of a network's variables (module docstring).

  Args:
    variables: {"params", "batch_stats"?, ...} of a network in either
      layout.
    projection_layers: for a SimCLR network, also keep the first this many
      hidden layers of its projection head, laid out as a
      `ProjectedNetwork`'s ({BACKBONE, PROJECTION}); 0 for the backbone
      alone. Must be 0 for a classifier.

  Returns:
    The same collections, each holding the backbone's part only (a
    collection without one is left out): the variables of
    `create_backbone`'s module.

  Raises:
    ValueError: `projection_layers` on a classifier, or more layers than
      the projection head has hidden.
  """
  if projection_layers:
    available = hidden_projection_layers(variables)
    if not _is_simclr(variables) or projection_layers > available:
      raise ValueError(
        f"cannot keep {projection_layers} projection-head layer(s): the "
        + (
          f"projection head has {available} hidden layer(s)"
          if _is_simclr(variables)
          else "network is a classifier, not a SimCLR network"
        )
      )
  if _is_simclr(variables):
    out = {}
    for collection, tree in variables.items():
      if BACKBONE not in tree:
        continue
      if not projection_layers:
        out[collection] = tree[BACKBONE]
        continue
      out[collection] = {
        BACKBONE: tree[BACKBONE],
        PROJECTION: _kept_projection(
          tree.get(PROJECTION, {}), projection_layers
        ),
      }
    return out
  return {
    collection: {k: v for k, v in tree.items() if not is_head(k)}
    for collection, tree in variables.items()
  }
