"""Tests for jvision/ship/search.py.

The index is built over a tiny IDX copy of real MNIST digits (200 train,
100 test) with the session's tiny supervised run, copied so the search
cache does not touch the shared workdir. The metrics are checked on
hand-computed rankings.
"""

import dataclasses
import pathlib
import shutil

import numpy as np
import pytest
from helpers import idx_bytes
from PIL import Image

import jvision.data
from jvision import inference
from jvision.ship import search

NUM_TRAIN, NUM_TEST = 200, 100


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory, shared_data) -> str:
  """idx: spec of 200 train and 100 test real MNIST digits."""
  mnist = jvision.data.load(
    f"idx:{shared_data / 'mnist'}", "test", progress=False
  )
  directory = tmp_path_factory.mktemp("tiny_mnist")
  for prefix, rows in (
    ("train", slice(0, NUM_TRAIN)),
    ("t10k", slice(NUM_TRAIN, NUM_TRAIN + NUM_TEST)),
  ):
    images = mnist.images[rows, ..., 0]
    (directory / f"{prefix}-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(
      idx_bytes(mnist.labels[rows])
    )
  return f"idx:{directory}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, trained_workdir) -> str:
  """A private copy of the tiny trained run."""
  copy = tmp_path_factory.mktemp("search") / "wd"
  shutil.copytree(trained_workdir, copy)
  return str(copy)


def test_safe_name_keeps_distinct_specs_apart():
  assert search.safe_name("idx:/a/b") != search.safe_name("idx:/a_b")
  assert search.safe_name("mnist").startswith("mnist-")
  assert "/" not in search.safe_name("folder:/x/y.zip")


def test_build_index_writes_then_reuses_cache(workdir, tiny_spec, monkeypatch):
  index = search.build_index(workdir, tiny_spec, "train", progress=False)
  path = search.cache_path(workdir, tiny_spec, "train", index.step)
  assert path.parent == pathlib.Path(workdir) / "search"
  assert path.exists() and path.with_suffix(".json").exists()
  assert index.embeddings.shape[0] == NUM_TRAIN
  assert index.embeddings.dtype == np.float32
  np.testing.assert_allclose(
    np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5
  )
  assert index.ids[0] == "train/000000" and index.class_names[3] == "3"
  mtime = path.stat().st_mtime_ns

  def no_embedding(*args, **kwargs):
    raise AssertionError("the cached index was re-embedded")

  monkeypatch.setattr(search, "embed_dataset", no_embedding)
  again = search.build_index(workdir, tiny_spec, "train", progress=False)
  assert path.stat().st_mtime_ns == mtime
  np.testing.assert_array_equal(again.embeddings, index.embeddings)
  np.testing.assert_array_equal(again.labels, index.labels)


def test_new_checkpoint_step_rebuilds(workdir, tiny_spec):
  model = inference.load(workdir)
  old = search.build_index(
    workdir, tiny_spec, "train", progress=False, model=model
  )
  newer = dataclasses.replace(
    model, trained=dataclasses.replace(model.trained, step=model.step + 1)
  )
  path = search.cache_path(workdir, tiny_spec, "train", model.step + 1)
  assert search.load_index(path, step=model.step + 1) is None
  index = search.build_index(
    workdir, tiny_spec, "train", progress=False, model=newer
  )
  assert index.step == model.step + 1 and path.exists()
  np.testing.assert_allclose(index.embeddings, old.embeddings, atol=1e-6)


def test_search_finds_the_indexed_image_first(workdir, tiny_spec, tmp_path):
  dataset = jvision.data.load(tiny_spec, "train", progress=False)
  query_path = tmp_path / "digit17.png"
  Image.fromarray(dataset.images[17, ..., 0]).save(query_path)
  result = search.search(workdir, tiny_spec, str(query_path), k=5)
  first = result["results"][0]
  assert first["id"] == "train/000017" and first["score"] >= 0.999
  assert first["class_name"] == dataset.class_names[dataset.labels[17]]
  assert [r["rank"] for r in result["results"]] == [1, 2, 3, 4, 5]
  scores = [r["score"] for r in result["results"]]
  assert scores == sorted(scores, reverse=True)
  strip = pathlib.Path(result["strip"])
  assert strip == pathlib.Path(workdir) / "search" / "results" / "digit17.png"
  # 6 tiles of 84 px (28 px x 3) with 4 px gaps; 28 px of captions.
  assert Image.open(strip).size == (532, 120)
  text = search.format_result(result)
  assert "train/000017" in text and "digit17.png" in text


def test_query_rejects_a_wrong_dimension(workdir, tiny_spec):
  index = search.build_index(workdir, tiny_spec, "train", progress=False)
  with pytest.raises(ValueError, match="dim"):
    search.query(index, np.zeros(3, np.float32), 5)


