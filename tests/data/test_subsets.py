"""Tests for jvision/data/subsets.py."""

import numpy as np
import pytest

from jvision.data import DataError, label_subset


def test_one_percent_of_a_balanced_split_is_balanced():
  labels = np.repeat(np.arange(10), 6000)
  idx = label_subset(labels, 0.01, seed=0)
  assert len(idx) == 600
  assert np.bincount(labels[idx]).tolist() == [60] * 10
  assert np.array_equal(idx, np.sort(idx)) and len(set(idx)) == 600


def test_seeded_and_nested_classes_keep_one():
  labels = np.array([0] * 50 + [1] * 3)
  a = label_subset(labels, 0.1, seed=1)
  assert np.array_equal(a, label_subset(labels, 0.1, seed=1))
  assert not np.array_equal(a, label_subset(labels, 0.1, seed=2))
  assert np.bincount(labels[a]).tolist() == [5, 1]


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.1])
def test_bad_fraction(fraction):
  with pytest.raises(DataError, match="label_fraction must be in"):
    label_subset(np.zeros(4, int), fraction, seed=0)
