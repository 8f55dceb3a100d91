"""Image-quality statistics and robust outliers on known inputs."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from jvision.audit import quality


def _blur(gray: np.ndarray, radius: float) -> np.ndarray:
  image = Image.fromarray((gray * 255).astype(np.uint8))
  blurred = image.filter(ImageFilter.GaussianBlur(radius))
  return np.asarray(blurred, np.float32) / 255


def test_luminance_uses_itu_601_weights():
  rgb = np.zeros((1, 1, 1, 3), np.uint8)
  rgb[..., 0] = 255
  assert quality.luminance(rgb)[0, 0, 0] == pytest.approx(0.299)
  grey = np.full((1, 2, 2, 1), 51, np.uint8)
  np.testing.assert_allclose(quality.luminance(grey), 0.2)


def test_entropy_of_known_histograms():
  constant = np.full((1, 8, 8), 0.5, np.float32)
  halves = np.zeros((1, 8, 8), np.float32)
  halves[:, :, 4:] = 1.0
  quarters = np.repeat(np.linspace(0, 1, 4, dtype=np.float32), 16)
  quarters = quarters.reshape(1, 8, 8)
  np.testing.assert_allclose(
    quality.entropy(np.concatenate([constant, halves, quarters])),
    [0.0, 1.0, 2.0],
    atol=1e-6,
  )


def test_sharpness_falls_with_blur_and_ignores_contrast():
  rng = np.random.default_rng(0)
  sharp = (rng.random((28, 28)) > 0.5).astype(np.float32)
  images = np.stack([sharp, 0.3 * sharp, _blur(sharp, 1.0), _blur(sharp, 2.0)])
  s = quality.sharpness(images)
  assert s[0] == pytest.approx(s[1], rel=1e-5)  # contrast does not matter
  assert s[0] > s[2] > s[3]
  assert quality.sharpness(np.zeros((1, 8, 8), np.float32))[0] == 0.0


def test_robust_outliers_flag_beyond_k_mads_or_floor():
  values = np.array([1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 3.0, -2.0])
  low = quality.robust_outliers(values, side="low", k=5, floor=0.1)
  high = quality.robust_outliers(values, side="high", k=5, floor=0.1)
  both = quality.robust_outliers(values, side="both", k=5, floor=0.1)
  assert low.flagged.tolist() == [False] * 7 + [True]
  assert high.flagged.tolist() == [False] * 6 + [True, False]
  assert both.flagged.tolist() == [False] * 6 + [True, True]
  # median 1.0; |deviations| 0, .1, .1, 0, .05, .05, 2, 3 -> MAD 0.075;
  # limit 5 * 1.4826 * 0.075; score 1 - limit / deviation
  limit = 5 * 1.4826 * 0.075
  assert high.limit == pytest.approx(limit)
  assert high.score[6] == pytest.approx(1 - limit / 2.0)
  # A floor wider than k MADs wins; invalid entries are never flagged.
  wide = quality.robust_outliers(values, side="both", k=5, floor=2.5)
  assert wide.flagged.tolist() == [False] * 7 + [True]
  masked = quality.robust_outliers(
    values, side="both", k=5, floor=0.1, valid=np.arange(8) < 7
  )
  assert not masked.flagged[7]
  with pytest.raises(ValueError, match="side"):
    quality.robust_outliers(values, side="up", k=5, floor=0.1)
