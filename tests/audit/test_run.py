"""`jvision audit` end to end on a small real folder with planted issues."""

import csv
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from helpers import REPO, jpeg_bytes, png_bytes, shifted, tiny_config, xla_flags
from PIL import Image, ImageFilter

from jvision.audit import defaults, run
from jvision.audit.findings import CSV_HEADER, ISSUES, read_issues_csv
from jvision.data.dataset import DataError

PER_CLASS = {"train": 14, "test": 4}


def _build(root: pathlib.Path, digits, labels) -> dict[str, tuple[str, str]]:
  """Writes the folder; returns {planted path: (issue, related)}."""
  taken = {}
  for split, n in PER_CLASS.items():
    for digit in range(10):
      picks = np.flatnonzero(labels == digit)
      picks = picks[:n] if split == "train" else picks[-n:]
      for k, i in enumerate(picks):
        taken[f"{split}/{digit}/{k:03d}.png"] = digits[i]
  planted = {}

  def put(path, data: bytes, issue=None, related=""):
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(data)
    if issue:
      planted[path] = (issue, related)

  for path, image in taken.items():
    put(path, png_bytes(image))
  a, b, c = (
    taken["train/3/000.png"],
    taken["train/5/001.png"],
    taken["train/7/002.png"],
  )
  put(
    "train/3/copy_of_000.png",
    png_bytes(a),
    "exact_duplicate",
    "train/3/000.png",
  )
  put(
    "train/5/shifted.png",
    png_bytes(shifted(b, 2, -1)),
    "near_duplicate",
    "train/5/001.png",
  )
  put("test/7/leaked.png", png_bytes(c), "leakage", "train/7/002.png")
  # Quality issues on digits that are not in the folder otherwise (a
  # darkened copy of an image that is there is also its near duplicate).
  spare = {d: digits[np.flatnonzero(labels == d)[500]] for d in range(10)}
  dark = (spare[1] * 0.25).astype(np.uint8)
  put("train/1/dark.png", png_bytes(dark), "dark")
  blurred = Image.fromarray(spare[2]).filter(ImageFilter.GaussianBlur(1.8))
  put("train/2/blurry.png", png_bytes(np.asarray(blurred)), "blurry")
  big = Image.fromarray(spare[4]).resize((96, 96))
  put("train/4/big.png", png_bytes(np.asarray(big)), "odd_size")
  put("train/6/empty.png", b"", "corrupt")
  put(
    "train/6/truncated.png", png_bytes(taken["train/6/006.png"])[:60], "corrupt"
  )
  put(
    "train/8/broken.jpg",
    jpeg_bytes(taken["train/8/007.png"], quality=90)[:200],
    "corrupt",
  )
  put("train/9/text.png", b"<html>not an image</html>", "corrupt")
  return planted


def _tree_digest(root: pathlib.Path) -> dict[str, str]:
  return {
    str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted(root.rglob("*"))
    if p.is_file()
  } | {
    str(p.relative_to(root)) + "/": str(p.stat().st_mtime_ns)
    for p in sorted(root.rglob("*"))
    if p.is_dir()
  }


@pytest.fixture(scope="module")
def audited(tmp_path_factory, shared_data):
  """(data root, OUT, planted, summary, digest before) of one audit."""
  from jvision import data

  ds = data.load(f"idx:{shared_data / 'mnist'}", "test", progress=False)
  tmp = tmp_path_factory.mktemp("audit")
  root = tmp / "digits"
  planted = _build(root, ds.images[..., 0], ds.labels)
  before = _tree_digest(root)
  out = tmp / "out"
  summary = run.run_audit(f"folder:{root}", str(out), progress=False)
  return root, out, planted, summary, before


def test_every_planted_issue_is_found(audited):
  root, out, planted, summary, _ = audited
  findings = read_issues_csv(str(out / "issues.csv"))
  by_issue = {}
  for f in findings:
    by_issue.setdefault(f.issue, []).append(f)
  for path, (issue, related) in planted.items():
    hits = [
      f
      for f in by_issue.get(issue, [])
      if path in (f.path, f.related)
      and (
        not related
        or related
        in (
          f.path,
          f.related,
        )
      )
    ]
    assert hits, f"{issue} {path} not found"
  assert summary["counts"]["corrupt"] == 4
  assert summary["counts"]["exact_duplicate"] == 1
  assert summary["counts"]["leakage"] == 1
  assert summary["total"] == 10 * sum(PER_CLASS.values()) + len(planted)


def test_issues_csv_format(audited):
  _, out, _, summary, _ = audited
  with open(out / "issues.csv", newline="") as f:
    rows = list(csv.reader(f))
  assert tuple(rows[0]) == CSV_HEADER
  for path, issue, score, related in rows[1:]:
    assert issue in ISSUES
    assert 0.0 <= float(score) <= 1.0
    assert not os.path.isabs(path) and path.split("/")[0] in ("train", "test")
    assert related == "" or related.split("/")[0] in ("train", "test")
  assert len(rows) - 1 == sum(summary["counts"].values())
  reasons = {
    f.path
    for f in read_issues_csv(str(out / "issues.csv"))
    if f.issue == "corrupt"
  }
  assert reasons == {
    "train/6/empty.png",
    "train/6/truncated.png",
    "train/8/broken.jpg",
    "train/9/text.png",
  }


def test_the_source_folder_is_unchanged(audited):
  root, _, _, _, before = audited
  assert _tree_digest(root) == before


