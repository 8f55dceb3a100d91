"""`DIR/eval/report.html`: one self-contained page about an evaluation.

The page holds the headline metrics, per-class precision/recall/F1 (chart
and table), the confusion matrix, the most confused class pairs with example
images, the worst misclassifications (wrong and most confident), the
calibration (ECE and a reliability diagram), the training curves and a t-SNE
map of backbone embeddings coloured by class. Every figure and thumbnail is
a PNG embedded as a data URI and there is no JavaScript, so the file can be
mailed or opened offline. Strings from the data go through `html.escape`.

The selection helpers (`stratified_sample`, `confused_pairs`,
`pair_examples`, `worst_misclassifications`) are pure numpy functions.
"""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from jvision.evaluate import html as html_lib
from jvision.evaluate.html import escape as _e
from jvision.evaluate.html import png_data_uri, thumbnail

MAX_MAP_POINTS = 2000  # examples in the t-SNE map
PAIRS_SHOWN = 5  # most confused (true, predicted) pairs
EXAMPLES_PER_PAIR = 8  # thumbnails per confused pair
WORST_SHOWN = 24  # thumbnails of the most confident mistakes
MAX_LEGEND_CLASSES = 20  # the embedding map has a legend up to this K
DPI = 110


@dataclasses.dataclass(frozen=True)
class EvalResults:
  """What `evaluate_workdir` computed, as the report needs it.

  Attributes:
    metrics: the dict written to DIR/eval/metrics.json.
    labels: int [N], true classes.
    probabilities: float [N, K], softmax of the logits.
    images: uint8 [N, H, W, C], C 1 or 3, as the network saw them.
    ids: str [N], stable example ids.
    map_indices: int [M], the examples placed on the embedding map.
    map_xy: float [M, 2], their t-SNE coordinates (None: no map).
    figures: {"confusion_matrix" | "training_curves": PNG path}.
    timings: {phase: seconds}.
  """

  metrics: dict
  labels: np.ndarray
  probabilities: np.ndarray
  images: np.ndarray
  ids: np.ndarray
  map_indices: np.ndarray | None = None
  map_xy: np.ndarray | None = None
  figures: dict = dataclasses.field(default_factory=dict)
  timings: dict = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------- selection ---


def stratified_sample(labels, max_count: int, seed: int) -> np.ndarray:
  """At most `max_count` example indices, each class in proportion.

  Every example gets a key (its rank within its class in a seeded shuffle,
  plus one half, over the class size); the smallest keys are taken, so each
  class contributes its share of `max_count` to within one example.

  Args:
    labels: int array [N].
    max_count: the most indices returned.
    seed: seeds the shuffle.

  Returns:
    Sorted int64 indices [min(N, max_count)].
  """
  labels = np.asarray(labels)
  n = labels.shape[0]
  if n <= max_count:
    return np.arange(n, dtype=np.int64)
  order = np.random.default_rng(seed).permutation(n)
  shuffled = labels[order]
  by_class = np.argsort(shuffled, kind="stable")  # grouped, shuffle kept
  counts = np.bincount(shuffled)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  rank = np.empty(n, np.int64)
  rank[by_class] = np.arange(n) - np.repeat(starts, counts)
  key = (rank + 0.5) / counts[shuffled]  # [N], position within class
  chosen = order[np.argsort(key, kind="stable")[:max_count]]
  return np.sort(chosen).astype(np.int64)


def confused_pairs(cm, top: int = PAIRS_SHOWN) -> list[tuple[int, int, int]]:
  """The largest off-diagonal cells of a confusion matrix.

  Args:
    cm: int array [K, K], rows true classes and columns predictions.
    top: the most pairs returned.

  Returns:
    Up to `top` (true, predicted, count) with count > 0, by descending
    count, ties by (true, predicted).
  """
  cm = np.array(cm, np.int64)
  np.fill_diagonal(cm, 0)
  cells = [(int(-c), i, j) for (i, j), c in np.ndenumerate(cm) if c > 0]
  return [(i, j, -c) for c, i, j in sorted(cells)[:top]]


