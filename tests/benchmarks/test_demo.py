"""Tests for benchmarks/demo.py: the machine figure recorded beside the
demo's time (the demo itself is timed, not tested, here; tests/test_demo.py
runs it at toy sizes)."""

import pytest

from benchmarks import demo


def test_demo_step_record_times_the_demo_networks_supervised_step():
  record = demo.demo_step_record(steps=2)
  assert record["recipe"] == "experiments/fashion_mnist_finetune.py:scratch"
  assert record["batch_size"] == 128  # the recipe's, not a default
  assert record["steps"] == 2
  assert 0 < record["median_ms"] < 60_000
  assert record["images_per_sec"] == pytest.approx(
    128 / (record["median_ms"] / 1e3)
  )


def test_each_kind_of_cpu_keeps_its_own_demo_record():
  avx2 = {"cpu": "AMD EPYC", "vector_extensions": ["AVX2"]}
  amx = {"cpu": "Intel Xeon", "vector_extensions": ["AVX2", "AVX-512", "AMX"]}
  assert demo.result_name(avx2) == "demo_cpu_avx2"
  assert demo.result_name(amx) == "demo_cpu_amx"


def test_a_gpu_demo_is_not_filed_under_a_cpu():
  avx2 = {"cpu": "AMD EPYC", "vector_extensions": ["AVX2"]}
  assert demo.result_name(avx2, "gpu") == "demo_gpu"
