"""Tests for jvision/data/pipeline.py: order, resumption, process slices."""

import numpy as np
import pytest

from jvision.data import pipeline


def test_each_epoch_is_a_permutation_and_batches_straddle_epochs():
  n, b = 10, 4
  stream = np.concatenate(
    [
      pipeline.batch_indices(s, batch_size=b, num_examples=n, seed=3)
      for s in range(5)
    ]
  )  # 20 indices = 2 epochs
  assert sorted(stream[:10]) == list(range(10))
  assert sorted(stream[10:]) == list(range(10))
  assert not np.array_equal(stream[:10], stream[10:])  # reshuffled


def test_order_depends_only_on_seed_and_step():
  a = pipeline.batch_indices(7, batch_size=8, num_examples=50, seed=1)
  b = pipeline.batch_indices(7, batch_size=8, num_examples=50, seed=1)
  c = pipeline.batch_indices(7, batch_size=8, num_examples=50, seed=2)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_stream_position():
  assert pipeline.stream_position(0, batch_size=32, num_examples=100) == (0, 0)
  assert pipeline.stream_position(3, batch_size=32, num_examples=100) == (0, 96)
  assert pipeline.stream_position(4, batch_size=32, num_examples=100) == (1, 28)


def test_process_slices_cover_the_global_batch():
  arrays = {"x": np.arange(40)}
  full = pipeline.train_batch(arrays, 5, batch_size=8, seed=0)["x"]
  parts = [
    pipeline.train_batch(
      arrays, 5, batch_size=8, seed=0, process_index=p, process_count=2
    )["x"]
    for p in range(2)
  ]
  np.testing.assert_array_equal(np.concatenate(parts), full)


def test_uneven_process_split_is_an_error():
  with pytest.raises(ValueError, match="does not split evenly over 3"):
    pipeline.process_slice(np.arange(8), process_index=0, process_count=3)


def test_eval_batches_pad_and_mask():
  arrays = {"x": np.arange(10) + 100}
  batches = list(pipeline.eval_batches(arrays, batch_size=4))
  assert [len(b["x"]) for b in batches] == [4, 4, 4]
  np.testing.assert_array_equal(batches[-1]["mask"], [1, 1, 0, 0])
  real = np.concatenate([b["x"][b["mask"] > 0] for b in batches])
  np.testing.assert_array_equal(real, arrays["x"])


def test_prefetch_keeps_order_and_reraises():
  assert list(pipeline.prefetch(iter(range(5)))) == [0, 1, 2, 3, 4]

  def broken():
    yield 1
    raise OSError("disk gone")

  with pytest.raises(OSError, match="disk gone"):
    list(pipeline.prefetch(broken()))
