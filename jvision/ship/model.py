"""A trained workdir as a function of images: logits and embeddings.

`load(workdir)` reads DIR/config.json and the newest checkpoint and returns
a `Model` that takes uint8 images of any size (they are converted to the
run's image size and channels, as training saw them) and gives class
probabilities or backbone embeddings. `predict`, `export` and `search` all
start here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np

from jvision import models
from jvision.audit.embed import map_batched
from jvision.data import augment, decode
from jvision.data.from_config import load_split
from jvision.evaluate import knn
from jvision.evaluate import workdir as eval_workdir


@dataclasses.dataclass
class Model:
  """A trained run, ready to apply.

  Attributes:
    workdir: where it came from.
    config: the run's resolved config.
    class_names: label names by id (empty for SimCLR pretraining and for
      an imported backbone).
    image_shape: (H, W, C) of the images the network takes.
    preprocessing: `augment.normalize`'s mean, std (per channel, [0, 1]
      units) and channel_order.
    trainer: "supervised", "finetune", "simclr" or "import" (weights
      trained elsewhere, `jvision import`).
    step: the checkpoint step.
    classifier: (variables, module) of the whole classifier, or None.
    backbone: (variables, module) giving pooled features.
  """

  workdir: str
  config: ml_collections.ConfigDict
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  preprocessing: dict
  trainer: str
  step: int
  classifier: tuple | None
  backbone: tuple
  _probabilities_fn: object = dataclasses.field(init=False, repr=False)
  _embed_fn: object = dataclasses.field(init=False, repr=False)

  def __post_init__(self):
    """Compiles the two functions once per Model."""
    self._probabilities_fn = None
    if self.classifier is not None:
      self._probabilities_fn = jax.jit(
        functools.partial(_probabilities, *self.classifier, self._normalize)
      )
    self._embed_fn = jax.jit(
      functools.partial(_unit_features, *self.backbone, self._normalize)
    )

  def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 [H', W', C'] images of any size -> uint8 [N, H, W, C]."""
    h, w, c = self.image_shape
    if h != w:
      raise ValueError(f"{self.workdir} was trained on {h}x{w} images")
    out = np.empty((len(images), h, w, c), np.uint8)
    for i, image in enumerate(images):
      out[i] = decode.convert_array(image, image_size=h, channels=c)
    return out

  def require_classifier(self) -> tuple:
    """(variables, module) of the classifier, or ValueError for a run that
    has none (SimCLR pretraining)."""
    if self.classifier is None:
      what = (
        "weights imported without a classifier"
        if self.trainer == eval_workdir.IMPORTED
        else f"{self.trainer} pretraining"
      )
      raise ValueError(
        f"{self.workdir} holds {what}, which has no classifier; fine-tune "
        "it first (experiments/*_finetune.py, experiments/transfer_*.py)"
      )
    return self.classifier

  def probabilities(
    self, images: np.ndarray, *, batch_size: int = 256, progress=False
  ) -> np.ndarray:
    """Softmax class probabilities of prepared images: float32 [N, K]."""
    self.require_classifier()
    return map_batched(
      self._probabilities_fn,
      images,
      batch_size=batch_size,
      progress=progress,
      desc="predict",
    )

  def embeddings(
    self, images: np.ndarray, *, batch_size: int = 256, progress=False
  ) -> np.ndarray:
    """L2-normalised backbone features of prepared images: float32 [N, D]."""
    return map_batched(
      self._embed_fn,
      images,
      batch_size=batch_size,
      progress=progress,
      desc="embed",
    )

  def _normalize(self, images):
    return augment.normalize(images, **self.preprocessing)


def _probabilities(variables, module, normalize, images):
  logits = module.apply(variables, normalize(images), train=False)  # [B, K]
  return jax.nn.softmax(logits, axis=-1)


def _unit_features(variables, module, normalize, images):
  features = module.apply(variables, normalize(images), train=False)  # [B, D]
  return knn.l2_normalize(features)


def _classes_and_shape(workdir: str, record: dict, config):
  """Class names and image shape: recorded at training, else from data."""
  if "class_names" in record and "image_shape" in record:
    return tuple(record["class_names"]), tuple(record["image_shape"])
  # Workdirs written before config.json held them: load the eval split.
  dataset = load_split(config, config.data.eval_split, progress=False)
  return dataset.class_names, tuple(dataset.images.shape[1:])


def load(workdir: str) -> Model:
  """The newest checkpoint of a workdir as a `Model`."""
  record = eval_workdir.read_record(workdir)
  config = ml_collections.ConfigDict(record["config"])
  class_names, image_shape = _classes_and_shape(workdir, record, config)
  variables, step = eval_workdir.load_variables(workdir)
  kwargs = models.config_kwargs(config.model)
  backbone = (
    eval_workdir.backbone_variables(variables, config.trainer),
    models.create_model(config.model.name, num_classes=0, **kwargs),
  )
  classifier = None
  if config.trainer != "simclr" and class_names:
    classifier = (
      variables,
      models.create_model(
        config.model.name, num_classes=len(class_names), **kwargs
      ),
    )
  return Model(
    workdir=workdir,
    config=config,
    class_names=tuple(class_names) if classifier else (),
    image_shape=tuple(int(d) for d in image_shape),
    preprocessing=augment.preprocessing(config.data),
    trainer=config.trainer,
    step=step,
    classifier=classifier,
    backbone=backbone,
  )
