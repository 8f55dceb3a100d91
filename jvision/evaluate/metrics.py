"""Classification metrics in plain numpy.

These functions take integer labels and predictions (or scores) that have
already been gathered from the devices, and return numbers or the
JSON-ready report written to `DIR/eval/metrics.json`.

Zero division follows scikit-learn's `zero_division=0`: the precision of a
class that is never predicted, the recall of a class with no support, and
the F1 of a class whose precision and recall are both 0 are all 0.0.
"""

from collections.abc import Sequence

import numpy as np


def _as_class_ids(values, name: str) -> np.ndarray:
  """Returns `values` as a 1-D int64 array, or raises a ValueError."""
  array = np.asarray(values)
  if array.ndim != 1:
    raise ValueError(f"{name} must be 1-D, got shape {array.shape}.")
  if array.size and not np.issubdtype(array.dtype, np.integer):
    raise ValueError(f"{name} must hold integers, got dtype {array.dtype}.")
  return array.astype(np.int64)


def _check_range(ids: np.ndarray, num_classes: int, name: str) -> None:
  """Raises a ValueError naming the first id outside [0, num_classes)."""
  bad = (ids < 0) | (ids >= num_classes)
  if bad.any():
    index = int(np.argmax(bad))
    raise ValueError(
      f"{name}[{index}] = {ids[index]} is outside [0, {num_classes}); "
      f"{int(bad.sum())} of {ids.size} values are out of range."
    )


def _paired_ids(labels, predictions):
  """Both as int class-id vectors of one length, or a ValueError."""
  labels = _as_class_ids(labels, "labels")
  predictions = _as_class_ids(predictions, "predictions")
  if labels.shape != predictions.shape:
    raise ValueError(
      f"labels and predictions differ in length: {labels.shape[0]} vs "
      f"{predictions.shape[0]}."
    )
  return labels, predictions


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
  """Counts (true class, predicted class) pairs.

  Args:
    labels: int array [N], the true class of each example.
    predictions: int array [N], the predicted class of each example.
    num_classes: K, the number of classes; every id must be in [0, K).

  Returns:
    int64 array [K, K] whose entry [i, j] counts the examples of true class
    i predicted as class j (rows are true classes, columns predictions).
  """
  if num_classes < 1:
    raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
  labels, predictions = _paired_ids(labels, predictions)
  _check_range(labels, num_classes, "labels")
  _check_range(predictions, num_classes, "predictions")
  flat = labels * num_classes + predictions  # [N]
  counts = np.bincount(flat, minlength=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(np.int64)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
  """Elementwise numerator / denominator, 0.0 where the denominator is 0."""
  numerator = numerator.astype(np.float64)
  denominator = denominator.astype(np.float64)
  out = np.zeros_like(numerator)
  np.divide(numerator, denominator, out=out, where=denominator != 0)
  return out


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
  """Precision, recall, F1 and support of every class of a confusion matrix.

  Args:
    cm: int array [K, K], rows true classes and columns predictions.

  Returns:
    A dict of arrays [K]: "precision", "recall", "f1" (float64, 0.0 where
    undefined, see the module docstring) and "support" (int64, the number
    of true examples of each class).
  """
  cm = np.asarray(cm)
  true_positives = np.diag(cm)  # [K]
  predicted = cm.sum(axis=0)  # [K]
  support = cm.sum(axis=1)  # [K]
  precision = _safe_divide(true_positives, predicted)
  recall = _safe_divide(true_positives, support)
  f1 = _safe_divide(2 * precision * recall, precision + recall)
  return {
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "support": support.astype(np.int64),
  }


def accuracy(labels, predictions) -> float:
  """The fraction of examples whose prediction equals the label.

  Args:
    labels: int array [N].
    predictions: int array [N].

  Returns:
    The accuracy in [0, 1]; raises ValueError for N == 0.
  """
  labels, predictions = _paired_ids(labels, predictions)
  if labels.size == 0:
    raise ValueError("accuracy of zero examples is undefined.")
  return float(np.mean(labels == predictions))


def classification_report(
  labels, predictions, class_names: Sequence[str]
) -> dict:
  """The evaluation report written to `DIR/eval/metrics.json`.

  Per-class precision, recall and F1 are 0.0 where undefined (see the module
  docstring). `macro_f1` is the unweighted mean of the per-class F1 over all
  K classes, including classes with no support or no predictions.

  Args:
    labels: int array [N], true classes in [0, K).
    predictions: int array [N], predicted classes in [0, K).
    class_names: K unique names; class i is named class_names[i].

  Returns:
    A JSON-serialisable dict: {"accuracy": float, "macro_f1": float,
    "num_examples": int, "per_class": {name: {"precision": float,
    "recall": float, "f1": float, "support": int}}, "confusion_matrix":
    [[int]] (K x K, rows true classes), "class_names": [str]}.
  """
  class_names = [str(name) for name in class_names]
  if len(set(class_names)) != len(class_names):
    repeated = sorted({n for n in class_names if class_names.count(n) > 1})
    raise ValueError(f"class_names repeat: {repeated}.")
  cm = confusion_matrix(labels, predictions, len(class_names))
  if cm.sum() == 0:
    raise ValueError("classification_report needs at least one example.")
  scores = per_class_scores(cm)
  per_class = {
    name: {
      "precision": float(scores["precision"][i]),
      "recall": float(scores["recall"][i]),
      "f1": float(scores["f1"][i]),
      "support": int(scores["support"][i]),
    }
    for i, name in enumerate(class_names)
  }
  return {
    "accuracy": float(np.trace(cm) / cm.sum()),
    "macro_f1": float(np.mean(scores["f1"])),
    "num_examples": int(cm.sum()),
    "per_class": per_class,
    "confusion_matrix": cm.tolist(),
    "class_names": class_names,
  }


def check_scores(scores, labels, *, name: str, what: str) -> np.ndarray:
  """`scores` as an array [N, K] for N labels, else ValueError.

  Args:
    scores: per-class scores or probabilities, [N, K].
    labels: [N].
    name: what the scores are called in the error.
    what: the computation, for the error on zero examples.
  """
  scores = np.asarray(scores)
  labels = np.asarray(labels)
  if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
    raise ValueError(
      f"{name} must have shape [N, K] = [{labels.shape[0]}, K], "
      f"got {scores.shape}."
    )
  if labels.size == 0:
    raise ValueError(f"{what} of zero examples is undefined.")
  return scores


def top_k_accuracy(labels, scores, k: int) -> float:
  """The fraction of examples whose label is among the k highest scores.

  Ties are broken by class index (a stable sort), so the result does not
  depend on the platform.

  Args:
    labels: int array [N], true classes in [0, K).
    scores: float array [N, K], logits or probabilities.
    k: how many of the top classes count as a hit, 1 <= k <= K.

  Returns:
    The top-k accuracy in [0, 1].
  """
  labels = _as_class_ids(labels, "labels")
  scores = check_scores(scores, labels, name="scores", what="top_k_accuracy")
  num_classes = scores.shape[1]
  if not 1 <= k <= num_classes:
    raise ValueError(f"k must be in [1, {num_classes}], got {k}.")
  _check_range(labels, num_classes, "labels")
  top_k = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # [N, k]
  hits = (top_k == labels[:, None]).any(axis=1)  # [N]
  return float(np.mean(hits))
