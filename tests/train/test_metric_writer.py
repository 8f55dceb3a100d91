"""Tests for jvision/train/metric_writer.py."""

import importlib.util
import json
import struct
import subprocess
import sys

import pytest
from helpers import cpu_env

from jvision.train import metric_writer


def _event_records(path) -> list[bytes]:
  """The records of a TFRecord-framed event file: each is a little-endian
  uint64 length, a 4-byte CRC of it, the data, a 4-byte CRC of the data."""
  data, records, at = path.read_bytes(), [], 0
  while at < len(data):
    (length,) = struct.unpack("<Q", data[at : at + 8])
    records.append(data[at + 12 : at + 12 + length])
    at += 12 + length + 4
  assert at == len(data), "a truncated record"
  return records


def test_metrics_go_to_jsonl_and_tensorboard(tmp_path):
  writer = metric_writer.MetricWriter(str(tmp_path))
  writer.write(3, "train", {"loss": 0.5, "accuracy": 1})
  writer.write(5, "test", {"accuracy": 0.25})
  writer.close()
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(line) for line in lines] == [
    {"step": 3, "split": "train", "loss": 0.5, "accuracy": 1},
    {"step": 5, "split": "test", "accuracy": 0.25},
  ]
  (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
  records = _event_records(events)
  # The file-version record, then one per scalar, named split/metric.
  assert len(records) == 4
  for tag in (b"train/loss", b"train/accuracy", b"test/accuracy"):
    assert sum(tag in record for record in records) == 1


@pytest.mark.skipif(
  importlib.util.find_spec("torch") is None, reason="needs torch installed"
)
def test_tensorboard_writing_does_not_import_torch(tmp_path):
  """tensorboardX imports torch when it is installed (1.5-2.6 s of every
  run); the writer loads it without, and keeps a torch already imported."""
  script = (
    "import sys; from jvision.train import metric_writer as m; "
    f"w = m.MetricWriter({str(tmp_path / 'a')!r}); "
    "w.write(1, 'train', {'loss': 1.0}); w.close(); "
    "print('torch' in sys.modules); "
    "import torch; "
    f"w = m.MetricWriter({str(tmp_path / 'b')!r}); "
    "w.write(1, 'train', {'loss': torch.tensor(2.0).item()}); w.close(); "
    "print('torch' in sys.modules)"
  )
  out = subprocess.run(
    [sys.executable, "-c", script],
    capture_output=True,
    text=True,
    env=cpu_env(),
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split() == ["False", "True"]
  for run in ("a", "b"):
    assert (tmp_path / run / "metrics.jsonl").read_text().count("loss") == 1
