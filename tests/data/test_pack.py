"""Tests for jvision/data/pack.py: resuming, refusing another --out, the
source left untouched, unreadable examples, and the `jvision pack` command."""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from helpers import run_cli

import jvision.data
from jvision.data import index, pack
from jvision.data.dataset import DataError

pytestmark = pytest.mark.usefixtures("data_cache")

SHARD_MB = 0.004  # about 4 KB: several shards from a dozen small images


@pytest.fixture
def source(tmp_path, imgs):
  """A zip of 2 classes x 8 images per split (JPEGs of 30-40 px)."""
  rng = np.random.default_rng(0)
  files = {}
  for split in ("train", "test"):
    for c in ("a", "b"):
      for i in range(8):
        image = rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)
        files[f"data/{split}/{c}/{i}.jpg"] = imgs.jpeg(image, quality=50)
  path = tmp_path / "src.zip"
  imgs.write_zip(path, files)
  return path


def run_pack(spec, out, **options) -> dict:
  """pack.pack in this process, quietly, with small shards by default."""
  options = {"shard_mb": SHARD_MB, "workers": 1, "progress": False, **options}
  return pack.pack(spec, str(out), **options)


def listing(root) -> dict:
  """{relative path: bytes} of every file under root."""
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      full = os.path.join(dirpath, name)
      with open(full, "rb") as f:
        out[os.path.relpath(full, root)] = f.read()
  return out


def shards(out) -> dict:
  return {k: v for k, v in listing(out).items() if k.endswith(".array_record")}


def metadata(out) -> dict:
  meta = json.loads((out / "packed.json").read_text())
  del meta["created"]
  return meta


def assert_same_pack(a, b):
  assert shards(a) == shards(b)
  assert metadata(a) == metadata(b)
  for split in metadata(a)["splits"]:
    for key in ("ids", "labels"):
      with (
        np.load(a / f"{split}.index.npz") as x,
        np.load(b / f"{split}.index.npz") as y,
      ):
        np.testing.assert_array_equal(x[key], y[key])


def test_pack_plans_shards_and_leaves_the_source(source, tmp_path):
  before = source.read_bytes()
  out = tmp_path / "p"
  result = run_pack(f"folder:{source}", out)
  assert source.read_bytes() == before
  meta = result["metadata"]
  assert meta["source"] == f"folder:{source}"
  assert meta["class_names"] == ["a", "b"]
  assert meta["version"] == 1 and meta["settings"]["shard_mb"] == SHARD_MB
  train = meta["splits"]["train"]
  count = len(train["shards"])
  assert count > 2 and sum(train["shard_examples"]) == 16
  assert train["shards"][1] == f"train-00001-of-{count:05d}.array_record"
  assert result["written"] == count + len(meta["splits"]["test"]["shards"])
  staged = os.listdir(out / pack.STAGING)
  assert not [name for name in staged if name.endswith(".partial")]


def test_an_interrupted_pack_resumes_to_the_same_bytes(
  source, tmp_path, monkeypatch
):
  whole = tmp_path / "whole"
  run_pack(f"folder:{source}", whole)
  out = tmp_path / "resumed"
  real, calls = pack.write_shard, []

  def fail_after_one(task):
    if calls:
      (out / pack.STAGING / (task[1]["name"] + ".partial")).write_bytes(b"x")
      raise KeyboardInterrupt  # as a user's Ctrl-C mid-shard
    calls.append(task[1]["name"])
    return real(task)

  monkeypatch.setattr(pack, "write_shard", fail_after_one)
  with pytest.raises(KeyboardInterrupt):
    run_pack(f"folder:{source}", out)
  assert sorted(shards(out)) == calls  # one whole shard, no half shard
  assert not (out / "packed.json").exists()
  with pytest.raises(DataError, match="unfinished `jvision pack`"):
    index.index_split(f"packed:{out}", "train")
  first = os.stat(out / calls[0]).st_mtime_ns
  monkeypatch.setattr(pack, "write_shard", real)
  result = run_pack(f"folder:{source}", out)
  total = sum(len(s["shards"]) for s in result["metadata"]["splits"].values())
  assert (result["written"], result["reused"]) == (total - 1, 1)
  assert os.stat(out / calls[0]).st_mtime_ns == first
  assert_same_pack(out, whole)


def test_a_deleted_shard_is_rewritten_alone(source, tmp_path):
  out = tmp_path / "p"
  spec = f"folder:{source}"
  run_pack(spec, out)
  complete = listing(out)
  again = run_pack(spec, out)
  assert again["written"] == 0  # a complete pack is left as it is
  assert listing(out) == complete
  name = metadata(out)["splits"]["test"]["shards"][1]
  (out / name).unlink()
  (out / pack.STAGING / (name + ".json")).unlink()
  result = run_pack(spec, out)
  assert result["written"] == 1
  assert shards(out) == {k: v for k, v in complete.items() if k in shards(out)}
  assert (out / name).read_bytes() == complete[name]


def test_other_settings_or_source_are_refused(source, tmp_path, imgs):
  out = tmp_path / "p"
  run_pack(f"folder:{source}", out)
  before = listing(out)
  with pytest.raises(DataError, match=r"other data or settings: settings"):
    run_pack(f"folder:{source}", out, shard_mb=1)
  with pytest.raises(DataError, match=r"splits \['train', 'test'\] \(now"):
    run_pack(f"folder:{source}", out, splits=("train",))
  with zipfile.ZipFile(source, "a") as archive:  # the source changes
    archive.writestr("data/train/a/new.jpg", imgs.jpeg(imgs.solid(9)))
  with pytest.raises(DataError, match="split 'train': its examples"):
    run_pack(f"folder:{source}", out)
  assert listing(out) == before


