"""Scanning array sources (no files) and the audit on them."""

import pytest
from helpers import idx_bytes

from jvision.audit import defaults, run, scan


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory, shared_data):
  """IDX files of 150 train + 40 test real digits; test[0] = train[5]."""
  from jvision import data

  ds = data.load(f"idx:{shared_data / 'mnist'}", "test", progress=False)
  images, labels = ds.images[:190, ..., 0].copy(), ds.labels[:190].copy()
  images[150] = images[5]  # leaks into test (index 0 of the test split)
  labels[150] = labels[5]
  images[7] = images[3]  # an exact duplicate within train
  labels[7] = labels[3]
  out = tmp_path_factory.mktemp("idx")
  (out / "train-images-idx3-ubyte").write_bytes(idx_bytes(images[:150]))
  (out / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels[:150]))
  (out / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images[150:]))
  (out / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels[150:]))
  return out


def test_scan_of_an_array_source(idx_dir):
  scanned = scan.scan(f"idx:{idx_dir}", progress=False)
  assert len(scanned) == 190
  assert scanned.split_names == ("train", "test")
  assert scanned.paths[0] == "train/000000" and scanned.paths[150] == (
    "test/000000"
  )
  assert scanned.ok.all() and not scanned.reasons
  assert scanned.work.shape == (190, 28, 28, 1)
  assert (scanned.sizes == 28).all()
  assert scanned.hashes[150] == scanned.hashes[5]


def test_audit_of_an_array_source(idx_dir, tmp_path):
  config = defaults.audit_config()
  summary = run.run_audit(
    f"idx:{idx_dir}", str(tmp_path / "out"), config=config, progress=False
  )
  rows = (tmp_path / "out" / "issues.csv").read_text().splitlines()
  assert "test/000000,leakage,1.0000,train/000005" in rows
  assert "train/000007,exact_duplicate,1.0000,train/000003" in rows
  assert summary["counts"]["corrupt"] == 0
  assert summary["source"] == f"idx:{idx_dir}"
  manifest = (tmp_path / "out" / "manifest.jsonl").read_text()
  assert '"path": "test/000000"' not in manifest
  assert '"path": "train/000005"' in manifest
  assert (tmp_path / "out" / "report.html").stat().st_size > 1000
