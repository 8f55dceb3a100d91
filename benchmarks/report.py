"""Renders benchmarks/results/*.json as the README's results table.

    python -m benchmarks.report                # print the tables
    python -m benchmarks.report --write        # replace them in README.md
    python -m benchmarks.report --results=DIR  # print those of DIR (gpu.sh)

The results table sits between the markers `<!-- results:start -->` and
`<!-- results:end -->`; every row names its machine (the CPU with the
vector extensions recorded with it, or the accelerator), date and method.
The performance tables (jvision against PyTorch, from
results/compare_*.json: first one row per kind of processor, then one
table per run) sit between `<!-- performance:start -->` and
`<!-- performance:end -->`.
"""

from __future__ import annotations

import json
import pathlib
import statistics
import sys

from benchmarks.common import RESULTS, cpu_kind

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
PERF_START, PERF_END = "<!-- performance:start -->", "<!-- performance:end -->"


def where(m: dict) -> str:
  """The processor a record ran on: the CPU (model and vector extensions)
  and its cores, or the accelerator with its host CPU."""
  if m["backend"] == "cpu":
    return f"{cpu_kind(m)}, {m['cores']} cores"
  count = len(m["devices"])
  kind = m.get("device_kind", m["backend"])
  return f"{count} x {kind} ({m['backend']}; host {cpu_kind(m)})"


def _machine(record: dict) -> str:
  m = record["machine"]
  return f"{where(m)}; jax {m['versions']['jax']}"


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
    steps = f", {r['steps']} steps" if r.get("steps") else ""
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
        f"memory, {trainer} (`{r['recipe']}`{steps})",
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
  v = m["versions"]
  versions = ", ".join(
    f"{k} {v[k]}" for k in ("jax", "jaxlib", "flax", "optax") if k in v
  )
  rows += [
    "",
    f"Measured {m['date']} on {where(m)}, {dtype}; {versions}; PyTorch "
    f"{settings['torch_version']} with {settings['torch_threads']} threads; "
    f"XLA_FLAGS `{m['xla_flags'] or '(none)'}`. Method: "
    "`python -m benchmarks.compare`, alternating rounds (jvision, then each "
    f"PyTorch mode), {_rounds_text(settings)}; the median round is shown. "
    "img/s counts views for SimCLR. FLOP/s use "
    "the plain network's FLOPs (PyTorch's FlopCounterMode, forward and "
    "backward) for both sides; the peak is the fastest "
    f"{dtype} matmul measured (numpy, PyTorch or XLA).",
  ]
  return "\n".join(rows)


def _rounds_text(settings: dict) -> str:
  """How many rounds of how many steps, per model where they differ."""
  rounds, steps = settings["rounds"], settings["steps"]
  later = settings.get("later_warmup", settings["warmup"])
  warmup = f"after {settings['warmup']} warm-up steps"
  if later != settings["warmup"]:
    warmup += f" ({later} after the first round)"
  if isinstance(rounds, int):  # one count for every model
    return f"{rounds} rounds, each the median of {steps} steps {warmup}"
  counts = ", ".join(
    f"{STEP_NAMES.get(m, m).split(' (')[0]} {rounds[m]} x {steps[m]}"
    for m in rounds
  )
  return f"rounds x timed steps (each round the median) {counts}, {warmup}"


def by_processor_table(records: list[dict]) -> str:
  """jvision / fastest PyTorch per train step: one row per kind of
  processor, dtype and batch multiplier measured (each file is one)."""
  names = []
  for record in records:
    for name in record["models"]:
      if name not in names:
        names.append(name)
  head = ["processor", "dtype", "date"]
  head += [STEP_NAMES.get(n, n).split(" (")[0] for n in names]
  rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for record in records:
    m, settings = record["machine"], record["settings"]
    multiplier = settings.get("batch_multiplier", 1)
    batches = f", batches x{multiplier}" if multiplier != 1 else ""
    cells = [where(m), settings.get("dtype", "float32") + batches, m["date"]]
    for name in names:
      r = record["models"].get(name)
      cells.append(
        f"{r['ratio_jvision_to_best_torch']:.2f} ({r['torch_best_mode']})"
        if r
        else "-"
      )
    rows.append("| " + " | ".join(cells) + " |")
  return "\n".join(
    [
      "jvision images/s over the fastest PyTorch mode's, per train step "
      "(above 1: jvision faster):",
      "",
      *rows,
    ]
  )


