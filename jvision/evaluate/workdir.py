"""`jvision eval`: evaluates the newest checkpoint of a workdir on a split.

Writes DIR/eval/metrics.json (accuracy, macro_f1, per-class precision,
recall, F1 and support, confusion matrix, ECE and its reliability bins, and
top5_accuracy when there are more than 5 classes),
DIR/eval/confusion_matrix.png, DIR/eval/training_curves.png and
DIR/eval/report.html (see `jvision.evaluate.report`).
"""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import ml_collections
import numpy as np

from jvision import checkpoint as checkpoint_lib
from jvision import configs_io, models, parallel
from jvision.data import augment, feed, from_config, stream
from jvision.evaluate import calibration, knn, plots
from jvision.evaluate import metrics as metrics_lib
from jvision.evaluate import report as report_lib


def read_record(workdir: str) -> dict:
  """DIR/config.json: the resolved config, provenance, class names."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} does not exist: {workdir} is not a jvision workdir "
      "(run `jvision train --workdir=...` first)"
    )
  with open(path) as f:
    return json.load(f)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run stored in DIR/config.json."""
  return ml_collections.ConfigDict(read_record(workdir)["config"])


def load_variables(workdir: str) -> tuple[dict, int]:
  """({"params", "batch_stats"}, step) of the newest checkpoint."""
  checkpointer = checkpoint_lib.Checkpointer(
    os.path.join(workdir, "checkpoints"), async_save=False
  )
  step = checkpointer.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints")
  state = checkpointer.restore_raw(step)
  checkpointer.close()
  variables = {"params": state["params"]}
  if state.get("batch_stats"):
    variables["batch_stats"] = state["batch_stats"]
  return variables, step


HEAD = "head"  # the classifier of supervised and fine-tuned models


def backbone_variables(variables: dict, trainer: str) -> dict:
  """The backbone's part of a run's variables.

  SimCLR runs keep it under "backbone"; supervised and fine-tuned runs are
  the backbone plus a "head" that is dropped. The backbone is the model of
  the run's `config.model` section built with `num_classes=0`.
  """
  if trainer == "simclr":
    return {
      collection: tree["backbone"]
      for collection, tree in variables.items()
      if "backbone" in tree
    }
  return {
    collection: {k: v for k, v in tree.items() if k != HEAD}
    for collection, tree in variables.items()
  }


def load_backbone(workdir: str) -> tuple[dict, dict, str]:
  """(params, batch_stats, description) of a workdir's newest backbone."""
  config = read_config(workdir)
  variables, step = load_variables(workdir)
  backbone = backbone_variables(variables, config.trainer)
  return (
    backbone["params"],
    backbone.get("batch_stats") or {},
    f"{workdir} ({config.trainer}, step {step})",
  )


def predict_step(variables, batch, *, model, normalize, tta="none"):
  """Logits of a batch: float32 [B, K] (`tta`: augment.tta_logits's mode)."""
  x = normalize(batch["image"])
  return augment.tta_logits(
    lambda v: model.apply(variables, v, train=False), x, tta
  )


def predict(
  variables, split, *, model, config, mesh, tta: str = "none"
) -> np.ndarray:
  """Logits (or features) of every example of `split`: float32 [N, K].

  `split` is arrays {"image": uint8 [N, H, W, C]}, an ArrayDataset, or a
  streamed split (`stream.Streamed`, centre-cropped by its workers)."""
  normalize = functools.partial(
    augment.normalize, mean=config.data.mean, std=config.data.std
  )
  step = jax.jit(
    functools.partial(predict_step, model=model, normalize=normalize, tta=tta),
    in_shardings=(parallel.replicated(mesh), parallel.data_sharded(mesh)),
    out_shardings=parallel.replicated(mesh),
  )
  variables = parallel.replicate(variables, mesh)
  return feed.map_split(
    step, variables, split, mesh=mesh, batch_size=config.eval_batch_size
  )