def test_top_k_orders_and_breaks_ties_by_index():
  scores = np.array([0.1, 0.9, 0.5, 0.9, -0.2], np.float32)
  np.testing.assert_array_equal(search.top_k(scores, 3), [1, 3, 2])
  np.testing.assert_array_equal(search.top_k(scores, 9), [1, 3, 2, 0, 4])
  with pytest.raises(ValueError, match="k must be >= 1"):
    search.top_k(scores, 0)


def test_relevance_ranks_by_score():
  scores = np.array([[0.2, 0.9, 0.5], [0.7, 0.1, 0.3]])
  relevant = search.relevance(scores, np.array([0, 2]), np.array([0, 1, 0]))
  # Query 0 ranks items 1, 2, 0 (labels 1, 0, 0); query 1 ranks 0, 2, 1.
  np.testing.assert_array_equal(
    relevant, [[False, True, True], [False, False, False]]
  )


def test_recall_at_k_hand_computed():
  relevant = np.array(
    [[True, False, False], [False, True, False], [False, False, False]]
  )
  assert search.recall_at_k(relevant, 1) == pytest.approx(1 / 3)
  assert search.recall_at_k(relevant, 2) == pytest.approx(2 / 3)
  assert search.recall_at_k(relevant, 3) == pytest.approx(2 / 3)


def test_average_precision_hand_computed():
  relevant = np.array(
    [
      [True, False, True],  # (1/1 + 2/3) / 2
      [False, True, True],  # (1/2 + 2/3) / 2
      [False, False, True],  # (1/3) / 1
      [True, True, True],  # 1
      [False, False, False],  # no relevant item: 0
    ]
  )
  np.testing.assert_allclose(
    search.average_precision(relevant),
    [5 / 6, 7 / 12, 1 / 3, 1.0, 0.0],
  )


def _index(embeddings, labels, ids) -> search.Index:
  return search.Index(
    ids=np.array(ids),
    labels=np.array(labels, np.int32),
    class_names=("a", "b"),
    embeddings=np.array(embeddings, np.float32),
    spec="s",
    split="train",
    step=0,
  )


def test_retrieval_metrics_hand_computed():
  gallery = _index([[1, 0], [0, 1], [0.6, 0.8]], [0, 1, 0], ["g0", "g1", "g2"])
  queries = np.array([[0, 1], [1, 0]], np.float32)
  # Query 0 (label 0) ranks g1 (1.0), g2 (0.8), g0 (0): AP (1/2 + 2/3) / 2.
  # Query 1 (label 1) ranks g0, g2, g1: AP 1/3.
  metrics = search.retrieval_metrics(queries, np.array([0, 1]), gallery)
  assert metrics["recall@1"] == 0.0 and metrics["recall@5"] == 1.0
  assert metrics["map"] == pytest.approx((7 / 12 + 1 / 3) / 2)
  assert metrics["num_queries"] == 2


def test_retrieval_metrics_leave_a_query_out_of_its_own_ranking():
  gallery = _index([[1, 0], [0, 1], [0.6, 0.8]], [0, 1, 0], ["g0", "g1", "g2"])
  # g0 queries the gallery it is in: ranks g2 (0.6), g1 (0); AP 1.
  metrics = search.retrieval_metrics(
    gallery.embeddings[:1],
    gallery.labels[:1],
    gallery,
    (1,),
    exclude_same_id=gallery.ids[:1],
  )
  assert metrics["recall@1"] == 1.0 and metrics["map"] == 1.0


def test_sample_queries_is_seeded_and_sorted():
  chosen = search.sample_queries(100, 10)
  assert len(chosen) == 10 and np.all(np.diff(chosen) > 0)
  np.testing.assert_array_equal(chosen, search.sample_queries(100, 10))
  np.testing.assert_array_equal(search.sample_queries(5, None), np.arange(5))


def test_evaluate_on_the_tiny_set(workdir, tiny_spec):
  metrics = search.evaluate(workdir, tiny_spec, progress=False)
  assert metrics["num_queries"] == NUM_TEST
  assert metrics["gallery_size"] == NUM_TRAIN
  recalls = [metrics[f"recall@{k}"] for k in (1, 5, 10)]
  assert all(0.0 <= r <= 1.0 for r in recalls)
  assert recalls == sorted(recalls)
  assert 0.0 < metrics["map"] <= 1.0
  assert "mAP" in search.format_evaluation(metrics)
  subset = search.evaluate(workdir, tiny_spec, max_queries=10, progress=False)
  assert subset["num_queries"] == 10


def test_simclr_workdir_finds_itself(simclr_workdir, tiny_spec, tmp_path):
  workdir = tmp_path / "wd"
  shutil.copytree(simclr_workdir[0], workdir)
  index = search.build_index(str(workdir), tiny_spec, "test", progress=False)
  indices, scores = search.query(index, index.embeddings[42], 3)
  assert indices[0] == 42 and scores[0] >= 0.999
  assert scores[0] >= scores[1] >= scores[2]
