"""Tests for jvision/data/folder.py: layouts, holdout split, zips, bad files.

Small folders and zips are written to tmp_path; one test reads a few real
images per class from the shared CIFAR-10 zip.
"""

import logging

import numpy as np
import pytest
from helpers import CIFAR_NAMES

from jvision.data import cache, folder, labels
from jvision.data.dataset import DataError

pytestmark = pytest.mark.usefixtures("data_cache")


def _load(path, split, **kwargs):
  return folder.load_folder(str(path), split, progress=False, **kwargs)


@pytest.fixture
def split_dir(tmp_path, imgs):
  """train/{cat: 3, dog: 2}, test/{cat: 1, dog: 1}; pixel = 10 * index."""
  files = {}
  for i, name in enumerate(
    ["train/cat/0.png", "train/cat/1.png", "train/cat/2.png", "train/dog/a.png"]
    + ["train/dog/b.png", "test/cat/x.png", "test/dog/y.png"]
  ):
    files[name] = imgs.png(imgs.solid(10 * i))
  root = tmp_path / "pets"
  imgs.write_files(root, files)
  return root


@pytest.fixture
def class_dir(tmp_path, imgs):
  """Class folders only: a: 10, b: 20, c: 7 grayscale images."""
  files = {}
  for name, count in (("a", 10), ("b", 20), ("c", 7)):
    for i in range(count):
      files[f"{name}/{i:03d}.png"] = imgs.png(imgs.solid(i, channels=1))
  root = tmp_path / "classes"
  imgs.write_files(root, files)
  return root


def test_split_folders(split_dir):
  ds = _load(split_dir, "train")
  assert ds.ids.tolist() == [
    "train/cat/0.png",
    "train/cat/1.png",
    "train/cat/2.png",
    "train/dog/a.png",
    "train/dog/b.png",
  ]
  assert ds.labels.tolist() == [0, 0, 0, 1, 1]
  assert ds.class_names == ("cat", "dog")
  assert ds.images.shape == (5, 8, 8, 3) and ds.images.dtype == np.uint8
  assert ds.images[:, 0, 0, 0].tolist() == [0, 10, 20, 30, 40]
  test = _load(split_dir, "test")
  assert test.ids.tolist() == ["test/cat/x.png", "test/dog/y.png"]
  assert folder.index_folder(str(split_dir)).splits == ("train", "test")


def test_unknown_split_and_bad_paths(split_dir, tmp_path):
  with pytest.raises(DataError, match=r"has splits \['train', 'test'\]"):
    _load(split_dir, "val")
  with pytest.raises(DataError, match="does not exist"):
    _load(tmp_path / "nope", "train")
  (tmp_path / "file.txt").write_text("x")
  with pytest.raises(DataError, match="neither a directory nor a zip"):
    _load(tmp_path / "file.txt", "train")


def test_holdout_split_is_seeded_stratified_disjoint_and_complete(class_dir):
  train = _load(class_dir, "train", seed=3, holdout_fraction=0.2)
  test = _load(class_dir, "test", seed=3, holdout_fraction=0.2)
  assert np.bincount(test.labels).tolist() == [2, 4, 1]  # round(0.2 n).
  assert np.bincount(train.labels).tolist() == [8, 16, 6]
  assert not set(train.ids) & set(test.ids)
  assert len(set(train.ids) | set(test.ids)) == 37
  assert train.images.shape == (30, 8, 8, 1)
  again = _load(
    class_dir, "test", seed=3, holdout_fraction=0.2, use_cache=False
  )
  assert again.ids.tolist() == test.ids.tolist()
  other = _load(class_dir, "test", seed=4, holdout_fraction=0.2)
  assert other.ids.tolist() != test.ids.tolist()


def test_holdout_split_ignores_listing_order():
  entries = [(f"{c}/{i}.png", c) for c in "xy" for i in range(50)]
  reference = folder.holdout_split(entries, seed=0, holdout_fraction=0.1)
  shuffled = [entries[i] for i in np.random.default_rng(1).permutation(100)]
  again = folder.holdout_split(shuffled, seed=0, holdout_fraction=0.1)
  assert again == reference
  assert len(reference["test"]) == 10


def test_holdout_keeps_a_train_example_per_class():
  halves = folder.holdout_split(
    [("a/1.png", "a"), ("b/1.png", "b"), ("b/2.png", "b")],
    seed=0,
    holdout_fraction=0.5,
  )
  assert [c for _, c in halves["train"]] == ["a", "b"]
  assert [c for _, c in halves["test"]] == ["b"]


