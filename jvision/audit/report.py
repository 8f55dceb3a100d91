"""`OUT/report.html`: one self-contained page about an audit.

The page holds a header (source, totals, timings), a table of issue counts,
class balance per split with inline bars, the label-spec check, and one
section per issue that has findings: a grid of the top-scored images, each a
PNG thumbnail embedded as a data URI (small images upscaled with
nearest-neighbour so pixels stay sharp, large ones shrunk), captioned with
the finding's facts. Pairs (duplicates, leakage) show both images; corrupt
files are a table. Nothing is fetched from the network and there is no
JavaScript: the file can be mailed or opened offline.

Every string from the data (paths, class names, reasons, settings) goes
through `html.escape`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from jvision.audit.findings import ISSUES, Finding, sort_findings
from jvision.evaluate import html as html_lib
from jvision.evaluate.html import escape as _e
from jvision.evaluate.html import png_data_uri, thumbnail

# Issues whose findings name a second image in `related`.
PAIR_ISSUES = ("exact_duplicate", "near_duplicate", "leakage")
# Issues whose detail is {"value", "typical", "measure"}.
STAT_ISSUES = ("blurry", "dark", "light", "low_information")
# One line per issue: what it means and how it is scored.
EXPLANATIONS = {
  "corrupt": "The file cannot be decoded as an image (truncated, empty or "
  "not an image format); it is left out of the manifest.",
  "exact_duplicate": "The same pixels as another image of the same split, "
  "shown beside it; score is the pair's similarity (1: identical).",
  "near_duplicate": "Nearly the same picture as another of the same split "
  "(shifted, resized, cropped, noised, re-encoded, brighter or darker); "
  "score is the pair's best normalised cross-correlation after aligning "
  "shifts and zoom (at least the threshold, 0.99 by default).",
  "leakage": "The same or a near-same image is in two splits, so evaluation "
  "sees training data; the image of the later split (test after train) is "
  "flagged; score is the pair's similarity (1: identical pixels).",
  "label_issue": "A classifier trained out-of-fold on the other images "
  "predicts another class with confidence; score rises with how sure it is "
  "that the given label is wrong.",
  "blurry": "Little fine detail for its edges (mean |Laplacian| / mean "
  "|gradient|) compared with typical images of the dataset; score rises the "
  "further it falls below the median.",
  "dark": "Much darker than typical images: its highlights (99th-percentile "
  "brightness) far below the dataset median; score rises with the "
  "distance.",
  "light": "Washed out: raised shadows and squeezed contrast (5th-percentile "
  "brightness minus half the 1st-99th percentile range) far above the "
  "dataset median; score rises with the distance.",
  "low_information": "Almost uniform content (blank, single colour, little "
  "structure): grey-histogram entropy far below the dataset median; score "
  "rises as it falls.",
  "odd_size": "Size (square root of height x width) far from the dataset's "
  "typical one, and at least 2x off by default; score rises with the "
  "ratio.",
  "odd_aspect_ratio": "Width-to-height ratio far from typical, so resizing "
  "to a square distorts or crops it; score rises with the deviation.",
}


def write_report(
  path: str,
  *,
  summary: dict,
  findings: list[Finding],
  image_of: Callable[[str], np.ndarray | None],
  max_per_issue: int = 48,
) -> None:
  """Writes the audit's `report.html`.

  Args:
    path: the file to write (replaced atomically).
    summary: the audit summary (the dict saved as `summary.json`): source,
      root, splits, class_names, class_balance, label_spec, counts, passed,
      total, settings, encoder, label_model, timings, created.
    findings: every finding of the audit, in any order.
    image_of: maps a finding's path (or related path) to uint8 [H, W, C],
      C 1 or 3, at native size; None when the file cannot be decoded.
    max_per_issue: the most findings shown per issue, by descending score;
      the rest are only in `issues.csv`.
  """
  page = render_report(
    summary=summary,
    findings=findings,
    image_of=image_of,
    max_per_issue=max_per_issue,
  )
  html_lib.write_atomic(path, page)


def render_report(
  *,
  summary: dict,
  findings: list[Finding],
  image_of: Callable[[str], np.ndarray | None],
  max_per_issue: int = 48,
) -> str:
  """The page `write_report` writes, as a string (same arguments)."""
  by_issue = _group(findings)
  thumbs = _ThumbCache(image_of)
  sections = [
    _issue_section(issue, by_issue[issue], thumbs, max_per_issue)
    for issue in ISSUES
    if by_issue[issue]
  ]
  body = "\n".join(
    [
      _header(summary, findings),
      _toc(by_issue),
      _counts_section(summary, by_issue),
      _balance_section(summary),
      _label_spec_section(summary),
      *sections,
    ]
  )
  return html_lib.page(f"Audit: {summary.get('source', '')}", body, _CSS)


def _group(findings: Iterable[Finding]) -> dict[str, list[Finding]]:
  """Findings per issue (all ISSUES keys), each by descending score."""
  groups = {issue: [] for issue in ISSUES}
  for finding in sort_findings(findings):
    groups[finding.issue].append(finding)
  return groups


# ---------------------------------------------------------------- header ---


def _header(summary: dict, findings: list[Finding]) -> str:
  total = int(summary.get("total", 0))
  flagged = len({f.path for f in findings})
  passed = int(summary.get("passed", 0))
  stats = "".join(
    [
      _stat("images", f"{total:,}"),
      _stat("flagged images", f"{flagged:,}", _percent(flagged, total)),
      _stat("passed to manifest", f"{passed:,}", _percent(passed, total)),
      _stat("findings", f"{len(findings):,}"),
    ]
  )
  return (
    "<header id='summary'>\n<h1>Audit report</h1>\n"
    f"<div class='source'><code>{_e(summary.get('source', ''))}</code></div>\n"
    f"<div class='stats'>{stats}</div>\n"
    f"{_meta_list(summary)}\n{_settings(summary.get('settings') or {})}\n"
    "</header>"
  )


def _stat(label: str, value: str, sub: str = "") -> str:
  sub_html = f"<div class='sub'>{_e(sub)}</div>" if sub else ""
  return (
    f"<div class='stat'><div class='v'>{_e(value)}</div>"
    f"<div class='k'>{_e(label)}</div>{sub_html}</div>"
  )


def _percent(part: int, whole: int) -> str:
  """`part` as a share of `whole`; never rounds a nonzero share to 0 or a
  partial one to 100."""
  if not whole:
    return "–"
  share = 100 * part / whole
  if part == 0 or part == whole:
    return f"{share:.0f}%"
  if share < 0.01:
    return "<0.01%"
  if share > 99.9:
    return ">99.9%"
  return f"{share:.2f}%" if share < 1 else f"{share:.1f}%"


def _meta_list(summary: dict) -> str:
  splits = summary.get("splits") or {}
  rows = [
    ("root", f"<code>{_e(summary.get('root', ''))}</code>"),
    ("splits", _e(", ".join(f"{k}: {v:,}" for k, v in splits.items()))),
    ("classes", _e(len(summary.get("class_names") or ()))),
    ("embeddings", _e(summary.get("encoder", ""))),
    ("label model", _e(_label_model_text(summary.get("label_model")))),
    ("timings", _e(_timings_text(summary.get("timings") or {}))),
    ("created", _e(summary.get("created", ""))),
    ("files", _file_links()),
  ]
  items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
  return f"<dl class='meta'>{items}</dl>"


def _label_model_text(label_model: dict | None) -> str:
  if not label_model:
    return "none (label issues not checked)"
  return (
    f"{label_model.get('classifier', '')}, "
    f"{label_model.get('folds', '?')}-fold, out-of-fold accuracy "
    f"{100 * float(label_model.get('out_of_fold_accuracy', 0)):.1f}%"
  )


def _timings_text(timings: dict) -> str:
  parts = [f"{phase} {_seconds(s)}" for phase, s in timings.items()]
  if len(timings) > 1:
    parts.append(f"total {_seconds(sum(timings.values()))}")
  return " · ".join(parts)


def _seconds(seconds: float) -> str:
  if seconds < 60:
    return f"{seconds:.1f} s"
  minutes, rest = divmod(round(seconds), 60)
  return f"{minutes} min {rest:02d} s"


def _file_links() -> str:
  names = ("issues.csv", "manifest.jsonl", "summary.json")
  return " · ".join(f"<a href='{n}'>{n}</a>" for n in names)


def _settings(settings: dict) -> str:
  if not settings:
    return ""
  rows = "".join(
    f"<tr><td><code>{_e(k)}</code></td><td>{_e(v)}</td></tr>"
    for k, v in settings.items()
  )
  return (
    "<details class='settings'><summary>Settings (thresholds used)</summary>"
    f"<table>{rows}</table></details>"
  )


def _toc(by_issue: dict[str, list[Finding]]) -> str:
  links = [
    ("#counts", "Issue counts"),
    ("#balance", "Class balance"),
    ("#labels", "Label spec"),
  ]
  issue_links = "".join(
    f"<li><a href='#issue-{issue}'>{issue}</a> "
    f"<span class='muted'>({len(found):,})</span></li>"
    for issue, found in by_issue.items()
    if found
  )
  items = "".join(f"<li><a href='{h}'>{t}</a></li>" for h, t in links)
  flagged = (
    f"<li>Flagged images<ul>{issue_links}</ul></li>" if issue_links else ""
  )
  return f"<nav class='toc'><h2>Contents</h2><ul>{items}{flagged}</ul></nav>"


# ---------------------------------------------------------------- tables ---


def _counts_section(summary: dict, by_issue: dict[str, list[Finding]]) -> str:
  total = int(summary.get("total", 0))
  counts = summary.get("counts") or {}
  rows = "".join(
    _count_row(issue, int(counts.get(issue, len(found))), total, bool(found))
    for issue, found in by_issue.items()
  )
  return (
    "<section id='counts'><h2>Issue counts</h2>"
    "<table class='counts'><thead><tr><th>issue</th><th class='num'>count"
    "</th><th class='num'>% of images</th><th>what it means</th></tr>"
    f"</thead><tbody>{rows}</tbody></table></section>"
  )


def _count_row(issue: str, count: int, total: int, linked: bool) -> str:
  name = f"<a href='#issue-{issue}'>{issue}</a>" if linked else issue
  zero = " class='zero'" if count == 0 else ""
  return (
    f"<tr{zero}><td>{name}</td><td class='num'>{count:,}</td>"
    f"<td class='num'>{_percent(count, total)}</td>"
    f"<td class='explain'>{_e(EXPLANATIONS[issue])}</td></tr>"
  )


def _balance_section(summary: dict) -> str:
  balance = summary.get("class_balance") or {}
  if not balance:
    return (
      "<section id='balance'><h2>Class balance</h2>"
      "<p class='muted'>No class counts.</p></section>"
    )
  classes = _class_order(summary.get("class_names") or [], balance)
  splits = list(balance)
  head = "".join(f"<th colspan='2'>{_e(s)}</th>" for s in splits)
  rows = "".join(_balance_row(name, splits, balance) for name in classes)
  totals = "".join(
    f"<td class='num'>{sum(balance[s].values()):,}</td><td></td>"
    for s in splits
  )
  notes = "".join(_balance_note(s, balance[s], classes) for s in splits)
  return (
    "<section id='balance'><h2>Class balance</h2>"
    f"<ul class='notes'>{notes}</ul><div class='scroll'>"
    f"<table class='balance'><thead><tr><th>class</th>{head}</tr></thead>"
    f"<tbody>{rows}</tbody><tfoot><tr><td>total</td>{totals}</tr></tfoot>"
    "</table></div></section>"
  )


def _class_order(class_names: list[str], balance: dict) -> list[str]:
  """Spec order first, then any class only seen in the counts."""
  seen = dict.fromkeys(class_names)
  for counts in balance.values():
    seen.update(dict.fromkeys(counts))
  return list(seen)


def _balance_row(name: str, splits: list[str], balance: dict) -> str:
  counts = [int(balance[split].get(name, 0)) for split in splits]
  cells = "".join(
    _balance_cells(count, balance[split])
    for count, split in zip(counts, splits, strict=True)
  )
  cls = " class='empty'" if 0 in counts else ""
  return f"<tr><td{cls}>{_e(name)}</td>{cells}</tr>"


def _balance_cells(count: int, split_counts: dict) -> str:
  """A count cell and a bar cell; bars are relative to the split's largest."""
  largest = max(split_counts.values(), default=0)
  width = 100 * count / largest if largest else 0
  share = _percent(count, sum(split_counts.values()))
  cls = "num empty" if count == 0 else "num"
  return (
    f"<td class='{cls}'>{count:,}</td><td class='barcell' title='{share}'>"
    f"<div class='bar' style='width:{width:.1f}%'></div></td>"
  )


