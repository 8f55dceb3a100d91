"""Image-quality statistics and outliers relative to the dataset.

Each statistic is computed per image on its grey "work" copy (every image
resized to one working size, so 28x28 grey and 32x32 colour datasets are
scored alike), then compared with the dataset's own distribution: an image is
flagged when it lies more than `k` robust standard deviations (1.4826 x the
median absolute deviation, at least `floor`) beyond the median on the bad
side. So a dataset of dark night photos does not flag all of them as dark,
only the ones far darker than the rest.

    issue            statistic (per image)                      bad side
    dark             99th-percentile brightness (its highlights)  low
    light            wash-out: 5th-percentile brightness minus     high
                     half the 1st-99th percentile range (raised
                     shadows and squeezed contrast; a bright but
                     contrasty photo is not washed out)
    blurry           sharpness: mean |Laplacian| / mean |gradient|  low
                     (fine detail relative to edges)
    low_information  entropy of the 64-bin grey histogram (bits)   low
    odd_size         log of sqrt(height x width) (native size)     both
    odd_aspect_ratio log(width / height) (native size)             both

For sizes the allowed band is also at least a factor (`size_factor`,
`aspect_factor`) either side of the median, so a dataset of one size still
accepts, say, a few images 20% larger.
"""

from __future__ import annotations

import dataclasses

import numpy as np

MAD_TO_STD = 1.4826  # MAD of a normal distribution x this = its std


def luminance(images: np.ndarray) -> np.ndarray:
  """uint8 [N, H, W, C] -> float32 [N, H, W] grey in [0, 1] (ITU-R 601)."""
  x = images.astype(np.float32) / 255.0
  if x.shape[-1] == 1:
    return x[..., 0]
  return x @ np.asarray([0.299, 0.587, 0.114], np.float32)


def sharpness(gray: np.ndarray) -> np.ndarray:
  """Fine detail relative to edges: mean |Laplacian| / mean |gradient|, [N].

  Blur removes the second derivative faster than the first, so the ratio
  falls for blurry images whatever their contrast or content (a Gaussian
  blur of 1.5-2 px on 28x28 Fashion-MNIST images halves it, with no overlap
  with the unblurred images' 1st percentile). Constant images give 0.

  Args:
    gray: float [N, H, W].
  """
  lap = np.abs(
    4 * gray[:, 1:-1, 1:-1]
    - gray[:, :-2, 1:-1]
    - gray[:, 2:, 1:-1]
    - gray[:, 1:-1, :-2]
    - gray[:, 1:-1, 2:]
  ).mean((1, 2))
  grad = np.abs(np.diff(gray, axis=1)).mean((1, 2)) + np.abs(
    np.diff(gray, axis=2)
  ).mean((1, 2))
  return np.where(grad > 1e-6, lap / np.maximum(grad, 1e-6), 0.0)


def entropy(gray: np.ndarray, bins: int = 64) -> np.ndarray:
  """Shannon entropy (bits) of each image's grey histogram: float [N]."""
  idx = np.minimum((gray * bins).astype(np.int64), bins - 1)
  idx = idx.reshape(len(gray), -1) + bins * np.arange(len(gray))[:, None]
  counts = np.bincount(idx.ravel(), minlength=len(gray) * bins)
  counts = counts.reshape(len(gray), bins).astype(np.float64)
  p = counts / counts.sum(1, keepdims=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(p > 0, -p * np.log2(p), 0.0)
  return terms.sum(1).astype(np.float32)


def _percentiles(flat: np.ndarray, qs) -> list[np.ndarray]:
  """Per-row percentiles of float [N, M] (linear interpolation, as NumPy's
  default), via one partial sort instead of np.percentile's full one."""
  m = flat.shape[1]
  positions = [q / 100 * (m - 1) for q in qs]
  kth = sorted(
    {int(np.floor(x)) for x in positions}
    | {min(int(np.floor(x)) + 1, m - 1) for x in positions}
  )
  part = np.partition(flat, kth, axis=1)
  out = []
  for x in positions:
    lo = int(np.floor(x))
    hi = min(lo + 1, m - 1)
    out.append(part[:, lo] + (x - lo) * (part[:, hi] - part[:, lo]))
  return out


def statistics(images: np.ndarray) -> dict[str, np.ndarray]:
  """The per-image statistics of the module table: {name: float32 [N]}.

  Args:
    images: uint8 [N, S, S, C] work copies.
  """
  gray = luminance(images)  # [N, S, S]
  flat = gray.reshape(len(gray), -1)
  p01, p05, p99 = _percentiles(flat, (1, 5, 99))
  return {
    "highlights": p99.astype(np.float32),
    "washout": (p05 - 0.5 * (p99 - p01)).astype(np.float32),
    "sharpness": sharpness(gray).astype(np.float32),
    "entropy": entropy(gray),
  }


@dataclasses.dataclass(frozen=True)
class Outliers:
  """Flags and scores of one statistic against its dataset distribution.

  Attributes:
    flagged: bool [N].
    score: float [N] in [0, 1): 1 - limit / distance for flagged images
      (0 elsewhere), growing with how far beyond the limit they lie.
    median: the dataset median of the statistic.
    limit: the flagging distance from the median.
  """

  flagged: np.ndarray
  score: np.ndarray
  median: float
  limit: float


def robust_outliers(
  values: np.ndarray,
  *,
  side: str,
  k: float,
  floor: float,
  valid: np.ndarray | None = None,
) -> Outliers:
  """Flags values more than k robust stds (>= floor) beyond the median.

  Args:
    values: float [N].
    side: "low", "high" or "both".
    k: multiples of the robust standard deviation.
    floor: the smallest distance from the median that can be flagged.
    valid: bool [N] entries that define the distribution and may be
      flagged (default all).

  Returns:
    The outliers.
  """
  if side not in ("low", "high", "both"):
    raise ValueError(f"side must be low, high or both, got {side!r}")
  valid = np.ones(len(values), bool) if valid is None else valid
  if not valid.any():
    zeros = np.zeros(len(values))
    return Outliers(zeros.astype(bool), zeros, float("nan"), float("nan"))
  median = float(np.median(values[valid]))
  mad = float(np.median(np.abs(values[valid] - median)))
  limit = max(k * MAD_TO_STD * mad, floor)
  deviation = values - median
  if side == "low":
    deviation = -deviation
  elif side == "both":
    deviation = np.abs(deviation)
  flagged = valid & (deviation > limit)
  score = np.where(flagged, 1.0 - limit / np.maximum(deviation, 1e-12), 0.0)
  return Outliers(flagged, score.astype(np.float32), median, limit)
