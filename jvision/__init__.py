"""jvision: image models from scratch in JAX/Flax.

The pipeline is acquire -> audit -> pretrain -> fine-tune -> evaluate -> ship;
each stage lives in the sub-package named for it (see ../shared/DESIGN.md).
"""

__version__ = "0.1.0"

from jvision import xla_defaults as _xla_defaults

_xla_defaults.apply()