def train_speed_rows(name: str, record: dict) -> list[str]:
  """One run's end-to-end time and steady images/s (benchmarks.train_speed)."""
  last = record["last_metrics"]
  shown = {
    split: {k: v for k, v in metrics.items() if "accuracy" in k}
    for split, metrics in last.items()
    if split != "train"
  }
  extra = "; ".join(
    f"{split} {k} {100 * v:.2f}%"
    for split, metrics in shown.items()
    for k, v in metrics.items()
  )
  value = (
    f"{record['steps']} steps of batch {record['batch_size']} "
    f"({record['dtype']}) in {record['wall_seconds']:.1f} s end to end; "
    f"{record['images_per_sec']:,.0f} img/s steady, "
    f"{record['steady_seconds']:.1f} s at that rate"
    + (f"; {extra}" if extra else "")
  )
  return [_row(f"`{record['config']}` speed", value, record)]


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
  rates = [r.get("images_per_sec") for r in record["runs"]]
  rates = [rate for rate in rates if rate]
  if rates:
    rate = statistics.median(rates)
    minutes_text = f"{minutes:.1f} min training each, {rate:,.0f} img/s"
  else:
    minutes_text = f"{minutes:.1f} min training each"
  return [
    _row(
      f"`{record['config']}`",
      f"{value} ({seeds}; {minutes_text})",
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
  machine = []
  peak = record.get("matmul_peak_gflops_float32", {}).get("xla")
  if peak:
    machine.append(f"XLA float32 matmul peak of the machine {peak:.0f} GFLOP/s")
  step = record.get("demo_step")
  if step:
    machine.append(
      f"one supervised step of the demo's network, batch "
      f"{step['batch_size']}: {step['median_ms']:.0f} ms, median of "
      f"{step['steps']}"
    )
  if machine:
    value += f" ({'; '.join(machine)})"
  return [_row("`jvision demo`", value, record)]


def simclr_rows(record: dict) -> list[str]:
  runs = record["runs"]
  requested = len(record["seeds_requested"])
  seeds = len(runs) if len(runs) == requested else f"{len(runs)} of {requested}"
  minutes = sum(r["pipeline_seconds"] for r in runs) / len(runs) / 60
  # A run that reused every finished workdir measured no time.
  timing = (
    f"{minutes:.1f} min per seed"
    if minutes >= 1
    else "every run reused: no time measured"
  )
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
      f"{cells} (seeds: {seeds}; pretraining kNN {knn_text}%; {timing})",
      record,
    )
  ]


def table(results: pathlib.Path = RESULTS) -> str:
  rows = [
    "| what | result | machine | date | how measured |",
    "|---|---|---|---|---|",
  ]
  for path in sorted(results.glob("*.json")):
    record = json.loads(path.read_text())
    if path.stem.startswith("accuracy_"):
      rows += accuracy_rows(path.stem, record)
    elif path.stem == "throughput":
      rows += throughput_rows(record)
    elif path.stem.startswith("demo_"):
      rows += demo_rows(record)
    elif path.stem.startswith("simclr_fashion_mnist"):
      rows += simclr_rows(record)
    elif path.stem == "audit_planted":
      rows += audit_rows(record)
    elif path.stem == "search":
      rows += search_rows(record)
    elif path.stem == "audit_speed":
      rows += audit_speed_rows(record)
    elif path.stem.startswith("memory"):
      rows += memory_rows(record)
    elif path.stem.startswith("train_speed_"):
      rows += train_speed_rows(path.stem, record)
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


def performance_tables(results: pathlib.Path = RESULTS) -> str | None:
  """The summary by processor, then each comparison's table (CPU runs
  first, then other backends); None without any comparison."""
  paths = sorted(
    results.glob("compare*.json"),
    key=lambda p: (not p.stem.startswith("compare_cpu"), p.stem),
  )
  records = [json.loads(path.read_text()) for path in paths]
  if not records:
    return None
  tables = [by_processor_table(records)]
  tables += [performance_table(record) for record in records]
  return "\n\n".join(tables)


def main(argv):
  results = RESULTS
  for arg in argv:
    if arg.startswith("--results="):
      results = pathlib.Path(arg.split("=", 1)[1])
  tables = [(START, END, table(results))]
  performance = performance_tables(results)
  if performance:
    tables.append((PERF_START, PERF_END, performance))
  if "--write" not in argv or results != RESULTS:
    print("\n\n".join(text for _, _, text in tables))
    return
  readme = README.read_text()
  for start, end, text in tables:
    readme = _replace(readme, start, end, text)
  README.write_text(readme)
  print(f"wrote {len(tables)} tables into {README}")


if __name__ == "__main__":
  main(sys.argv[1:])
