"""Host pipeline speed: jvision's stream against PyTorch's DataLoader.

    python -m benchmarks.pipeline [--images=3000] [--workers=1,2]
        [--rounds=5] [--batches=24] [--batch_size=32] [--profile]

The work on both sides: read a JPEG file, decode it, take an Inception-style
random-resized crop (scale 0.08-1, ratio 3/4-4/3, torchvision's algorithm:
ten tries, then a centre crop of the clamped ratio), resize it to 224 x 224
(bilinear), mirror it with probability 1/2 and stack a batch of uint8
[B, 224, 224, 3] in the main process. jvision: `stream.train_batches` over
a `SplitIndex` of the folder (grain worker processes; libjpeg-turbo's
decode through simplejpeg, at 1/2-1/8 scale where the box allows it; one
OpenCV bilinear resize of the box, not antialiased, as `tf.image.resize`
in the Flax ImageNet and SimCLR pipelines, area-averaged when the box is
>= 2x the output). PyTorch: a `torch.utils.data.DataLoader` with the
same number of worker processes over a map-style dataset that does what
torchvision's `ImageFolder` + `RandomResizedCrop` + `RandomHorizontalFlip` +
`PILToTensor` do on PIL images (written here in plain PyTorch + Pillow:
full decode, `convert("RGB")`, crop, Pillow's antialiased bilinear resize,
flip), shuffled, default collation. The resampling differs (antialiased
against not) where a box is shrunk; both are the anchors' choices.

The data is generated in a temporary folder and deleted afterwards: the
first `--images` CIFAR-10 training images of the shared zip (equally many
per class), each enlarged to a random width and height of 300-500 px
(bicubic) and saved as JPEG quality 90 in ImageFolder's layout.

Method: for each worker count the two sides alternate (jvision, PyTorch,
jvision, ...) for `--rounds` rounds in one run. A measurement starts a
fresh pipeline (its own seed per round), takes `--warmup` batches untimed
(worker start-up: grain spawns its workers, the DataLoader forks), then
times `--batches` batches: images/s = batches x batch size / seconds (per
worker process: / workers), and the CPU time (user + system) of the main
process and its worker processes per image, which a machine shared with
other jobs disturbs less than wall time. Reported: the median round of
each side; the ratio jvision / PyTorch of the medians, the median of the
rounds' ratios and the ratio of CPU time per image (PyTorch / jvision);
the time to the first batch. `--profile` also times each side's
per-example work in this process (no workers, no transfer) and a bare
full decode.
Results: benchmarks/results/pipeline.json (pipeline_<lo>_<hi>.json for
other `--sides`).
"""

from __future__ import annotations

import io
import math
import os
import pathlib
import platform
import statistics
import tempfile
import time
import zipfile

import numpy as np
import psutil
import torch
from absl import app, flags
from PIL import Image

from benchmarks import common
from jvision.data import crops, index, stream

_IMAGES = flags.DEFINE_integer("images", 3000, "Generated JPEG files.")
_WORKERS = flags.DEFINE_list("workers", ["1", "2"], "Worker process counts.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Alternating rounds per count.")
_BATCHES = flags.DEFINE_integer("batches", 24, "Timed batches per round.")
_WARMUP = flags.DEFINE_integer("warmup", 4, "Untimed batches per round.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per batch.")
_PROFILE = flags.DEFINE_bool(
  "profile", True, "Also time the per-example work in this process."
)
_SIDES = flags.DEFINE_list(
  "sides",
  ["300", "500"],
  "Smallest and largest generated width and height, in pixels.",
)
_DATA = flags.DEFINE_string(
  "data",
  None,
  "An existing folder to read instead of generating one (kept).",
)

SIZE = 224
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
QUALITY = 90
CIFAR_ZIP = (
  common.RESULTS.parents[2] / "shared/data/cifar10_q75/cifar10_q75.zip"
)


