"""Console logging for jvision's commands and scripts."""

from __future__ import annotations

import logging as std_logging

from absl import logging


class _QuietLibraries(std_logging.Filter):
  """Drops the INFO chatter of Orbax (several lines per file it writes)."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or (
      "/orbax/" not in record.pathname
    )


def configure() -> None:
  """INFO for jvision, WARNING and above for Orbax and JAX's backend probe."""
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(_QuietLibraries())
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)
