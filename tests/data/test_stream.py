"""Tests for jvision/data/stream.py: streamed batches over a split index.

A streamed batch must equal the one built by hand from the seeded batch
order (`pipeline.local_batch_indices`) and `crops.train_crop`, whatever the
number of worker processes, the step it resumes at or the process slice;
unreadable examples are replaced within their batch and reported.
"""

import logging
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib

import numpy as np
import psutil
import pytest
from helpers import REPO

from jvision.data import crops, index, pipeline, stream
from jvision.data.decode import DecodeError

pytestmark = pytest.mark.usefixtures("data_cache")

SIZE = 16
BATCH = 6


def _photo(rng, height: int, width: int) -> np.ndarray:
  """uint8 [height, width, 3]: a smooth random colour field."""
  coarse = rng.integers(0, 256, (4, 4, 3)).astype(np.float64)
  y = np.linspace(0, 3, height)[:, None]
  x = np.linspace(0, 3, width)[None, :]
  y0, x0 = (
    np.floor(y).astype(int).clip(0, 2),
    np.floor(x).astype(int).clip(0, 2),
  )
  fy, fx = (y - y0)[..., None], (x - x0)[..., None]
  out = (
    coarse[y0, x0] * (1 - fy) * (1 - fx)
    + coarse[y0 + 1, x0] * fy * (1 - fx)
    + coarse[y0, x0 + 1] * (1 - fy) * fx
    + coarse[y0 + 1, x0 + 1] * fy * fx
  )
  return out.astype(np.uint8)


@pytest.fixture
def photos(tmp_path, imgs):
  """cat/ and dog/ of 7 JPEGs each, sizes 40-90 px, and their index."""
  rng = np.random.default_rng(0)
  files = {}
  for c in ("cat", "dog"):
    for i in range(7):
      h, w = rng.integers(40, 91, 2)
      files[f"{c}/{i}.jpg"] = imgs.jpeg(_photo(rng, h, w), quality=90)
  root = tmp_path / "photos"
  imgs.write_files(root, files)
  return index.index_split(f"folder:{root}", "train", holdout_fraction=0.0)


def _settings(views: int = 1) -> stream.CropSettings:
  return stream.CropSettings(size=SIZE, channels=3, views=views)


def _stream(split, start=0, stop=5, workers=0, views=1, **kwargs):
  """{step: batch} of `train_batches`."""
  return dict(
    stream.train_batches(
      split,
      _settings(views),
      start=start,
      stop=stop,
      batch_size=kwargs.pop("batch_size", BATCH),
      seed=kwargs.pop("seed", 3),
      workers=workers,
      **kwargs,
    )
  )


def _by_hand(split, step, views, seed=3, **where):
  """The batch of `step`, from the batch order and `crops.train_crop`."""
  s = _settings(views)
  indices = pipeline.local_batch_indices(
    step, batch_size=BATCH, num_examples=len(split), seed=seed, **where
  )
  reader = split.reader()
  images = []
  kwargs = dict(size=SIZE, channels=3, scale=s.scale, ratio=s.ratio, flip=True)
  for i in indices:
    data, path = reader.read(split.keys[i]), str(split.ids[i])
    if views == 1:
      rng = crops.example_rng(seed, step, int(i))
      images.append(crops.train_crop(data, rng, path=path, **kwargs))
    else:  # the views of one decode
      rngs = [crops.example_rng(seed, step, int(i), v) for v in range(views)]
      views_of_i = crops.train_views(data, rngs, path=path, **kwargs)
      images.append(np.stack(views_of_i))
  return np.stack(images), split.labels[indices]


@pytest.mark.parametrize("views", [1, 2])
def test_streamed_batches_equal_the_batches_built_by_hand(photos, views):
  got = _stream(photos, stop=4, views=views)
  assert sorted(got) == [0, 1, 2, 3]  # 24 examples: steps 2, 3 = epoch 2.
  shape = (BATCH, SIZE, SIZE, 3) if views == 1 else (BATCH, 2, SIZE, SIZE, 3)
  for step, batch in got.items():
    images, labels = _by_hand(photos, step, views)
    assert batch["image"].shape == shape and batch["image"].dtype == np.uint8
    np.testing.assert_array_equal(batch["image"], images)
    np.testing.assert_array_equal(batch["label"], labels)
    assert batch["label"].dtype == np.int32 and batch["skipped"] == []
  if views == 2:  # Two different crops of the same image.
    first = got[0]["image"].astype(int)
    assert np.abs(first[:, 0] - first[:, 1]).mean() > 5


def test_worker_processes_resume_and_slices_agree(photos):
  # One pipeline with real worker processes (grain spawns them) against an
  # in-process one: bit-identical, from a resumed start, and per process.
  reference = _stream(photos, stop=6)
  resumed = _stream(photos, start=3, stop=6, workers=2)
  assert sorted(resumed) == [3, 4, 5]
  for step, batch in resumed.items():
    np.testing.assert_array_equal(batch["image"], reference[step]["image"])
    np.testing.assert_array_equal(batch["label"], reference[step]["label"])
  assert (
    np.abs(
      reference[3]["image"].astype(int) - reference[4]["image"].astype(int)
    ).mean()
    > 5
  )


