"""Renders benchmarks/results/*.json as the README's results table.

    python -m benchmarks.report          # print the table
    python -m benchmarks.report --write  # replace it in README.md

The table sits between the markers `<!-- results:start -->` and
`<!-- results:end -->`; every row names its machine, date and method.
"""

from __future__ import annotations

import json
import pathlib
import sys

from benchmarks.common import RESULTS

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _machine(record: dict) -> str:
  m = record["machine"]
  return f"{m['cpu']}, {m['cores']} cores; jax {m['versions']['jax']}"


def _row(what: str, value: str, record: dict, method: str | None = None):
  """One table row: what, result, machine, date, how it was measured."""
  return (
    f"| {what} | {value} | {_machine(record)} | {record['machine']['date']} "
    f"| {record['method'] if method is None else method} |"
  )


def memory_rows(record: dict) -> list[str]:
  """Peak host memory, device peak and compiled step footprint per trainer."""
  rows = []
  for trainer, r in record.items():
    if trainer in ("machine", "method"):
      continue
    device = r["device_peak_bytes"]
    device = (
      "peak not reported by the CPU backend"
      if device is None
      else f"peak {device / 2**20:.0f} MiB"
    )
    step = r.get("train_step_device_mib")
    if step:
      device += (
        f"; compiled train step {step['donated']['total']:.0f} MiB "
        f"(state donated; {step['not_donated']['total']:.0f} MiB without)"
      )
    rows.append(
      _row(
        f"memory, {trainer} (`{r['recipe']}`)",
        f"host {r['peak_host_rss_mib']:.0f} MiB; device: {device}",
        record,
      )
    )
  return rows


def audit_rows(record: dict) -> list[str]:
  """Per planted set: recall per issue, label-issue precision, targets."""
  rows = []
  for name, r in record["sets"].items():
    scores = r["scores"]
    recalls = ", ".join(
      f"{issue} {s['recall']:.2f}"
      for issue, s in scores.items()
      if s.get("recall") is not None and issue != "label_issue"
    )
    label = scores["label_issue"]
    met = sum(t["met"] for t in r["targets"].values())
    value = (
      f"recall: {recalls}; label_issue precision {label['precision']:.2f} "
      f"at recall {label['recall']:.2f}; {met} of {len(r['targets'])} "
      f"targets met; {r['audit_seconds']:.0f} s"
    )
    rows.append(
      _row(f"`jvision audit`, planted {name} (5,250 files)", value, record)
    )
  return rows


def audit_speed_rows(record: dict) -> list[str]:
  value = (
    f"cleanvision {record['cleanvision_version']} "
    f"{record['cleanvision_seconds']:.0f} s; jvision on the issue types "
    f"both have {record['jvision_common_types_seconds']:.0f} s "
    f"({record['speed_ratio_common_types']:.1f}x faster); jvision with "
    f"label issues (encoder {record['encoder']}) "
    f"{record['jvision_seconds']:.0f} s "
    f"({record['speed_ratio_cleanvision_over_jvision']:.1f}x)"
  )
  return [
    _row(
      f"audit of {record['images']:,} Fashion-MNIST PNG files",
      value,
      record,
      "one cold run each (empty cache), wall time of the whole command",
    )
  ]


def search_rows(record: dict) -> list[str]:
  lat = record["latency"]
  r = record["retrieval"]
  value = (
    f"p50 {lat['embed_and_search']['p50_ms']:.2f} ms per query (embed + "
    f"search; search alone {lat['search_numpy_float32']['p50_ms']:.2f} ms, "
    f"p99 {lat['embed_and_search']['p99_ms']:.1f} ms) over "
    f"{record['gallery_size']:,} images; recall@1/5/10 {r['recall@1']:.3f}/"
    f"{r['recall@5']:.3f}/{r['recall@10']:.3f}, mAP {r['map']:.3f}"
  )
  return [
    _row(
      f"`jvision search`, Fashion-MNIST train gallery (`{record['workdir']}`)",
      value,
      record,
    )
  ]


def compare_rows(record: dict) -> list[str]:
  """jvision vs the PyTorch reference, per step (issue 7's harness)."""
  rows = []
  settings = record["settings"]
  torch_kind = "compiled" if settings.get("torch_compile") else "eager"
  for name, r in record["models"].items():
    j, t = r["jvision"], r["torch"]
    value = (
      f"jvision {j['images_per_sec']:.0f} img/s, PyTorch ({torch_kind}) "
      f"{t['images_per_sec']:.0f} img/s: ratio "
      f"{r['ratio_jvision_to_torch']:.2f}"
    )
    rows.append(
      _row(
        f"{name} train step, batch {r['batch_size']}, jvision vs PyTorch",
        value,
        record,
        f"`benchmarks.compare`: alternating rounds (ABAB), "
        f"{settings.get('rounds')} rounds, each the median of "
        f"{settings.get('steps')} steps after warm-up; the round median is "
        "reported",
      )
    )
  return rows