def generate(
  out: pathlib.Path, count: int, sides: tuple[int, int], seed: int = 0
) -> int:
  """Writes `count` CIFAR-10 training images enlarged to random widths and
  heights in `sides` (inclusive) as JPEGs under out/<class>/; returns the
  number of bytes written."""
  rng = np.random.default_rng(seed)
  with zipfile.ZipFile(CIFAR_ZIP) as archive:
    names = sorted(
      n
      for n in archive.namelist()
      if n.startswith("train/") and n.endswith(".jpg")
    )
    by_class: dict[str, list[str]] = {}
    for name in names:
      by_class.setdefault(name.split("/")[1], []).append(name)
    per_class = -(-count // len(by_class))
    chosen = [n for c in sorted(by_class) for n in by_class[c][:per_class]]
    total = 0
    for name in chosen[:count]:
      image = Image.open(io.BytesIO(archive.read(name))).convert("RGB")
      width, height = (int(s) for s in rng.integers(*sides, 2, endpoint=True))
      image = image.resize((width, height), Image.Resampling.BICUBIC)
      path = out / name.split("/", 1)[1]
      path.parent.mkdir(parents=True, exist_ok=True)
      image.save(path, format="JPEG", quality=QUALITY)
      total += path.stat().st_size
  return total


# --- PyTorch side: torchvision's ImageFolder + RandomResizedCrop on PIL ---


def torch_crop_params(width: int, height: int) -> tuple[int, int, int, int]:
  """(top, left, h, w) as torchvision's RandomResizedCrop.get_params draws
  them, with torch's generator (seeded per worker by the DataLoader)."""
  area = width * height
  log_ratio = torch.log(torch.tensor(RATIO))
  for _ in range(10):
    target = area * torch.empty(1).uniform_(*SCALE).item()
    aspect = math.exp(torch.empty(1).uniform_(*log_ratio.tolist()).item())
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(torch.randint(0, height - h + 1, size=(1,)).item())
      left = int(torch.randint(0, width - w + 1, size=(1,)).item())
      return top, left, h, w
  in_ratio = width / height
  if in_ratio < min(RATIO):
    w, h = width, int(round(width / min(RATIO)))
  elif in_ratio > max(RATIO):
    w, h = int(round(height * max(RATIO))), height
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def torch_example(path: str) -> torch.Tensor:
  """torchvision's default loader and train transform, on PIL: uint8
  [224, 224, 3]."""
  with open(path, "rb") as f:
    image = Image.open(f).convert("RGB")  # pil_loader: a full decode
  top, left, h, w = torch_crop_params(*image.size)
  image = image.crop((left, top, left + w, top + h))  # F.resized_crop
  image = image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
  if torch.rand(1) < 0.5:  # RandomHorizontalFlip
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return torch.from_numpy(np.asarray(image).copy())  # PILToTensor (HWC)


class TorchFolder(torch.utils.data.Dataset):
  """(image, label) of ImageFolder-layout files, through `torch_example`."""

  def __init__(self, paths: list[str], labels: np.ndarray):
    self.paths, self.labels = paths, labels

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, i: int):
    return torch_example(self.paths[i]), int(self.labels[i])


def torch_batches(dataset: TorchFolder, workers: int, seed: int):
  generator = torch.Generator().manual_seed(seed)
  loader = iter(
    torch.utils.data.DataLoader(
      dataset,
      batch_size=_BATCH_SIZE.value,
      shuffle=True,
      num_workers=workers,
      generator=generator,
      drop_last=True,
    )
  )
  return (images for images, _ in loader)


def jvision_batches(split: index.SplitIndex, workers: int, seed: int):
  settings = stream.CropSettings(
    size=SIZE, channels=3, scale=SCALE, ratio=RATIO, flip=True
  )
  batches = stream.train_batches(
    split,
    settings,
    start=0,
    stop=_WARMUP.value + _BATCHES.value,
    batch_size=_BATCH_SIZE.value,
    seed=seed,
    workers=workers,
  )
  return (batch["image"] for _, batch in batches)


def cpu_seconds() -> float:
  """CPU time (user + system) used so far by this process and its live
  children (the worker processes)."""
  me = psutil.Process()
  total = 0.0
  for process in (me, *me.children(recursive=True)):
    try:
      times = process.cpu_times()
    except psutil.NoSuchProcess:
      continue
    total += times.user + times.system
  return total


def measure(batches) -> dict:
  """Time to the first batch, then images/s and CPU time per image (all
  processes of the pipeline) over the timed batches."""
  start = time.perf_counter()
  first = next(batches)
  if tuple(first.shape) != (_BATCH_SIZE.value, SIZE, SIZE, 3):
    raise AssertionError(f"a batch of shape {tuple(first.shape)}")
  first_seconds = time.perf_counter() - start
  for _ in range(_WARMUP.value - 1):
    next(batches)
  start, cpu, all_cpu = time.perf_counter(), time.process_time(), cpu_seconds()
  for _ in range(_BATCHES.value):
    next(batches)
  seconds = time.perf_counter() - start
  cpu = time.process_time() - cpu
  all_cpu = cpu_seconds() - all_cpu
  images = _BATCHES.value * _BATCH_SIZE.value
  close = getattr(batches, "close", None)
  if close is not None:
    close()
  return {
    "images_per_sec": images / seconds,
    "cpu_ms_per_image": all_cpu / images * 1e3,
    "first_batch_seconds": first_seconds,
    "main_process_cpu_ms_per_batch": cpu / _BATCHES.value * 1e3,
  }


def profile(split: index.SplitIndex, paths: list[str], count: int) -> dict:
  """Per-example milliseconds of each side's work in this process."""
  reader = split.reader()

  def jvision_one(i):
    return crops.train_crop(
      reader.read(split.keys[i]),
      crops.example_rng(0, 0, i),
      path=str(split.ids[i]),
      size=SIZE,
      channels=3,
      scale=SCALE,
      ratio=RATIO,
      flip=True,
    )

  def torch_one(i):
    return torch_example(paths[i])

  def decode_only(i):
    image = Image.open(io.BytesIO(reader.read(split.keys[i])))
    image.load()

  out = {}
  for name, fn in (
    ("jvision_crop", jvision_one),
    ("torch_crop", torch_one),
    ("full_decode", decode_only),
  ):
    rounds = []
    for _ in range(3):
      start = time.perf_counter()
      for i in range(count):
        fn(i)
      rounds.append((time.perf_counter() - start) / count * 1e3)
    out[f"{name}_ms"] = statistics.median(rounds)
  return out