def test_workers_exit_when_their_parent_is_killed(photos, tmp_path):
  # A run killed with SIGKILL cannot stop its workers; they notice and go.
  script = tmp_path / "reader.py"
  script.write_text(
    textwrap.dedent(f"""
      import time
      from jvision.data import index, stream

      if __name__ == "__main__":  # spawned workers import this module
        split = index.index_split(
          "folder:{photos.reader.path}", "train", holdout_fraction=0.0
        )
        batches = stream.train_batches(
          split, stream.CropSettings(size=8, channels=3), start=0,
          stop=10**6, batch_size=2, seed=0, workers=1,
        )
        next(batches)
        print("reading", flush=True)
        time.sleep(600)
    """)
  )
  process = subprocess.Popen(
    [sys.executable, str(script)],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
  )
  try:
    assert process.stdout.readline() == b"reading\n"
    children = psutil.Process(process.pid).children(recursive=True)
    assert children  # the worker (and multiprocessing's resource tracker)
  finally:
    process.kill()
    process.wait()
  deadline = time.monotonic() + 20
  while _running(children) and time.monotonic() < deadline:
    time.sleep(0.2)
  alive = _running(children)
  for child in alive:  # left over: fail, but leave nothing running
    child.kill()
  assert alive == []
  assert process.stdout.read() == b""  # every holder of the pipe is gone


def _running(processes: list) -> list:
  """The processes that still run (not exited, not zombies)."""
  running = []
  for process in processes:
    try:
      if process.status() != psutil.STATUS_ZOMBIE:
        running.append(process)
    except psutil.NoSuchProcess:
      pass
  return running


def test_resumed_stream_reads_the_uninterrupted_batches(photos):
  whole = _stream(photos, stop=7)
  for start in (1, 5):
    resumed = _stream(photos, start=start, stop=7)
    assert sorted(resumed) == list(range(start, 7))
    for step, batch in resumed.items():
      np.testing.assert_array_equal(batch["image"], whole[step]["image"])


def test_process_slices_concatenate_to_the_global_batch(photos):
  whole = _stream(photos, stop=3)
  parts = [
    _stream(photos, stop=3, process_index=p, process_count=3) for p in range(3)
  ]
  for step in range(3):
    assert [len(part[step]["label"]) for part in parts] == [2, 2, 2]
    for key in ("image", "label"):
      np.testing.assert_array_equal(
        np.concatenate([part[step][key] for part in parts]), whole[step][key]
      )
  with pytest.raises(ValueError, match="batch of 6 does not split evenly"):
    _stream(photos, stop=1, process_count=4)


def _png_header(width: int, height: int) -> bytes:
  """A PNG that declares width x height RGB pixels and holds none."""

  def chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.fixture
