"""Tests for jvision/data/packed.py: packs written by jvision.data.pack read
back as an index, a stream and in memory, and damaged records refused."""

import json
import os
import pickle

import numpy as np
import pytest
from array_record.python import array_record_module

import jvision.data
from jvision.data import index, pack, packed, stream
from jvision.data.dataset import DataError
from jvision.data.labels import label_spec_from_dict

pytestmark = pytest.mark.usefixtures("data_cache")

CLASSES = ("cat", "dog", "owl")


def photo(rng, height, width) -> np.ndarray:
  """A smooth random colour image (JPEG-friendly): uint8 [H, W, 3]."""
  y, x = np.mgrid[0:height, 0:width]
  base = rng.integers(0, 256, 3)
  image = base + 0.4 * x[..., None] + 0.3 * y[..., None]
  return (image % 256).astype(np.uint8)


def write_labelled(root, imgs, per_class: int = 4):
  """root/<train|test>/<class>/<i>.{jpg,png}, images of varied sizes."""
  rng = np.random.default_rng(0)
  files = {}
  for split, n in (("train", per_class), ("test", 2)):
    for c in CLASSES:
      for i in range(n):
        image = photo(rng, 24 + 3 * i, 40 - 2 * i)
        encoded = imgs.png(image) if i % 2 else imgs.jpeg(image, quality=90)
        files[f"{split}/{c}/{i:03d}.{'png' if i % 2 else 'jpg'}"] = encoded
  imgs.write_files(root, files)
  return files


@pytest.fixture
def labelled(tmp_path, imgs):
  """(source folder, its pack)."""
  source = tmp_path / "photos"
  write_labelled(source, imgs)
  out = tmp_path / "packed"
  pack.pack(f"folder:{source}", str(out), workers=1, progress=False)
  return source, out


def test_index_matches_the_folder_index(labelled):
  source, out = labelled
  for split in ("train", "test"):
    got = index.index_split(f"packed:{out}", split)
    want = index.index_split(f"folder:{source}", split)
    assert got.ids.tolist() == want.ids.tolist()
    np.testing.assert_array_equal(got.labels, want.labels)
    assert got.class_names == want.class_names == CLASSES
    assert got.keys.tolist() == list(range(len(want)))
    reader, original = got.reader(), want.reader()
    for k in range(len(got)):
      assert reader.read(got.keys[k]) == original.read(want.keys[k])
  assert len(index.index_split(f"packed:{out}", "train")) == 12
  assert jvision.data.splits(f"packed:{out}") == ("train", "test")


def test_stream_batches_are_bit_identical_to_the_folders(labelled):
  source, out = labelled
  settings = stream.CropSettings(size=16, channels=3)

  def batches(spec):
    split = index.index_split(spec, "train")
    run = stream.train_batches(
      split, settings, start=0, stop=4, batch_size=5, seed=3, workers=0
    )
    return [(step, batch) for step, batch in run]

  got, want = batches(f"packed:{out}"), batches(f"folder:{source}")
  assert [s for s, _ in got] == [0, 1, 2, 3]
  for (_, a), (_, b) in zip(got, want, strict=True):
    assert a["image"].shape == (5, 16, 16, 3)
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
    assert a["skipped"] == b["skipped"] == []


def test_load_in_memory_equals_the_folder(labelled):
  source, out = labelled
  got = jvision.data.load(f"packed:{out}", "test", image_size=20)
  want = jvision.data.load(f"folder:{source}", "test", image_size=20)
  assert got.images.shape == (6, 20, 20, 3)
  np.testing.assert_array_equal(got.images, want.images)
  np.testing.assert_array_equal(got.labels, want.labels)
  assert got.ids.tolist() == want.ids.tolist()
  assert got.class_names == CLASSES


def test_label_spec_and_max_per_class(labelled):
  _, out = labelled
  spec = label_spec_from_dict(
    {
      "name": "pets",
      "classes": [
        {"id": 0, "name": "owl"},
        {"id": 1, "name": "dog"},
        {"id": 2, "name": "kitty", "aliases": ["cat"]},
      ],
    },
    source="test",
  )
  split = index.index_split(
    f"packed:{out}", "train", label_spec=spec, max_per_class=2
  )
  assert split.class_names == ("owl", "dog", "kitty")
  assert split.labels.tolist() == [2, 2, 1, 1, 0, 0]
  assert split.ids.tolist()[:2] == ["train/cat/000.jpg", "train/cat/001.png"]
  assert split.keys.tolist() == [0, 1, 4, 5, 8, 9]
  wrong = label_spec_from_dict(
    {"name": "w", "classes": [{"id": 0, "name": "cat"}]}, source="test"
  )
  with pytest.raises(DataError, match=r"unknown classes.*'dog', 'owl'"):
    index.index_split(f"packed:{out}", "train", label_spec=wrong)


def test_unlabelled_folder_packs_and_reads(tmp_path, imgs):
  rng = np.random.default_rng(1)
  imgs.write_files(
    tmp_path / "shots",
    {f"img{i}.jpg": imgs.jpeg(photo(rng, 20 + i, 30)) for i in range(5)},
  )
  out = tmp_path / "packed"
  pack.pack(f"folder:{tmp_path / 'shots'}", str(out), progress=False)
  got = index.index_split(f"packed:{out}", "train")
  want = index.index_split(f"folder:{tmp_path / 'shots'}", "train")
  assert (
    got.ids.tolist() == want.ids.tolist() == [f"img{i}.jpg" for i in range(5)]
  )
  assert got.labels.tolist() == [-1] * 5 and got.class_names == ()
  meta = json.loads((out / "packed.json").read_text())
  assert meta["class_names"] == [] and list(meta["splits"]) == ["train"]
  ds = jvision.data.load(f"packed:{out}", "train", image_size=8)
  assert ds.images.shape == (5, 8, 8, 3) and not ds.labelled


