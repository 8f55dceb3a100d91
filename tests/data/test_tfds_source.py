"""Tests for jvision/data/tfds_source.py on a tiny dataset prepared here.

The builder below writes PNG bytes itself (TFDS only needs TensorFlow to
encode numpy images), so `download_and_prepare(file_format="array_record")`
runs without TensorFlow. It skips registration: the loader finds the data
through its dataset_info.json, as it would for any prepared dataset.
"""

import io
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jvision.data import labels, sources, tfds_source
from jvision.data.dataset import DataError

pytestmark = pytest.mark.usefixtures("data_cache")

NAMES = ["cat", "dog", "bird"]


class TinyPets(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """8x8 RGB squares; example i has value 10 * i and label i % 3."""

  # A one-part module name keeps TFDS's `code_path` off its dotted-module
  # branch, which imports the `importlib_resources` backport (not installed)
  # when pytest imports this file as "tests.data.test_tfds_source".
  __module__ = "tiny_pets_test"
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(8, 8, 3)),
          "label": tfds.features.ClassLabel(names=NAMES),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {
      "train": self._generate_examples(0, 6),
      "test": self._generate_examples(6, 9),
    }

  def _generate_examples(self, start, stop):
    for i in range(start, stop):
      buffer = io.BytesIO()
      pixels = np.full((8, 8, 3), 10 * i, np.uint8)
      Image.fromarray(pixels).save(buffer, format="PNG")
      yield i, {"image": buffer.getvalue(), "label": i % 3}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp("tfds"))
  TinyPets(data_dir=path, file_format="array_record").download_and_prepare()
  return path


def test_reads_prepared_dataset(data_dir):
  ds = sources.load(
    "tfds:tiny_pets", "train", data_dir=data_dir, progress=False
  )
  assert ds.images.shape == (6, 8, 8, 3) and ds.images.dtype == np.uint8
  assert ds.class_names == tuple(NAMES)
  assert ds.ids.tolist() == [f"train/{i:06d}" for i in range(6)]
  values = ds.images[:, 0, 0, 0].astype(int)
  assert sorted(values.tolist()) == [0, 10, 20, 30, 40, 50]
  np.testing.assert_array_equal(ds.labels, (values // 10) % 3)
  test = sources.load("tfds:tiny_pets", "test", data_dir=data_dir)
  assert sorted(test.images[:, 0, 0, 0].tolist()) == [60, 70, 80]


def test_splits_and_unknown_split(data_dir):
  assert sources.splits("tfds:tiny_pets", data_dir=data_dir) == (
    "train",
    "test",
  )
  with pytest.raises(DataError, match=r"splits \['train', 'test'\], not 'val'"):
    sources.load("tfds:tiny_pets", "val", data_dir=data_dir)


def test_resize_channels_and_max_per_class(data_dir):
  ds = sources.load(
    "tfds:tiny_pets",
    "train",
    data_dir=data_dir,
    image_size=4,
    channels=1,
    max_per_class=1,
    progress=False,
  )
  assert ds.images.shape == (3, 4, 4, 1)
  assert sorted(ds.labels.tolist()) == [0, 1, 2]


def test_label_spec_remaps_class_ids(data_dir):
  spec = labels.label_spec_from_dict(
    {
      "name": "pets",
      "classes": [
        {"id": 0, "name": "bird"},
        {"id": 1, "name": "feline", "aliases": ["cat"]},
        {"id": 2, "name": "dog"},
      ],
    },
    source="pets.json",
  )
  plain = sources.load("tfds:tiny_pets", "train", data_dir=data_dir)
  ds = sources.load(
    "tfds:tiny_pets", "train", data_dir=data_dir, label_spec=spec
  )
  assert ds.class_names == ("bird", "feline", "dog")
  np.testing.assert_array_equal(ds.labels, np.array([1, 2, 0])[plain.labels])


def test_second_load_comes_from_the_cache(data_dir, monkeypatch):
  first = sources.load("tfds:tiny_pets", "train", data_dir=data_dir)

  def fail(*args, **kwargs):
    raise AssertionError("read the records again despite the cache")

  monkeypatch.setattr(tfds_source, "_read_split", fail)
  second = sources.load("tfds:tiny_pets", "train", data_dir=data_dir)
  np.testing.assert_array_equal(second.images, first.images)


def test_missing_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(DataError) as info:
    sources.load("tfds:mnist", "train", data_dir=str(tmp_path))
  text = str(info.value)
  assert "tfds:mnist is not prepared in " + str(tmp_path) in text
  assert "tfds build mnist" in text and "array_record" in text
  with pytest.raises(DataError, match="no such dataset"):
    sources.load("tfds:no_such_set_xyz", "train", data_dir=str(tmp_path))
  assert not tfds_source.is_prepared("mnist", str(tmp_path))


def test_tensorflow_datasets_is_needed_only_by_tfds_sources(monkeypatch):
  monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # missing
  with pytest.raises(DataError, match="pip install 'tensorflow-datasets"):
    tfds_source.open_builder("mnist", None, None)
  assert not tfds_source.is_prepared("mnist", None)
  out = subprocess.run(
    [
      sys.executable,
      "-c",
      "import sys, jvision.data, jvision.train.supervised; "
      "print('tensorflow_datasets' in sys.modules)",
    ],
    capture_output=True,
    text=True,
    check=True,
  )
  assert out.stdout.strip() == "False"