def pair_examples(
  labels, probabilities, true: int, predicted: int, count: int
) -> np.ndarray:
  """Examples of class `true` predicted as `predicted`, most confident first.

  Args:
    labels: int array [N].
    probabilities: float array [N, K].
    true, predicted: the class pair.
    count: the most indices returned.

  Returns:
    int64 indices [<= count].
  """
  probabilities = np.asarray(probabilities)
  hits = (np.asarray(labels) == true) & (probabilities.argmax(1) == predicted)
  index = np.flatnonzero(hits)
  order = np.argsort(-probabilities[index, predicted], kind="stable")
  return index[order[:count]].astype(np.int64)


def worst_misclassifications(
  labels, probabilities, count: int = WORST_SHOWN
) -> np.ndarray:
  """Wrong predictions with the highest predicted probability.

  Args:
    labels: int array [N].
    probabilities: float array [N, K].
    count: the most indices returned.

  Returns:
    int64 indices [<= count], by descending confidence.
  """
  probabilities = np.asarray(probabilities)
  wrong = np.flatnonzero(probabilities.argmax(1) != np.asarray(labels))
  confidence = probabilities[wrong].max(1)
  return wrong[np.argsort(-confidence, kind="stable")[:count]].astype(np.int64)


def embedding_map(embeddings, seed: int) -> np.ndarray:
  """2-D t-SNE coordinates of embeddings (scikit-learn, PCA init).

  Args:
    embeddings: float array [M, D], M >= 2.
    seed: t-SNE's random_state.

  Returns:
    float32 [M, 2].
  """
  from sklearn.manifold import TSNE  # slow to import; only needed here

  embeddings = np.asarray(embeddings, np.float32)
  # Perplexity must stay below M; 30 is scikit-learn's default.
  perplexity = min(30.0, (embeddings.shape[0] - 1) / 3)
  tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
  return tsne.fit_transform(embeddings).astype(np.float32)


# --------------------------------------------------------------- figures ---


def _figure_uri(figure: Figure) -> str:
  """A matplotlib figure as a PNG data URI."""
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=DPI)
  return html_lib.png_bytes_uri(buffer.getvalue())


def _file_uri(path: str) -> str:
  """A PNG file as a data URI."""
  with open(path, "rb") as f:
    return html_lib.png_bytes_uri(f.read())


def per_class_figure(class_names: list[str], per_class: dict) -> Figure:
  """Grouped bars of precision, recall and F1 per class."""
  k = len(class_names)
  width = min(max(6.0, 0.75 * k + 2.0), 24.0)
  figure = Figure(figsize=(width, 3.8), layout="constrained")
  ax = figure.subplots()
  x = np.arange(k)
  keys = ("precision", "recall", "f1")
  for offset, key in zip((-0.27, 0.0, 0.27), keys, strict=True):
    values = [100 * per_class[name][key] for name in class_names]
    ax.bar(x + offset, values, 0.27, label=key)
  ax.set_xticks(x, labels=class_names, rotation=30, ha="right")
  ax.set_ylabel("%")
  ax.set_ylim(0, 100)
  ax.grid(axis="y", alpha=0.3)
  ax.legend(
    loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, frameon=False
  )
  return figure


def reliability_figure(bins: list[dict], ece: float) -> Figure:
  """Accuracy against confidence per bin, with the counts beneath."""
  lower = np.array([b["lower"] for b in bins])
  width = bins[0]["upper"] - bins[0]["lower"]
  count = np.array([b["count"] for b in bins])
  accuracy = np.array([b["accuracy"] for b in bins])
  confidence = np.array([b["confidence"] for b in bins])
  full = count > 0
  figure = Figure(figsize=(5.2, 6.0), layout="constrained")
  top, bottom = figure.subplots(
    2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)}
  )
  top.bar(
    lower[full],
    accuracy[full],
    width,
    align="edge",
    label="accuracy",
    color="C0",
    edgecolor="white",
  )
  top.bar(
    lower[full],
    np.abs(confidence - accuracy)[full],
    width,
    bottom=np.minimum(accuracy, confidence)[full],
    align="edge",
    label="gap to mean confidence",
    facecolor="none",
    edgecolor="C3",
    hatch="///",
    linewidth=0.8,
  )
  top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
  top.set_ylim(0, 1)
  top.set_ylabel("accuracy")
  top.set_title(f"Reliability diagram (ECE {100 * ece:.2f}%)")
  top.legend(loc="upper left", fontsize=8)
  top.grid(alpha=0.3)
  bottom.bar(
    lower[full], count[full], width, align="edge", color="C7", ec="white"
  )
  bottom.set_yscale("log")
  bottom.set_xlim(0, 1)
  bottom.set_xlabel("confidence (top-class probability)")
  bottom.set_ylabel("examples")
  return figure


