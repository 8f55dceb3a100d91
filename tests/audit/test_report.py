"""Tests for jvision/audit/report.py."""

import base64
import html.parser
import io
import re

import numpy as np
import pytest
from PIL import Image

from jvision.audit import report
from jvision.audit.findings import ISSUES, Finding

SPECIAL = "train/shirt/<a&b>.png"
CLASSES = ("t-shirt_top", "shirt", "bag")


def _images() -> dict[str, np.ndarray]:
  """Synthetic images by path: gray 28x28, RGB 40x30 and a large 300x600."""
  rng = np.random.default_rng(0)
  gray = lambda: rng.integers(0, 256, (28, 28, 1), dtype=np.uint8)
  images = {f"train/img_{i:02d}.png": gray() for i in range(20)}
  images |= {f"test/img_{i:02d}.png": gray() for i in range(5)}
  images[SPECIAL] = gray()
  images["train/rgb.png"] = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
  images["train/big.png"] = np.zeros((300, 600, 3), np.uint8)
  return images


def _stat(issue, path, measure):
  detail = {"value": 3.0, "typical": 90.0, "measure": measure}
  return Finding(path, issue, 0.7, detail=detail)


def _findings() -> list[Finding]:
  """Every issue once or more: 2 corrupt, 2 pairs, 3 pair-less images."""
  pair = {"similarity": 0.991, "related_split": "test"}
  return [
    Finding("train/bad.png", "corrupt", 1.0, detail={"reason": "zero bytes"}),
    Finding("train/<x>.png", "corrupt", 1.0, detail={"reason": "not & PNG"}),
    Finding("train/img_01.png", "exact_duplicate", 1.0, "train/img_00.png"),
    Finding("train/img_02.png", "near_duplicate", 0.9, "train/img_03.png"),
    Finding("test/img_00.png", "leakage", 0.95, "train/img_04.png", pair),
    Finding(
      SPECIAL,
      "label_issue",
      0.8,
      detail={"given": "shirt", "suggested": "t-shirt_top", "confidence": 0.93},
    ),
    _stat("blurry", "train/img_05.png", "laplacian variance"),
    _stat("dark", "train/img_06.png", "mean brightness"),
    _stat("light", "train/img_07.png", "mean brightness"),
    _stat("low_information", "train/rgb.png", "entropy"),
    Finding(
      "train/big.png",
      "odd_size",
      0.9,
      detail={"size": "300x600", "typical": "28x28"},
    ),
    Finding(
      "train/big.png", "odd_aspect_ratio", 0.6, detail={"size": "300x600"}
    ),
  ]


def _summary(findings, **overrides) -> dict:
  counts = {issue: sum(f.issue == issue for f in findings) for issue in ISSUES}
  summary = {
    "source": "folder:/data/<pets>",
    "root": "/data/<pets>",
    "splits": {"train": 24, "test": 5},
    "class_names": list(CLASSES),
    "class_balance": {
      "train": {"t-shirt_top": 12, "shirt": 12, "bag": 0},
      "test": {"t-shirt_top": 2, "shirt": 2, "bag": 1},
    },
    "label_spec": {
      "path": "labels.json",
      "unknown": ["misc"],
      "missing": [],
      "empty": ["bag"],
    },
    "counts": counts,
    "passed": 20,
    "total": 31,
    "settings": {"near_duplicate_threshold": 0.95},
    "encoder": "pixels",
    "label_model": {
      "folds": 5,
      "out_of_fold_accuracy": 0.81,
      "classifier": "logistic regression",
    },
    "timings": {"decode": 1.25, "embed": 75.0},
    "created": "2025-01-01T00:00:00+00:00",
  }
  return summary | overrides


def _write(tmp_path, findings, max_per_issue=48, **summary) -> str:
  images = _images()
  path = tmp_path / "report.html"
  report.write_report(
    str(path),
    summary=_summary(findings, **summary),
    findings=findings,
    image_of=images.get,
    max_per_issue=max_per_issue,
  )
  assert path.is_file()
  return path.read_text(encoding="utf-8")


class _Collector(html.parser.HTMLParser):
  """Ids, in-page links and <img> sources of a page."""

  def __init__(self):
    super().__init__()
    self.ids, self.links, self.images = [], [], []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if "id" in attrs:
      self.ids.append(attrs["id"])
    if tag == "a" and attrs.get("href", "").startswith("#"):
      self.links.append(attrs["href"][1:])
    if tag == "img":
      self.images.append(attrs["src"])


def _parse(page: str) -> _Collector:
  collector = _Collector()
  collector.feed(page)
  return collector


def test_every_issue_has_a_linked_section(tmp_path):
  page = _write(tmp_path, _findings())
  parsed = _parse(page)
  for issue in ISSUES:
    assert f"id='issue-{issue}'" in page
  assert len(parsed.ids) == len(set(parsed.ids))
  assert set(parsed.links) <= set(parsed.ids)  # no dead TOC links
  assert {f"issue-{issue}" for issue in ISSUES} <= set(parsed.links)


