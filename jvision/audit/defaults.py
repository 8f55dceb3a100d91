"""The audit's settings (`jvision audit --audit.KEY=VALUE` overrides them).

Defaults were chosen on the planted-issue benchmark (`benchmarks/audit.py`,
real Fashion-MNIST and CIFAR-10 images with planted problems) and hold for
28x28 grey and 32x32 colour images alike, because quality scores are
relative to the dataset (see `jvision.audit.quality`).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

# Issues whose images are left out of manifest.jsonl by default: unreadable,
# redundant or leaking copies and wrong labels. Quality issues are reported
# but kept (a dark photo may be a fair test case); add them to `exclude` to
# drop them too.
DEFAULT_EXCLUDE = "corrupt,exact_duplicate,near_duplicate,leakage,label_issue"


def audit_config() -> ml_collections.ConfigDict:
  """Every audit threshold, with its default."""
  return ml_collections.ConfigDict(
    {
      "seed": 0,  # folds, random features, holdout split
      # A folder without split folders: the share of each class that is
      # "test" (as in training's data.holdout_fraction).
      "holdout_fraction": 0.1,
      "data_dir": config_dict.placeholder(str),  # TFDS data_dir
      "exclude": DEFAULT_EXCLUDE,  # comma-separated issue names
      "near_duplicate": {
        "neighbours": 8,  # candidates per image and descriptor
        "grid": 7,  # descriptor side (grid x grid pooled cells)
        "descriptor_blur": 1.0,  # px at 28x28, scaled with the work size
        "blur": 0.7,  # px at 28x28 before matching, scaled likewise
        "radius": 0.1,  # largest shift tried, as a fraction of the side
        # Every image zoomed in by these factors is looked up too, so that
        # cropped-and-resized copies are found; each such candidate is
        # verified at zoom x step for each step (NCC tolerates ~3% of zoom
        # error, so 1.15 x (0.955, 1.045) covers crops of about 7-20%).
        "zooms": (1.15,),
        "zoom_steps": (0.955, 1.045),
        "zoom_neighbours": 4,  # candidates per image and zoom
        # Also take candidates from the encoder's embeddings (--encoder):
        # on planted Fashion-MNIST, near_duplicate recall 0.96 vs 0.93, for
        # one more neighbour search (~14 s per 70,000 images on 2 cores).
        "use_encoder": False,
        "threshold": 0.99,  # NCC at or above: near duplicate
      },
      # Per issue: k robust standard deviations beyond the dataset median,
      # and the least distance that counts (`floor`, in the statistic's
      # units; for sizes the least factor). k was set on the planted
      # benchmark: the smallest that flags no more than a few unplanted
      # CIFAR-10 / Fashion-MNIST images, rounded.
      "quality": {
        "dark": {"k": 4.0, "floor": 0.5},  # 99th-pct brightness, 0..1
        "light": {"k": 3.5, "floor": 0.4},  # wash-out, 0..1
        "blurry": {"k": 5.0, "floor": 0.2},  # |Laplacian| / |gradient|
        "low_information": {"k": 5.0, "floor": 1.0},  # entropy, bits
        "odd_size": {"k": 5.0, "factor": 2.0},  # sides within 2x: fine
        "odd_aspect_ratio": {"k": 5.0, "factor": 1.5},
      },
      "label_issue": {
        "enabled": True,
        "folds": 5,  # k of the out-of-fold predictions
        "dims": 256,  # principal components of the embeddings used
        "l2": 0.1,  # on standardized features; set on the planted benchmark
        "steps": 300,
        "learning_rate": 0.05,
        "filter_by": "both",  # cleanlab's find_label_issues rule
      },
      "batch_size": 512,  # images per embedding pass
      "max_per_issue": 48,  # images shown per issue in report.html
    }
  )
