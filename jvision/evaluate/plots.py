"""Plots written beside `DIR/eval/metrics.json`: confusion matrix, curves.

Figures are built with `matplotlib.figure.Figure` directly, never through
pyplot, so nothing here touches a global figure registry or needs a display:
the module is safe to call from threads and on headless machines.
"""

import json
import math
import numbers
import pathlib
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DEFAULT_DPI = 130
# Confusion matrices with more classes than this get no numbers in cells.
MAX_ANNOTATED_CLASSES = 30
# The panels of `plot_training_curves`, in order, with their titles.
CURVE_METRICS = {
  "loss": "Loss",
  "accuracy": "Accuracy",
  "learning_rate": "Learning rate",
}


def read_metrics_jsonl(path) -> list[dict]:
  """Reads `DIR/metrics.jsonl`: one JSON object per line.

  Blank lines are skipped.

  Args:
    path: the file to read.

  Returns:
    The records in file order.

  Raises:
    ValueError: naming the file and line number of a line that is not a
      JSON object.
  """
  records = []
  with open(path, encoding="utf-8") as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(
          f"{path}:{line_number}: malformed JSON ({e.msg} at column "
          f"{e.colno}): {line.strip()[:80]!r}"
        ) from e
      if not isinstance(record, dict):
        raise ValueError(
          f"{path}:{line_number}: expected a JSON object, got "
          f"{type(record).__name__}."
        )
      records.append(record)
  return records


def _save(figure: Figure, path, dpi: int) -> pathlib.Path:
  """Writes `figure` as a PNG to `path`, creating parent directories."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  figure.savefig(path, dpi=dpi, format="png")
  return path


def _row_normalize(cm: np.ndarray) -> np.ndarray:
  """Each row of `cm` [K, K] divided by its sum; all-zero rows stay 0."""
  cm = cm.astype(np.float64)
  totals = cm.sum(axis=1, keepdims=True)  # [K, 1]
  out = np.zeros_like(cm)
  np.divide(cm, totals, out=out, where=totals != 0)
  return out


def _text_colors(values: np.ndarray, cmap, vmax: float) -> np.ndarray:
  """Black or white per cell, whichever contrasts with the cell colour.

  Args:
    values: float array [K, K] of the plotted values.
    cmap: the matplotlib colormap they are drawn with.
    vmax: the value drawn with the darkest colour (vmin is 0).

  Returns:
    str array [K, K] of "black" or "white".
  """
  rgba = cmap(values / vmax if vmax > 0 else values)  # [K, K, 4]
  luminance = rgba[..., :3] @ np.array([0.2126, 0.7152, 0.0722])  # [K, K]
  return np.where(luminance < 0.5, "white", "black")


def _format_percent(percent: float) -> str:
  """Two significant digits, but never rounds a non-100 value up to "100"."""
  if percent == 100 or 10 <= percent < 99.5:
    return f"{percent:.0f}"
  if percent > 99.5:
    return f"{math.floor(percent * 10) / 10:.1f}"  # 99.97 -> "99.9"
  return f"{percent:.1f}"


def _cell_labels(cm: np.ndarray, normalize: bool) -> np.ndarray:
  """The text in each cell: a row percentage or a count, "" for 0 counts.

  Args:
    cm: int array [K, K] of counts.
    normalize: whether cells show row percentages instead of counts.

  Returns:
    str array [K, K].
  """
  if normalize:
    percent = 100 * _row_normalize(cm)
    labels = [[_format_percent(p) for p in row] for row in percent]
  else:
    labels = [[str(int(c)) for c in row] for row in cm]
  return np.where(cm == 0, "", np.array(labels, dtype=object))


def _annotate_cells(ax, texts, colors, fontsize: float) -> None:
  """Writes texts [K, K] centred in the cells of an imshow'd matrix."""
  for (i, j), text in np.ndenumerate(texts):
    if text:
      ax.text(
        j,
        i,
        text,
        ha="center",
        va="center",
        color=colors[i, j],
        fontsize=fontsize,
      )


