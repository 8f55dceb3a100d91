"""What an audit finds and the files it writes about it.

A `Finding` is one flagged image: `OUT/issues.csv` holds one row per finding
(`path,issue,score,related`, DESIGN.md "Audit output"). `OUT/manifest.jsonl`
holds one JSON object per example that passes:

    {"source": "folder:/abs/path/pets", "path": "train/cat/001.png",
     "split": "train", "label": 3, "class": "cat"}

`source` is the data spec the audit read (folder paths made absolute), `path`
the example's path relative to the dataset root (for folder sources the file's
path inside the directory or zip; for array sources such as `fashion_mnist`
the example id, e.g. "train/000123"), `split` the split it belongs to (for a
folder without split folders, the seeded holdout split the audit used),
`label` the class id and `class` its name. `jvision.data.manifest` loads such
a file as a training source.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterable

ISSUES = (
  "corrupt",
  "exact_duplicate",
  "near_duplicate",
  "leakage",
  "label_issue",
  "blurry",
  "dark",
  "light",
  "low_information",
  "odd_size",
  "odd_aspect_ratio",
)
CSV_HEADER = ("path", "issue", "score", "related")


@dataclasses.dataclass(frozen=True)
class Finding:
  """One flagged image.

  Attributes:
    path: the image's path relative to the dataset root.
    issue: one of ISSUES.
    score: how strongly the image shows the issue, in [0, 1] (1: certain or
      most severe); rows of one issue sort by it.
    related: the other image of a pair (duplicates, leakage), else "".
    detail: extra facts for the report (e.g. {"given": "shirt",
      "suggested": "t-shirt_top"}, {"reason": "truncated PNG"}); not in the
      CSV.
  """

  path: str
  issue: str
  score: float
  related: str = ""
  detail: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.issue not in ISSUES:
      raise ValueError(f"issue {self.issue!r} is not one of {ISSUES}")


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
  """Findings in ISSUES order, each issue by descending score, then path."""
  rank = {issue: i for i, issue in enumerate(ISSUES)}
  return sorted(findings, key=lambda f: (rank[f.issue], -f.score, f.path))


def write_issues_csv(path: str, findings: Iterable[Finding]) -> None:
  """Writes `issues.csv` (header `path,issue,score,related`)."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(CSV_HEADER)
    for finding in sort_findings(findings):
      writer.writerow(
        (finding.path, finding.issue, f"{finding.score:.4f}", finding.related)
      )


def read_issues_csv(path: str) -> list[Finding]:
  """Reads an `issues.csv` written by `write_issues_csv`."""
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    if tuple(reader.fieldnames or ()) != CSV_HEADER:
      raise ValueError(
        f"{path}: header {reader.fieldnames} is not {list(CSV_HEADER)}"
      )
    return [
      Finding(row["path"], row["issue"], float(row["score"]), row["related"])
      for row in reader
    ]


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
  """One line of `manifest.jsonl` (see the module docstring)."""

  source: str
  path: str
  split: str
  label: int
  class_name: str

  def to_json(self) -> str:
    return json.dumps(
      {
        "source": self.source,
        "path": self.path,
        "split": self.split,
        "label": self.label,
        "class": self.class_name,
      }
    )


def write_manifest(path: str, entries: Iterable[ManifestEntry]) -> int:
  """Writes `manifest.jsonl`; returns the number of lines."""
  count = 0
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for entry in entries:
      f.write(entry.to_json() + "\n")
      count += 1
  os.replace(tmp, path)
  return count
