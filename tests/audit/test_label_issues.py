"""Out-of-fold probabilities and confident learning on known data."""

import numpy as np
import pytest

from jvision.audit import label_issues


def _blobs(n_per_class=80, classes=4, dims=16, seed=0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(0, 4, (classes, dims))
  labels = np.repeat(np.arange(classes), n_per_class)
  features = centres[labels] + rng.normal(0, 1, (len(labels), dims))
  return features.astype(np.float32), labels.astype(np.int32)


def test_fold_ids_are_stratified():
  labels = np.repeat(np.arange(3), [10, 7, 5])
  folds = label_issues.fold_ids(labels, 5, seed=0)
  for label in range(3):
    counts = np.bincount(folds[labels == label], minlength=5)
    assert counts.max() - counts.min() <= 1


def test_project_keeps_the_top_principal_components():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 3)) * np.array([10.0, 1.0, 0.1])
  out = label_issues.project(x, 1)
  assert out.shape == (200, 1)
  # The first component is the high-variance axis.
  assert abs(np.corrcoef(out[:, 0], x[:, 0])[0, 1]) > 0.99
  assert label_issues.project(x, 5).shape == (200, 3)


def test_out_of_fold_probabilities_separate_blobs():
  features, labels = _blobs()
  probs = label_issues.out_of_fold_probabilities(
    features, labels, 4, folds=4, seed=0
  )
  assert probs.shape == (320, 4)
  np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
  assert (probs.argmax(1) == labels).mean() > 0.97
  with pytest.raises(ValueError, match="folds"):
    label_issues.out_of_fold_probabilities(features, labels, 4, folds=1)


def test_confident_learning_finds_flipped_labels():
  features, labels = _blobs()
  noisy = labels.copy()
  flipped = np.arange(0, 320, 23)  # 14 examples
  noisy[flipped] = (noisy[flipped] + 1) % 4
  probs = label_issues.out_of_fold_probabilities(
    features, noisy, 4, folds=4, seed=0
  )
  flagged, score = label_issues.find_label_issues(noisy, probs)
  found = set(np.flatnonzero(flagged))
  assert len(found & set(flipped)) >= 12  # of 14
  assert len(found - set(flipped)) <= 2
  assert score.min() >= 0 and score.max() <= 1
  # 1 - p(given label): the flipped examples score highest.
  top = set(np.argsort(-score)[: len(flipped)])
  assert len(top & set(flipped)) >= 12