def plot_confusion_matrix(
  cm,
  class_names: Sequence[str],
  path,
  *,
  normalize: bool = True,
  title: str | None = None,
  dpi: int = DEFAULT_DPI,
) -> pathlib.Path:
  """Draws a confusion matrix as a heat map and writes it as a PNG.

  Rows are true classes and columns predictions. With `normalize`, cells
  show the percentage of each true class (rows sum to 100) and the y tick
  labels carry each class's support; otherwise cells show counts. Cells
  with a count of 0 are left blank so the errors stand out. Matrices with
  more than MAX_ANNOTATED_CLASSES classes are drawn without numbers.

  Args:
    cm: int array [K, K], e.g. from `metrics.confusion_matrix`.
    class_names: K names, one per row and column.
    path: the PNG file to write; parent directories are created.
    normalize: colour and label cells by row fraction instead of count.
    title: the figure title; a default names the normalisation.
    dpi: resolution of the PNG.

  Returns:
    The path written.
  """
  cm = np.asarray(cm)
  k = len(class_names)
  if cm.shape != (k, k):
    raise ValueError(
      f"cm has shape {cm.shape}, expected ({k}, {k}) for {k} class names."
    )
  if title is None:
    title = "Confusion matrix" + (" (% of true class)" if normalize else "")
  values = 100 * _row_normalize(cm) if normalize else cm.astype(np.float64)
  vmax = 100.0 if normalize else max(float(values.max()), 1.0)
  cmap = colormaps["Blues"]

  size = max(4.5, 0.55 * k + 3.0)
  figure = Figure(figsize=(size + 1.0, size), layout="constrained")
  ax = figure.add_subplot()
  image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=vmax)
  colorbar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
  colorbar.set_label("% of true class" if normalize else "count")

  support = cm.sum(axis=1)
  y_names = (
    [f"{n} ({s})" for n, s in zip(class_names, support, strict=True)]
    if normalize
    else list(class_names)
  )
  ax.set_xticks(
    range(k),
    labels=class_names,
    rotation=45,
    ha="right",
    rotation_mode="anchor",
  )
  ax.set_yticks(range(k), labels=y_names)
  ax.set_xlabel("Predicted class")
  ax.set_ylabel("True class (support)" if normalize else "True class")
  ax.set_title(title)
  # Thin white lines between cells.
  ax.set_xticks(np.arange(k + 1) - 0.5, minor=True)
  ax.set_yticks(np.arange(k + 1) - 0.5, minor=True)
  ax.grid(which="minor", color="white", linewidth=0.8)
  ax.tick_params(which="minor", length=0)

  if k <= MAX_ANNOTATED_CLASSES:
    fontsize = 9 if k <= 12 else 7
    _annotate_cells(
      ax,
      _cell_labels(cm, normalize),
      _text_colors(values, cmap, vmax),
      fontsize,
    )
  return _save(figure, path, dpi)


def _is_number(value) -> bool:
  """True for a finite real number (bools excluded)."""
  return (
    isinstance(value, numbers.Real)
    and not isinstance(value, bool)
    and math.isfinite(value)
  )


def _series(records: Sequence[dict], metric: str) -> dict[str, tuple]:
  """The (steps, values) of `metric` per split, sorted by step.

  Where a (split, step) pair is logged more than once, as when a resumed
  run repeats steps, the last record wins.

  Args:
    records: dicts with "step", "split" and metric values.
    metric: the key to extract; records without a finite number for it are
      skipped.

  Returns:
    {split: (steps [M], values [M])} as numpy arrays, splits in order of
    first appearance.
  """
  by_split: dict[str, dict[int, float]] = {}
  for record in records:
    if _is_number(record.get(metric)):
      points = by_split.setdefault(str(record["split"]), {})
      points[record["step"]] = float(record[metric])
  return {
    split: (
      np.array(sorted(points)),
      np.array([points[s] for s in sorted(points)]),
    )
    for split, points in by_split.items()
  }


def _check_records(records: Sequence[dict]) -> None:
  """Raises a ValueError if records are empty or lack "step" or "split"."""
  if not records:
    raise ValueError("No metric records to plot (is metrics.jsonl empty?).")
  for index, record in enumerate(records):
    missing = [key for key in ("step", "split") if key not in record]
    if missing:
      raise ValueError(
        f"Record {index} lacks {missing}; every metrics.jsonl record needs "
        f'"step" and "split": {record}'
      )


def _split_order(records: Sequence[dict]) -> list[str]:
  """Splits in order of first appearance, "train" first so it is C0."""
  splits = dict.fromkeys(str(record["split"]) for record in records)
  return sorted(splits, key=lambda split: split != "train")


def _split_style(split: str, index: int, num_points: int) -> dict:
  """Line style for one split: train a plain line, eval splits marked."""
  style = {"color": f"C{index}", "label": split}
  if split != "train" or num_points == 1:
    style.update(marker="o", markersize=4)
  return style


