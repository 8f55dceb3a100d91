"""One runner of a trained network over any number of images, on the mesh.

`Inference` holds a network's variables, its modules (the classifier, when
it has one, and its backbone: `jvision.models.backbone`) and the
preprocessing its weights expect, and computes

  logits         float32 [N, K] (with test-time augmentation on request)
  probabilities  float32 [N, K], their softmax
  features       float32 [N, F], the backbone's pooled features
  embeddings     float32 [N, F], the features scaled to unit length

of uint8 images [N, H, W, C] held in memory, or of a whole split (an
ArrayDataset or a streamed split). It runs data-parallel over the mesh
(all devices by default): every batch is padded to one compiled shape,
split over the devices, and the padding cut off (`parallel.map_split`).

`load(workdir)` builds one from a workdir (`jvision.workdir.load`); `jvision
eval`, `predict`, `search`, `export`, `audit --encoder` and fine-tuning's
initialisation all start there.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh

from jvision import losses, models, parallel
from jvision import workdir as workdir_lib
from jvision.data import augment, decode, feed
from jvision.data.dataset import ArrayDataset
from jvision.data.stream import Streamed

DEFAULT_BATCH_SIZE = 256  # images per forward pass (global, all devices)


def logits_step(variables, batch, *, apply_fn, preprocessing, tta="none"):
  """Logits of a batch {"image": uint8 [B, H, W, C]}: float32 [B, K].

  The eval-mode forward pass of every classifier, also the supervised
  trainer's (`jvision.train.supervised.eval_step`).

  Args:
    variables: the classifier's {"params", "batch_stats"?}.
    batch: {"image": uint8 [B, H, W, C], ...}.
    apply_fn: the classifier's `module.apply`.
    preprocessing: `augment.normalize`'s mean, std and channel_order.
    tta: `augment.tta_logits`'s mode.
  """
  x = augment.normalize(batch["image"], **preprocessing)  # [B, H, W, C]
  return augment.tta_logits(
    lambda v: apply_fn(variables, v, train=False), x, tta
  )


def probabilities_step(
  variables, batch, *, apply_fn, preprocessing, tta="none"
):
  """Softmax of `logits_step`: float32 [B, K]."""
  logits = logits_step(
    variables, batch, apply_fn=apply_fn, preprocessing=preprocessing, tta=tta
  )
  return jax.nn.softmax(logits, axis=-1)


def features_step(variables, batch, *, apply_fn, preprocessing):
  """Backbone features of a batch {"image": uint8 [B, H, W, C]}: [B, F]
  (`apply_fn`: the backbone's `module.apply`)."""
  x = augment.normalize(batch["image"], **preprocessing)
  return apply_fn(variables, x, train=False)  # [B, F]


def embeddings_step(variables, batch, *, apply_fn, preprocessing):
  """`features_step` scaled to unit length: float32 [B, F]."""
  features = features_step(
    variables, batch, apply_fn=apply_fn, preprocessing=preprocessing
  )
  return losses.l2_normalize(features)


Images = np.ndarray | ArrayDataset | Streamed | dict


@dataclasses.dataclass
class Inference:
  """A network ready to run over images (module docstring).

  Attributes:
    variables: the whole network's {"params", "batch_stats"?}.
    preprocessing: `augment.normalize`'s mean, std (per channel, [0, 1]
      units) and channel_order.
    backbone: the backbone module (`models.create_backbone`), applied to
      `models.backbone_variables(variables)`.
    classifier: the module giving logits from `variables`, or None for a
      network without a classifier (SimCLR pretraining, an imported
      backbone).
    class_names: the classifier's label names by id (empty without one).
    image_shape: (H, W, C) of the images the network takes, or None when
      unknown (`prepare` needs it).
    mesh: the devices it runs on; None: all devices.
    batch_size: images per forward pass over all devices; rounded up to a
      multiple of the device count (`parallel.round_batch_size`).
    trained: the workdir it was loaded from (`jvision.workdir.load`), or
      None when built from parts.
  """

  variables: dict
  preprocessing: dict
  backbone: nn.Module
  classifier: nn.Module | None = None
  class_names: tuple[str, ...] = ()
  image_shape: tuple[int, int, int] | None = None
  mesh: Mesh | None = None
  batch_size: int = DEFAULT_BATCH_SIZE
  trained: workdir_lib.Trained | None = None
  _compiled: dict = dataclasses.field(
    default_factory=dict, init=False, repr=False
  )
  _placed: dict = dataclasses.field(
    default_factory=dict, init=False, repr=False
  )

  def __post_init__(self):
    if self.mesh is None:
      self.mesh = parallel.create_mesh()
    if not isinstance(self.batch_size, int) or self.batch_size < 1:
      raise ValueError(
        f"batch_size must be an integer >= 1, got {self.batch_size!r}"
      )

  @property
  def step(self) -> int | None:
    """The checkpoint step of a loaded workdir, else None."""
    return self.trained.step if self.trained else None

  @property
  def backbone_variables(self) -> dict:
    """The backbone's part of `variables`: what `backbone` applies to and
    what fine-tuning starts from (`models.backbone_variables`)."""
    return models.backbone_variables(self.variables)

  def describe(self) -> str:
    """Where the network came from, for logs and reports."""
    return self.trained.describe() if self.trained else "a network in memory"

  def require_classifier(self) -> nn.Module:
    """The classifier module, or ValueError for a network without one."""
    if self.classifier is not None:
      return self.classifier
    source = self.trained.workdir if self.trained else "this network"
    trainer = self.trained.trainer if self.trained else "a backbone"
    what = (
      "weights imported without a classifier"
      if trainer == workdir_lib.IMPORTED
      else f"{trainer} pretraining"
    )
    raise ValueError(
      f"{source} holds {what}, which has no classifier; fine-tune it first "
      f"with a fine-tune config and --config.init_from={source} "
      "(experiments/*_finetune.py, experiments/transfer_*.py)"
    )

  def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 [H', W', C'] images of any size -> uint8 [N, H, W, C], the
    run's image size and channels, as training saw them."""
    if self.image_shape is None:
      raise ValueError(f"{self.describe()} records no image shape")
    h, w, c = self.image_shape
    if h != w:
      raise ValueError(f"{self.describe()} was trained on {h}x{w} images")
    out = np.empty((len(images), h, w, c), np.uint8)
    for i, image in enumerate(images):
      out[i] = decode.convert_array(image, image_size=h, channels=c)
    return out

  def logits(
    self,
    images: Images,
    *,
    tta: str = "none",
    batch_size: int | None = None,
    progress: bool = False,
  ) -> np.ndarray:
    """The classifier's logits: float32 [N, K].

    Args:
      images: uint8 [N, H, W, C], or a split (module docstring).
      tta: test-time augmentation, `augment.tta_logits`'s mode.
      batch_size: images per forward pass for this call (e.g. 1 for a
        single query); None: the runner's `batch_size`.
      progress: show a tqdm bar.
    """
    step = functools.partial(
      logits_step, apply_fn=self.require_classifier().apply, tta=tta
    )
    return self._map(
      ("logits", tta), step, "classifier", images, batch_size, progress
    )

  def probabilities(
    self,
    images: Images,
    *,
    tta: str = "none",
    batch_size: int | None = None,
    progress: bool = False,
  ) -> np.ndarray:
    """Softmax class probabilities: float32 [N, K]."""
    step = functools.partial(
      probabilities_step, apply_fn=self.require_classifier().apply, tta=tta
    )
    return self._map(
      ("probabilities", tta), step, "classifier", images, batch_size, progress
    )

  def features(
    self,
    images: Images,
    *,
    batch_size: int | None = None,
    progress: bool = False,
  ) -> np.ndarray:
    """The backbone's pooled features: float32 [N, F]."""
    step = functools.partial(features_step, apply_fn=self.backbone.apply)
    return self._map(
      ("features",), step, "backbone", images, batch_size, progress
    )

  def embeddings(
    self,
    images: Images,
    *,
    batch_size: int | None = None,
    progress: bool = False,
  ) -> np.ndarray:
    """Unit-length backbone features: float32 [N, F]."""
    step = functools.partial(embeddings_step, apply_fn=self.backbone.apply)
    return self._map(
      ("embeddings",), step, "backbone", images, batch_size, progress
    )

  def _map(self, key, step, part, images, batch_size, progress):
    """`step` compiled once per `key`, over every example of `images`, in
    padded global batches of `batch_size` (None: the runner's)."""
    split = {"image": images} if isinstance(images, np.ndarray) else images
    if feed.split_size(split) == 0:
      return np.zeros((0, 0), np.float32)
    if key not in self._compiled:
      self._compiled[key] = parallel.jit_map_step(
        functools.partial(step, preprocessing=self.preprocessing), self.mesh
      )
    out = parallel.map_split(
      self._compiled[key],
      self._variables(part),
      split,
      mesh=self.mesh,
      batch_size=parallel.round_batch_size(
        batch_size or self.batch_size, self.mesh
      ),
      progress=progress,
      desc=key[0],
    )
    return np.asarray(out, np.float32)

  def _variables(self, part: str) -> dict:
    """The classifier's or the backbone's variables, placed on every device
    of the mesh once."""
    if part not in self._placed:
      tree = self.backbone_variables if part == "backbone" else self.variables
      self._placed[part] = parallel.replicate(tree, self.mesh)
    return self._placed[part]


def from_trained(
  trained: workdir_lib.Trained,
  *,
  mesh: Mesh | None = None,
  batch_size: int = DEFAULT_BATCH_SIZE,
) -> Inference:
  """The `Inference` of a loaded workdir: a classifier when its network has
  a head and its record names the classes, always a backbone."""
  classifier, class_names = None, ()
  if models.has_head(trained.variables) and trained.class_names:
    class_names = trained.class_names
    classifier = models.create_classifier(
      trained.config.model, len(class_names)
    )
  return Inference(
    variables=trained.variables,
    preprocessing=trained.preprocessing,
    backbone=models.create_backbone(trained.config.model),
    classifier=classifier,
    class_names=class_names,
    image_shape=trained.image_shape,
    mesh=mesh,
    batch_size=batch_size,
    trained=trained,
  )


def load(
  workdir: str,
  *,
  mesh: Mesh | None = None,
  batch_size: int = DEFAULT_BATCH_SIZE,
) -> Inference:
  """The newest checkpoint of a workdir, ready to run (`from_trained`)."""
  return from_trained(
    workdir_lib.load(workdir), mesh=mesh, batch_size=batch_size
  )
