"""SimCLR's network: backbone, MLP projection head and an online probe.

The probe is a linear classifier on stop-gradient backbone features, trained
alongside the contrastive objective (SimCLR's lineareval_while_pretraining):
it reports how linearly separable the features are without steering them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jvision.models.heads import MLPHead


class SimCLRModel(nn.Module):
  """Backbone -> features -> projection; features -> (stop-grad) probe.

  Attributes:
    backbone: a model built with num_classes=0 (returns [N, F] features).
    projection: the projection head, features [N, F] -> [N, D].
    num_classes: outputs of the online linear probe.
    dtype: computation dtype of the probe.
  """

  backbone: nn.Module
  projection: nn.Module
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> dict:
    """Runs the network on [N, H, W, C] images.

    Returns:
      {"features": [N, F], "projection": [N, D], "probe_logits": [N, K]}.
    """
    features = self.backbone(x, train=train)  # [N, F]
    z = self.projection(features, train=train)  # [N, D]
    probe = nn.Dense(self.num_classes, dtype=self.dtype, name="probe")
    probe_logits = probe(jax.lax.stop_gradient(features))  # [N, K]
    return {"features": features, "projection": z, "probe_logits": probe_logits}


def create_simclr_model(
  backbone: nn.Module,
  *,
  num_classes: int,
  hidden_dims: Sequence[int],
  out_dim: int,
  dtype=jnp.float32,
  bn_axis_name: str | None = None,
) -> SimCLRModel:
  """A SimCLRModel around `backbone` with a BN MLP projection head.

  `bn_axis_name`: the pmap axis the head's batch norm averages over (give
  the backbone the same); None under jit.
  """
  head = MLPHead(
    hidden_dims=tuple(hidden_dims),
    out_dim=out_dim,
    use_bn=True,
    dtype=dtype,
    bn_axis_name=bn_axis_name,
  )
  return SimCLRModel(
    backbone=backbone, projection=head, num_classes=num_classes, dtype=dtype
  )