def _balance_note(split: str, counts: dict, classes: list[str]) -> str:
  values = [int(counts.get(name, 0)) for name in classes]
  if not values:
    return ""
  low, high = min(values), max(values)
  ratio = (
    f"ratio {high / low:.1f}×"
    if low
    else "<span class='bad'>a class has no images</span>"
  )
  return (
    f"<li><b>{_e(split)}</b>: {sum(values):,} images, smallest class "
    f"{low:,}, largest {high:,}; {ratio}</li>"
  )


def _label_spec_section(summary: dict) -> str:
  spec = summary.get("label_spec")
  head = "<section id='labels'><h2>Label spec</h2>"
  if not spec:
    return (
      f"{head}<p class='muted'>No label spec given: class names are the "
      "folder names (or the dataset's own).</p></section>"
    )
  problems = [
    ("unknown", "folders not in the spec", spec.get("unknown") or []),
    ("missing", "spec classes with no folder", spec.get("missing") or []),
    ("empty", "classes with no images", spec.get("empty") or []),
  ]
  path = f"<p>Spec: <code>{_e(spec.get('path', ''))}</code></p>"
  if not any(names for _, _, names in problems):
    return (
      f"{head}{path}<div class='box ok'>Every class folder matches the spec "
      "and every class has images.</div></section>"
    )
  items = "".join(
    f"<li><b>{key}</b> ({what}): "
    + ", ".join(f"<code>{_e(n)}</code>" for n in names)
    + "</li>"
    for key, what, names in problems
    if names
  )
  return (
    f"{head}{path}<div class='box warn'><b>The folders do not match the "
    f"label spec.</b><ul>{items}</ul></div></section>"
  )


