"""`jvision eval`: evaluates the newest checkpoint of a workdir on a split.

Writes DIR/eval/metrics.json (accuracy, macro_f1, per-class precision,
recall, F1 and support, confusion matrix, ECE and its reliability bins, and
top5_accuracy when there are more than 5 classes),
DIR/eval/confusion_matrix.png, DIR/eval/training_curves.png and
DIR/eval/report.html (see `jvision.evaluate.report`).
"""

from __future__ import annotations

import json
import os
import time

import ml_collections
import numpy as np

from jvision import configs_io, inference
from jvision import workdir as workdir_lib
from jvision.data import augment, from_config, stream
from jvision.evaluate import calibration, plots
from jvision.evaluate import metrics as metrics_lib
from jvision.evaluate import report as report_lib


def extra_metrics(labels, probabilities) -> dict:
  """ECE, its bins and (for K > 5) top-5 accuracy, for metrics.json."""
  out = calibration.calibration_report(probabilities, labels)
  if probabilities.shape[1] > 5:
    out["top5_accuracy"] = metrics_lib.top_k_accuracy(labels, probabilities, 5)
  return out


def _check_evaluable(
  workdir: str, config, record: dict, *, data_given: bool
) -> None:
  """Raises for an imported workdir without a classifier, or without a
  data spec when none is given (before its weights are read)."""
  if config.trainer != workdir_lib.IMPORTED:
    return
  if not record.get("class_names"):
    raise ValueError(
      f"{workdir} holds weights imported without a classifier; train one "
      f"on them with --config.init_from={workdir}"
    )
  if not config.data.name and not data_given:
    raise ValueError(
      f"{workdir} was imported without a data spec to evaluate on; give "
      "one with --data=SPEC (a labelled source with the classifier's "
      f"{len(record['class_names'])} classes)"
    )


def _check_class_count(workdir: str, record: dict, dataset, spec) -> None:
  """Raises when the classifier's classes and the data's differ in number."""
  names = record.get("class_names")
  if names and len(names) != dataset.num_classes:
    raise ValueError(
      f"{workdir}'s classifier has {len(names)} classes but its data "
      f"{spec!r} has {dataset.num_classes}"
    )


def _check_class_names(workdir: str, record: dict, dataset, spec) -> None:
  """Raises unless data from elsewhere (`--data`) has the classifier's
  classes, named and ordered alike: label k must mean the same class."""
  names = list(record.get("class_names") or ())
  if names != list(dataset.class_names):
    raise ValueError(
      f"{workdir}'s classifier has the classes {names} but data {spec!r} "
      f"has {list(dataset.class_names)}; --data needs the same classes in "
      "the same order"
    )


def evaluate_workdir(
  workdir: str,
  split: str = "test",
  tta: str | None = None,
  *,
  data: str | None = None,
  embedding_map: bool = True,
) -> dict:
  """Evaluates the newest checkpoint of `workdir` on `split`; writes reports.

  `tta` is the test-time augmentation (`augment.tta_logits`'s mode); None:
  the run's own `config.eval_tta` ("none" for runs that predate it).
  `data` is a data spec to read `split` from instead of the run's own data
  (another test set, or labelled images for a student distilled on
  unlabelled ones); its classes must be the classifier's, in its order.
  `embedding_map` False leaves the t-SNE map out of the report: it is most
  of an evaluation's time on small data (about 40 s of scikit-learn's
  Barnes-Hut t-SNE for 2,000 points on 2 cores), which `jvision demo`
  spends on training instead.

  Returns:
    The metrics dict written to DIR/eval/metrics.json.
  """
  start = time.perf_counter()
  record = workdir_lib.read_record(workdir)
  config = ml_collections.ConfigDict(record["config"])
  tta = config.get("eval_tta", "none") if tta is None else tta
  configs_io.check_choice("eval_tta", tta, augment.TTA_MODES)
  elsewhere = data is not None  # --data: a source other than the run's
  _check_evaluable(workdir, config, record, data_given=elsewhere)
  if elsewhere:  # read the way the run read its own data
    recorded = config.data.get("loading", "memory")
    config = from_config.reading(config, data, loading=recorded)
  spec = config.data.name
  data = from_config.open_split(config, split)
  streamed = isinstance(data, stream.Streamed)
  dataset = data.index if streamed else data  # labels, ids, class names
  if not elsewhere:
    _check_class_count(workdir, record, dataset, spec)
  runner = inference.load(workdir, batch_size=config.eval_batch_size)
  runner.require_classifier()  # SimCLR pretraining has none
  if elsewhere:  # a pretraining records its data's classes: checked after
    _check_class_names(workdir, record, dataset, spec)
  logits = runner.logits(data, tta=tta)  # [N, K]
  predictions = logits.argmax(-1)
  report = metrics_lib.classification_report(
    dataset.labels, predictions, list(dataset.class_names)
  )
  report.update(
    {
      "data": spec,
      "split": split,
      "step": runner.step,
      "workdir": workdir,
      "tta": tta,
    }
  )
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
  sample, map_xy = None, None
  if embedding_map:
    tic = time.perf_counter()
    sample = report_lib.stratified_sample(
      dataset.labels, report_lib.MAX_MAP_POINTS, config.seed
    )
    sampled = data.take(sample) if streamed else dataset.images[sample]
    features = runner.embeddings(sampled)  # [S, F]
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