def _draw_panel(ax, title: str, series: dict, splits: list[str]) -> None:
  """Draws one metric's {split: (steps, values)} on `ax`, splits in order."""
  for index, split in enumerate(splits):
    if split in series:
      steps, values = series[split]
      ax.plot(steps, values, **_split_style(split, index, len(steps)))
  all_steps = np.concatenate([steps for steps, _ in series.values()])
  if all_steps.min() == all_steps.max():  # One step: avoid a +-0.05 axis.
    ax.set_xlim(all_steps.min() - 1, all_steps.max() + 1)
  ax.set_title(title)
  ax.set_xlabel("step")
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.grid(alpha=0.3)
  ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
  if len(series) > 1:
    ax.legend()


def plot_training_curves(
  records: Sequence[dict],
  path,
  *,
  metrics: Sequence[str] = tuple(CURVE_METRICS),
  dpi: int = DEFAULT_DPI,
) -> pathlib.Path:
  """Plots metrics against step, one panel per metric, splits overlaid.

  By default the panels are loss, accuracy and learning rate; a metric no
  record has is skipped. Each split ("train", "test", ...) keeps one colour
  across panels (train is always C0); non-train splits, and any series of a
  single point, are drawn with markers; a panel with one split has no
  legend. Steps repeated by a resumed run keep their last value.

  Args:
    records: the lines of `DIR/metrics.jsonl` (see `read_metrics_jsonl`),
      each {"step": int, "split": str, <metric>: float, ...}.
    path: the PNG file to write; parent directories are created.
    metrics: the record keys to plot, one panel each, in this order.
    dpi: resolution of the PNG.

  Returns:
    The path written.

  Raises:
    ValueError: if `records` is empty, a record lacks "step" or "split", or
      no record holds any of `metrics`.
  """
  _check_records(records)
  panels = {m: _series(records, m) for m in metrics}
  panels = {m: series for m, series in panels.items() if series}
  if not panels:
    keys = sorted({key for record in records for key in record})
    raise ValueError(
      f"No record holds any of {list(metrics)}; keys found: {keys}."
    )
  splits = _split_order(records)

  figure = Figure(figsize=(4.8 * len(panels), 4.0), layout="constrained")
  axes = figure.subplots(1, len(panels), squeeze=False)[0]
  for ax, (metric, series) in zip(axes, panels.items(), strict=True):
    _draw_panel(ax, CURVE_METRICS.get(metric, metric), series, splits)
  return _save(figure, path, dpi)


def plot_label_efficiency(
  rows: Sequence[dict], path, *, dpi: int = DEFAULT_DPI
) -> pathlib.Path:
  """Grouped bars: test accuracy of each method at each label fraction.

  Args:
    rows: {"method": str, "label_fraction": float, "test_accuracy": float}
      records (the demo's DIR/summary.json); methods keep their first-seen
      order and colour.
    path: the PNG file to write; parent directories are created.
    dpi: resolution of the PNG.

  Returns:
    The path written.

  Raises:
    ValueError: if `rows` is empty or a row lacks one of the three keys.
  """
  keys = ("method", "label_fraction", "test_accuracy")
  if not rows:
    raise ValueError("No rows to plot.")
  for i, row in enumerate(rows):
    missing = [k for k in keys if k not in row]
    if missing:
      raise ValueError(f"Row {i} lacks {missing}: {row}.")
  methods = list(dict.fromkeys(r["method"] for r in rows))
  fractions = sorted({r["label_fraction"] for r in rows})
  acc = {(r["method"], r["label_fraction"]): r["test_accuracy"] for r in rows}
  width = 0.8 / len(methods)
  figure = Figure(
    figsize=(1.6 + 1.8 * len(fractions), 4.0), layout="constrained"
  )
  ax = figure.subplots()
  for m, method in enumerate(methods):
    xs = [
      f + (m - (len(methods) - 1) / 2) * width for f in range(len(fractions))
    ]
    values = [100 * acc.get((method, f), math.nan) for f in fractions]
    bars = ax.bar(xs, values, width * 0.95, label=method, color=f"C{m}")
    ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
  ax.set_xticks(range(len(fractions)))
  ax.set_xticklabels([f"{f * 100:g}% of labels" for f in fractions])
  ax.set_ylabel("Test accuracy (%)")
  finite = [100 * v for v in acc.values() if np.isfinite(v)]
  low = min(finite) if finite else 0.0
  ax.set_ylim(max(0.0, math.floor(low / 10) * 10 - 10), 100)
  # Above the axes, where no bar can be: inside, the legend hid the
  # tallest group's bars.
  figure.legend(
    loc="outside upper center",
    ncol=min(len(methods), 2),
    fontsize=8,
    frameon=False,
  )
  return _save(figure, path, dpi)