# ---------------------------------------------------------------- images ---


class _ThumbCache:
  """`<img>` tags per path, each image decoded and encoded once."""

  def __init__(self, image_of: Callable[[str], np.ndarray | None]):
    self._image_of = image_of
    self._tags: dict[str, tuple[str, int]] = {}

  def _get(self, path: str) -> tuple[str, int]:
    if path not in self._tags:
      self._tags[path] = _img_tag(path, self._image_of(path))
    return self._tags[path]

  def tag(self, path: str) -> str:
    """The `<img>` (or a "no preview" box) for `path`."""
    return self._get(path)[0]

  def height(self, path: str) -> int:
    """The thumbnail's height in px (0 without an image)."""
    return self._get(path)[1]


def _img_tag(path: str, image: np.ndarray | None) -> tuple[str, int]:
  """An `<img>` of `image`'s thumbnail and its height in px."""
  if image is None:
    return "<div class='noimg'>no preview</div>", 0
  small = thumbnail(np.asarray(image, np.uint8))
  height, width = small.shape[:2]
  tag = (
    f"<img src='{png_data_uri(small)}' width='{width}' height='{height}' "
    f"alt='{_e(path)}' title='{_e(path)}'>"
  )
  return tag, height


# -------------------------------------------------------- issue sections ---


