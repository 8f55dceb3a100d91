"""Tests for jvision/data/feed.py: which feed runs, and that a device-fed
run equals a host-fed one (the batches themselves: tests/test_parallel.py)."""

import json

import jax
import numpy as np
import pytest
from helpers import tiny_config

from jvision.data import feed
from jvision.train import supervised

GIB = 2**30


@pytest.mark.parametrize(
  "setting, backend, nbytes, memory, expected",
  [
    ("auto", "cpu", 1, None, "host"),  # no copy to save on the host
    ("auto", "gpu", GIB, 80 * GIB, "device"),
    ("auto", "tpu", 4 * GIB, 16 * GIB, "device"),  # exactly a quarter
    ("auto", "gpu", 21 * GIB, 80 * GIB, "host"),  # over a quarter
    ("auto", "gpu", 1, None, "host"),  # memory unknown
    ("host", "gpu", 1, 80 * GIB, "host"),
    ("device", "cpu", 1, None, "device"),
    ("device", "gpu", 79 * GIB, 80 * GIB, "device"),  # asked for
  ],
)
def test_choose_feed(setting, backend, nbytes, memory, expected):
  got = feed.choose_feed(
    setting, nbytes=nbytes, memory_bytes=memory, backend=backend
  )
  assert got == expected


def test_device_feed_that_cannot_fit_is_a_clear_error():
  with pytest.raises(ValueError, match=r"feed='device'.*2\.00 GiB.*1\.00 GiB"):
    feed.choose_feed("device", nbytes=2 * GIB, memory_bytes=GIB, backend="gpu")


def test_unknown_feed_names_the_key_and_the_choices():
  with pytest.raises(ValueError, match="config.data.feed='gpu'.*'auto'"):
    feed.choose_feed("gpu", nbytes=1, memory_bytes=None, backend="cpu")


def test_split_bytes_counts_every_array():
  arrays = {
    "image": np.zeros((10, 4, 4, 3), np.uint8),
    "label": np.zeros(10, np.int32),
  }
  assert feed.split_bytes(arrays) == 480 + 40


def test_cpu_devices_report_no_memory_limit():
  assert feed.device_memory_bytes(jax.devices()) is None


def _train_records(workdir):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines]


def test_a_device_fed_run_equals_the_host_fed_one(trained_workdir, tmp_path):
  supervised.train_and_evaluate(
    tiny_config(**{"data.feed": "device"}), str(tmp_path)
  )
  host, device = _train_records(trained_workdir), _train_records(tmp_path)
  assert len(host) == len(device)
  for h, d in zip(host, device, strict=True):
    assert 0.0 <= d.get("data_wait_fraction", 0.0) <= 1.0
    for key in ("loss", "accuracy"):
      assert d[key] == h[key], (d["step"], key)
