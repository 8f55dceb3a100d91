"""Tests for jvision/data/idx.py on the shared MNIST and Debian Fashion-MNIST.

The real files are read whole (about 0.3 s each); small raw and corrupted
IDX files are written to tmp_path.
"""

import gzip
import pathlib
import struct

import numpy as np
import pytest
from helpers import idx_bytes

from jvision.data import idx, sources
from jvision.data.dataset import DataError

FASHION_DIR = pathlib.Path("/usr/share/datasets/fashion-mnist")
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _write_split(directory, prefix, images, labels, gz=False):
  suffix = ".gz" if gz else ""
  opener = gzip.open if gz else open
  for kind, dims, array in (
    ("images", "idx3", images),
    ("labels", "idx1", labels),
  ):
    with opener(directory / f"{prefix}-{kind}-{dims}-ubyte{suffix}", "wb") as f:
      f.write(idx_bytes(array))


@pytest.fixture
def tiny_idx(tmp_path) -> pathlib.Path:
  """Raw train (6 images, labels 0,1,2,0,1,2) and gzipped test (3 images)."""
  images = np.arange(6 * 4 * 4, dtype=np.uint8).reshape(6, 4, 4)
  _write_split(tmp_path, "train", images, np.array([0, 1, 2, 0, 1, 2]))
  _write_split(tmp_path, "t10k", images[:3], np.array([2, 1, 0]), gz=True)
  return tmp_path


def test_mnist_train_from_shared_idx(shared_data):
  ds = idx.load_idx(str(shared_data / "mnist"), "train")
  assert ds.images.shape == (60_000, 28, 28, 1)
  assert ds.images.dtype == np.uint8 and ds.labels.dtype == np.int32
  assert ds.labels[0] == 5
  assert ds.ids[0] == "train/000000" and ds.ids[-1] == "train/059999"
  assert ds.class_names == tuple("0123456789")
  assert ds.images.max() == 255


def test_mnist_test_label_counts(shared_data):
  ds = sources.load(f"idx:{shared_data / 'mnist'}", "test")
  assert len(ds) == 10_000
  assert np.bincount(ds.labels).tolist() == MNIST_TEST_COUNTS


@pytest.mark.skipif(
  not FASHION_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist"
)
def test_fashion_mnist_debian_files():
  train = idx.load_idx(str(FASHION_DIR), "train")
  test = idx.load_idx(str(FASHION_DIR), "test")
  assert train.images.shape == (60_000, 28, 28, 1)
  assert test.images.shape == (10_000, 28, 28, 1)
  assert np.bincount(train.labels).tolist() == [6_000] * 10
  assert np.bincount(test.labels).tolist() == [1_000] * 10


def test_raw_and_gzipped_files(tiny_idx):
  train = idx.load_idx(str(tiny_idx), "train")
  test = idx.load_idx(str(tiny_idx), "test")
  assert train.images.shape == (6, 4, 4, 1) and len(test) == 3
  assert train.images[1, 0, 0, 0] == 16
  assert test.labels.tolist() == [2, 1, 0]
  assert idx.available_splits(str(tiny_idx)) == ("train", "test")


def test_resize_channels_and_max_per_class(tiny_idx):
  ds = idx.load_idx(
    str(tiny_idx), "train", image_size=8, channels=3, max_per_class=1
  )
  assert ds.images.shape == (3, 8, 8, 3)
  assert ds.ids.tolist() == ["train/000000", "train/000001", "train/000002"]
  assert ds.labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
  "corrupt, message",
  [
    (lambda b: b"\x01\x02" + b[2:], "not an IDX file"),
    (lambda b: b[:2] + b"\x07" + b[3:], "not an IDX file"),
    (lambda b: b[:3] + b"\x02" + b[4:], "shape"),
    (lambda b: b[:-5], "shape .* bytes"),
    (lambda b: b"", "magic number missing"),
  ],
)
def test_corrupted_header_names_the_file(tiny_idx, corrupt, message):
  path = tiny_idx / "train-images-idx3-ubyte"
  path.write_bytes(corrupt(path.read_bytes()))
  with pytest.raises(DataError, match=message) as info:
    idx.load_idx(str(tiny_idx), "train")
  assert str(path) in str(info.value)


def test_broken_gzip_names_the_file(tiny_idx):
  path = tiny_idx / "t10k-labels-idx1-ubyte.gz"
  path.write_bytes(path.read_bytes()[:20])
  with pytest.raises(DataError, match="cannot read IDX") as info:
    idx.load_idx(str(tiny_idx), "test")
  assert str(path) in str(info.value)


def test_count_mismatch_and_missing_files(tiny_idx):
  (tiny_idx / "train-labels-idx1-ubyte").write_bytes(
    idx_bytes(np.zeros(5, np.uint8))
  )
  with pytest.raises(DataError, match="6 images but .* 5 labels"):
    idx.load_idx(str(tiny_idx), "train")
  (tiny_idx / "t10k-images-idx3-ubyte.gz").unlink()
  with pytest.raises(DataError, match="no t10k-images-idx3-ubyte"):
    idx.load_idx(str(tiny_idx), "test")
  with pytest.raises(DataError, match="not 'val'"):
    idx.load_idx(str(tiny_idx), "val")


def test_parse_idx_other_dtypes():
  header = struct.pack(">BBBBI", 0, 0, 0x0B, 1, 3)
  values = idx.parse_idx(header + struct.pack(">3h", -1, 2, 300), path="p")
  assert values.tolist() == [-1, 2, 300]
  assert values.dtype == np.int16 and values.dtype.isnative
