"""`jvision audit` on planted issues: precision, recall and speed.

    python -m benchmarks.audit [--skip-build]
        [--encoder=fashion_mnist=WORKDIR,cifar10=WORKDIR]
        [--full-speed] [--rerun-cleanvision]

Planted part: builds the planted sets of `benchmarks.planted` (Fashion-MNIST
and CIFAR-10, 5,000 real images each, 720 planted issues; `--skip-build`
reuses them when present), runs `jvision audit --data=folder:SET
--out=SET_audit` on each in a subprocess with an empty `$JVISION_CACHE`,
times it, and scores OUT/issues.csv against SET/truth.csv per issue type:

  * exact_duplicate, near_duplicate, leakage: a finding is correct when its
    path and related are the planted copy and its source (either way round)
    or, for exact duplicates, any two members of one planted group (a source
    and its copies). A planted copy is recalled when a correct finding names
    it, as path or related.
  * the other issues: a finding is correct when its path is planted with
    that issue.

Precision is correct findings over all findings of the type (None for a
type with nothing planted, e.g. low_information; its findings are still
counted). The base
images are real data with their own near-duplicates and label errors: a
finding that touches no planted image or source counts as a false positive
all the same (`fp_unplanted`, with examples), as does a finding on an image
planted with another issue (`fp_other_planted`). The targets (recall >=
0.95 for corrupt, exact_duplicate, leakage; >= 0.9 for near_duplicate,
blurry, dark, odd_size; label_issue recall >= 0.6 at precision >= 0.5) are
checked per set. Results: benchmarks/results/audit_planted.json.

Speed part (`--full-speed`): all 70,000 Fashion-MNIST images (train + test
IDX) as PNG files in benchmarks/workdirs/fashion_mnist_png/{train,test}/
<class>/ (written once, about 15 s), timed under `jvision audit` and under
cleanvision's `Imagelab(data_path=...).find_issues()` (default issue types,
its default n_jobs), which runs from its own venv,
benchmarks/workdirs/cleanvision-venv (created with `pip install cleanvision`
when missing). The 70k cleanvision result is cached in
benchmarks/workdirs/cleanvision_fashion_mnist_png.json (372 s on a shared
2-core VM; `--rerun-cleanvision` redoes it). cleanvision also runs on
the planted Fashion-MNIST set and is scored the same way on the types it
has (its exact_duplicates / near_duplicates sets are read as pairs: a set
spanning train and test gives leakage findings for its test members; each
other member is paired with its planted partner in the set where it has
one, else with the set's first member). cleanvision stops on unreadable
files (PIL's "image file is truncated"), so it gets only the files PIL can
open; it has no corrupt or label_issue detection. Results:
benchmarks/results/audit_speed.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from PIL import Image

from benchmarks import common, planted
from jvision.audit import findings as findings_lib
from jvision.audit.findings import ISSUES, Finding
from jvision.data import sources

WORKDIRS = pathlib.Path(__file__).resolve().parent / "workdirs"
FULL_DIR = WORKDIRS / "fashion_mnist_png"
CLEANVISION_VENV = WORKDIRS / "cleanvision-venv"
CLEANVISION_CACHE = WORKDIRS / "cleanvision_fashion_mnist_png.json"
PAIR_ISSUES = ("exact_duplicate", "near_duplicate", "leakage")
KIND_ISSUES = PAIR_ISSUES + ("corrupt", "odd_size", "odd_aspect_ratio")
TARGETS = {
  "corrupt": {"recall": 0.95},
  "exact_duplicate": {"recall": 0.95},
  "leakage": {"recall": 0.95},
  "near_duplicate": {"recall": 0.9},
  "blurry": {"recall": 0.9},
  "dark": {"recall": 0.9},
  "odd_size": {"recall": 0.9},
  "label_issue": {"recall": 0.6, "precision": 0.5},
}
CLEANVISION_ISSUES = {  # cleanvision name -> ours
  "exact_duplicates": "exact_duplicate",
  "near_duplicates": "near_duplicate",
  "blurry": "blurry",
  "dark": "dark",
  "light": "light",
  "low_information": "low_information",
  "odd_size": "odd_size",
  "odd_aspect_ratio": "odd_aspect_ratio",
}
MAX_EXAMPLES = 5  # Unplanted false positives listed per issue.

# Runs inside the cleanvision venv: argv = data root, output JSON, "1" to
# pass only the files PIL can open. Paths in the output are relative.
_CLEANVISION_RUNNER = """
import json, os, sys, time
import cleanvision
from cleanvision import Imagelab
from cleanvision.utils.utils import get_filepaths
from PIL import Image

