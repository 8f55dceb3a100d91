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
import json
import os
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from jvision import models
from jvision.data import augment, decode
from jvision.data.from_config import load_split
from jvision.evaluate import workdir as eval_workdir


@dataclasses.dataclass
class Model:
  """A trained run, ready to apply.

  Attributes:
    workdir: where it came from.
    config: the run's resolved config.
    class_names: label names by id (empty for SimCLR pretraining).
    image_shape: (H, W, C) of the images the network takes.
    mean, std: per-channel normalisation in [0, 1] units.
    trainer: "supervised", "finetune" or "simclr".
    step: the checkpoint step.
    classifier: (variables, module) of the whole classifier, or None.
    backbone: (variables, module) giving pooled features.
  """

  workdir: str
  config: ml_collections.ConfigDict
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  mean: tuple[float, ...]
  std: tuple[float, ...]
  trainer: str
  step: int
  classifier: tuple | None
  backbone: tuple

  def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 [H', W', C'] images of any size -> uint8 [N, H, W, C]."""
    h, w, c = self.image_shape
    if h != w:
      raise ValueError(f"{self.workdir} was trained on {h}x{w} images")
    out = np.empty((len(images), h, w, c), np.uint8)
    for i, image in enumerate(images):
      out[i] = decode.convert_array(image, image_size=h, channels=c)
    return out

  def probabilities(
    self, images: np.ndarray, *, batch_size: int = 256, progress=False
  ) -> np.ndarray:
    """Softmax class probabilities of prepared images: float32 [N, K]."""
    if self.classifier is None:
      raise ValueError(
        f"{self.workdir} holds {self.trainer} pretraining, which has no "
        "classifier; fine-tune it first (experiments/*_finetune.py)"
      )
    return _batched(
      self._probabilities_fn(), images, batch_size, progress, "predict"
    )

  def embeddings(
    self, images: np.ndarray, *, batch_size: int = 256, progress=False
  ) -> np.ndarray:
    """L2-normalised backbone features of prepared images: float32 [N, D]."""
    return _batched(self._embed_fn(), images, batch_size, progress, "embed")

  @functools.cache  # noqa: B019 (one compiled function per Model)
  def _probabilities_fn(self):
    variables, module = self.classifier
    return jax.jit(
      lambda x: jax.nn.softmax(
        module.apply(variables, self._normalize(x), train=False), axis=-1
      )
    )

  @functools.cache  # noqa: B019
  def _embed_fn(self):
    variables, module = self.backbone

    def embed(x):
      features = module.apply(variables, self._normalize(x), train=False)
      norm = jax.numpy.linalg.norm(features, axis=-1, keepdims=True)
      return features / jax.numpy.maximum(norm, 1e-12)

    return jax.jit(embed)

  def _normalize(self, images):
    return augment.normalize(images, mean=self.mean, std=self.std)

  def __hash__(self):
    return id(self)


def _batched(fn, images, batch_size, progress, desc) -> np.ndarray:
  """`fn` over `images` in fixed-size batches (one compiled shape)."""
  out = []
  with tqdm.tqdm(total=len(images), desc=desc, disable=not progress) as bar:
    for start in range(0, len(images), batch_size):
      chunk = images[start : start + batch_size]
      padded = np.zeros((batch_size, *images.shape[1:]), images.dtype)
      padded[: len(chunk)] = chunk
      out.append(np.asarray(fn(padded))[: len(chunk)].astype(np.float32))
      bar.update(len(chunk))
  return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _record(workdir: str) -> dict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} does not exist: {workdir} is not a jvision workdir "
      "(run `jvision train --workdir=...` first)"
    )
  with open(path) as f:
    return json.load(f)


def _classes_and_shape(workdir: str, record: dict, config):
  """Class names and image shape: recorded at training, else from data."""
  if "class_names" in record and "image_shape" in record:
    return tuple(record["class_names"]), tuple(record["image_shape"])
  # Workdirs written before config.json held them: load the eval split.
  dataset = load_split(config, config.data.eval_split, progress=False)
  return dataset.class_names, tuple(dataset.images.shape[1:])


def load(workdir: str) -> Model:
  """The newest checkpoint of a workdir as a `Model`."""
  record = _record(workdir)
  config = ml_collections.ConfigDict(record["config"])
  class_names, image_shape = _classes_and_shape(workdir, record, config)
  variables, step = eval_workdir.load_variables(workdir)
  kwargs = {k: v for k, v in config.model.items() if k != "name"}
  params, stats, _ = eval_workdir.load_backbone(workdir)
  backbone_vars = {"params": params}
  if stats:
    backbone_vars["batch_stats"] = stats
  backbone = (
    backbone_vars,
    models.create_model(config.model.name, num_classes=0, **kwargs),
  )
  classifier = None
  if config.trainer != "simclr":
    classifier = (
      variables,
      models.create_model(
        config.model.name, num_classes=len(class_names), **kwargs
      ),
    )
  return Model(
    workdir=workdir,
    config=config,
    class_names=tuple(class_names) if config.trainer != "simclr" else (),
    image_shape=tuple(int(d) for d in image_shape),
    mean=tuple(config.data.mean),
    std=tuple(config.data.std),
    trainer=config.trainer,
    step=step,
    classifier=classifier,
    backbone=backbone,
  )