def _issue_section(
  issue: str, found: list[Finding], thumbs: _ThumbCache, max_per_issue: int
) -> str:
  shown = found[:max_per_issue]
  content = (
    _corrupt_table(shown) if issue == "corrupt" else _grid(shown, thumbs)
  )
  return (
    f"<section id='issue-{issue}' class='issue'><h2>{issue} "
    f"<span class='muted'>({len(found):,})</span></h2>"
    f"<p class='explain'>{_e(EXPLANATIONS[issue])}</p>"
    f"{_shown_note(len(shown), len(found))}{content}"
    f"{_more_note(len(found) - len(shown))}</section>"
  )


def _grid(shown: list[Finding], thumbs: _ThumbCache) -> str:
  """Cards of `shown` in a flowing grid; image boxes fit the tallest."""
  pairs = bool(shown) and shown[0].issue in PAIR_ISSUES
  card = _pair_card if pairs else _card
  cards = "\n".join(card(f, thumbs) for f in shown)
  paths = [p for f in shown for p in (f.path, f.related) if p]
  box = max([48] + [thumbs.height(p) for p in paths]) + 12
  kind = "grid pairs" if pairs else "grid"
  return f"<div class='{kind}' style='--thumb-h:{box}px'>\n{cards}\n</div>"


def _shown_note(shown: int, total: int) -> str:
  if shown == total:
    return ""
  return f"<p class='muted'>Top {shown:,} of {total:,} by score.</p>"