def embed(variables, images, *, config, mesh) -> np.ndarray:
  """L2-normalised backbone features of uint8 images: float32 [N, D].

  `images` is uint8 [N, H, W, C] or a streamed split (`predict`'s).

  The same features as `jvision.ship.model.Model.embeddings`, computed here
  because ship imports evaluate, not the reverse.
  """
  backbone = models.create_model(
    config.model.name, num_classes=0, **models.config_kwargs(config.model)
  )
  split = images if isinstance(images, stream.Streamed) else {"image": images}
  features = predict(
    backbone_variables(variables, config.trainer),
    split,
    model=backbone,
    config=config,
    mesh=mesh,
  )
  return np.asarray(knn.l2_normalize(features), np.float32)


def extra_metrics(labels, probabilities) -> dict:
  """ECE, its bins and (for K > 5) top-5 accuracy, for metrics.json."""
  out = calibration.calibration_report(probabilities, labels)
  if probabilities.shape[1] > 5:
    out["top5_accuracy"] = metrics_lib.top_k_accuracy(labels, probabilities, 5)
  return out


def evaluate_workdir(
  workdir: str, split: str = "test", tta: str | None = None
) -> dict:
  """Evaluates the newest checkpoint of `workdir` on `split`; writes reports.

  `tta` is the test-time augmentation (`augment.tta_logits`'s mode); None:
  the run's own `config.eval_tta` ("none" for runs that predate it).

  Returns:
    The metrics dict written to DIR/eval/metrics.json.
  """
  start = time.perf_counter()
  config = read_config(workdir)
  tta = config.get("eval_tta", "none") if tta is None else tta
  configs_io.check_choice("eval_tta", tta, augment.TTA_MODES)
  if config.trainer == "simclr":
    raise ValueError(
      f"{workdir} holds SimCLR pretraining, which has no classifier to "
      "evaluate; its kNN and online-probe accuracies are in metrics.jsonl. "
      "Train a classifier on it with a fine-tune config "
      "(jvision.train.defaults.finetune_config) and "
      f"--config.init_from={workdir}"
    )
  data = from_config.open_split(config, split)
  streamed = isinstance(data, stream.Streamed)
  dataset = data.index if streamed else data  # labels, ids, class names
  model = models.create_model(
    config.model.name,
    num_classes=dataset.num_classes,
    **models.config_kwargs(config.model),
  )
  variables, step = load_variables(workdir)
  mesh = parallel.create_mesh()
  logits = predict(
    variables,
    data,
    model=model,
    config=config,
    mesh=mesh,
    tta=tta,
  )
  predictions = logits.argmax(-1)
  report = metrics_lib.classification_report(
    dataset.labels, predictions, list(dataset.class_names)
  )
  report.update({"split": split, "step": step, "workdir": workdir, "tta": tta})
  probabilities = calibration.softmax(logits)  # [N, K]
  report.update(extra_metrics(dataset.labels, probabilities))
  timings = {"load and predict": time.perf_counter() - start}
  out = os.path.join(workdir, "eval")
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump(report, f, indent=2)
  figures = {"confusion_matrix": os.path.join(out, "confusion_matrix.png")}
  plots.plot_confusion_matrix(
    np.asarray(report["confusion_matrix"]),
    list(dataset.class_names),
    figures["confusion_matrix"],
  )
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics_path):
    records = plots.read_metrics_jsonl(metrics_path)
    if records:
      figures["training_curves"] = os.path.join(out, "training_curves.png")
      plots.plot_training_curves(records, figures["training_curves"])
  tic = time.perf_counter()
  sample = report_lib.stratified_sample(
    dataset.labels, report_lib.MAX_MAP_POINTS, config.seed
  )
  sampled = data.take(sample) if streamed else dataset.images[sample]
  features = embed(variables, sampled, config=config, mesh=mesh)
  map_xy = report_lib.embedding_map(features, config.seed)
  timings["embeddings and t-SNE"] = time.perf_counter() - tic
  results = report_lib.EvalResults(
    metrics=report,
    labels=np.asarray(dataset.labels),
    probabilities=probabilities,
    images=stream.LazyImages(data) if streamed else dataset.images,
    ids=dataset.ids,
    map_indices=sample,
    map_xy=map_xy,
    figures=figures,
    timings=timings,
  )
  report_lib.write_report(os.path.join(out, "report.html"), results)
  return report
