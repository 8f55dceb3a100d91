"""Renders benchmarks/results/*.json as the README's results table.

    python -m benchmarks.report          # print the table
    python -m benchmarks.report --write  # replace it in README.md

The results table sits between the markers `<!-- results:start -->` and
`<!-- results:end -->`; every row names its machine, date and method. The
performance table (jvision against PyTorch, from results/compare.json) sits
between `<!-- performance:start -->` and `<!-- performance:end -->`.
"""

from __future__ import annotations

import json
import pathlib
import sys

from benchmarks.common import RESULTS

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
PERF_START, PERF_END = "<!-- performance:start -->", "<!-- performance:end -->"


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


STEP_NAMES = {
  "cnn": "seed CNN",
  "resnet18": "ResNet-18 (CIFAR stem)",
  "simclr": "SimCLR (ResNet-18 + head + probe, 2 views)",
}


def performance_table(record: dict) -> str:
  """jvision vs each PyTorch mode, one row per train step, with the machine,
  versions, date and method under the table."""
  modes = record["settings"]["torch_modes"]
  peak = max(record["matmul_peak_gflops"].values())
  head = ["train step (32x32x3)", "jvision img/s"]
  head += [f"PyTorch {m.replace('_', '-')} img/s" for m in modes]
  head += ["jvision / fastest PyTorch", f"jvision GFLOP/s (of {peak:.0f})"]
  rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, r in record["models"].items():
    mine = r["jvision"]
    cells = [
      f"{STEP_NAMES.get(name, name)}, batch {r['batch_size']}",
      f"**{mine['images_per_sec']:,.0f}**",
    ]
    cells += [f"{r['torch'][m]['images_per_sec']:,.0f}" for m in modes]
    cells += [
      f"**{r['ratio_jvision_to_best_torch']:.2f}** ({r['torch_best_mode']})",
      f"{mine['gflops_per_sec']:.0f} ({100 * mine['fraction_of_peak']:.0f}%)",
    ]
    rows.append("| " + " | ".join(cells) + " |")
  m, settings = record["machine"], record["settings"]
  dtype = settings.get("dtype", "float32")
  where = (
    f"{m['cpu']} ({m['cores']} cores, {m['backend']} backend)"
    if m["backend"] == "cpu"
    else f"{settings['jax_device']} ({m['backend']} backend; host {m['cpu']})"
  )
  v = m["versions"]
  versions = ", ".join(
    f"{k} {v[k]}" for k in ("jax", "jaxlib", "flax", "optax") if k in v
  )
  rows += [
    "",
    f"Measured {m['date']} on {where}, {dtype}; {versions}; PyTorch "
    f"{settings['torch_version']} with {settings['torch_threads']} threads; "
    f"XLA_FLAGS `{m['xla_flags'] or '(none)'}`. Method: "
    "`python -m benchmarks.compare`, alternating rounds (jvision, then each "
    f"PyTorch mode), {settings['rounds']} rounds, each the median of "
    f"{settings['steps']} steps after {settings['warmup']} warm-up steps; "
    "the median round is shown. img/s counts views for SimCLR. FLOP/s use "
    "the plain network's FLOPs (PyTorch's FlopCounterMode, forward and "
    "backward) for both sides; the peak is the fastest "
    f"{dtype} matmul measured (numpy, PyTorch or XLA).",
  ]
  return "\n".join(rows)


def accuracy_rows(name: str, record: dict) -> list[str]:
  n = len(record["runs"])
  requested = len(record.get("seeds_requested", record["runs"]))
  plural = "seed" if requested == 1 else "seeds"
  seeds = f"{n} {plural}" if n == requested else f"{n} of {requested} seeds"
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
    trainer = "; ".join(
      f"trainer, {feed} feed {t['images_per_sec']:.0f} img/s (overhead "
      f"{100 * t['overhead']:.1f}%, waiting for data "
      f"{100 * t['data_wait_fraction']:.1f}%)"
      for feed, t in r["trainer"].items()
    )
    value = f"bare step {r['bare_step_images_per_sec']:.0f} img/s; {trainer}"
    rows.append(
      _row(
        f"{model} train step, batch {r['batch_size']}, 32x32x3",
        value,
        record,
        r["method"],
      )
    )
  return rows


def pipeline_rows(record: dict) -> list[str]:
  """Host pipeline images/s per worker count: jvision against PyTorch."""
  cells = []
  for workers, r in record["per_workers"].items():
    mine, theirs = r["jvision"], r["torch"]
    cells.append(
      f"{workers} worker(s): jvision {mine['images_per_sec']:.0f} img/s "
      f"({mine['images_per_sec_per_worker']:.0f} per worker), PyTorch "
      f"DataLoader {theirs['images_per_sec']:.0f} "
      f"(**{r['ratio_jvision_to_torch']:.2f}x**; CPU time per image "
      f"{mine['cpu_ms_per_image']:.2f} vs {theirs['cpu_ms_per_image']:.2f} "
      f"ms, {r['ratio_cpu_per_image']:.2f}x)"
    )
  data = record["data"]
  what = (
    f"host pipeline, decode + random-resized crop + flip to "
    f"{record['settings']['size']} ({data.get('images', '?'):,} JPEGs: "
    f"{data.get('what', data.get('source'))})"
  )
  load = record["settings"]["load_average_after"][1]
  value = "; ".join(cells) + f" (VM load average {load:.0f} over the run)"
  return [_row(what, value, record)]


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
    elif path.stem == "search":
      rows += search_rows(record)
    elif path.stem == "audit_speed":
      rows += audit_speed_rows(record)
    elif path.stem == "memory":
      rows += memory_rows(record)
    elif path.stem.startswith("pipeline"):
      rows += pipeline_rows(record)
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


def _replace(readme: str, start: str, end: str, text: str) -> str:
  """`readme` with the text between the markers `start`, `end` replaced."""
  if start not in readme or end not in readme:
    sys.exit(f"{README} lacks the markers {start} ... {end}")
  head, rest = readme.split(start, 1)
  _, tail = rest.split(end, 1)
  return f"{head}{start}\n{text}\n{end}{tail}"


def main(argv):
  tables = [(START, END, table())]
  # compare.json (CPU, float32) first, then any other backend or dtype.
  comparisons = sorted(RESULTS.glob("compare*.json"), key=lambda p: p.stem)
  if comparisons:
    text = "\n\n".join(
      performance_table(json.loads(path.read_text())) for path in comparisons
    )
    tables.append((PERF_START, PERF_END, text))
  if "--write" not in argv:
    print("\n\n".join(text for _, _, text in tables))
    return
  readme = README.read_text()
  for start, end, text in tables:
    readme = _replace(readme, start, end, text)
  README.write_text(readme)
  print(f"wrote {len(tables)} tables into {README}")


if __name__ == "__main__":
  main(sys.argv[1:])