def test_record_round_trip_and_layout():
  record = packed.encode_record(b"\x89PNG...", example_id="a/é.png", label=7)
  meta = '{"id": "a/é.png", "label": 7}'.encode()
  assert record[:4] == b"JVPR"
  assert record[4:6] == (1).to_bytes(2, "little")
  assert int.from_bytes(record[8:12], "little") == len(meta)
  assert int.from_bytes(record[12:20], "little") == 7
  assert record[20:] == meta + b"\x89PNG..."
  got, image = packed.decode_record(record, where="r")
  assert got == {"id": "a/é.png", "label": 7} and image == b"\x89PNG..."


@pytest.mark.parametrize(
  "record, message",
  [
    (b"JVPR", "shorter than the 20-byte header"),
    (pickle.dumps(os.system), "not a jvision packed record"),
    (packed.encode_record(b"img", example_id="a", label=0)[:-1], "damaged"),
    (packed.encode_record(b"img", example_id="a", label=0) + b"x", "damaged"),
    (
      packed._HEADER.pack(b"JVPR", 1, 0, 9, 0) + b'{"id": 1}',
      "must be",
    ),
    (packed._HEADER.pack(b"JVPR", 1, 0, 3, 0) + b"\xff{}", "metadata"),
    (packed._HEADER.pack(b"JVPR", 2, 0, 0, 0), "format version 2"),
  ],
)
def test_damaged_records_are_refused(record, message):
  with pytest.raises(packed.DamagedRecord, match=message):
    packed.decode_record(record, where="shard s record 0")


class Boom:
  """Unpickling this would create the file `path`."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (open, (self.path, "w"))


def test_a_malicious_shard_is_skipped_without_running_it(labelled, tmp_path):
  _, out = labelled
  meta = json.loads((out / "packed.json").read_text())
  shard = out / meta["splits"]["train"]["shards"][0]
  victim = tmp_path / "pwned"
  good = index.index_split(f"packed:{out}", "train").reader()
  records = [
    packed.encode_record(good.read(k), example_id=f"x{k}", label=0)
    for k in range(12)
  ]
  records[0] = pickle.dumps(Boom(str(victim)))
  shard.unlink()
  writer = array_record_module.ArrayRecordWriter(str(shard), "group_size:1")
  for record in records:
    writer.write(record)
  writer.close()
  split = index.index_split(f"packed:{out}", "train")
  with pytest.raises(OSError, match="record 0: not a jvision packed record"):
    split.reader().read(0)
  settings = stream.CropSettings(size=8, channels=3)
  (_, batch), *_ = stream.train_batches(
    split.take(np.arange(2)),
    settings,
    start=0,
    stop=1,
    batch_size=2,
    seed=0,
    workers=0,
  )
  assert batch["skipped"][0][0] == "train/cat/000.jpg"
  assert "not a jvision packed record" in batch["skipped"][0][1]
  ds = jvision.data.load(f"packed:{out}", "train", image_size=8, cache=False)
  assert len(ds) == 11 and ds.skipped[0][0] == "train/cat/000.jpg"
  assert not victim.exists()


def test_truncated_shard_is_an_error_naming_it(labelled):
  _, out = labelled
  meta = json.loads((out / "packed.json").read_text())
  shard = out / meta["splits"]["test"]["shards"][0]
  data = shard.read_bytes()
  shard.write_bytes(data[: len(data) // 2])
  reader = index.index_split(f"packed:{out}", "test").reader()
  with pytest.raises(OSError, match=f"{shard.name}.*damaged or truncated"):
    reader.read(0)


def test_bad_pack_directories(tmp_path, labelled):
  _, out = labelled
  with pytest.raises(DataError, match="has no packed.json"):
    index.index_split(f"packed:{tmp_path}", "train")
  with pytest.raises(DataError, match=r"splits \['train', 'test'\], not 'val'"):
    index.index_split(f"packed:{out}", "val")
  meta = json.loads((out / "packed.json").read_text())
  meta["splits"]["train"]["shards"] = ["../../etc/passwd"]
  (out / "packed.json").write_text(json.dumps(meta))
  with pytest.raises(DataError, match="split 'train' must have"):
    index.index_split(f"packed:{out}", "train")
  meta["version"] = 99
  (out / "packed.json").write_text(json.dumps(meta))
  with pytest.raises(DataError, match="version 99"):
    jvision.data.splits(f"packed:{out}")


def test_parse_spec_knows_packed(tmp_path):
  parsed = jvision.data.parse_spec("packed:~/p")
  assert parsed.kind == "packed"
  assert parsed.name == os.path.expanduser("~/p")
  with pytest.raises(DataError, match=r"lacks a path after 'packed:'"):
    jvision.data.parse_spec("packed:")
  with pytest.raises(DataError, match=r"packed:DIR"):
    jvision.data.parse_spec("nonsense")