def accuracy_rows(name: str, record: dict) -> list[str]:
  n = len(record["runs"])
  requested = len(record.get("seeds_requested", record["runs"]))
  seeds = f"{n} seeds" if n == requested else f"{n} of {requested} seeds"
  minutes = sum(r["train_seconds"] for r in record["runs"]) / n / 60
  value = (
    f"{100 * record['mean_test_accuracy']:.2f} ± "
    f"{100 * record['std_test_accuracy']:.2f}% test accuracy"
  )
  return [
    _row(
      f"`{record['config']}`",
      f"{value} ({seeds}; {minutes:.1f} min training each)",
      record,
    )
  ]


def throughput_rows(record: dict) -> list[str]:
  rows = []
  for model, r in record.items():
    if model == "machine":
      continue
    value = (
      f"bare step {r['bare_step_images_per_sec']:.0f} img/s, trainer "
      f"{r['trainer_images_per_sec']:.0f} img/s (overhead "
      f"{100 * r['trainer_overhead']:.1f}%)"
    )
    rows.append(
      _row(
        f"{model} train step, batch {r['batch_size']}, 32x32x3",
        value,
        record,
        r["method"],
      )
    )
  return rows


def _pct(fraction: float) -> str:
  return f"{fraction * 100:g}%"


def demo_rows(record: dict) -> list[str]:
  accuracies = "; ".join(
    f"{r['method']} {_pct(r['label_fraction'])} labels "
    f"{100 * r['test_accuracy']:.2f}%"
    for r in record["summary"]
  )
  value = f"{record['wall_seconds'] / 60:.1f} min; {accuracies}"
  return [_row("`jvision demo`", value, record)]


def simclr_rows(record: dict) -> list[str]:
  runs = record["runs"]
  requested = len(record["seeds_requested"])
  seeds = len(runs) if len(runs) == requested else f"{len(runs)} of {requested}"
  minutes = sum(r["pipeline_seconds"] for r in runs) / len(runs) / 60
  knn = [r["pretraining_monitor"].get("knn_accuracy") for r in runs]
  knn_text = ", ".join(f"{100 * k:.1f}" for k in knn if k is not None)
  cells = "; ".join(
    f"{a['method']} {_pct(a['label_fraction'])} "
    f"{100 * a['mean_test_accuracy']:.2f} ± "
    f"{100 * a['std_test_accuracy']:.2f}%"
    for a in record["aggregate"]
  )
  pretrain = record["pretrain_arg"] or "demo (short)"
  return [
    _row(
      f"SimCLR Fashion-MNIST label efficiency, pretraining `{pretrain}`",
      f"{cells} (seeds: {seeds}; pretraining kNN {knn_text}%; "
      f"{minutes:.1f} min per seed)",
      record,
    )
  ]


def table() -> str:
  rows = [
    "| what | result | machine | date | how measured |",
    "|---|---|---|---|---|",
  ]
  for path in sorted(RESULTS.glob("*.json")):
    record = json.loads(path.read_text())
    if path.stem.startswith("accuracy_"):
      rows += accuracy_rows(path.stem, record)
    elif path.stem == "throughput":
      rows += throughput_rows(record)
    elif path.stem == "demo":
      rows += demo_rows(record)
    elif path.stem.startswith("simclr_fashion_mnist"):
      rows += simclr_rows(record)
    elif path.stem == "audit_planted":
      rows += audit_rows(record)
    elif path.stem == "compare":
      rows += compare_rows(record)
    elif path.stem == "search":
      rows += search_rows(record)
    elif path.stem == "audit_speed":
      rows += audit_speed_rows(record)
    elif path.stem == "memory":
      rows += memory_rows(record)
    elif path.stem == "pixel_knn_fashion_mnist":
      rows.append(
        _row(
          "kNN monitor protocol on Fashion-MNIST pixels (no network)",
          f"raw {100 * record['raw_pixels_knn_accuracy']:.2f}%, centred "
          f"{100 * record['centred_pixels_knn_accuracy']:.2f}%",
          record,
        )
      )
  return "\n".join(rows)


def main(argv):
  text = table()
  if "--write" not in argv:
    print(text)
    return
  readme = README.read_text()
  if START not in readme or END not in readme:
    sys.exit(f"{README} lacks the markers {START} ... {END}")
  head, rest = readme.split(START, 1)
  _, tail = rest.split(END, 1)
  README.write_text(f"{head}{START}\n{text}\n{END}{tail}")
  print(f"wrote the results table into {README}")


if __name__ == "__main__":
  main(sys.argv[1:])