def run(folder: str) -> dict:
  split = index.index_split(f"folder:{folder}", "train", holdout_fraction=0.0)
  paths = [os.path.join(folder, *str(k).split("/")) for k in split.keys]
  dataset = TorchFolder(paths, split.labels)
  record = {"per_workers": {}}
  for workers in (int(w) for w in _WORKERS.value):
    rounds = {"jvision": [], "torch": []}
    for r in range(_ROUNDS.value):
      rounds["jvision"].append(measure(jvision_batches(split, workers, r)))
      rounds["torch"].append(measure(torch_batches(dataset, workers, r)))
      print(
        f"workers {workers} round {r}: jvision "
        f"{rounds['jvision'][-1]['images_per_sec']:.0f} img/s, PyTorch "
        f"{rounds['torch'][-1]['images_per_sec']:.0f} img/s",
        flush=True,
      )
    summary = {}
    for side, values in rounds.items():
      rates = [v["images_per_sec"] for v in values]
      summary[side] = {
        "images_per_sec": statistics.median(rates),
        "images_per_sec_per_worker": statistics.median(rates) / workers,
        "cpu_ms_per_image": statistics.median(
          v["cpu_ms_per_image"] for v in values
        ),
        "first_batch_seconds": statistics.median(
          v["first_batch_seconds"] for v in values
        ),
        "main_process_cpu_ms_per_batch": statistics.median(
          v["main_process_cpu_ms_per_batch"] for v in values
        ),
        "rounds": values,
      }
    summary["ratio_jvision_to_torch"] = (
      summary["jvision"]["images_per_sec"] / summary["torch"]["images_per_sec"]
    )
    summary["ratio_median_of_rounds"] = statistics.median(
      a["images_per_sec"] / b["images_per_sec"]
      for a, b in zip(rounds["jvision"], rounds["torch"], strict=True)
    )
    summary["ratio_cpu_per_image"] = (
      summary["torch"]["cpu_ms_per_image"]
      / summary["jvision"]["cpu_ms_per_image"]
    )
    record["per_workers"][str(workers)] = summary
    print(
      f"workers {workers}: jvision / PyTorch = "
      f"{summary['ratio_jvision_to_torch']:.2f} in images/s, "
      f"{summary['ratio_cpu_per_image']:.2f} in CPU time per image",
      flush=True,
    )
  if _PROFILE.value:
    record["in_process"] = profile(split, paths, min(300, len(split)))
    print("in process:", record["in_process"], flush=True)
  return record


def main(argv):
  del argv
  torch.set_num_threads(1)
  sides = tuple(int(s) for s in _SIDES.value)
  with tempfile.TemporaryDirectory(prefix="jvision_pipeline_") as tmp:
    folder = _DATA.value
    data = {"source": folder}
    if folder is None:
      folder = tmp
      start = time.perf_counter()
      size = generate(pathlib.Path(tmp), _IMAGES.value, sides)
      data = {
        "images": _IMAGES.value,
        "bytes": size,
        "generated_seconds": time.perf_counter() - start,
        "what": (
          f"CIFAR-10 q75 train images (first of each class), enlarged to "
          f"random {sides[0]}-{sides[1]} px sides (bicubic), JPEG q{QUALITY}"
        ),
      }
      print(f"generated {_IMAGES.value} JPEGs, {size / 2**20:.0f} MiB")
    record = run(folder)
  load = os.getloadavg()
  record.update(
    data=data,
    settings={
      "workers": [int(w) for w in _WORKERS.value],
      "rounds": _ROUNDS.value,
      "batches": _BATCHES.value,
      "warmup": _WARMUP.value,
      "batch_size": _BATCH_SIZE.value,
      "size": SIZE,
      "scale": SCALE,
      "ratio": RATIO,
      "torch_version": torch.__version__,
      "python": platform.python_version(),
      "load_average_after": load,
    },
    method=(
      "python -m benchmarks.pipeline: decode + random-resized crop + flip "
      f"to {SIZE} in worker processes, jvision's stream (grain) against "
      "PyTorch's DataLoader (torchvision-style transform on PIL), same "
      f"files and workers, alternating; median of {_ROUNDS.value} rounds "
      f"of {_BATCHES.value} batches of {_BATCH_SIZE.value} after "
      f"{_WARMUP.value} warm-up batches"
    ),
  )
  name = (
    "pipeline" if sides == (300, 500) else f"pipeline_{sides[0]}_{sides[1]}"
  )
  path = common.save(name, record)
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
