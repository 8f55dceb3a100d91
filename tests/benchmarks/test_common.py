"""Tests for benchmarks/common.py: which CPU a figure is from, where
results go, and the steady rate of a run's log."""

import json

from benchmarks import common

# The first processor's lines of two /proc/cpuinfo files (flags trimmed).
ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9B45
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512_bf16 avx512_vnni
processor\t: 1
model name\t: something else
flags\t\t: fpu
"""
SAPPHIRE = """model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
AVX2_ONLY = "model name\t: AMD EPYC\nflags\t\t: sse4_2 avx avx2 fma\n"


def test_cpu_info_reads_model_and_vector_extensions():
  assert common.cpu_info(ZEN5) == {
    "cpu": "AMD EPYC 9B45",
    "vector_extensions": ["AVX2", "AVX-512", "AVX512-BF16"],
  }
  assert common.cpu_info(SAPPHIRE)["vector_extensions"] == [
    "AVX2",
    "AVX-512",
    "AVX512-BF16",
    "AMX",
  ]
  assert common.cpu_info(AVX2_ONLY) == {
    "cpu": "AMD EPYC",
    "vector_extensions": ["AVX2"],
  }


def test_cpu_kind_and_slug_name_each_kind_apart():
  avx2 = common.cpu_info(AVX2_ONLY)
  assert common.cpu_kind(avx2) == "AMD EPYC (AVX2)"
  assert common.cpu_slug(avx2) == "avx2"
  amx = common.cpu_info(SAPPHIRE)
  assert common.cpu_slug(amx) == "amx"
  documented = {**common.cpu_info(ZEN5), "cpu_microarchitecture": "Zen 5"}
  assert common.cpu_kind(documented) == (
    "AMD EPYC 9B45 Zen 5 (AVX2, AVX-512, AVX512-BF16)"
  )
  assert common.cpu_slug(documented) == "avx512bf16"
  old = {"cpu": "AMD EPYC"}  # a record from before the extensions
  assert common.cpu_kind(old) == "AMD EPYC (vector extensions not recorded)"
  assert common.cpu_kind({"cpu": "x", "vector_extensions": []}) == "x (no AVX2)"


def test_this_machine_is_described_with_its_extensions():
  record = common.machine()
  assert record["cpu"]
  assert set(record["vector_extensions"]) <= set(
    common.VECTOR_EXTENSIONS.values()
  )
  assert record["backend"] == "cpu" and record["device_kind"] == "cpu"


def test_save_writes_to_the_results_dir_from_the_environment(
  tmp_path, monkeypatch
):
  monkeypatch.setenv(common.RESULTS_ENV, str(tmp_path / "out"))
  path = common.save("probe", {"value": 3})
  assert path == tmp_path / "out" / "probe.json"
  record = json.loads(path.read_text())
  assert record["value"] == 3
  assert (
    record["machine"]["vector_extensions"]
    == common.cpu_info()["vector_extensions"]
  )


def test_steady_rate_skips_the_first_interval(tmp_path):
  records = [
    {"step": 2, "split": "train", "images_per_sec": 10.0},  # compiling
    {"step": 4, "split": "train", "images_per_sec": 300.0},
    {"step": 4, "split": "test", "accuracy": 0.5},
    {"step": 6, "split": "train", "images_per_sec": 100.0},
    {"step": 8, "split": "train", "images_per_sec": 200.0},
  ]
  (tmp_path / "metrics.jsonl").write_text(
    "\n".join(json.dumps(r) for r in records) + "\n"
  )
  assert common.read_metrics(tmp_path) == records
  assert common.steady_images_per_sec(records) == 200.0
  assert common.steady_images_per_sec(records[:1]) is None


def test_machine_tag_names_the_cpu_kind_or_the_accelerator():
  avx2 = common.cpu_info(AVX2_ONLY)
  assert common.machine_tag("cpu", avx2) == "cpu_avx2"
  assert common.machine_tag("gpu", avx2) == "gpu"