def _more_note(more: int) -> str:
  if more <= 0:
    return ""
  return (
    f"<p class='more'>{more:,} more in <a href='issues.csv'>issues.csv</a>.</p>"
  )


def _path(path: str) -> str:
  """`path` escaped, allowed to wrap after each "/"."""
  return _e(path).replace("/", "/<wbr>")


def _corrupt_table(found: list[Finding]) -> str:
  rows = "".join(
    f"<tr><td class='path'>{_path(f.path)}</td>"
    f"<td>{_e(f.detail.get('reason', ''))}</td></tr>"
    for f in found
  )
  return (
    "<table class='corrupt'><thead><tr><th>path</th><th>reason</th></tr>"
    f"</thead><tbody>{rows}</tbody></table>"
  )


def _card(finding: Finding, thumbs: _ThumbCache) -> str:
  facts = "".join(f"<div class='fact'>{fact}</div>" for fact in _facts(finding))
  return (
    f"<figure class='card'><div class='thumb'>{thumbs.tag(finding.path)}"
    f"</div><figcaption><div class='path'>{_path(finding.path)}</div>"
    f"{facts}{_score(finding.score)}</figcaption></figure>"
  )


def _pair_card(finding: Finding, thumbs: _ThumbCache) -> str:
  detail = finding.detail
  split = detail.get("related_split")
  split_tag = f" <span class='tag'>{_e(split)}</span>" if split else ""
  similarity = detail.get("similarity")
  fact = (
    f"<div class='fact'>similarity <b>{float(similarity):.3f}</b></div>"
    if similarity is not None
    else ""
  )
  return (
    "<figure class='card pair'><div class='sides'>"
    f"{_side(finding.path, 'flagged', thumbs)}"
    f"{_side(finding.related, 'related' + split_tag, thumbs)}"
    f"</div><figcaption>{fact}{_score(finding.score)}</figcaption></figure>"
  )


def _side(path: str, role: str, thumbs: _ThumbCache) -> str:
  """One image of a pair; `role` is trusted HTML."""
  image = thumbs.tag(path) if path else "<div class='noimg'>none</div>"
  return (
    f"<div class='side'><div class='thumb'>{image}</div>"
    f"<div class='role'>{role}</div>"
    f"<div class='path'>{_path(path)}</div></div>"
  )


def _score(score: float) -> str:
  width = 100 * min(max(score, 0.0), 1.0)
  return (
    f"<div class='score'><span class='meter'><span style='width:{width:.0f}%'>"
    f"</span></span> score {score:.2f}</div>"
  )


def _facts(finding: Finding) -> list[str]:
  """Caption lines (escaped HTML) for the finding's detail."""
  detail = finding.detail
  if finding.issue == "label_issue" and "given" in detail:
    return _label_facts(detail)
  if finding.issue in STAT_ISSUES and "value" in detail:
    return _stat_facts(detail)
  if "size" in detail:
    return _size_facts(detail)
  return [f"{_e(k)}: {_e(v)}" for k, v in detail.items()]