def test_zip_with_wrapper_hidden_files_and_macosx(tmp_path, imgs):
  png = imgs.png(imgs.solid(7))
  path = tmp_path / "pets.zip"
  imgs.write_zip(
    path,
    {
      "pets/train/cat/1.png": png,
      "pets/train/dog/2.jpg": imgs.jpeg(imgs.solid(200)),
      "pets/test/cat/3.png": png,
      "pets/train/cat/.hidden.png": b"",
      "pets/.git/x.png": b"",
      "__MACOSX/pets/train/cat/._1.png": b"junk",
      "pets/README.txt": b"not an image",
    },
  )
  index = folder.index_folder(str(path))
  assert index.prefix == "pets/" and index.splits == ("train", "test")
  ds = _load(path, "train")
  assert ds.ids.tolist() == ["train/cat/1.png", "train/dog/2.jpg"]
  assert ds.skipped == ()
  assert ds.images[1].mean() == pytest.approx(200, abs=2)


def test_zip_without_split_folders(tmp_path, imgs):
  path = tmp_path / "flat.zip"
  files = {
    f"data/{c}/{i}.png": imgs.png(imgs.solid(i))
    for c in "ab"
    for i in range(10)
  }
  imgs.write_zip(path, files)
  train = _load(path, "train", seed=0, holdout_fraction=0.1)
  assert len(train) == 18 and train.ids[0].startswith("a/")


