"""Latency and quality of similar-image search on Fashion-MNIST.

    python -m benchmarks.search [--workdir=DIR] [--queries=200] [--k=10]

Gallery: the 60,000 Fashion-MNIST training images embedded by a trained
workdir (default: the CNN of benchmarks/accuracy.py, seed 0) and cached in
DIR/search by `jvision.ship.search.build_index`; the build is timed from
scratch. Latency: `--queries` seeded test images searched one at a time
after a warm-up query, timed with perf_counter: embedding + search
(`embed_images` then `query`) and search alone; p50/p90/p99 in ms. The same
searches are also timed as a jitted JAX matrix-vector product +
`lax.top_k`, and as a NumPy product over float16 embeddings, to justify the
float32 NumPy choice. Quality: `evaluate` with 1,000 seeded test queries
(recall@1/5/10, mAP), and the same queries against float16-rounded
embeddings. Results: benchmarks/results/search.json.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import common
from jvision import inference, logging_setup
from jvision.data import sources
from jvision.ship import search

_WORKDIR = flags.DEFINE_string(
  "workdir",
  "benchmarks/workdirs/fashion_mnist_cnn/seed0",
  "A trained Fashion-MNIST workdir.",
)
_QUERIES = flags.DEFINE_integer("queries", 200, "Single-image queries timed.")
_K = flags.DEFINE_integer("k", 10, "Results per query.")
_EVAL_QUERIES = 1_000
SPEC = "fashion_mnist"


def percentiles(seconds: list[float]) -> dict:
  """p50/p90/p99 of a list of durations, in ms."""
  ms = np.asarray(seconds) * 1e3
  return {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)}


def time_calls(fn, inputs) -> list[float]:
  """Seconds of fn(x) for each x, after one warm-up call."""
  fn(inputs[0])
  durations = []
  for x in inputs:
    start = time.perf_counter()
    fn(x)
    durations.append(time.perf_counter() - start)
  return durations


def fresh_index(workdir: str, model) -> tuple[search.Index, float]:
  """Builds the training-split index from scratch; (index, seconds)."""
  path = search.cache_path(workdir, SPEC, "train", model.step)
  for stale in (path, path.with_suffix(".json")):
    stale.unlink(missing_ok=True)
  start = time.perf_counter()
  index = search.build_index(workdir, SPEC, "train", model=model)
  return index, time.perf_counter() - start


def jax_query_fn(index: search.Index, k: int):
  """A jitted (embedding [D] -> (scores [k], indices [k])) over the index."""
  gallery = jax.device_put(index.embeddings)

  @jax.jit
  def fn(embedding):
    return jax.lax.top_k(gallery @ embedding, k)

  return lambda e: jax.block_until_ready(fn(e))


def float16_quality(workdir, model, gallery: search.Index) -> dict:
  """`evaluate`'s metrics with float16-rounded gallery and query vectors."""
  queries = search.build_index(workdir, SPEC, "test", model=model)
  chosen = search.sample_queries(len(queries), _EVAL_QUERIES)

  def rounded(x):
    return x.astype(np.float16).astype(np.float32)

  return search.retrieval_metrics(
    rounded(queries.embeddings[chosen]),
    queries.labels[chosen],
    dataclasses.replace(gallery, embeddings=rounded(gallery.embeddings)),
  )


def main(argv):
  del argv
  logging_setup.configure()
  workdir, k = _WORKDIR.value, _K.value
  model = inference.load(workdir)
  index, build_s = fresh_index(workdir, model)
  test = sources.load(SPEC, "test", progress=False)
  chosen = search.sample_queries(len(test), _QUERIES.value, seed=1)
  images = [test.images[i] for i in chosen]
  embeddings = [search.embed_images(model, [x])[0] for x in images]
  half = index.embeddings.astype(np.float16)
  latency = {
    "embed_and_search": time_calls(
      lambda x: search.query(index, search.embed_images(model, [x])[0], k),
      images,
    ),
    "search_numpy_float32": time_calls(
      functools.partial(search.query, index, k=k), embeddings
    ),
    "search_jax_float32": time_calls(jax_query_fn(index, k), embeddings),
    "search_numpy_float16": time_calls(
      lambda e: search.top_k(half @ e.astype(np.float16), k), embeddings
    ),
  }
  record = {
    "gallery_size": len(index),
    "dim": int(index.embeddings.shape[1]),
    "index_megabytes_float32": index.embeddings.nbytes / 2**20,
    "build_seconds": build_s,
    "latency": {name: percentiles(s) for name, s in latency.items()},
    "retrieval": search.evaluate(
      workdir, SPEC, max_queries=_EVAL_QUERIES, progress=False
    ),
    "retrieval_float16": float16_quality(workdir, model, index),
    "workdir": workdir,
    "step": model.step,
    "method": (
      f"exact cosine search (NumPy float32 matrix-vector product + "
      f"argpartition top-{k}) over {len(index)} Fashion-MNIST train "
      f"embeddings; {len(images)} seeded test images queried one at a "
      "time after a warm-up, perf_counter per query; embedding at batch "
      f"size 1 with the workdir's jitted backbone; retrieval metrics over "
      f"{_EVAL_QUERIES} seeded test queries, relevant = same label"
    ),
  }
  for name, stats in record["latency"].items():
    print(
      f"{name:<22} p50 {stats['p50_ms']:.3f} ms  p90 {stats['p90_ms']:.3f}"
      f" ms  p99 {stats['p99_ms']:.3f} ms"
    )
  print(search.format_evaluation(record["retrieval"]))
  print("float16:", record["retrieval_float16"])
  print(f"index built in {build_s:.1f} s")
  print("saved", common.save("search", record))


if __name__ == "__main__":
  app.run(main)