def _label_facts(detail: dict) -> list[str]:
  """given: shirt / suggested: t-shirt_top (0.93)."""
  confidence = detail.get("confidence")
  conf = f" ({float(confidence):.2f})" if confidence is not None else ""
  return [
    f"given: <b>{_e(detail['given'])}</b>",
    f"suggested: <b>{_e(detail.get('suggested', '?'))}</b>{conf}",
  ]


def _stat_facts(detail: dict) -> list[str]:
  """mean brightness: 4.1 / typical 72.9."""
  measure = _e(detail.get("measure", "value"))
  lines = [f"{measure}: <b>{float(detail['value']):.3g}</b>"]
  if detail.get("typical") is not None:
    lines.append(f"typical {float(detail['typical']):.3g}")
  return lines


def _size_facts(detail: dict) -> list[str]:
  """size 336x112 / typical 28x28 (sizes are HxW)."""
  lines = [f"size <b>{_e(detail['size'])}</b> (HxW)"]
  if detail.get("typical"):
    lines.append(f"typical {_e(detail['typical'])}")
  return lines


_CSS = """
.path { font-family: var(--mono); overflow-wrap: anywhere; font-size: 12px; }
tr.zero td { color: var(--muted); }
.source code { font-size: 15px; }
.stats { margin: 16px 0; }
.stat { min-width: 160px; }
.stat .sub { font-size: 13px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr;
  gap: 2px 18px; margin: 0 0 8px; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; overflow-wrap: anywhere; }
details.settings { margin: 8px 0; }
details.settings summary { cursor: pointer; color: var(--accent); }
tfoot td { font-weight: 600; border-top: 2px solid var(--line); }
table.counts td.explain { color: var(--muted); max-width: 640px; }
nav.toc h2 { border: 0; margin-top: 16px; padding-top: 0; font-size: 16px; }
nav.toc ul { margin: 0; padding-left: 20px; }
nav.toc ul ul { columns: 3 200px; }
.notes { margin: 0 0 8px; padding-left: 20px; }
.scroll { max-height: 560px; max-width: 100%; overflow: auto;
  display: inline-block; border: 1px solid var(--line); }
table.balance td.barcell { width: 180px; min-width: 120px;
  vertical-align: middle; }
.bar { height: 12px; background: var(--accent); border-radius: 2px; }
td.empty, .bad { color: var(--bad); font-weight: 600; }
.box { border-radius: 6px; padding: 10px 14px; margin: 8px 0;
  border-left: 5px solid; }
.box ul { margin: 6px 0 0; padding-left: 20px; }
.box.warn { background: var(--warn-bg); border-color: var(--warn); }
.box.ok { background: var(--ok-bg); border-color: var(--ok); }
p.explain { color: var(--muted); margin: 0 0 8px; max-width: 900px; }
p.more { font-weight: 600; }
.grid { display: grid; gap: 12px;
  grid-template-columns: repeat(auto-fill, minmax(168px, 1fr)); }
.grid.pairs { grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
.thumb { height: var(--thumb-h, 140px); display: flex; align-items: center;
  justify-content: center; background: var(--panel); border-radius: 4px; }
.thumb img { display: block; max-width: 100%; height: auto;
  image-rendering: pixelated; }
.noimg { color: var(--muted); font-size: 12px; }
figcaption { font-size: 12.5px; line-height: 1.4; margin-top: 6px; }
figcaption .path { margin-bottom: 2px; }
figcaption b { white-space: nowrap; }
.score { display: flex; align-items: center; gap: 6px; color: var(--muted); }
.meter { display: inline-block; width: 48px; height: 6px; background:
  var(--line); border-radius: 3px; overflow: hidden; }
.meter span { display: block; height: 100%; background: var(--bad); }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; }
.side { min-width: 0; }
.role { font-size: 12px; color: var(--muted); margin-top: 4px; }
.tag { background: var(--warn-bg); color: var(--warn); border-radius: 3px;
  padding: 0 4px; font-size: 11.5px; }
table.corrupt td.path { max-width: 640px; }
"""