def test_a_pack_without_its_plan_is_refused(source, tmp_path):
  out = tmp_path / "p"
  run_pack(f"folder:{source}", out)
  shutil.rmtree(out / pack.STAGING)
  before = listing(out)
  with pytest.raises(DataError, match=r"without its \.jvision-pack/ plan"):
    run_pack(f"folder:{source}", out)
  assert listing(out) == before


def test_an_unrelated_directory_is_refused_untouched(source, tmp_path):
  out = tmp_path / "mine"
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  (out / "sub").mkdir()
  with pytest.raises(DataError, match="not empty and holds no jvision pack"):
    run_pack(f"folder:{source}", out)
  assert listing(out) == {"notes.txt": b"mine"}
  assert sorted(os.listdir(out)) == ["notes.txt", "sub"]
  inside = tmp_path / "folder"
  inside.mkdir()
  (inside / "x.jpg").write_bytes(b"")
  with pytest.raises(DataError, match="lies inside the source"):
    run_pack(f"folder:{inside}", inside / "packed")
  assert not (inside / "packed").exists()
  with pytest.raises(DataError, match="already packed"):
    run_pack(f"packed:{out}", tmp_path / "q")


def test_unreadable_examples_are_left_out_and_listed(
  tmp_path, imgs, monkeypatch
):
  rng = np.random.default_rng(2)
  files = {
    f"{c}/{i}.png": imgs.png(rng.integers(0, 256, (8, 8), np.uint8))
    for c in ("x", "y")
    for i in range(3)
  }
  files["y/2.png"] = b"\0" * 3 * 2**20  # above the 2 MiB limit set below
  files["x/1.png"] = b"not a png"  # readable: packed as it is
  imgs.write_files(tmp_path / "src", files)
  monkeypatch.setenv("JVISION_MAX_FILE_MB", "2")
  out = tmp_path / "p"
  result = run_pack(f"folder:{tmp_path / 'src'}", out, splits=("train",))
  entry = result["metadata"]["splits"]["train"]
  assert [i for i, _ in entry["skipped"]] == ["y/2.png"]
  assert "above the 2 MiB limit" in entry["skipped"][0][1]
  split = index.index_split(f"packed:{out}", "train")
  assert "y/2.png" not in split.ids.tolist() and len(split) == 5
  assert "x/1.png" in split.ids.tolist()
  reader = split.reader()
  assert reader.read(split.ids.tolist().index("x/1.png")) == b"not a png"


def test_png_for_images_stored_decoded():
  gray = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
  encoded = pack.stored_bytes(gray, example_id="t/0")
  assert encoded[:8] == b"\x89PNG\r\n\x1a\n"
  from jvision.data import decode

  decoded = decode.decode_image(encoded, path="t/0")
  np.testing.assert_array_equal(decoded, gray)
  assert pack.stored_bytes(b"abc", example_id="x") == b"abc"
  with pytest.raises(DataError, match=r"'t/1'.*float32 \[2, 2\]"):
    pack.stored_bytes(np.zeros((2, 2), np.float32), example_id="t/1")


class TinyArrays(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """6x5 RGB images stored decoded (a Tensor feature, not an Image)."""

  __module__ = "tiny_arrays_test"  # as TinyPets in test_tfds_source.py
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Tensor(shape=(6, 5, 3), dtype=np.uint8),
          "label": tfds.features.ClassLabel(names=["a", "b"]),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    ramp = np.arange(5, dtype=np.uint8)[None, :, None]
    for i in range(5):
      yield (
        i,
        {"image": np.full((6, 5, 3), 20 * i, np.uint8) + ramp, "label": i % 2},
      )


def test_tfds_images_stored_decoded_pack_as_png(tmp_path):
  data_dir = str(tmp_path / "tfds")
  TinyArrays(
    data_dir=data_dir, file_format="array_record"
  ).download_and_prepare()
  out = tmp_path / "p"
  run_pack("tfds:tiny_arrays", out, data_dir=data_dir)
  got = jvision.data.load(f"packed:{out}", "train", cache=False)
  want = jvision.data.load(
    "tfds:tiny_arrays", "train", data_dir=data_dir, cache=False
  )
  assert got.ids.tolist() == [f"train/{i:06d}" for i in range(5)]
  assert got.class_names == ("a", "b")
  np.testing.assert_array_equal(got.images, want.images)  # lossless
  np.testing.assert_array_equal(got.labels, want.labels)
  assert sorted(got.images[:, 0, 0, 0].tolist()) == [0, 20, 40, 60, 80]
  reader = index.index_split(f"packed:{out}", "train").reader()
  assert reader.read(0)[:4] == b"\x89PNG"


def test_pack_command_in_two_processes(source, tmp_path):
  out = tmp_path / "cli"
  run = run_cli(
    "pack",
    f"--data=folder:{source}",
    f"--out={out}",
    "--splits=train",
    f"--shard_mb={SHARD_MB}",
    "--workers=2",
  )
  assert run.returncode == 0, run.stderr[-3000:]
  assert f"use it as data spec packed:{out}" in run.stdout
  assert "train: 16 examples in" in run.stdout
  split = index.index_split(f"packed:{out}", "train")
  want = index.index_split(f"folder:{source}", "train")
  assert split.ids.tolist() == want.ids.tolist()
  first, second = split.reader(), want.reader()
  assert [first.read(k) for k in split.keys] == [
    second.read(k) for k in want.keys
  ]