def embedding_figure(xy, labels, class_names: list[str]) -> Figure:
  """A scatter of 2-D points coloured by class, legend at the right."""
  k = len(class_names)
  cmap = colormaps["tab10" if k <= 10 else "tab20"]
  figure = Figure(figsize=(8.5, 6.5), layout="constrained")
  ax = figure.subplots()
  for c, name in enumerate(class_names):
    points = xy[np.asarray(labels) == c]
    ax.scatter(
      points[:, 0],
      points[:, 1],
      s=9,
      alpha=0.75,
      color=cmap(c % cmap.N),
      label=name,
      linewidths=0,
    )
  ax.set_xticks([])
  ax.set_yticks([])
  ax.set_title("t-SNE of backbone embeddings, coloured by true class")
  if k <= MAX_LEGEND_CLASSES:
    ax.legend(
      loc="center left",
      bbox_to_anchor=(1.01, 0.5),
      markerscale=2.5,
      fontsize=9,
      frameon=False,
    )
  return figure


# ------------------------------------------------------------------ page ---


def write_report(path: str, results: EvalResults) -> None:
  """Writes the page of `render_report` to `path` (replaced atomically)."""
  html_lib.write_atomic(path, render_report(results))


def render_report(results: EvalResults) -> str:
  """The evaluation page as an HTML string."""
  names = list(results.metrics["class_names"])
  body = "\n".join(
    [
      _header(results),
      _toc(),
      _metrics_section(results.metrics),
      _per_class_section(results.metrics, names),
      _confusion_section(results),
      _pairs_section(results, names),
      _worst_section(results, names),
      _calibration_section(results.metrics),
      _curves_section(results),
      _map_section(results, names),
    ]
  )
  return html_lib.page(
    f"Evaluation: {results.metrics.get('workdir', '')}", body, _CSS
  )


def _pct(value: float) -> str:
  return f"{100 * value:.2f}%"


def _figure(uri: str, alt: str, kind: str = "") -> str:
  """An embedded figure; `kind` is an extra CSS class."""
  return f"<img class='figure {kind}' src='{uri}' alt='{_e(alt)}'>"


def _header(results: EvalResults) -> str:
  m = results.metrics
  stats = [
    ("accuracy", _pct(m["accuracy"])),
    ("macro F1", _pct(m["macro_f1"])),
    ("ECE", _pct(m["ece"])),
  ]
  if "top5_accuracy" in m:
    stats.insert(2, ("top-5 accuracy", _pct(m["top5_accuracy"])))
  cards = "".join(
    f"<div class='stat'><div class='v'>{v}</div><div class='k'>{k}</div></div>"
    for k, v in stats
  )
  timings = " · ".join(f"{k} {s:.1f} s" for k, s in results.timings.items())
  return (
    "<header><h1>Evaluation report</h1>"
    f"<div class='source'><code>{_e(m.get('workdir', ''))}</code> · split "
    f"<b>{_e(m['split'])}</b> · step {int(m['step']):,} · "
    f"{int(m['num_examples']):,} examples</div>"
    f"<div class='stats'>{cards}</div>"
    f"<p class='muted'>Timings: {_e(timings) or '–'}. Numbers are in "
    "<a href='metrics.json'>metrics.json</a>.</p></header>"
  )


_SECTIONS = (
  ("metrics", "Metrics"),
  ("per-class", "Per-class scores"),
  ("confusion", "Confusion matrix"),
  ("pairs", "Most confused pairs"),
  ("worst", "Worst misclassifications"),
  ("calibration", "Calibration"),
  ("curves", "Training curves"),
  ("map", "Embedding map"),
)


def _toc() -> str:
  items = "".join(f"<li><a href='#{i}'>{t}</a></li>" for i, t in _SECTIONS)
  return f"<nav class='toc'><ul>{items}</ul></nav>"


def _section(anchor: str, content: str) -> str:
  title = dict(_SECTIONS)[anchor]
  return f"<section id='{anchor}'><h2>{title}</h2>{content}</section>"