def test_unreadable_files_are_skipped_counted_and_logged(
  split_dir, imgs, caplog
):
  good = imgs.jpeg(
    np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
  )
  png = imgs.png(imgs.solid(5))
  imgs.write_files(
    split_dir,
    {
      "train/cat/empty.png": b"",
      "train/cat/cut.png": png[: len(png) // 2],
      "train/dog/cut.jpg": good[: len(good) // 2],
      "train/dog/notes.png": b"these are notes\n",
    },
  )
  with caplog.at_level(logging.WARNING):
    ds = _load(split_dir, "train")
  assert len(ds) == 5
  assert [p for p, _ in ds.skipped] == [
    "train/cat/cut.png",
    "train/cat/empty.png",
    "train/dog/cut.jpg",
    "train/dog/notes.png",
  ]
  assert "empty file" in dict(ds.skipped)["train/cat/empty.png"]
  assert "skipped 4 unreadable image(s)" in caplog.text
  assert "train/dog/notes.png" in caplog.text
  cached = _load(split_dir, "train")  # The cache keeps the skipped list.
  assert cached.skipped == ds.skipped


def test_label_spec_maps_aliases(tmp_path, imgs):
  root = tmp_path / "cars"
  imgs.write_files(
    root,
    {
      "car/1.png": imgs.png(imgs.solid(1)),
      "plane/1.png": imgs.png(imgs.solid(2)),
      **{f"{n}/1.png": imgs.png(imgs.solid(3)) for n in CIFAR_NAMES[2:]},
    },
  )
  spec = labels.builtin_label_spec("cifar10")
  ds = _load(root, "train", label_spec=spec, holdout_fraction=0.0)
  assert ds.class_names == CIFAR_NAMES
  by_id = dict(zip(ds.ids.tolist(), ds.labels.tolist(), strict=True))
  assert by_id["car/1.png"] == 1 and by_id["plane/1.png"] == 0
  assert by_id["truck/1.png"] == 9


def test_label_spec_mismatch_lists_unknown_and_missing(split_dir):
  spec = labels.label_spec_from_dict(
    {
      "name": "pets",
      "classes": [{"id": 0, "name": "cat"}, {"id": 1, "name": "bird"}],
    },
    source="pets.json",
  )
  with pytest.raises(DataError) as info:
    _load(split_dir, "train", label_spec=spec)
  text = str(info.value)
  assert str(split_dir) in text
  assert "unknown classes (not a name or alias in the spec) ['dog']" in text
  assert "missing classes (in the spec, no folder) ['bird']" in text


def test_max_per_class_keeps_first_in_id_order(split_dir):
  ds = _load(split_dir, "train", max_per_class=2)
  assert ds.ids.tolist() == [
    "train/cat/0.png",
    "train/cat/1.png",
    "train/dog/a.png",
    "train/dog/b.png",
  ]


def test_mixed_sizes_need_image_size(tmp_path, imgs):
  imgs.write_files(
    tmp_path / "m",
    {
      "train/a/1.png": imgs.png(imgs.solid(0, size=8)),
      "train/a/2.png": imgs.png(imgs.solid(0, size=12)),
      "train/b/1.png": imgs.png(imgs.solid(0, size=8, channels=1)),
    },
  )
  with pytest.raises(
    DataError, match="differ in size: 8x8 .*12x12.*image_size"
  ):
    _load(tmp_path / "m", "train")
  ds = _load(tmp_path / "m", "train", image_size=4)
  assert ds.images.shape == (3, 4, 4, 3)  # Gray promoted to 3 channels.
  gray = _load(tmp_path / "m", "train", image_size=4, channels=1)
  assert gray.images.shape == (3, 4, 4, 1)


def test_mixed_split_and_class_folders_is_an_error(tmp_path, imgs):
  imgs.write_files(
    tmp_path / "x",
    {
      "train/a/1.png": imgs.png(imgs.solid(0)),
      "cat/1.png": imgs.png(imgs.solid(0)),
    },
  )
  with pytest.raises(
    DataError, match=r"mixes split folders \['train'\] .*\['cat'\]"
  ):
    folder.index_folder(str(tmp_path / "x"))


def test_cache_is_reused_and_invalidated(
  split_dir, imgs, data_cache, monkeypatch
):
  first = _load(split_dir, "train")
  assert len(list(data_cache.glob("*.npz"))) == 1
  with np.load(next(data_cache.glob("*.npz")), allow_pickle=False) as entry:
    assert entry["ids"].dtype.kind == "U"

  def fail(*args, **kwargs):
    raise AssertionError("decoded again despite the cache")

  monkeypatch.setattr(folder, "_load_uncached", fail)
  second = _load(split_dir, "train")
  np.testing.assert_array_equal(second.images, first.images)
  assert second.ids.tolist() == first.ids.tolist()
  assert second.class_names == first.class_names
  monkeypatch.undo()
  monkeypatch.setenv("JVISION_CACHE", str(data_cache))
  imgs.write_files(split_dir, {"train/dog/c.png": imgs.png(imgs.solid(1))})
  assert len(_load(split_dir, "train")) == 6


def test_damaged_cache_entry_is_recomputed(split_dir, data_cache):
  _load(split_dir, "train")
  (entry,) = data_cache.glob("*.npz")
  entry.write_bytes(b"garbage")
  assert len(_load(split_dir, "train")) == 5


def test_cache_can_be_turned_off(split_dir, monkeypatch, tmp_path):
  monkeypatch.setenv("JVISION_CACHE", "off")
  assert cache.cache_dir() is None
  assert len(_load(split_dir, "train")) == 5


def test_shared_cifar_zip_a_few_per_class(shared_data):
  path = shared_data / "cifar10_q75" / "cifar10_q75.zip"
  train = _load(path, "train", max_per_class=3)
  assert (
    train.images.shape == (30, 32, 32, 3) and train.images.dtype == np.uint8
  )
  assert train.class_names == CIFAR_NAMES
  assert train.ids[:3].tolist() == [
    "train/airplane/0000.jpg",
    "train/airplane/0001.jpg",
    "train/airplane/0002.jpg",
  ]
  assert np.bincount(train.labels).tolist() == [3] * 10
  assert 30 < train.images.mean() < 225  # Real photos, not blank.
  test = _load(path, "test", max_per_class=1)
  assert test.ids[-1] == "test/truck/0000.jpg" and test.labels[-1] == 9


def test_corrupt_zip_member_is_skipped(tmp_path, imgs):
  path = tmp_path / "bad.zip"
  png = imgs.png(imgs.solid(9))
  imgs.write_zip(path, {"a/1.png": png, "a/2.png": png, "b/1.png": png})
  data = bytearray(path.read_bytes())
  second = data.find(png, data.find(png) + 1)  # a/2.png, stored as is.
  data[second + len(png) // 2] ^= 0xFF
  path.write_bytes(bytes(data))
  ds = _load(path, "train", holdout_fraction=0.0)
  assert ds.ids.tolist() == ["a/1.png", "b/1.png"]
  ((bad, reason),) = ds.skipped
  assert bad == "a/2.png" and "corrupt zip member" in reason
  assert folder.index_folder(str(path)).splits == ("train", "test")


def test_zip_member_leaving_the_archive_is_refused_and_never_read(
  tmp_path, imgs, caplog, monkeypatch
):
  path = tmp_path / "sly.zip"
  png = imgs.png(imgs.solid(3))
  imgs.write_zip(
    path,
    {"a/1.png": png, "b/1.png": png, "../x.png": png, "a/../../y.png": png},
  )
  tree = folder.Tree(str(path))
  assert tree.names == ["a/1.png", "b/1.png"]
  assert tree.refused == [
    ("../x.png", "path leaves the archive ('..')"),
    ("a/../../y.png", "path leaves the archive ('..')"),
  ]
  tree.close()
  assert folder.unsafe_member("/etc/x.png") == "absolute path in the archive"
  assert folder.unsafe_member("C:/x.png") == "absolute path in the archive"
  assert folder.unsafe_member("a/..b/x.png") is None
  read = []
  original = folder.Tree.read
  monkeypatch.setattr(
    folder.Tree,
    "read",
    lambda self, name: read.append(name) or original(self, name),
  )
  with caplog.at_level(logging.WARNING):
    ds = _load(path, "train", holdout_fraction=0.0, use_cache=False)
  assert ds.ids.tolist() == ["a/1.png", "b/1.png"]
  assert sorted(read) == ["a/1.png", "b/1.png"]
  assert "refused 2 archive member(s)" in caplog.text
  assert "../x.png: path leaves the archive" in caplog.text


def test_zip_member_inflating_past_the_limit_is_not_read(
  tmp_path, imgs, monkeypatch
):
  import tracemalloc
  import zipfile

  path = tmp_path / "bomb.zip"
  png = imgs.png(imgs.solid(4))
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
    archive.writestr("a/1.png", png)
    archive.writestr("a/2.png", png)
    archive.writestr("b/big.png", bytes(20 * 2**20))  # 20 MiB of zeros
  assert path.stat().st_size < 100_000
  monkeypatch.setenv("JVISION_MAX_FILE_MB", "10")
  tree = folder.Tree(str(path))
  assert tree.size("b/big.png") == 20 * 2**20
  tracemalloc.start()
  try:
    with pytest.raises(OSError, match=r"20\.0 MiB is above the 10 MiB limit"):
      tree.read("b/big.png")
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert peak < 2**20  # Refused from the directory entry, nothing inflated.
  assert tree.read("a/1.png") == png
  tree.close()
  ds = _load(path, "train", holdout_fraction=0.0, use_cache=False)
  assert ds.ids.tolist() == ["a/1.png", "a/2.png"]
  ((bad, reason),) = ds.skipped
  assert bad == "b/big.png" and "10 MiB limit" in reason


def test_file_above_the_limit_is_refused_and_bad_limit_named(
  tmp_path, imgs, monkeypatch
):
  root = tmp_path / "files"
  imgs.write_files(root, {"a/1.png": imgs.png(imgs.solid(1))})
  (root / "a" / "2.png").write_bytes(bytes(3 * 2**20))
  monkeypatch.setenv("JVISION_MAX_FILE_MB", "2.5")
  assert folder.max_file_bytes() == int(2.5 * 2**20)
  with pytest.raises(OSError, match=r"3\.0 MiB is above the 2 MiB"):
    folder.Tree(str(root)).read("a/2.png")
  monkeypatch.setenv("JVISION_MAX_FILE_MB", "lots")
  with pytest.raises(DataError, match=r"JVISION_MAX_FILE_MB='lots' is not"):
    folder.max_file_bytes()
  monkeypatch.delenv("JVISION_MAX_FILE_MB")
  assert folder.max_file_bytes() == 256 * 2**20


@pytest.mark.parametrize(
  "layout, ids",
  [
    ({"x.jpg": 1, "y.png": 2, "z.png": 3}, ["x.jpg", "y.png", "z.png"]),
    (  # One single folder is no class either.
      {"photos/x.jpg": 1, "photos/y.png": 2},
      ["photos/x.jpg", "photos/y.png"],
    ),
    (  # A wrapper folder above one folder.
      {"me/photos/x.jpg": 1, "me/photos/y.png": 2},
      ["photos/x.jpg", "photos/y.png"],
    ),
  ],
)
def test_folder_without_class_folders_is_unlabelled(
  tmp_path, imgs, layout, ids
):
  root = tmp_path / "mine"
  imgs.write_files(
    root, {n: imgs.png(imgs.solid(10 * v)) for n, v in layout.items()}
  )
  index = folder.index_folder(str(root))
  assert not index.labelled and index.class_names == ()
  assert index.splits == ("train",)
  ds = _load(root, "train")
  assert ds.ids.tolist() == ids
  assert ds.labels.tolist() == [-1] * len(ids) and not ds.labelled
  assert ds.class_names == () and ds.num_classes == 0
  assert ds.images[:, 0, 0, 0].tolist() == [10 * v for v in layout.values()]
  with pytest.raises(DataError, match=r"has splits \['train'\]"):
    _load(root, "test")
  spec = labels.builtin_label_spec("cifar10")
  with pytest.raises(DataError, match="no class folders .*'cifar10'"):
    _load(root, "train", label_spec=spec)


def test_unlabelled_zip_with_split_folders_keeps_its_splits(tmp_path, imgs):
  path = tmp_path / "mine.zip"
  png = imgs.png(imgs.solid(5))
  imgs.write_zip(
    path, {"train/1.png": png, "train/2.png": png, "test/3.png": png}
  )
  index = folder.index_folder(str(path))
  assert index.splits == ("train", "test") and not index.labelled
  ds = _load(path, "test")
  assert ds.ids.tolist() == ["test/3.png"] and ds.labels.tolist() == [-1]