def damaged(tmp_path, imgs, monkeypatch):
  """A zip of 4 good JPEGs and 6 bad members (one of each kind), in one
  batch of 10: (index, {id: good pixels' crop source})."""
  rng = np.random.default_rng(1)
  good = imgs.jpeg(_photo(rng, 60, 50), quality=90)
  members = {
    "a/good0.jpg": good,
    "a/empty.jpg": b"",
    "a/good1.jpg": imgs.jpeg(_photo(rng, 50, 70), quality=90),
    "a/notes.png": b"just some notes\n",
    "b/bomb.png": _png_header(100_000, 100_000),
    "b/cut.jpg": good[: len(good) // 2],
    "b/good2.jpg": imgs.jpeg(_photo(rng, 45, 45), quality=90),
    "b/huge.png": bytes(3 * 2**20),  # inflates past the 2 MiB limit
    "b/good3.jpg": imgs.jpeg(_photo(rng, 80, 40), quality=90),
    "b/z_last.jpg": b"\xff\xd8\xff",  # a JPEG marker and nothing else
  }
  path = tmp_path / "damaged.zip"
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
    for name, data in members.items():
      archive.writestr(name, data)
  monkeypatch.setenv("JVISION_MAX_FILE_MB", "2")
  return index.index_split(f"folder:{path}", "train", holdout_fraction=0.0)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_unreadable_examples_are_replaced_in_their_batch(damaged):
  ((step, batch),) = stream.train_batches(
    damaged,
    _settings(),
    start=0,
    stop=1,
    batch_size=10,
    seed=0,
    workers=0,
  )
  reasons = dict(batch["skipped"])
  assert sorted(reasons) == [
    "a/empty.jpg",
    "a/notes.png",
    "b/bomb.png",
    "b/cut.jpg",
    "b/huge.png",
    "b/z_last.jpg",
  ]
  assert "empty file" in reasons["a/empty.jpg"]
  assert "not an image" in reasons["a/notes.png"]
  assert "decompression bomb" in reasons["b/bomb.png"]
  assert "truncated" in reasons["b/cut.jpg"] or "broken" in reasons["b/cut.jpg"]
  assert "3.0 MiB is above the 2 MiB limit" in reasons["b/huge.png"]
  order = pipeline.local_batch_indices(
    step, batch_size=10, num_examples=10, seed=0
  )
  ids = [str(damaged.ids[i]) for i in order]
  good = [k for k, i in enumerate(ids) if i not in reasons]
  assert len(good) == 4 and batch["image"].shape == (10, SIZE, SIZE, 3)
  for k, example in enumerate(ids):
    # A bad example's place holds the next good one of the batch (cyclic).
    source = k if k in good else next((g for g in good if g > k), good[0])
    want, _ = _by_hand_one(damaged, step, int(order[source]))
    np.testing.assert_array_equal(batch["image"][k], want, err_msg=example)
    assert batch["label"][k] == damaged.labels[order[source]]


def _by_hand_one(split, step, i):
  s = _settings()
  data = split.reader().read(split.keys[i])
  rng = crops.example_rng(0, step, i, 0)
  image = crops.train_crop(
    data,
    rng,
    path="x",
    size=SIZE,
    channels=3,
    scale=s.scale,
    ratio=s.ratio,
    flip=s.flip,
  )
  return image, split.labels[i]


def test_a_batch_of_only_unreadable_examples_is_an_error(tmp_path, imgs):
  imgs.write_files(tmp_path / "bad", {"a.png": b"", "b.png": b"nope"})
  split = index.index_split(f"folder:{tmp_path / 'bad'}", "train")
  with pytest.raises(DecodeError, match="no image of its batch"):
    list(
      stream.train_batches(
        split, _settings(), start=0, stop=1, batch_size=2, seed=0, workers=0
      )
    )


@pytest.mark.parametrize(
  "where", [{}, {"process_index": 1, "process_count": 2}]
)
def test_eval_batches_cover_every_example_once(photos, where):
  batches = list(
    stream.eval_batches(photos, _settings(), batch_size=8, workers=0, **where)
  )  # 14 examples in batches of 8: one full, one with 6 of padding.
  reader = photos.reader()
  seen = []
  for number, batch in enumerate(batches):
    idx = np.arange(number * 8, number * 8 + 8)
    if where:
      idx = idx[4:]
    want_mask = (idx < len(photos)).astype(np.float32)
    np.testing.assert_array_equal(batch["mask"], want_mask)
    assert batch["image"].shape == (len(idx), SIZE, SIZE, 3)
    for k, i in enumerate(idx):
      if i >= len(photos):
        continue
      seen.append(int(i))
      want = crops.eval_crop(
        reader.read(photos.keys[i]),
        path="x",
        size=SIZE,
        channels=3,
        crop_fraction=0.875,
      )
      np.testing.assert_array_equal(batch["image"][k], want)
      assert batch["label"][k] == photos.labels[i]
  expected = [i for i in range(len(photos)) if not where or i % 8 >= 4]
  assert seen == expected
  assert len(batches) == 2


def test_unreadable_eval_example_is_masked(tmp_path, imgs):
  rng = np.random.default_rng(2)
  imgs.write_files(
    tmp_path / "e",
    {
      "a.jpg": imgs.jpeg(_photo(rng, 30, 30)),
      "b.jpg": b"",
      "c.jpg": imgs.jpeg(_photo(rng, 30, 30)),
    },
  )
  split = index.index_split(f"folder:{tmp_path / 'e'}", "train")
  (batch,) = stream.eval_batches(split, _settings(), batch_size=4, workers=0)
  assert batch["mask"].tolist() == [1, 0, 1, 0]
  assert batch["skipped"] == [("b.jpg", "empty file (0 bytes)")]
  np.testing.assert_array_equal(batch["image"][1], batch["image"][2])


def test_skip_log_names_each_example_once_and_counts_per_epoch(caplog):
  log = stream.SkipLog("folder:photos")
  with caplog.at_level(logging.WARNING, logger="jvision.data.stream"):
    log.add(0, [("a.jpg", "empty file (0 bytes)"), ("b.jpg", "truncated")])
    log.add(0, [("a.jpg", "empty file (0 bytes)")])
    log.add(0, [])
    log.add(1, [("a.jpg", "empty file (0 bytes)"), ("c.jpg", "bomb")])
  assert log.per_epoch == {0: 3, 1: 2}
  assert log.seen == {"a.jpg", "b.jpg", "c.jpg"}
  records = [r.getMessage() for r in caplog.records]
  assert len(records) == 2  # The repeat of a.jpg in epoch 0 logs nothing.
  assert (
    "folder:photos: skipped 2 unreadable example(s) in epoch 0" in (records[0])
  )
  assert "a.jpg: empty file (0 bytes)" in records[0]
  assert "b.jpg: truncated" in records[0]
  assert "skipped 1 unreadable example(s) in epoch 1" in records[1]
  assert "2 so far this epoch" in records[1] and "c.jpg: bomb" in records[1]
  assert "a.jpg" not in records[1]
