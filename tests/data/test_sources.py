"""Tests for jvision/data/sources.py and builtin.py: specs, dispatch, errors."""

import dataclasses
import struct

import numpy as np
import pytest

import jvision.data as jd
from jvision.data import builtin, tfds_source
from jvision.data.dataset import ArrayDataset

pytestmark = pytest.mark.usefixtures("data_cache")


def _idx_bytes(array: np.ndarray) -> bytes:
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def tiny_mnist(tmp_path):
  """Raw IDX files: train 4 images (labels 3, 1, 3, 0), test 2."""
  for prefix, labels in (("train", [3, 1, 3, 0]), ("t10k", [9, 2])):
    images = np.full((len(labels), 5, 5), 7, np.uint8)
    (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(_idx_bytes(images))
    (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(
      _idx_bytes(np.array(labels))
    )
  return tmp_path


@pytest.mark.parametrize(
  "spec, expected",
  [
    ("mnist", jd.DataSpec("builtin", "mnist")),
    ("cifar10", jd.DataSpec("builtin", "cifar10")),
    ("tfds:cifar100", jd.DataSpec("tfds", "cifar100")),
    ("tfds:emnist:letters", jd.DataSpec("tfds", "emnist", "letters")),
    ("folder:/data/x.zip", jd.DataSpec("folder", "/data/x.zip")),
    ("folder:C:/odd:name", jd.DataSpec("folder", "C:/odd:name")),
    ("idx:/data/mnist", jd.DataSpec("idx", "/data/mnist")),
  ],
)
def test_parse_spec(spec, expected):
  assert jd.parse_spec(spec) == expected


def test_parse_spec_expands_home(monkeypatch, tmp_path):
  monkeypatch.setenv("HOME", str(tmp_path))
  assert jd.parse_spec("folder:~/pets").name == str(tmp_path / "pets")


@pytest.mark.parametrize(
  "spec, message",
  [
    ("imagenet", "unknown data spec 'imagenet'; expected fashion_mnist"),
    ("folder:", "lacks a path after 'folder:'"),
    ("tfds:", "is not tfds:NAME"),
    ("tfds:a:b:c", "is not tfds:NAME"),
    ("tfds:a:", "is not tfds:NAME"),
    ("", "non-empty string"),
  ],
)
def test_parse_spec_errors(spec, message):
  with pytest.raises(jd.DataError, match=message):
    jd.parse_spec(spec)


def test_bare_existing_path_gets_a_hint(tmp_path):
  with pytest.raises(jd.DataError, match=f"write 'folder:{tmp_path}'"):
    jd.parse_spec(str(tmp_path))


def test_same_spec_compares_paths_by_the_file(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv("HOME", str(tmp_path))
  (tmp_path / "pets").mkdir()
  (tmp_path / "link").symlink_to(tmp_path / "pets")
  for same in (f"folder:{tmp_path}/pets", "folder:~/pets", "folder:./link/"):
    assert jd.same_spec("folder:pets", same), same
  assert not jd.same_spec("folder:pets", "folder:cats")
  assert not jd.same_spec("folder:pets", "idx:pets")  # another reader
  assert jd.same_spec("tfds:emnist:letters", "tfds:emnist:letters")
  assert not jd.same_spec("tfds:emnist:letters", "tfds:emnist")
  assert not jd.same_spec("mnist", "fashion_mnist")
  assert not jd.same_spec("mnist", "not a spec")  # unparsable: as written


def test_splits_of_each_kind(tiny_mnist, tmp_path, imgs):
  assert jd.splits("mnist") == ("train", "test")
  assert jd.splits(f"idx:{tiny_mnist}") == ("train", "test")
  imgs.write_files(
    tmp_path / "f",
    {f"{s}/c/1.png": imgs.png(imgs.solid(0)) for s in ("train", "val", "test")},
  )
  assert jd.splits(f"folder:{tmp_path / 'f'}") == ("train", "val", "test")
  with pytest.raises(jd.DataError, match="holds no complete split"):
    jd.splits(f"idx:{tmp_path / 'f'}")


def test_mnist_builtin_names_and_first_label():
  ds = jd.load("mnist", "train", max_per_class=2)
  assert ds.class_names == tuple("0123456789")
  assert len(ds) == 20 and ds.images.shape[1:] == (28, 28, 1)
  assert ds.ids[0] == "train/000000" and ds.labels[0] == 5


def test_fashion_mnist_builtin_uses_its_spec():
  ds = jd.load("fashion_mnist", "test", image_size=32, channels=3)
  assert ds.images.shape == (10_000, 32, 32, 3)
  assert ds.class_names[0] == "t-shirt_top" and ds.num_classes == 10
  assert np.bincount(ds.labels).tolist() == [1_000] * 10


def test_cifar10_builtin_reads_the_shared_zip():
  ds = jd.load("cifar10", "test", max_per_class=2, progress=False)
  assert ds.images.shape == (20, 32, 32, 3)
  assert ds.class_names == jd.builtin_label_spec("cifar10").class_names
  assert ds.ids[0] == "test/airplane/0000.jpg"


def test_env_overrides(tiny_mnist, tmp_path, imgs, monkeypatch):
  monkeypatch.setenv("JVISION_MNIST_DIR", str(tiny_mnist))
  ds = jd.load("mnist", "train")
  assert ds.labels.tolist() == [3, 1, 3, 0] and ds.images.shape == (4, 5, 5, 1)
  assert ds.class_names == tuple("0123456789")
  zipped = tmp_path / "c.zip"
  imgs.write_zip(
    zipped,
    {
      f"test/{n}/0.jpg": imgs.jpeg(imgs.solid(50))
      for n in jd.builtin_label_spec("cifar10").class_names
    },
  )
  monkeypatch.setenv("JVISION_CIFAR10", str(zipped))
  assert len(jd.load("cifar10", "test", progress=False)) == 10
  monkeypatch.setenv("JVISION_FASHION_MNIST_DIR", str(tmp_path / "none"))
  with pytest.raises(jd.DataError, match=r"\$JVISION_FASHION_MNIST_DIR="):
    jd.load("fashion_mnist", "train")


def test_builtin_missing_everywhere_says_what_to_install(tmp_path, monkeypatch):
  absent = dataclasses.replace(
    builtin._LOCAL["fashion_mnist"], default=str(tmp_path / "none")
  )
  monkeypatch.setitem(builtin._LOCAL, "fashion_mnist", absent)
  monkeypatch.delenv("JVISION_FASHION_MNIST_DIR", raising=False)
  with pytest.raises(jd.DataError) as info:
    jd.load("fashion_mnist", "train", data_dir=str(tmp_path))
  text = str(info.value)
  assert "apt-get install dataset-fashion-mnist" in text
  assert "tfds build fashion_mnist --file_format=array_record" in text
  assert str(tmp_path) in text


def test_builtin_falls_back_to_tfds(tmp_path, monkeypatch):
  absent = dataclasses.replace(
    builtin._LOCAL["mnist"], default=str(tmp_path / "none")
  )
  monkeypatch.setitem(builtin._LOCAL, "mnist", absent)
  monkeypatch.delenv("JVISION_MNIST_DIR", raising=False)
  calls = []
  monkeypatch.setattr(tfds_source, "is_prepared", lambda name, d: True)
  monkeypatch.setattr(
    tfds_source,
    "load_tfds",
    lambda *args, **kwargs: calls.append((args, kwargs)),
  )
  jd.load("mnist", "test", data_dir="/tfds")
  ((args, kwargs),) = calls
  assert args == ("mnist", None, "test") and kwargs["data_dir"] == "/tfds"
  assert kwargs["label_spec"].class_names == tuple("0123456789")


@pytest.mark.parametrize(
  "kwargs, message",
  [
    ({"channels": 2}, "channels must be 1, 3 or None, got 2"),
    ({"image_size": 0}, "image_size must be a positive int"),
    ({"holdout_fraction": 1.0}, r"holdout_fraction must lie in \[0, 1\)"),
    ({"seed": -1}, "seed must be a non-negative int"),
    ({"max_per_class": 0}, "max_per_class must be an int >= 1, got 0"),
  ],
)
def test_bad_arguments(kwargs, message):
  with pytest.raises(jd.DataError, match=message):
    jd.load("mnist", "train", **kwargs)


def test_unknown_builtin_split():
  with pytest.raises(
    jd.UnknownSplitError, match=r"mnist has splits \['train', 'test'\]"
  ) as caught:
    jd.load("mnist", "validation")
  assert caught.value.available == ("train", "test")
  assert caught.value.split == "validation"


def test_label_spec_path_for_idx(tiny_mnist, tmp_path):
  path = tmp_path / "digits.json"
  path.write_text(
    '{"name": "d", "classes": ['
    + ",".join(f'{{"id": {i}, "name": "d{i}"}}' for i in range(10))
    + "]}"
  )
  ds = jd.load(f"idx:{tiny_mnist}", "test", label_spec=str(path))
  assert ds.class_names[9] == "d9"


def test_array_dataset_examples_and_checks():
  ds = ArrayDataset(
    images=np.zeros((2, 3, 3, 1), np.uint8),
    labels=np.array([0, 1], np.int32),
    ids=np.array(["a", "b"]),
    class_names=("x", "y"),
  )
  example = ds[1]
  assert example["id"] == "b" and example["label"] == 1
  assert example["image"].shape == (3, 3, 1)
  assert len(ds.take(np.array([1]))) == 1
  with pytest.raises(jd.DataError, match=r"labels must lie in \[0, 1\)"):
    dataclasses.replace(ds, class_names=("x",))
  with pytest.raises(jd.DataError, match="images must be uint8"):
    dataclasses.replace(ds, images=np.zeros((2, 3, 3, 1), np.float32))