root, out, readable_only = os.path.abspath(sys.argv[1]), *sys.argv[2:]
def readable(path):
  try:
    Image.open(path).copy()
    return True
  except Exception:
    return False
start = time.perf_counter()
paths = get_filepaths(root) if readable_only == "1" else []
kept = [p for p in paths if readable(p)]
skipped = sorted(set(paths) - set(kept))
filter_seconds = time.perf_counter() - start
start = time.perf_counter()
lab = Imagelab(filepaths=kept) if paths else Imagelab(data_path=root)
lab.find_issues()
seconds = time.perf_counter() - start
rel = lambda p: os.path.relpath(p, root)
issues = lab.issues
flags = {
  c[3:-6]: sorted(rel(p) for p in issues.index[issues[c]])
  for c in issues.columns if c.startswith("is_") and c.endswith("_issue")
}
sets = {
  k: [sorted(rel(p) for p in s) for s in lab.info[k]["sets"]]
  for k in ("exact_duplicates", "near_duplicates")
}
json.dump({
  "version": cleanvision.__version__, "seconds": seconds,
  "filter_seconds": filter_seconds, "images": len(issues),
  "skipped": [rel(p) for p in skipped], "flags": flags, "sets": sets,
}, open(out, "w"))
"""


def run_audit(
  data: pathlib.Path,
  out: pathlib.Path,
  encoder: str | None,
  extra: tuple[str, ...] = (),
):
  """Runs `jvision audit` cold (empty $JVISION_CACHE) into a fresh `out`.

  Returns:
    The wall time in seconds.
  """
  if out.exists():
    shutil.rmtree(out)  # The benchmark's own output; never a stale CSV.
  command = [
    sys.executable,
    "-m",
    "jvision.cli",
    "audit",
    f"--data=folder:{data}",
    f"--out={out}",
  ]
  if encoder:
    command.append(f"--encoder={encoder}")
  command += extra
  with tempfile.TemporaryDirectory() as cache:
    env = {**os.environ, "JVISION_CACHE": cache}
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
  if result.returncode:
    raise SystemExit(
      f"{' '.join(command)} failed with exit code {result.returncode}:\n"
      f"{result.stderr[-3000:]}"
    )
  print(f"jvision audit {data.name}: {seconds:.1f} s")
  return seconds


def audit_phases(out: pathlib.Path) -> dict | None:
  """The per-phase timings the audit wrote to OUT/summary.json, if any."""
  path = out / "summary.json"
  return json.loads(path.read_text()).get("timings") if path.exists() else None


def pair_groups(truth: list[planted.Truth], issue: str) -> dict[str, str]:
  """Planted path -> its group (the source's path) for a pair issue."""
  groups = {}
  for row in truth:
    if row.issue == issue:
      groups[row.path] = groups[row.related] = row.related
  return groups


def unique(flags: list[Finding], issue: str) -> list[Finding]:
  """The findings of one issue, one per path (per pair for pair issues)."""
  seen, kept = set(), []
  for f in flags:
    if f.issue != issue:
      continue
    key = frozenset((f.path, f.related)) if issue in PAIR_ISSUES else f.path
    if key not in seen:
      seen.add(key)
      kept.append(f)
  return kept


def correct(f: Finding, rows, groups) -> bool:
  """Whether finding f is right (see the module docstring)."""
  if f.issue not in PAIR_ISSUES:
    return f.path in rows
  group = groups.get(f.path)
  return (
    bool(f.related)
    and f.path != f.related
    and group is not None
    and (group == groups.get(f.related))
  )


def recall_by_kind(rows: list[planted.Truth], recalled: set[str]) -> dict:
  """Recall per planted variant (the part of `detail` before ':')."""
  counts = collections.defaultdict(lambda: [0, 0])
  for row in rows:
    kind = row.detail.split(":")[0]
    counts[kind][0] += row.path in recalled
    counts[kind][1] += 1
  return {kind: round(hit / n, 4) for kind, (hit, n) in sorted(counts.items())}


def ratio(num: int, den: int) -> float | None:
  return round(num / den, 4) if den else None


def score_issue(issue, flags, truth, involved) -> dict:
  """Planted, flagged, true positives, precision and recall of one issue.

  `involved[issue]`: the paths whose findings count as fp_other_planted
  rather than fp_unplanted when wrong.
  """
  rows = [t for t in truth if t.issue == issue]
  paths = {t.path for t in rows}
  groups = pair_groups(truth, issue)
  kept = unique(flags, issue)
  hits = [f for f in kept if correct(f, paths, groups)]
  covered = {f.path for f in hits} | {f.related for f in hits}
  misses = [f for f in kept if not correct(f, paths, groups)]
  unplanted = [f for f in misses if not {f.path, f.related} & involved[issue]]
  record = {
    "planted": len(rows),
    "flagged": len(kept),
    "true_positives": len(hits),
    "recalled": len(paths & covered),
    "precision": ratio(len(hits), len(kept)) if rows else None,
    "recall": ratio(len(paths & covered), len(rows)),
    "fp_unplanted": len(unplanted),
    "fp_other_planted": len(misses) - len(unplanted),
    "examples_unplanted": [f.path for f in unplanted[:MAX_EXAMPLES]],
  }
  if issue in KIND_ISSUES and rows:
    record["recall_by_kind"] = recall_by_kind(rows, paths & covered)
  return record


def score(flags: list[Finding], truth: list[planted.Truth]) -> dict:
  """Per issue type scores of `flags` against truth.csv rows."""
  altered = {t.path for t in truth}
  copied = altered | {t.related for t in truth if t.related}
  # A source is pristine: only a duplicate finding on it involves a plant.
  involved = {i: copied if i in PAIR_ISSUES else altered for i in ISSUES}
  return {issue: score_issue(issue, flags, truth, involved) for issue in ISSUES}


def check_targets(scores: dict) -> dict:
  """{issue: {"target": ..., "met": bool}} for TARGETS."""
  checked = {}
  for issue, target in TARGETS.items():
    values = scores.get(issue) or {}
    met = all(
      values.get(metric) is not None and values[metric] >= bound
      for metric, bound in target.items()
    )
    checked[issue] = {"target": target, "met": met}
  return checked


def print_table(title: str, scores: dict, targets: dict | None = None):
  print(f"\n{title}")
  print(
    f"  {'issue':18s} {'planted':>7s} {'flagged':>7s} {'TP':>5s} "
    f"{'prec':>6s} {'recall':>6s} {'fp_unpl':>7s}  target"
  )
  for issue, s in scores.items():
    if s is None:
      print(f"  {issue:18s} (not supported)")
      continue
    target = ""
    if targets and issue in targets:
      bounds = ", ".join(f"{m}>={v}" for m, v in TARGETS[issue].items())
      target = f"{bounds}: {'met' if targets[issue]['met'] else 'NOT met'}"
    print(
      f"  {issue:18s} {s['planted']:7d} {s['flagged']:7d} "
      f"{s['true_positives']:5d} {_fmt(s['precision'])} "
      f"{_fmt(s['recall'])} {s['fp_unplanted']:7d}  {target}"
    )


def _fmt(value: float | None) -> str:
  return f"{value:6.3f}" if value is not None else f"{'-':>6s}"


def ensure_planted(root: pathlib.Path, skip_build: bool) -> list[str]:
  """Builds the planted sets unless --skip-build finds them; their names."""
  settings = {"size": planted.DEFAULT_SIZE, "seed": planted.DEFAULT_SEED}
  for source in planted.SOURCES:
    if not (skip_build and planted.is_built(root, source, **settings)):
      counts, files = planted.build(root, source, **settings)
      planted.print_counts(source, counts, files)
  return list(planted.SOURCES)


def audit_planted_set(root: pathlib.Path, name: str, encoder) -> dict:
  """Audits one planted set and scores it."""
  suffix = "_encoder" if encoder else ""
  data, out = root / name, root / f"{name}_audit{suffix}"
  seconds = run_audit(data, out, encoder)
  flags = findings_lib.read_issues_csv(str(out / "issues.csv"))
  truth = planted.read_truth(data / "truth.csv")
  scores = score(flags, truth)
  targets = check_targets(scores)
  print_table(
    f"jvision audit on planted {name}"
    + (f" (encoder {encoder})" if encoder else " (built-in features)"),
    scores,
    targets,
  )
  return {
    "audit_seconds": round(seconds, 2),
    "audit_phases": audit_phases(out),
    "settings": json.loads((data / "planted.json").read_text()),
    "scores": scores,
    "targets": targets,
    "all_targets_met": all(t["met"] for t in targets.values()),
  }


def parse_encoders(text: str | None) -> dict[str, str]:
  """{set name: encoder workdir} from "fashion_mnist=DIR,cifar10=DIR"."""
  encoders = {}
  for item in (text or "").split(","):
    if item.strip():
      name, sep, workdir = item.partition("=")
      if not sep or name not in planted.SOURCES:
        raise SystemExit(
          f"--encoder item {item!r} is not SET=WORKDIR with SET in "
          f"{list(planted.SOURCES)}"
        )
      encoders[name] = workdir
  return encoders


def benchmark_planted(args) -> dict:
  root = pathlib.Path(args.out)
  names = ensure_planted(root, args.skip_build)
  encoders = parse_encoders(args.encoder)
  record = {}
  for name in names:
    record[name] = audit_planted_set(root, name, None)
    if name in encoders:
      record[f"{name}+encoder"] = audit_planted_set(root, name, encoders[name])
  return {
    "sets": record,
    "encoder": encoders,
    "method": (
      "jvision audit on the planted sets of benchmarks/planted.py, cold "
      "(empty JVISION_CACHE); see benchmarks/audit.py for the matching rules"
    ),
  }


# --- Speed: 70,000 Fashion-MNIST PNGs, jvision vs cleanvision. ---


def write_full_fashion_mnist(root: pathlib.Path) -> int:
  """Writes train + test of Fashion-MNIST as PNGs once; returns the count."""
  marker = root / ".complete"
  if marker.exists():
    return int(marker.read_text())
  count = 0
  for split in ("train", "test"):
    data = sources.load("fashion_mnist", split, progress=False)
    for i, (pixels, label) in enumerate(
      zip(data.images, data.labels, strict=True)
    ):
      folder = root / split / data.class_names[label]
      folder.mkdir(parents=True, exist_ok=True)
      Image.fromarray(pixels[..., 0], "L").save(folder / f"{i:05d}.png")
      count += 1
  marker.write_text(str(count))
  return count


def ensure_cleanvision() -> pathlib.Path:
  """The cleanvision venv's python, creating the venv when missing."""
  python = CLEANVISION_VENV / "bin" / "python"
  if not python.exists():
    print(f"creating {CLEANVISION_VENV} (pip install cleanvision)")
    subprocess.run([sys.executable, "-m", "venv", CLEANVISION_VENV], check=True)
    pip = [python, "-m", "pip", "install", "-q", "cleanvision"]
    subprocess.run(pip, check=True)
  return python


def run_cleanvision(root: pathlib.Path, readable_only: bool) -> dict:
  """cleanvision's flags and duplicate sets on a folder, and its time."""
  python = ensure_cleanvision()
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "cleanvision.json"
    command = [python, "-c", _CLEANVISION_RUNNER, root, out]
    command.append("1" if readable_only else "0")
    subprocess.run(command, check=True, capture_output=True)
    result = json.loads(out.read_text())
  print(f"cleanvision on {root.name}: {result['seconds']:.1f} s")
  return result


def partners(truth: list[planted.Truth]) -> dict[str, set[str]]:
  """Planted path -> the paths it was copied from or to."""
  linked = collections.defaultdict(set)
  for row in truth:
    if row.related:
      linked[row.path].add(row.related)
      linked[row.related].add(row.path)
  return linked


def _pair_with(path: str, candidates: list[str], linked) -> str:
  """path's planted partner among candidates, else the first candidate."""
  matches = sorted(linked.get(path, set()) & set(candidates))
  return matches[0] if matches else candidates[0]


def set_findings(members: list[str], issue: str, linked) -> list[Finding]:
  """A cleanvision duplicate set as pairs (see the module docstring)."""
  by_split = collections.defaultdict(list)
  for path in sorted(members):
    by_split[path.split("/")[0]].append(path)
  train = by_split.get("train", [])
  found = []
  for split, group in by_split.items():
    for path in group[1:]:
      related = _pair_with(path, [p for p in group if p != path], linked)
      found.append(Finding(path, issue, 1.0, related))
    if group and split != "train" and train:
      found += [
        Finding(p, "leakage", 1.0, _pair_with(p, train, linked)) for p in group
      ]
  return found


def cleanvision_findings(result: dict, truth) -> list[Finding]:
  """cleanvision's output as our findings."""
  linked = partners(truth)
  found = []
  for name, paths in result["flags"].items():
    issue = CLEANVISION_ISSUES.get(name)
    if issue and issue not in PAIR_ISSUES:
      found += [Finding(p, issue, 1.0) for p in paths]
  for name, sets in result["sets"].items():
    for members in sets:
      found += set_findings(members, CLEANVISION_ISSUES[name], linked)
  return found


def score_cleanvision(root: pathlib.Path) -> dict:
  """cleanvision on the planted Fashion-MNIST set, scored like jvision."""
  result = run_cleanvision(root, readable_only=True)
  truth = planted.read_truth(root / "truth.csv")
  scores = score(cleanvision_findings(result, truth), truth)
  supported = set(CLEANVISION_ISSUES.values()) | {"leakage"}
  scores = {i: (s if i in supported else None) for i, s in scores.items()}
  print_table(f"cleanvision {result['version']} on planted", scores)
  return {
    "version": result["version"],
    "seconds": round(result["seconds"], 2),
    "unreadable_files_withheld": len(result["skipped"]),
    "scores": scores,
  }


def cleanvision_full(rerun: bool) -> dict:
  """cleanvision's 70k-image timing, cached in CLEANVISION_CACHE."""
  if CLEANVISION_CACHE.exists() and not rerun:
    return json.loads(CLEANVISION_CACHE.read_text())
  load_before = os.getloadavg()[0]
  result = run_cleanvision(FULL_DIR, readable_only=False)
  record = {
    "load_average_1min": [load_before, os.getloadavg()[0]],  # shared CPUs
    "version": result["version"],
    "seconds": round(result["seconds"], 2),
    "images": result["images"],
    "flagged": {k: len(v) for k, v in result["flags"].items()},
    "duplicate_sets": {k: len(v) for k, v in result["sets"].items()},
    "machine": common.machine(),
  }
  CLEANVISION_CACHE.write_text(json.dumps(record, indent=2) + "\n")
  return record


def benchmark_speed(args) -> dict:
  images = write_full_fashion_mnist(FULL_DIR)
  cleanvision = cleanvision_full(args.rerun_cleanvision)
  audit_dir = WORKDIRS / "fashion_mnist_png_audit"
  encoder = parse_encoders(args.encoder).get("fashion_mnist")
  seconds = run_audit(FULL_DIR, audit_dir, encoder)
  # The issue types cleanvision also has: no label issues, no embeddings.
  common_dir = WORKDIRS / "fashion_mnist_png_audit_common"
  common_seconds = run_audit(
    FULL_DIR, common_dir, None, ("--audit.label_issue.enabled=False",)
  )
  flagged = collections.Counter(
    f.issue for f in findings_lib.read_issues_csv(str(audit_dir / "issues.csv"))
  )
  planted_root = pathlib.Path(args.out) / "fashion_mnist"
  record = {
    "images": images,
    "jvision_seconds": round(seconds, 2),
    "jvision_phases": audit_phases(audit_dir),
    "jvision_flagged": dict(flagged),
    "encoder": encoder,
    "cleanvision_version": cleanvision["version"],
    "cleanvision_seconds": cleanvision["seconds"],
    "cleanvision_full": cleanvision,
    "speed_ratio_cleanvision_over_jvision": round(
      cleanvision["seconds"] / seconds, 3
    ),
    "jvision_common_types_seconds": round(common_seconds, 2),
    "jvision_common_types_phases": audit_phases(common_dir),
    "speed_ratio_common_types": round(
      cleanvision["seconds"] / common_seconds, 3
    ),
    "cleanvision_planted_fashion_mnist": score_cleanvision(planted_root),
  }
  print(
    f"70k Fashion-MNIST PNGs, issue types both tools have: jvision "
    f"{common_seconds:.1f} s "
    f"({record['speed_ratio_common_types']:.2f}x faster than cleanvision)"
  )
  print(
    f"70k Fashion-MNIST PNGs: jvision {seconds:.1f} s, cleanvision "
    f"{cleanvision['seconds']:.1f} s "
    f"({record['speed_ratio_cleanvision_over_jvision']:.2f}x)"
  )
  return record


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--skip-build", action="store_true")
  parser.add_argument(
    "--encoder",
    default=None,
    help="per planted set: fashion_mnist=WORKDIR,cifar10=WORKDIR (each set "
    "is also audited without one); the fashion_mnist one is used for the "
    "70k speed run",
  )
  parser.add_argument("--full-speed", action="store_true")
  parser.add_argument("--rerun-cleanvision", action="store_true")
  parser.add_argument("--out", default=str(planted.DEFAULT_OUT))
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  print("saved", common.save("audit_planted", benchmark_planted(args)))
  if args.full_speed:
    print("saved", common.save("audit_speed", benchmark_speed(args)))


if __name__ == "__main__":
  main()
