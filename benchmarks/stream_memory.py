"""Peak memory of a streamed training run at two dataset sizes.

    python -m benchmarks.stream_memory [--sizes=20000,200000] [--steps=20]

Generates a folder of JPEGs (CIFAR-10 images from the shared zip enlarged
to random sizes of 300-500 px, JPEG quality 90; `--distinct` of them, the
rest of each dataset hard links to those files under their own paths, so
that 200,000 images cost 200,000 directory entries, not 200,000 encodes),
then runs `jvision train` in a fresh process for each size with
`data.loading=stream` (224 px random-resized crops made by `--workers`
worker processes, the tiny ResNet, `--steps` steps) and once for the
smallest size with `data.loading=memory`, and records the peak resident
memory of the whole process tree (the trainer and its workers, sampled
every 0.1 s) and the train records' images/s and data_wait_fraction.
Saved to benchmarks/results/stream_memory.json. Nothing is committed but
the results.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import psutil
from PIL import Image

from benchmarks import common
from jvision.data import folder

REPO = pathlib.Path(__file__).resolve().parents[1]
CIFAR = REPO.parent / "shared" / "data" / "cifar10_q75" / "cifar10_q75.zip"
CLASSES = 10
EVAL_IMAGES = 200

CONFIG = """
import sys
sys.path.insert(0, {tests!r})
from helpers import tiny_config


def get_config():
  return tiny_config(**{{
    "data.name": "folder:{root}",
    "data.eval_split": "val",
    "data.max_per_class": None,
    "data.image_size": 224,
    "data.channels": 3,
    "data.mean": (0.49, 0.48, 0.45),
    "data.std": (0.25, 0.24, 0.26),
    "data.workers": {workers},
    "model.name": "resnet_tiny",
    "batch_size": 32,
    "eval_batch_size": 50,
    "num_train_steps": {steps},
    "log_every_steps": {log_every},
    "eval_every_steps": {steps},
    "checkpoint_every_steps": {steps},
    "augment.flip": True,
  }})
"""


def enlarged_jpegs(out: pathlib.Path, count: int, seed: int = 0) -> list:
  """`count` CIFAR-10 images enlarged to 300-500 px, JPEG q90: paths."""
  rng = np.random.default_rng(seed)
  out.mkdir(parents=True, exist_ok=True)
  tree = folder.Tree(str(CIFAR))
  names = [n for n in tree.names if folder.is_image(n)][:count]
  paths = []
  for i, name in enumerate(names):
    image = Image.open(io.BytesIO(tree.read(name))).convert("RGB")
    w, h = (int(v) for v in rng.integers(300, 501, 2))
    path = out / f"{i:05d}.jpg"
    image.resize((w, h), Image.Resampling.BICUBIC).save(path, quality=90)
    paths.append(path)
  tree.close()
  return paths


def linked_folder(root: pathlib.Path, sources: list, count: int) -> None:
  """root/train/cK/NNNNNNN.jpg (count images) and root/val/cK/..., each a
  hard link to one of `sources`."""
  for split, n in (("train", count), ("val", EVAL_IMAGES)):
    for c in range(CLASSES):
      (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
      target = root / split / f"c{i % CLASSES}" / f"{i:07d}.jpg"
      os.link(sources[i % len(sources)], target)


def tree_rss(process: psutil.Process) -> int:
  """Resident bytes of a process and all its descendants."""
  total = 0
  for p in [process, *process.children(recursive=True)]:
    with contextlib.suppress(psutil.NoSuchProcess):  # a worker that ended
      total += p.memory_info().rss
  return total


def run_training(config: pathlib.Path, workdir: pathlib.Path, loading: str):
  """Trains in a fresh process; (peak tree RSS bytes, seconds, records)."""
  env = {**os.environ, "XLA_FLAGS": "", "JVISION_CACHE": "off"}
  start = time.perf_counter()
  process = subprocess.Popen(
    [sys.executable, "-m", "jvision.cli", "train", f"--config={config}"]
    + [f"--workdir={workdir}", f"--config.data.loading={loading}"]
    + ["--config.progress_bar=False"],
    cwd=REPO,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )
  watched, peak = psutil.Process(process.pid), 0
  while process.poll() is None:
    peak = max(peak, tree_rss(watched))
    time.sleep(0.1)
  err = process.stderr.read()
  if process.returncode != 0:
    raise RuntimeError(f"training failed:\n{err[-3000:]}")
  with open(workdir / "metrics.jsonl") as f:
    records = [json.loads(line) for line in f]
  return peak, time.perf_counter() - start, records


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--sizes", default="20000,200000")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--distinct", type=int, default=2000)
  args = parser.parse_args(argv)
  sizes = [int(s) for s in args.sizes.split(",")]
  rows = []
  with tempfile.TemporaryDirectory(prefix="stream_memory_") as tmp:
    tmp = pathlib.Path(tmp)
    print(f"writing {args.distinct} enlarged JPEGs", flush=True)
    sources = enlarged_jpegs(tmp / "distinct", args.distinct)
    runs = [(n, "stream") for n in sizes] + [(min(sizes), "memory")]
    for count, loading in runs:
      root = tmp / f"data_{count}"
      if not root.exists():
        linked_folder(root, sources, count)
      config = tmp / f"config_{count}.py"
      config.write_text(
        CONFIG.format(
          tests=str(REPO / "tests"),
          root=root,
          workers=args.workers,
          steps=args.steps,
          log_every=max(1, args.steps // 2),
        )
      )
      workdir = tmp / f"wd_{count}_{loading}"
      peak, seconds, records = run_training(config, workdir, loading)
      train = [r for r in records if r["split"] == "train"]
      row = {
        "images": count,
        "loading": loading,
        "peak_rss_gib": round(peak / 2**30, 3),
        "seconds": round(seconds, 1),
        "images_per_sec": round(train[-1]["images_per_sec"], 1),
        "data_wait_fraction": round(train[-1]["data_wait_fraction"], 3),
      }
      rows.append(row)
      print(json.dumps(row), flush=True)
  method = (
    f"jvision train in a fresh process per row, tiny ResNet at 224 px, "
    f"batch 32, {args.steps} steps, {args.workers} stream workers; peak RSS "
    "of the process tree sampled every 0.1 s; images: CIFAR-10 (q75 copy) "
    f"enlarged to 300-500 px, JPEG q90, {args.distinct} distinct files, "
    "the rest hard links; JVISION_CACHE=off"
  )
  path = common.save("stream_memory", {"method": method, "rows": rows})
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