def _metrics_section(m: dict) -> str:
  rows = [
    ("accuracy", _pct(m["accuracy"])),
    ("macro F1", _pct(m["macro_f1"])),
  ]
  if "top5_accuracy" in m:
    rows.append(("top-5 accuracy", _pct(m["top5_accuracy"])))
  rows += [
    ("expected calibration error", _pct(m["ece"])),
    ("split", _e(m["split"])),
    ("step", f"{int(m['step']):,}"),
    ("examples", f"{int(m['num_examples']):,}"),
    ("classes", f"{len(m['class_names']):,}"),
  ]
  body = "".join(
    f"<tr><th>{k}</th><td class='num'>{v}</td></tr>" for k, v in rows
  )
  return _section("metrics", f"<table class='kv'>{body}</table>")


def _per_class_section(m: dict, names: list[str]) -> str:
  per_class = m["per_class"]
  uri = _figure_uri(per_class_figure(names, per_class))
  rows = "".join(
    f"<tr><td>{_e(name)}</td>"
    + "".join(
      f"<td class='num'>{_pct(per_class[name][key])}</td>"
      for key in ("precision", "recall", "f1")
    )
    + f"<td class='num'>{per_class[name]['support']:,}</td></tr>"
    for name in names
  )
  table = (
    "<div class='scroll'><table><thead><tr><th>class</th>"
    "<th class='num'>precision</th><th class='num'>recall</th>"
    "<th class='num'>F1</th><th class='num'>support</th></tr></thead>"
    f"<tbody>{rows}</tbody></table></div>"
  )
  content = f"<div class='row'>{_figure(uri, 'per-class scores')}{table}</div>"
  return _section("per-class", content)


def _confusion_section(results: EvalResults) -> str:
  path = results.figures.get("confusion_matrix")
  if not path or not os.path.exists(path):
    return _section("confusion", "<p class='muted'>Not drawn.</p>")
  content = (
    "<p class='muted'>Rows are true classes, columns predictions; cells "
    "are the percentage of the true class.</p>"
    + _figure(_file_uri(path), "confusion matrix", "cm")
  )
  return _section("confusion", content)


def _thumb(image: np.ndarray, title: str) -> str:
  small = thumbnail(np.asarray(image, np.uint8))
  h, w = small.shape[:2]
  return (
    f"<img class='thumb' src='{png_data_uri(small)}' width='{w}' "
    f"height='{h}' alt='{_e(title)}' title='{_e(title)}'>"
  )


def _pairs_section(results: EvalResults, names: list[str]) -> str:
  cm = np.asarray(results.metrics["confusion_matrix"])
  pairs = confused_pairs(cm)
  if not pairs:
    return _section("pairs", "<p>No mistakes.</p>")
  blocks = []
  for true, predicted, count in pairs:
    index = pair_examples(
      results.labels,
      results.probabilities,
      true,
      predicted,
      EXAMPLES_PER_PAIR,
    )
    thumbs = "".join(
      "<figure class='mini'>"
      + _thumb(results.images[i], str(results.ids[i]))
      + f"<figcaption>{results.probabilities[i, predicted]:.2f}"
      "</figcaption></figure>"
      for i in index
    )
    share = count / max(int(cm[true].sum()), 1)
    blocks.append(
      "<div class='pair'><div class='pair-title'>true "
      f"<b>{_e(names[true])}</b> → predicted <b>{_e(names[predicted])}</b>"
      f" <span class='muted'>{count:,} examples, {_pct(share)} of "
      f"{_e(names[true])}</span></div><div class='strip'>{thumbs}</div>"
      "</div>"
    )
  note = (
    f"<p class='muted'>The {len(pairs)} largest off-diagonal cells of the "
    "confusion matrix, with up to "
    f"{EXAMPLES_PER_PAIR} examples each, most confident first (caption: "
    "probability of the predicted class).</p>"
  )
  return _section("pairs", note + "".join(blocks))