def test_counts_table(tmp_path):
  page = _write(tmp_path, _findings())
  rows = re.findall(
    r"<a href='#issue-(\w+)'>\1</a></td><td class='num'>(\d+)</td>"
    r"<td class='num'>([^<]+)</td>",
    page,
  )
  table = {issue: (int(count), share) for issue, count, share in rows}
  assert table["corrupt"] == (2, "6.5%")  # 2 of 31 images
  assert table["exact_duplicate"] == (1, "3.2%")
  assert len(table) == len(ISSUES)


def test_header_totals_and_timings(tmp_path):
  page = _write(tmp_path, _findings())
  assert "folder:/data/&lt;pets&gt;" in page
  assert "<div class='v'>31</div><div class='k'>images</div>" in page
  # 11 distinct flagged paths (big.png twice), 20 passed.
  assert "<div class='v'>11</div><div class='k'>flagged images</div>" in page
  assert "<div class='v'>20</div><div class='k'>passed to manifest" in page
  assert "decode 1.2 s · embed 1 min 15 s · total 1 min 16 s" in page
  assert "81.0%" in page  # out-of-fold accuracy


def test_paths_and_names_are_escaped(tmp_path):
  page = _write(tmp_path, _findings())
  assert "<a&b>" not in page
  assert "&lt;a&amp;b&gt;.png" in page
  assert "train/<x>.png" not in page
  assert "not &amp; PNG" in page
  assert "given: <b>shirt</b>" in page
  assert "suggested: <b>t-shirt_top</b> (0.93)" in page


def test_image_count(tmp_path):
  findings = _findings()
  page = _write(tmp_path, findings)
  # 3 pairs show 2 images each; corrupt files none; 7 other findings one.
  assert page.count("<img ") == 3 * 2 + 7
  assert len(_parse(page).images) == 13
  assert "similarity <b>0.991</b>" in page


def test_undecodable_image_gets_a_placeholder(tmp_path):
  findings = [Finding("train/gone.png", "dark", 0.5, detail={})]
  page = _write(tmp_path, findings)
  assert page.count("<img ") == 0
  assert "no preview" in page


def test_truncation_note(tmp_path):
  findings = [
    Finding(f"train/img_{i:02d}.png", "blurry", i / 20, detail={})
    for i in range(20)
  ]
  page = _write(tmp_path, findings, max_per_issue=8)
  assert page.count("<img ") == 8
  assert "12 more in <a href='issues.csv'>issues.csv</a>" in page
  assert "Top 8 of 20 by score" in page
  # The top scores are the ones shown.
  assert "train/<wbr>img_19.png" in page
  assert "train/<wbr>img_11.png" not in page


def test_no_truncation_note_when_all_fit(tmp_path):
  page = _write(tmp_path, _findings())
  assert "more in" not in page


def test_label_spec_problems_are_highlighted(tmp_path):
  page = _write(tmp_path, _findings())
  assert "class='box warn'" in page
  assert "<b>unknown</b>" in page and "<code>misc</code>" in page
  assert "<b>missing</b>" not in page  # nothing missing


def test_label_spec_clean_and_absent(tmp_path):
  clean = {"path": "l.json", "unknown": [], "missing": [], "empty": []}
  assert "class='box ok'" in _write(tmp_path, [], label_spec=clean)
  assert "No label spec given" in _write(tmp_path, [], label_spec=None)


def test_class_balance(tmp_path):
  page = _write(tmp_path, _findings())
  assert "<td class='num empty'>0</td>" in page  # bag in train
  assert "a class has no images" in page
  assert "ratio 2.0×" in page  # test: 2 vs 1
  assert "<div class='bar' style='width:100.0%'>" in page


@pytest.mark.parametrize(
  "shape, expected",
  [
    ((28, 28, 1), (84, 84, 1)),  # x3, nearest-neighbour
    ((40, 30, 3), (80, 60, 3)),  # x2
    ((100, 100, 3), (100, 100, 3)),  # readable as is
    ((300, 600, 3), (64, 128, 3)),  # shrunk to 128 on the long side
    ((10, 400, 1), (3, 128, 1)),
  ],
)
def test_thumbnail_shapes(shape, expected):
  image = np.zeros(shape, np.uint8)
  assert report.thumbnail(image).shape == expected


def test_thumbnail_upscale_is_nearest_neighbour():
  image = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28, 1)
  thumb = report.thumbnail(image)
  np.testing.assert_array_equal(thumb[::3, ::3], image)
  np.testing.assert_array_equal(thumb[2::3, 2::3], image)


def test_png_data_uri_round_trips():
  image = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
  uri = report.png_data_uri(image)
  assert uri.startswith("data:image/png;base64,")
  data = base64.b64decode(uri.split(",", 1)[1])
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), image)
