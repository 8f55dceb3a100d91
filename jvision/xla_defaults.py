"""XLA:CPU settings jvision turns on by default, before JAX starts.

jaxlib 0.10 sends convolutions on CPU to YNNPACK fusions, which run 2-3x
slower on the 2-core AMD EPYC machines this project is measured on than
XLA's Eigen kernels. `--xla_cpu_experimental_ynn_fusion_type=
-individual_convolution` keeps convolutions out of them. Measured with
`benchmarks/throughput.py`'s bare train step (median of 10 steps, two runs
each, alternating): seed CNN, batch 256 at 32x32x3, 3,113 -> 6,650 img/s;
ResNet-18 (CIFAR stem), batch 128, 35 -> 56 and 24 -> 30 img/s (runs on
a loaded machine). The flag touches only the CPU backend.

`--xla_disable_hlo_passes=cse_barrier_expander` keeps
`jax.lax.optimization_barrier`s until code generation (the pass only
removes them). The ResNet puts barriers on conv inputs on the CPU backend
(jvision/models/resnet.py); with them kept, its train step is ~1.25x faster
(benchmarks/NOTES.md). It applies to every backend, but jvision places
barriers only on CPU; a user's own `--xla_disable_hlo_passes` replaces it
(the barriers are then removed again: slower, same values). Because the
option reaches every backend, it is added only when no accelerator plugin
(a `jax_plugins` package such as jax-cuda12-plugin, or libtpu) is
installed, so GPU and TPU compilation keep XLA's own behaviour.

The defaults are added to `XLA_FLAGS` when `jvision` is imported, unless:
the user's `XLA_FLAGS` already sets the same option; `JVISION_XLA_DEFAULTS=0`;
or the installed jaxlib is not one they were checked with (an unknown flag
makes XLA abort at start-up). XLA reads `XLA_FLAGS` when its first backend
starts, so importing jvision after JAX but before any computation still
applies them.

`one_shot_options` is the other kind of setting: `compiler_options` for
one program's `Lowered.compile`, not a process-wide flag. A model's
initialisation (`train/state.init_variables`) runs once, so on the CPU it
is compiled at LLVM -O0 (`ONE_SHOT_CPU_OPTIONS`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

# option -> value, each checked on the jaxlib versions in CHECKED_JAXLIB.
CPU_DEFAULTS = {  # options only the CPU backend reads
  "xla_cpu_experimental_ynn_fusion_type": "-individual_convolution",
}
CPU_ONLY_MACHINE_DEFAULTS = {  # options every backend reads
  # Keeps the ResNet's optimization barriers (jvision/models/resnet.py)
  # through compilation; the pass only removes barriers.
  "xla_disable_hlo_passes": "cse_barrier_expander",
}
# Compiler options for programs that run once (a model's initialisation):
# XLA:CPU's LLVM backend at its default -O2 spends 13.6 s on the demo
# ResNet's initialisation (unrolled random-number code), 2.1 s at -O0,
# and the program then runs for milliseconds either way (values within
# one float32 ulp of -O2's). Passed to `Lowered.compile`, not XLA_FLAGS.
ONE_SHOT_CPU_OPTIONS = {"xla_backend_optimization_level": 0}
CHECKED_JAXLIB = ("0.10.",)  # version prefixes
ACCELERATOR_MODULES = ("jax_plugins", "libtpu")


def _accelerator_installed() -> bool:
  """Whether a JAX GPU/TPU plugin is importable (found, not imported)."""
  return any(importlib.util.find_spec(m) for m in ACCELERATOR_MODULES)


def _jaxlib_version() -> str | None:
  try:
    return importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return None


def with_defaults(
  flags: str, jaxlib_version: str | None, accelerator: bool = False
) -> str:
  """`flags` (an XLA_FLAGS value) with the defaults it does not set added;
  with `accelerator` (a GPU/TPU plugin installed), the CPU-only ones."""
  if jaxlib_version is None or not jaxlib_version.startswith(CHECKED_JAXLIB):
    return flags
  defaults = dict(CPU_DEFAULTS)
  if not accelerator:
    defaults.update(CPU_ONLY_MACHINE_DEFAULTS)
  added = [
    f"--{option}={value}"
    for option, value in defaults.items()
    if f"--{option}" not in flags
  ]
  return " ".join([flags.strip(), *added]).strip()


def apply() -> None:
  """Adds the defaults to os.environ["XLA_FLAGS"] (see the module doc)."""
  if os.environ.get("JVISION_XLA_DEFAULTS", "1") == "0":
    return
  flags = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = with_defaults(
    flags, _jaxlib_version(), _accelerator_installed()
  )


def one_shot_options(backend: str) -> dict:
  """`compiler_options` for a program that runs once on `backend`
  (`jax.default_backend()`): ONE_SHOT_CPU_OPTIONS on the CPU, none on
  accelerators, whose compilers are fast and keep their own settings."""
  return dict(ONE_SHOT_CPU_OPTIONS) if backend == "cpu" else {}


def compile_once(fn, *args):
  """`fn` compiled for `args` as a program that runs once or twice (a
  model's initialisation, an optimizer's first state, a preview): one
  `jax.jit` program with `one_shot_options`, instead of the many small
  programs XLA:CPU would compile for each eager op. Returns the compiled
  program; call it with arguments shaped like `args`."""
  import jax  # not at the top: this module runs before JAX is imported

  options = one_shot_options(jax.default_backend())
  return jax.jit(fn).lower(*args).compile(compiler_options=options)