def _worst_section(results: EvalResults, names: list[str]) -> str:
  index = worst_misclassifications(results.labels, results.probabilities)
  if not index.size:
    return _section("worst", "<p>No mistakes.</p>")
  cards = []
  for i in index:
    p = results.probabilities[i]
    true, predicted = int(results.labels[i]), int(p.argmax())
    cards.append(
      "<figure class='card'><div class='tbox'>"
      + _thumb(results.images[i], str(results.ids[i]))
      + f"</div><figcaption><div>true <b>{_e(names[true])}</b></div>"
      f"<div>predicted <b class='bad'>{_e(names[predicted])}</b></div>"
      f"<div>confidence <b>{p[predicted]:.3f}</b></div>"
      f"<div class='muted'>p(true class) {p[true]:.3f}</div>"
      f"<div class='id'>{_e(results.ids[i])}</div>"
      "</figcaption></figure>"
    )
  wrong = int(np.sum(results.probabilities.argmax(1) != results.labels))
  note = (
    f"<p class='muted'>The {index.size} most confident of {wrong:,} wrong "
    "predictions.</p>"
  )
  return _section("worst", note + f"<div class='grid'>{''.join(cards)}</div>")


def _calibration_section(m: dict) -> str:
  bins = m["calibration_bins"]
  uri = _figure_uri(reliability_figure(bins, m["ece"]))
  rows = "".join(
    f"<tr><td>({b['lower']:.3f}, {b['upper']:.3f}]</td>"
    f"<td class='num'>{b['count']:,}</td>"
    f"<td class='num'>{_pct(b['accuracy'])}</td>"
    f"<td class='num'>{_pct(b['confidence'])}</td></tr>"
    for b in bins
    if b["count"]
  )
  text = (
    f"<p>Expected calibration error <b>{_pct(m['ece'])}</b>: the mean "
    "|accuracy − confidence| over "
    f"{len(bins)} equal-width confidence bins, weighted by the examples "
    "in each. Bars below the diagonal mean over-confidence.</p>"
  )
  table = (
    "<table><thead><tr><th>confidence</th><th class='num'>examples</th>"
    "<th class='num'>accuracy</th><th class='num'>mean confidence</th></tr>"
    f"</thead><tbody>{rows}</tbody></table>"
  )
  content = (
    f"{text}<div class='row'>{_figure(uri, 'reliability diagram')}{table}</div>"
  )
  return _section("calibration", content)


def _curves_section(results: EvalResults) -> str:
  path = results.figures.get("training_curves")
  if not path or not os.path.exists(path):
    return _section(
      "curves", "<p class='muted'>No metrics.jsonl in the workdir.</p>"
    )
  return _section("curves", _figure(_file_uri(path), "training curves"))


def _map_section(results: EvalResults, names: list[str]) -> str:
  if results.map_xy is None or results.map_indices is None:
    return _section(
      "map",
      "<p class='muted'>Not computed (`jvision demo` leaves it out; "
      "`jvision eval --workdir=DIR` draws it).</p>",
    )
  labels = results.labels[results.map_indices]
  uri = _figure_uri(embedding_figure(results.map_xy, labels, names))
  note = (
    f"<p class='muted'>t-SNE (scikit-learn, PCA init) of the L2-normalised "
    f"backbone features of {len(labels):,} of "
    f"{results.labels.shape[0]:,} examples, sampled per class in "
    "proportion. Distances between far-apart clusters mean little.</p>"
  )
  return _section("map", note + _figure(uri, "embedding map"))


_CSS = """
nav.toc ul { display: flex; flex-wrap: wrap; gap: 4px 18px; padding: 0;
  margin: 8px 0; list-style: none; }
table.kv th { font-weight: normal; color: var(--muted); }
.row { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.scroll { max-height: 480px; overflow: auto; }
img.figure { max-width: 100%; height: auto; }
img.figure.cm { width: 940px; }
img.thumb { display: block; image-rendering: pixelated; }
.pair { margin: 10px 0 16px; }
.pair-title { margin-bottom: 4px; }
.strip { display: flex; flex-wrap: wrap; gap: 8px; }
figure { margin: 0; }
figure.mini figcaption { font-size: 12px; text-align: center;
  color: var(--muted); }
.grid { display: grid; gap: 12px;
  grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); }
.tbox { display: flex; justify-content: center; background: var(--panel);
  border-radius: 4px; padding: 4px; }
figure.card figcaption { font-size: 12.5px; line-height: 1.4;
  margin-top: 6px; }
.id { font-family: var(--mono); font-size: 11px; color: var(--muted);
  overflow-wrap: anywhere; }
"""
