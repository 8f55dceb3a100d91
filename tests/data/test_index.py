"""Tests for jvision/data/index.py: split indexes of folders, zips, TFDS.

An index must name the same examples, labels and ids that the in-memory
loaders load, read the same bytes, and pickle small (no pixels, no open
handles).
"""

import copy
import io
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from jvision.data import folder, index, sources
from jvision.data.dataset import DataError

pytestmark = pytest.mark.usefixtures("data_cache")


@pytest.fixture
def pets(tmp_path, imgs):
  """Class folders cat: 6, dog: 4 of 8x8 PNGs (pixel 10 * i); the files."""
  files = {
    f"{c}/{i}.png": imgs.png(imgs.solid(10 * i + (c == "dog")))
    for c, n in (("cat", 6), ("dog", 4))
    for i in range(n)
  }
  root = tmp_path / "pets"
  imgs.write_files(root, files)
  return root, files


@pytest.mark.parametrize("split", ["train", "test"])
def test_folder_index_matches_the_in_memory_loader(pets, split):
  root, files = pets
  got = index.index_split(
    f"folder:{root}", split, seed=2, holdout_fraction=0.25
  )
  loaded = folder.load_folder(
    str(root), split, seed=2, holdout_fraction=0.25, progress=False
  )
  assert got.ids.tolist() == loaded.ids.tolist()
  np.testing.assert_array_equal(got.labels, loaded.labels)
  assert got.labels.dtype == np.int32
  assert got.class_names == ("cat", "dog") and got.labelled
  assert got.source == f"folder:{root}" and got.split == split
  assert len(got) == (7 if split == "train" else 3)  # round(0.25 n) held out
  reader = got.reader()
  for key in got.keys:
    assert reader.read(key) == files[key]
  reader.close()


def test_zip_index_reads_members_below_its_wrapper(tmp_path, imgs):
  path = tmp_path / "pets.zip"
  files = {
    f"pets/{s}/{c}/{i}.png": imgs.png(imgs.solid(i))
    for s in ("train", "val")
    for c in ("a", "b")
    for i in range(3)
  }
  imgs.write_zip(path, files)
  got = index.index_split(f"folder:{path}", "val")
  assert got.ids.tolist() == [f"val/{c}/{i}.png" for c in "ab" for i in "012"]
  assert got.labels.tolist() == [0, 0, 0, 1, 1, 1]
  reader = got.reader()
  assert reader.read(got.keys[4]) == files["pets/val/b/1.png"]
  reader.close()


def test_index_pickles_small_and_reads_after_copying(tmp_path, imgs):
  path = tmp_path / "big.zip"
  big = np.random.default_rng(0).integers(0, 256, (256, 256, 3), np.uint8)
  files = {f"{c}/{i}.png": imgs.png(big) for c in "ab" for i in range(8)}
  imgs.write_zip(path, files)
  got = index.index_split(f"folder:{path}", "train", holdout_fraction=0.0)
  reader = got.reader()
  reader.read(got.keys[0])  # An open zip handle is not pickled.
  # What grain sends to a worker: small, and no open handle (the copy
  # goes through the same __getstate__; the real crossing into spawned
  # workers is tested in test_stream.py).
  assert len(pickle.dumps(got)) < 4096 < len(files["a/0.png"])
  again = copy.deepcopy(got)
  assert again.reader().read(again.keys[9]) == files["b/1.png"]


def test_unlabelled_folder_gives_label_minus_one_and_one_train_split(
  tmp_path, imgs
):
  root = tmp_path / "photos"
  imgs.write_files(
    root, {f"{n}.jpg": imgs.jpeg(imgs.solid(i)) for i, n in enumerate("abc")}
  )
  got = index.index_split(f"folder:{root}", "train")
  assert got.ids.tolist() == ["a.jpg", "b.jpg", "c.jpg"]
  assert got.labels.tolist() == [-1, -1, -1] and got.labels.dtype == np.int32
  assert got.class_names == () and not got.labelled and got.num_classes == 0
  with pytest.raises(DataError, match=r"has splits \['train'\]"):
    index.index_split(f"folder:{root}", "test")


def test_take_keeps_the_reader_and_selects_rows(pets):
  root, files = pets
  got = index.index_split(f"folder:{root}", "train", holdout_fraction=0.0)
  part = got.take(np.array([9, 0]))
  assert part.ids.tolist() == ["dog/3.png", "cat/0.png"]
  assert part.labels.tolist() == [1, 0]
  assert part.reader().read(part.keys[0]) == files["dog/3.png"]


def test_max_per_class_keeps_the_first_in_id_order(pets):
  root, _ = pets
  got = index.index_split(
    f"folder:{root}", "train", holdout_fraction=0.0, max_per_class=2
  )
  assert got.ids.tolist() == [
    "cat/0.png",
    "cat/1.png",
    "dog/0.png",
    "dog/1.png",
  ]


def test_sources_kept_in_memory_are_refused():
  with pytest.raises(DataError, match="'mnist' .*always loaded in memory"):
    index.index_split("mnist", "train")
  with pytest.raises(DataError, match="'idx:/x' .*folder, tfds, packed"):
    index.index_split("idx:/x", "train")


class TinyStream(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Five 6x6 PNGs of value 40 * i, label i % 2 (classes odd/even)."""

  __module__ = "tiny_stream_test"  # see test_tfds_source.TinyPets
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(6, 6, 3)),
          "label": tfds.features.ClassLabel(names=["even", "odd"]),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i in range(5):
      buffer = io.BytesIO()
      Image.fromarray(np.full((6, 6, 3), 40 * i, np.uint8)).save(
        buffer, format="PNG"
      )
      yield i, {"image": buffer.getvalue(), "label": i % 2}


def test_tfds_index_reads_records_encoded(tmp_path):
  data_dir = str(tmp_path / "tfds")
  TinyStream(
    data_dir=data_dir, file_format="array_record"
  ).download_and_prepare()
  got = index.index_split(
    "tfds:tiny_stream", "train", data_dir=data_dir, progress=False
  )
  loaded = sources.load(
    "tfds:tiny_stream", "train", data_dir=data_dir, progress=False
  )
  assert got.ids.tolist() == loaded.ids.tolist()
  np.testing.assert_array_equal(got.labels, loaded.labels)
  assert got.class_names == ("even", "odd")
  reader = copy.deepcopy(got).reader()
  for k, key in enumerate(got.keys):
    encoded = reader.read(key)
    assert isinstance(encoded, bytes)  # Left encoded for the worker.
    pixels = np.asarray(Image.open(io.BytesIO(encoded)))
    np.testing.assert_array_equal(pixels, loaded.images[k])
    assert got.labels[k] == pixels[0, 0, 0] // 40 % 2
