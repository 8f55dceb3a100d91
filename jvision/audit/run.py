"""`jvision audit`: every check over a dataset, and the files it writes.

    run_audit("folder:~/pets", "audit_out", labels="labels.json")

Phases (each with a progress bar and a timing in summary.json): read every
file once (`scan`), image quality (`quality`), embeddings (`embed`: the
encoder of `--encoder=WORKDIR` or built-in features), exact and near
duplicates and leakage (`duplicates`), label issues (`label_issues`), then
OUT/issues.csv, OUT/manifest.jsonl, OUT/summary.json and OUT/report.html.
Nothing under the dataset root is written, moved or deleted.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import time

import ml_collections
import numpy as np

from jvision import data as data_lib
from jvision.audit import (
  defaults,
  duplicates,
  embed,
  label_issues,
  quality,
  report,
  scan,
)
from jvision.audit.findings import (
  ISSUES,
  Finding,
  ManifestEntry,
  write_issues_csv,
  write_manifest,
)
from jvision.data import decode, folder
from jvision.data.dataset import DataError
from jvision.data.labels import LabelSpec, load_label_spec

_log = logging.getLogger(__name__)
OUTPUTS = ("issues.csv", "manifest.jsonl", "summary.json", "report.html")


@contextlib.contextmanager
def _timed(timings: dict, phase: str):
  start = time.perf_counter()
  try:
    yield
  finally:
    timings[phase] = round(time.perf_counter() - start, 2)


def check_out_dir(out: str, scanned_root: str | None) -> None:
  """Refuses an OUT that would touch the user's files.

  OUT must not lie inside the dataset folder, and an existing OUT must be
  empty or hold an earlier audit (its summary.json); only the audit's own
  files in it are replaced.
  """
  out_abs = os.path.realpath(out)
  if scanned_root and os.path.isdir(scanned_root):
    root = os.path.realpath(scanned_root)
    if out_abs == root or out_abs.startswith(root + os.sep):
      raise DataError(
        f"--out={out} lies inside the dataset folder {scanned_root}; the "
        "audit never writes there. Choose a directory outside it."
      )
  if os.path.isfile(out):
    raise DataError(f"--out={out} is a file; give a directory")
  if os.path.isdir(out):
    present = set(os.listdir(out))
    if present and "summary.json" not in present:
      raise DataError(
        f"--out={out} is a non-empty directory that holds no earlier audit "
        f"(no summary.json; found e.g. {sorted(present)[:3]}); the audit "
        "does not write into it. Choose a new or empty directory."
      )


def class_labels(
  scanned: scan.Scan, spec: LabelSpec | None
) -> tuple[np.ndarray, list[str], dict | None]:
  """(int [N] labels, class names, label-spec check) of the scanned data.

  Without a spec, classes are the sorted class names found. With one, each
  name or alias maps to its id; images of unknown classes get -1.
  """
  found = sorted(set(scanned.class_names.tolist()))
  if spec is None:
    table = {name: i for i, name in enumerate(found)}
    names = found
  else:
    table = spec.lookup()
    names = list(spec.class_names)
  labels = np.asarray(
    [table.get(c, -1) for c in scanned.class_names.tolist()], np.int32
  )
  check = None
  if spec is not None:
    known = labels >= 0
    readable = scanned.ok & known
    with_images = set(labels[readable].tolist())
    present = set(labels[known].tolist())
    check = {
      "unknown": [c for c in found if c not in table],
      "missing": [c.name for c in spec.classes if c.id not in present],
      "empty": [
        c.name
        for c in spec.classes
        if c.id in present and c.id not in with_images
      ],
    }
  return labels, names, check


def class_balance(
  scanned: scan.Scan, labels: np.ndarray, names: list[str]
) -> dict[str, dict[str, int]]:
  """{split: {class name: readable images}} (every class listed)."""
  balance = {}
  for split in scanned.split_names:
    mask = (scanned.splits == split) & scanned.ok & (labels >= 0)
    counts = np.bincount(labels[mask], minlength=len(names))
    pairs = zip(names, counts, strict=True)
    balance[split] = {name: int(n) for name, n in pairs}
  return balance


def corrupt_findings(scanned: scan.Scan) -> list[Finding]:
  """One `corrupt` finding per file that did not decode (score 1)."""
  return [
    Finding(scanned.paths[i], "corrupt", 1.0, detail={"reason": reason})
    for i, reason in sorted(scanned.reasons.items())
  ]


def _stat_findings(
  scanned, values, outliers, issue: str, measure: str, unit: float
):
  return [
    Finding(
      scanned.paths[i],
      issue,
      float(outliers.score[i]),
      detail={
        "value": round(float(values[i]) * unit, 3),
        "typical": round(outliers.median * unit, 3),
        "measure": measure,
      },
    )
    for i in np.flatnonzero(outliers.flagged)
  ]


def quality_findings(scanned: scan.Scan, cfg) -> list[Finding]:
  """dark, light, blurry, low_information, odd_size, odd_aspect_ratio."""
  ok = scanned.ok
  stats = quality.statistics(scanned.work)
  rules = (
    # issue, statistic, bad side, measure shown, display unit
    ("dark", "highlights", "low", "99th-pct brightness", 255),
    ("light", "washout", "high", "wash-out (shadows - range/2)", 255),
    ("blurry", "sharpness", "low", "|Laplacian| / |gradient|", 1),
    ("low_information", "entropy", "low", "entropy (bits)", 1),
  )
  findings = []
  for issue, name, side, measure, unit in rules:
    outliers = quality.robust_outliers(
      stats[name],
      side=side,
      k=cfg[issue].k,
      floor=cfg[issue].floor,
      valid=ok,
    )
    findings += _stat_findings(
      scanned, stats[name], outliers, issue, measure, unit
    )
  findings += _size_findings(scanned, cfg)
  return findings


def _size_findings(scanned: scan.Scan, cfg) -> list[Finding]:
  ok = scanned.ok
  h = np.maximum(scanned.sizes[:, 0], 1).astype(np.float64)
  w = np.maximum(scanned.sizes[:, 1], 1).astype(np.float64)
  typical = (
    f"{int(np.median(h[ok]))}x{int(np.median(w[ok]))}" if ok.any() else ""
  )
  findings = []
  for issue, values in (
    ("odd_size", 0.5 * np.log(h * w)),
    ("odd_aspect_ratio", np.log(w / h)),
  ):
    outliers = quality.robust_outliers(
      values,
      side="both",
      k=cfg[issue].k,
      floor=float(np.log(cfg[issue].factor)),
      valid=ok,
    )
    findings += [
      Finding(
        scanned.paths[i],
        issue,
        float(outliers.score[i]),
        detail={"size": f"{int(h[i])}x{int(w[i])}", "typical": typical},
      )
      for i in np.flatnonzero(outliers.flagged)
    ]
  return findings


def _keep_order(scanned: scan.Scan, k: int) -> tuple:
  """Which copy of a pair is kept: the earlier split (train first), then
  the earlier path."""
  return scan.split_rank(str(scanned.splits[k])), scanned.paths[k]


def _ordered(scanned: scan.Scan, i: int, j: int) -> tuple[int, int]:
  """(keeper, flagged) of a pair (see `_keep_order`)."""
  if _keep_order(scanned, i) <= _keep_order(scanned, j):
    return i, j
  return j, i


def _pair_finding(scanned, keeper: int, other: int, issue_same: str, score):
  same = scanned.splits[keeper] == scanned.splits[other]
  return Finding(
    scanned.paths[other],
    issue_same if same else "leakage",
    float(min(max(score, 0.0), 1.0)),
    related=scanned.paths[keeper],
    detail={
      "similarity": round(float(score), 4),
      "related_split": str(scanned.splits[keeper]),
    },
  )


def exact_findings(scanned: scan.Scan) -> list[Finding]:
  """exact_duplicate (same split) or leakage (across) for each copy."""
  findings = []
  for group in duplicates.exact_groups(scanned.hashes):
    keeper = min(group, key=lambda k: _keep_order(scanned, k))
    for other in group:
      if other != keeper:
        findings.append(
          _pair_finding(scanned, keeper, other, "exact_duplicate", 1.0)
        )
  return findings


def near_findings(
  scanned: scan.Scan, embeddings: np.ndarray | None, cfg, progress: bool
) -> tuple[list[Finding], dict]:
  """near_duplicate / leakage pairs (see `jvision.audit.duplicates`).

  Returns:
    (findings, facts for the summary: candidate and verified pair counts).
  """
  ok = np.flatnonzero(scanned.ok)
  size = scanned.work.shape[1]
  scale = size / 28  # blur widths are set for 28x28 images
  pairs, sims = duplicates.search(
    quality.luminance(scanned.work[ok]),
    neighbours=cfg.neighbours,
    grid=cfg.grid,
    descriptor_blur=cfg.descriptor_blur * scale,
    blur=cfg.blur * scale,
    radius=max(1, int(round(cfg.radius * size))),
    zooms=tuple(cfg.zooms),
    zoom_neighbours=cfg.zoom_neighbours,
    zoom_steps=tuple(cfg.zoom_steps),
    embeddings=None if embeddings is None else embeddings[ok],
    hashes=[scanned.hashes[k] for k in ok],
    progress=progress,
  )
  findings = []
  for (a, b), sim in zip(pairs, sims, strict=True):
    if sim >= cfg.threshold:
      keeper, other = _ordered(scanned, ok[a], ok[b])
      findings.append(
        _pair_finding(scanned, keeper, other, "near_duplicate", sim)
      )
  facts = {"candidate_pairs": int(len(pairs)), "verified": len(findings)}
  return findings, facts


def label_findings(
  scanned: scan.Scan,
  labels: np.ndarray,
  names: list[str],
  embeddings: np.ndarray,
  cfg,
  seed: int,
  progress: bool = False,
) -> tuple[list[Finding], dict | None]:
  """label_issue findings and the label model's facts (None: skipped)."""
  usable = np.flatnonzero(scanned.ok & (labels >= 0))
  present = np.unique(labels[usable])
  if not cfg.enabled or len(present) < 2 or len(usable) < 2 * cfg.folds:
    return [], None
  # At most one dimension per 10 images: with more, a fold's classifier
  # memorises its training images and its held-out predictions turn
  # against their own class (anti-learning on small sets).
  dims = min(cfg.dims, max(2, len(usable) // 10))
  features = label_issues.project(embeddings[usable], dims)
  probs = label_issues.out_of_fold_probabilities(
    features,
    labels[usable],
    len(names),
    folds=cfg.folds,
    seed=seed,
    l2=cfg.l2,
    steps=cfg.steps,
    learning_rate=cfg.learning_rate,
    progress=progress,
  )
  flagged, score = label_issues.find_label_issues(
    labels[usable], probs, filter_by=cfg.filter_by
  )
  predicted = probs.argmax(1)
  findings = [
    Finding(
      scanned.paths[usable[i]],
      "label_issue",
      float(score[i]),
      detail={
        "given": names[labels[usable[i]]],
        "suggested": names[predicted[i]],
        "confidence": round(float(probs[i, predicted[i]]), 3),
      },
    )
    for i in np.flatnonzero(flagged)
  ]
  model = {
    "folds": cfg.folds,
    "out_of_fold_accuracy": round(
      float((predicted == labels[usable]).mean()), 4
    ),
    "classifier": (
      f"softmax regression on {features.shape[1]} principal components of "
      "the embeddings; cleanlab find_label_issues(filter_by="
      f"{cfg.filter_by!r})"
    ),
  }
  return findings, model


def strongest(findings: list[Finding]) -> list[Finding]:
  """One finding per (path, issue): the highest score."""
  best: dict[tuple[str, str], Finding] = {}
  for f in findings:
    key = (f.path, f.issue)
    if key not in best or f.score > best[key].score:
      best[key] = f
  return list(best.values())


def parse_exclude(text: str) -> set[str]:
  """The issue names of `exclude` ("a,b"), checked."""
  names = {t.strip() for t in text.split(",") if t.strip()}
  unknown = sorted(names - set(ISSUES))
  if unknown:
    raise ValueError(
      f"audit.exclude names unknown issues {unknown}; issues are {ISSUES}"
    )
  return names


def manifest_entries(
  scanned: scan.Scan,
  labels: np.ndarray,
  names: list[str],
  findings: list[Finding],
  exclude: set[str],
):
  """ManifestEntry of each readable, labelled image with no excluded issue."""
  dropped = {f.path for f in findings if f.issue in exclude}
  for i, path in enumerate(scanned.paths):
    if scanned.ok[i] and labels[i] >= 0 and path not in dropped:
      yield ManifestEntry(
        source=scanned.source,
        path=path,
        split=str(scanned.splits[i]),
        label=int(labels[i]),
        class_name=names[labels[i]],
      )


def _image_reader(scanned: scan.Scan):
  """path -> native uint8 image (work copy for array sources) or None."""
  index = {p: i for i, p in enumerate(scanned.paths)}
  is_folder = scanned.source.startswith("folder:")
  tree = folder.Tree(scanned.root) if is_folder else None

  def image_of(path: str):
    i = index.get(path)
    if i is None or not scanned.ok[i]:
      return None
    if tree is None:
      return scanned.work[i]
    try:
      return decode.decode_image(tree.read(path), path=path)
    except (OSError, DataError):
      return None

  return image_of, tree


def _encoder_candidates(encoder: str | None, config) -> bool:
  """Whether near-duplicate candidates also come from --encoder's
  embeddings (`near_duplicate.use_encoder`, and an encoder given)."""
  return bool(encoder) and config.near_duplicate.use_encoder


def _embeddings(scanned, encoder, config, progress):
  """float32 [N, D] embeddings (zeros where unreadable) and what made them.

  (None, "none (label issues disabled)") when nothing needs them: label
  issues disabled and no encoder candidates for near duplicates.
  """
  if not (config.label_issue.enabled or _encoder_candidates(encoder, config)):
    return None, "none (label issues disabled)"
  ok = scanned.ok
  if encoder:
    vectors, described = embed.encoder_embeddings(
      encoder, scanned.work[ok], batch_size=config.batch_size, progress=progress
    )
  else:
    vectors, described = embed.builtin_embeddings(
      scanned.work[ok], seed=config.seed, progress=progress
    )
  embeddings = np.zeros((len(scanned), vectors.shape[1]), np.float32)
  embeddings[ok] = vectors
  return embeddings, described


def run_audit(
  spec: str,
  out: str,
  *,
  labels: str | None = None,
  encoder: str | None = None,
  config: ml_collections.ConfigDict | None = None,
  progress: bool = True,
) -> dict:
  """Audits a dataset and writes OUT/{issues.csv, manifest.jsonl,
  summary.json, report.html}.

  Args:
    spec: a data spec (folder:PATH, fashion_mnist, idx:DIR, ...).
    out: the output directory (created; never inside the dataset).
    labels: a label spec JSON to validate the classes against.
    encoder: a jvision workdir whose backbone embeds the images.
    config: `defaults.audit_config()` with any overrides.
    progress: show progress bars.

  Returns:
    The summary (also OUT/summary.json).
  """
  config = config or defaults.audit_config()
  exclude = parse_exclude(config.exclude)
  spec_obj = load_label_spec(labels) if labels else None
  parsed = data_lib.parse_spec(spec)
  check_out_dir(out, parsed.name if parsed.kind == "folder" else None)
  timings: dict[str, float] = {}
  with _timed(timings, "read"):
    scanned = scan.scan(
      spec,
      seed=config.seed,
      holdout_fraction=config.holdout_fraction,
      data_dir=config.data_dir,
      progress=progress,
    )
  label_ids, names, spec_check = class_labels(scanned, spec_obj)
  if spec_check is not None:
    spec_check["path"] = labels
  findings = corrupt_findings(scanned)
  with _timed(timings, "quality"):
    findings += quality_findings(scanned, config.quality)
  with _timed(timings, "embed"):
    embeddings, described = _embeddings(scanned, encoder, config, progress)
  with _timed(timings, "duplicates"):
    findings += exact_findings(scanned)
    near, near_facts = near_findings(
      scanned,
      embeddings if _encoder_candidates(encoder, config) else None,
      config.near_duplicate,
      progress,
    )
    findings += near
  with _timed(timings, "labels"):
    found, label_model = label_findings(
      scanned,
      label_ids,
      names,
      embeddings,
      config.label_issue,
      config.seed,
      progress,
    )
    findings += found
  findings = strongest(findings)
  os.makedirs(out, exist_ok=True)
  with _timed(timings, "write"):
    write_issues_csv(os.path.join(out, "issues.csv"), findings)
    passed = write_manifest(
      os.path.join(out, "manifest.jsonl"),
      manifest_entries(scanned, label_ids, names, findings, exclude),
    )
  counts = {issue: 0 for issue in ISSUES}
  for f in findings:
    counts[f.issue] += 1
  summary = {
    "source": scanned.source,
    "root": scanned.root,
    "total": len(scanned),
    "passed": passed,
    "splits": {
      s: int((scanned.splits == s).sum()) for s in scanned.split_names
    },
    "class_names": names,
    "class_balance": class_balance(scanned, label_ids, names),
    "label_spec": spec_check,
    "counts": counts,
    "flagged_images": len({f.path for f in findings}),
    "excluded_from_manifest": sorted(exclude),
    "encoder": described,
    "label_model": label_model,
    "near_duplicate_search": near_facts,
    "work_size": int(scanned.work.shape[1]),
    "settings": json.loads(config.to_json()),
    "timings": timings,
    "created": datetime.datetime.now().isoformat(timespec="seconds"),
  }
  with _timed(timings, "report"):
    image_of, tree = _image_reader(scanned)
    try:
      report.write_report(
        os.path.join(out, "report.html"),
        summary=summary,
        findings=findings,
        image_of=image_of,
        max_per_issue=config.max_per_issue,
      )
    finally:
      if tree is not None:
        tree.close()
  summary["timings"]["total"] = round(sum(timings.values()), 2)
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary


def format_summary(summary: dict, out: str) -> str:
  """A few lines for the terminal: counts per issue and where files are."""
  lines = [
    f"audited {summary['total']} images of {summary['source']} in "
    f"{summary['timings']['total']:.1f} s: {summary['flagged_images']} "
    f"flagged, {summary['passed']} in the manifest"
  ]
  for issue, n in summary["counts"].items():
    if n:
      lines.append(f"  {issue:<17} {n}")
  model = summary.get("label_model")
  if model:
    lines.append(
      f"label model: out-of-fold accuracy {model['out_of_fold_accuracy']:.3f}"
      f" ({summary['encoder']})"
    )
  spec = summary.get("label_spec")
  if spec and (spec["unknown"] or spec["missing"] or spec["empty"]):
    lines.append(
      f"label spec {spec['path']}: unknown classes {spec['unknown']}, "
      f"missing {spec['missing']}, empty {spec['empty']}"
    )
  lines.append(
    f"wrote {out}/issues.csv, manifest.jsonl, summary.json, report.html; "
    f"train on the clean set with --config.data.manifest="
    f"{os.path.join(out, 'manifest.jsonl')}"
  )
  return "\n".join(lines)
