"""Tests for benchmarks/report.py: the processor in every row, one row per
kind of processor in the comparison, and reports of another results dir."""

import json
import re

from benchmarks import report


def _comparison(machine: dict, ratio: float, dtype="float32") -> dict:
  model = {
    "batch_size": 128,
    "jvision": {"images_per_sec": 50.0, "gflops_per_sec": 10.0},
    "torch": {"eager": {"images_per_sec": 50.0 / ratio}},
    "ratio_jvision_to_best_torch": ratio,
    "torch_best_mode": "eager",
    "fraction_of_peak": 0.1,
  }
  model["jvision"]["fraction_of_peak"] = 0.1
  return {
    "matmul_peak_gflops": {"xla": 100.0},
    "settings": {
      "torch_modes": ["eager"],
      "rounds": {"simclr": 2},
      "steps": {"simclr": 3},
      "warmup": 2,
      "later_warmup": 1,
      "dtype": dtype,
      "torch_version": "2.13.0+cpu",
      "torch_threads": 2,
    },
    "models": {"simclr": model},
    "machine": machine,
  }


AVX2 = {
  "cpu": "AMD EPYC",
  "vector_extensions": ["AVX2"],
  "cores": 2,
  "backend": "cpu",
  "devices": ["cpu:0"],
  "versions": {"jax": "0.10.2"},
  "date": "2026-12-01",
  "xla_flags": "",
}
H200 = {
  **AVX2,
  "cpu": "Intel Xeon",
  "vector_extensions": ["AVX2", "AVX-512"],
  "backend": "gpu",
  "devices": ["cuda:0"],
  "device_kind": "NVIDIA H200",
}


def test_where_names_the_cpu_kind_or_the_accelerator():
  assert report.where(AVX2) == "AMD EPYC (AVX2), 2 cores"
  assert report.where(H200) == (
    "1 x NVIDIA H200 (gpu; host Intel Xeon (AVX2, AVX-512))"
  )


def test_one_row_per_kind_of_processor():
  table = report.by_processor_table(
    [_comparison(AVX2, 0.99), _comparison(H200, 1.3, "bfloat16")]
  )
  rows = [line for line in table.splitlines() if line.startswith("| ")]
  assert rows[0] == "| processor | dtype | date | SimCLR |"
  assert rows[1] == (
    "| AMD EPYC (AVX2), 2 cores | float32 | 2026-12-01 | 0.99 (eager) |"
  )
  assert rows[2].startswith("| 1 x NVIDIA H200 (gpu; host Intel Xeon")
  assert rows[2].endswith("| bfloat16 | 2026-12-01 | 1.30 (eager) |")


def test_performance_table_gives_per_model_rounds():
  text = report.performance_table(_comparison(AVX2, 0.99))
  assert "rounds x timed steps (each round the median) SimCLR 2 x 3" in text
  assert "after 2 warm-up steps (1 after the first round)" in text
  assert "on AMD EPYC (AVX2), 2 cores, float32" in text


def test_recorded_results_name_their_cpu():
  table = report.table()
  rows = [line for line in table.splitlines()[2:] if line.startswith("| ")]
  # Each row names its processor with the vector extensions recorded.
  kind = re.compile(r"\| ([^|]+ \(AVX[^|)]*\)), 2 cores")
  kinds = [kind.search(row) for row in rows]
  missing = [row[:80] for row, k in zip(rows, kinds, strict=True) if not k]
  assert rows and not missing, missing
  assert {k.group(1) for k in kinds} >= {
    "AMD EPYC Zen 5 (AVX2, AVX-512, AVX512-BF16)"
  }
  performance = report.performance_tables()
  zen5 = "| AMD EPYC Zen 5 (AVX2, AVX-512, AVX512-BF16), 2 cores | float32 |"
  assert zen5 in performance


def test_renders_another_results_dir(tmp_path):
  (tmp_path / "compare_cpu_avx2_float32.json").write_text(
    json.dumps(_comparison(AVX2, 0.99))
  )
  performance = report.performance_tables(tmp_path)
  assert "| AMD EPYC (AVX2), 2 cores | float32 | 2026-12-01 | 0.99" in (
    performance
  )
  assert report.performance_tables(tmp_path / "empty") is None


def _label_efficiency(seconds: list[float]) -> dict:
  summary = [
    {"method": "supervised", "label_fraction": 0.01, "test_accuracy": 0.8}
  ]
  return {
    "pretrain_arg": "",
    "seeds_requested": list(range(len(seconds))),
    "runs": [
      {
        "seed": seed,
        "summary": summary,
        "pretraining_monitor": {"knn_accuracy": 0.78},
        "pipeline_seconds": time,
      }
      for seed, time in enumerate(seconds)
    ],
    "aggregate": [
      {
        "method": "supervised",
        "label_fraction": 0.01,
        "mean_test_accuracy": 0.8,
        "std_test_accuracy": 0.0,
        "seeds": len(seconds),
      }
    ],
    "method": "run_demo per seed",
    "machine": AVX2,
  }


def test_label_efficiency_minutes_unless_every_run_was_reused():
  (row,) = report.simclr_rows(_label_efficiency([1200.0, 1320.0]))
  assert "supervised 1% 80.00 ± 0.00% (seeds: 2;" in row
  assert "pretraining kNN 78.0, 78.0%; 21.0 min per seed)" in row
  (row,) = report.simclr_rows(_label_efficiency([2.0, 3.0]))
  assert "every run reused: no time measured)" in row


def _demo(step: dict | None) -> dict:
  record = {
    "wall_seconds": 900.0,
    "matmul_peak_gflops_float32": {"xla": 66.4},
    "summary": [
      {"method": "supervised", "label_fraction": 0.01, "test_accuracy": 0.8}
    ],
    "method": "one run of `jvision demo`",
    "machine": AVX2,
  }
  if step:
    record["demo_step"] = step
  return record


def test_demo_row_names_both_machine_figures():
  step = {"batch_size": 128, "steps": 20, "median_ms": 101.6}
  (row,) = report.demo_rows(_demo(step))
  assert "15.0 min; supervised 1% labels 80.00% (" in row
  assert (
    "(XLA float32 matmul peak of the machine 66 GFLOP/s; one supervised "
    "step of the demo's network, batch 128: 102 ms, median of 20)" in row
  )
  (row,) = report.demo_rows(_demo(None))  # recorded before the step figure
  assert "80.00% (XLA float32 matmul peak of the machine 66 GFLOP/s) |" in row