def test_outputs_and_report(audited):
  root, out, planted, summary, _ = audited
  assert sorted(os.listdir(out)) == sorted(run.OUTPUTS)
  assert (
    json.loads((out / "summary.json").read_text())["total"]
    == (summary["total"])
  )
  page = (out / "report.html").read_text()
  for issue in ("corrupt", "exact_duplicate", "leakage", "dark", "blurry"):
    assert f"<section id='issue-{issue}'" in page
  balance = summary["class_balance"]
  assert balance["test"]["7"] == PER_CLASS["test"] + 1  # + the leaked copy
  assert set(summary["timings"]) >= {"read", "quality", "duplicates", "total"}


def test_manifest_drops_excluded_issues_and_trains(audited, tmp_path):
  root, out, planted, summary, _ = audited
  lines = [
    json.loads(x) for x in (out / "manifest.jsonl").read_text().split("\n") if x
  ]
  assert len(lines) == summary["passed"]
  paths = {x["path"] for x in lines}
  excluded = set(defaults.DEFAULT_EXCLUDE.split(","))
  for path, (issue, _) in planted.items():
    assert (path in paths) == (issue not in excluded), path
  assert {x["source"] for x in lines} == {f"folder:{root}"}
  assert all(x["class"] == str(x["label"]) for x in lines)
  # One flag away from training on the cleaned set.
  from jvision.train import supervised

  config = tiny_config(
    **{
      "data.manifest": str(out / "manifest.jsonl"),
      "data.max_per_class": None,
      "data.image_size": 28,  # the odd-size image is kept, and resized
    }
  )
  result = supervised.train_and_evaluate(config, str(tmp_path / "wd"))
  assert np.isfinite(result["train"]["loss"])


def test_label_spec_is_validated_against_the_folders(audited, tmp_path):
  root, _, _, _, _ = audited
  names = ["zero", "one", "two", "three", "four", "five", "six", "seven"]
  spec = {
    "name": "digits",
    "classes": [
      {"id": i, "name": n, "aliases": [str(i)]} for i, n in enumerate(names)
    ]
    + [{"id": 8, "name": "eight", "aliases": ["8"]}]
    + [{"id": 9, "name": "ten", "aliases": []}],
  }
  labels = tmp_path / "labels.json"
  labels.write_text(json.dumps(spec))
  out = tmp_path / "out"
  config = defaults.audit_config()
  config.label_issue.enabled = False
  summary = run.run_audit(
    f"folder:{root}",
    str(out),
    labels=str(labels),
    config=config,
    progress=False,
  )
  check = summary["label_spec"]
  assert check["unknown"] == ["9"]
  assert check["missing"] == ["ten"]
  assert check["empty"] == []
  manifest = (out / "manifest.jsonl").read_text()
  assert '"class": "nine"' not in manifest and "/9/" not in manifest
  assert '"class": "three"' in manifest


def test_output_directory_safety(audited, tmp_path):
  root, _, _, _, _ = audited
  with pytest.raises(DataError, match="inside the dataset folder"):
    run.run_audit(f"folder:{root}", str(root / "audit"), progress=False)
  busy = tmp_path / "busy"
  busy.mkdir()
  (busy / "notes.txt").write_text("mine")
  with pytest.raises(DataError, match="non-empty directory"):
    run.run_audit(f"folder:{root}", str(busy), progress=False)
  assert (busy / "notes.txt").read_text() == "mine"
  with pytest.raises(ValueError, match="unknown issues"):
    config = defaults.audit_config()
    config.exclude = "corrupt,blury"
    run.run_audit(f"folder:{root}", str(tmp_path / "o"), config=config)


def test_cli_audit(audited, tmp_path):
  root, _, _, _, _ = audited
  out = tmp_path / "cli_out"
  command = [
    sys.executable,
    "-m",
    "jvision.cli",
    "audit",
    f"--data=folder:{root}",
    f"--out={out}",
    "--audit.label_issue.enabled=False",
    "--audit.near_duplicate.threshold=0.995",
  ]
  env = {**os.environ, "XLA_FLAGS": xla_flags()}
  done = subprocess.run(
    command, cwd=REPO, capture_output=True, text=True, env=env, timeout=300
  )
  assert done.returncode == 0, done.stderr[-2000:]
  assert "corrupt" in done.stdout and "manifest.jsonl" in done.stdout
  settings = json.loads((out / "summary.json").read_text())["settings"]
  assert settings["near_duplicate"]["threshold"] == 0.995
  bad = subprocess.run(
    [*command[:4], f"--data=folder:{root}", f"--out={root}/x"],
    cwd=REPO,
    capture_output=True,
    text=True,
    env=env,
    timeout=300,
  )
  assert bad.returncode == 1
  assert "inside the dataset folder" in bad.stderr


def test_a_zip_is_audited_like_its_folder(audited, tmp_path):
  root, out, _, summary, _ = audited
  archive = tmp_path / "digits.zip"
  with zipfile.ZipFile(archive, "w") as z:
    for path in sorted(root.rglob("*")):
      if path.is_file():
        z.write(path, f"digits/{path.relative_to(root)}")  # a wrapper folder
  before = hashlib.sha256(archive.read_bytes()).hexdigest()
  config = defaults.audit_config()
  config.label_issue.enabled = False
  zipped = run.run_audit(
    f"folder:{archive}", str(tmp_path / "out"), config=config, progress=False
  )
  assert hashlib.sha256(archive.read_bytes()).hexdigest() == before
  assert zipped["total"] == summary["total"]
  folder_rows = {
    (f.path, f.issue)
    for f in read_issues_csv(str(out / "issues.csv"))
    if f.issue != "label_issue"
  }
  zip_rows = {
    (f.path, f.issue)
    for f in read_issues_csv(str(tmp_path / "out" / "issues.csv"))
  }
  # Paths are relative to the zip's root, wrapper folder included.
  assert zip_rows == {("digits/" + p, i) for p, i in folder_rows}
