"""Throughput of `predict` and `search` embedding, before and after one
mesh-aware inference object (`jvision.inference`).

    python -m benchmarks.inference --base=/tmp/wt-base [--runs=5] [--rounds=2]

`--base` is a checkout of the code to compare against (e.g. `git worktree
add /tmp/wt-base <commit>`); this checkout is "after". A tiny seed CNN is
trained on Fashion-MNIST (20 steps: throughput does not depend on what it
learned) and 2,000 test images are written as PNG files. Each variant
(code version x 1 or 8 CPU devices, forced with
XLA_FLAGS=--xla_force_host_platform_device_count) runs in its own process
and times, after one warm-up call, `--runs` calls of

  predict_cli      `predict.run_predict` on the 2,000 PNGs (load, decode,
                   forward, CSV): what `jvision predict` does
  predict_forward  the classifier's probabilities of the 10,000 prepared
                   test images (batch 256)
  search_index     `search.embed_dataset` of the 10,000 test images
                   (prepare + embeddings): what building an index does
  search_forward   the unit embeddings of the 10,000 prepared images

in images/s (median over all runs). The variants alternate (base, after;
1, 8 devices), `--rounds` times. Results: benchmarks/results/inference.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve()
REPO = HERE.parents[1]
SPEC = "fashion_mnist"
NUM_PNGS = 2_000
TRAIN_STEPS = 20
BATCH = 256  # images per forward pass, as predict and search default to
DEVICES = (1, 8)
TIMINGS = ("predict_cli", "predict_forward", "search_index", "search_forward")


def _load(workdir: str):
  """The trained model, through whichever API this checkout has."""
  try:
    from jvision import inference
  except ImportError:  # before: jvision.ship.model
    from jvision.ship import model as model_lib

    return model_lib.load(workdir), "ship.model"
  return inference.load(workdir), "inference"


def _timed(fn, runs: int, count: int) -> list[float]:
  """images/s of `count` images for each of `runs` calls, after a warm-up."""
  fn()
  rates = []
  for _ in range(runs):
    start = time.perf_counter()
    fn()
    rates.append(count / (time.perf_counter() - start))
  return rates


def worker(workdir: str, pngs: str, runs: int) -> dict:
  """The four timings of this process's checkout and devices."""
  import jax

  from jvision.ship import predict, search

  model, api = _load(workdir)
  dataset = search.load_at_model_size(model, SPEC, "test", progress=False)
  prepared = model.prepare(dataset.images)  # uint8 [10000, 28, 28, 1]
  n = len(prepared)
  out = os.path.join(tempfile.mkdtemp(), "preds.csv")
  return {
    "api": api,
    "devices": jax.device_count(),
    "predict_cli": _timed(
      lambda: predict.run_predict(workdir, pngs, out, progress=False),
      runs,
      NUM_PNGS,
    ),
    "predict_forward": _timed(
      lambda: model.probabilities(prepared, batch_size=BATCH), runs, n
    ),
    "search_index": _timed(
      lambda: search.embed_dataset(
        model, dataset, batch_size=BATCH, progress=False
      ),
      runs,
      n,
    ),
    "search_forward": _timed(
      lambda: model.embeddings(prepared, batch_size=BATCH), runs, n
    ),
  }


def _train(workdir: str) -> None:
  """A 20-step seed CNN on Fashion-MNIST in `workdir` (this checkout)."""
  from jvision.train import defaults, supervised

  config = defaults.supervised_config()
  config.data.name = SPEC
  config.model.name = "cnn"
  config.num_train_steps = TRAIN_STEPS
  config.eval_every_steps = config.checkpoint_every_steps = TRAIN_STEPS
  config.progress_bar = False
  supervised.train_and_evaluate(config, workdir)


def _write_pngs(folder: pathlib.Path) -> None:
  """The first NUM_PNGS Fashion-MNIST test images as PNG files."""
  from PIL import Image

  from jvision.data import sources

  test = sources.load(SPEC, "test", progress=False)
  folder.mkdir(parents=True)
  for i in range(NUM_PNGS):
    Image.fromarray(test.images[i, :, :, 0]).save(folder / f"{i:05d}.png")


def _run_worker(tree: str, devices: int, workdir, pngs, runs) -> dict:
  env = {
    **os.environ,
    "PYTHONPATH": tree,
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
  }
  command = [sys.executable, str(HERE), "--worker", workdir, pngs, str(runs)]
  done = subprocess.run(
    command, cwd=tree, env=env, capture_output=True, text=True, check=False
  )
  if done.returncode:
    raise RuntimeError(f"{tree} on {devices} devices failed:\n{done.stderr}")
  return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--base", help="checkout to compare to (required)")
  parser.add_argument("--runs", type=int, default=5)
  parser.add_argument("--rounds", type=int, default=2)
  parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    workdir, pngs, runs = args.worker
    print(json.dumps(worker(workdir, pngs, int(runs))))
    return
  if not args.base:
    parser.error("--base=CHECKOUT (the code to compare against) is required")
  sys.path.insert(0, str(REPO))
  from benchmarks import common

  scratch = pathlib.Path(tempfile.mkdtemp(prefix="bench_inference_"))
  workdir, pngs = str(scratch / "wd"), scratch / "pngs"
  _train(workdir)
  _write_pngs(pngs)
  trees = {"before": os.path.abspath(args.base), "after": str(REPO)}
  samples: dict = {}
  for _ in range(args.rounds):
    for devices in DEVICES:
      for label, tree in trees.items():
        got = _run_worker(tree, devices, workdir, str(pngs), args.runs)
        assert got["devices"] == devices, got
        entry = samples.setdefault(f"{label}/{devices}", {"api": got["api"]})
        for key in TIMINGS:
          entry.setdefault(key, []).extend(got[key])
        medians = {k: round(statistics.median(got[k])) for k in TIMINGS}
        print(label, devices, medians, flush=True)
  figures = {
    name: {
      "api": entry["api"],
      **{
        f"{key}_images_per_s": round(statistics.median(entry[key]), 1)
        for key in TIMINGS
      },
      "runs": {key: [round(v, 1) for v in entry[key]] for key in TIMINGS},
    }
    for name, entry in samples.items()
  }
  base_rev = subprocess.run(
    ["git", "-C", trees["before"], "rev-parse", "HEAD"],
    capture_output=True,
    text=True,
    check=False,
  ).stdout.strip()
  common.save(
    "inference",
    {
      "figures": figures,
      "before_commit": base_rev,
      "method": (
        f"seed CNN ({TRAIN_STEPS} training steps) on Fashion-MNIST; "
        f"predict_cli: run_predict over {NUM_PNGS} PNGs; predict_forward / "
        "search_forward: probabilities / unit embeddings of the 10,000 "
        f"prepared test images at batch {BATCH}; search_index: "
        "search.embed_dataset of them; each variant in its own process "
        "(XLA_FLAGS forcing 1 or 8 CPU devices), one warm-up call then "
        f"{args.runs} timed calls, {args.rounds} alternating rounds; "
        "median images/s"
      ),
    },
  )


if __name__ == "__main__":
  main()
