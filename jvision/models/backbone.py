"""The backbone/head split: which part of a network gives its features.

Every network jvision trains or imports is a backbone (a registered model
built with num_classes=0, returning pooled features [N, F]) with something
on top, in one of two layouts of its variables:

  classifier  the backbone's layers at the top level of the tree, plus the
              final dense layer `HEAD` (supervised, fine-tuned and
              distilled runs, weights imported with their classifier).
              Without `HEAD` (an imported backbone) the tree is the
              backbone's alone.
  SimCLR      `SimCLRModel`'s fields: the backbone under `BACKBONE`, the
              projection head under `PROJECTION`, the online probe.

The layout is read from the tree itself, so no caller asks which trainer
made it. `backbone_variables` and `jvision.models.create_backbone` are one
contract: the variables the first returns are those the module of the
second takes. A backbone that keeps the first layers of SimCLR's projection
head (SimCLRv2 fine-tunes from a middle layer of it) would change both
together: the variables of those layers taken here beside `BACKBONE`'s, the
module built as the backbone followed by them.
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
  return BACKBONE in variables["params"]


def backbone_variables(variables: dict) -> dict:
  """The backbone's part of a network's variables (module docstring).

  Args:
    variables: {"params", "batch_stats"?, ...} of a network in either
      layout.

  Returns:
    The same collections, each holding the backbone's part only (a
    collection without one is left out): the variables of
    `create_backbone`'s module.
  """
  if _is_simclr(variables):
    return {
      collection: tree[BACKBONE]
      for collection, tree in variables.items()
      if BACKBONE in tree
    }
  return {
    collection: {k: v for k, v in tree.items() if not is_head(k)}
    for collection, tree in variables.items()
  }
