"""Helpers shared by tests (importable: pyproject puts tests/ on the path)."""

import io
import os
import pathlib
import socket
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# XLA:CPU's LLVM backend at -O0 in every test process: the suite's programs
# are tiny, so compiling them is most of its time (a jax.random.normal
# takes 2.0 s to compile at the default -O2 and 0.25 s at -O0 on the 2-core
# CI machine; tests/train/test_parallel_forms.py and test_simclr.py run in
# 164 s instead of 248 s). XLA's HLO passes, and so the numbers, are those
# of a user's run; only the machine code is less optimised.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
# Fashion-MNIST classes in label order (the built-in label spec).
FASHION_NAMES = (
  "t-shirt_top",
  "trouser",
  "pullover",
  "dress",
  "coat",
  "sandal",
  "shirt",
  "sneaker",
  "bag",
  "ankle_boot",
)
# CIFAR-10 classes in label order (../shared/data/README.md).
CIFAR_NAMES = (
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
)


def tiny_config(**overrides):
  """A seconds-long supervised run on 20 MNIST images per class."""
  from jvision.train import defaults

  config = defaults.supervised_config()
  config.data.name = "mnist"
  config.data.max_per_class = 20
  config.data.mean = (0.1307,)
  config.data.std = (0.3081,)
  config.model.name = "cnn"
  config.batch_size = 32
  config.eval_batch_size = 64
  config.num_train_steps = 6
  config.log_every_steps = 2
  config.eval_every_steps = 3
  config.checkpoint_every_steps = 3
  config.progress_bar = False
  config.augment.crop_padding = 2
  config.augment.flip = False
  config.optimizer.learning_rate = 0.05
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


def tiny_simclr_config():
  from jvision.train import defaults

  config = defaults.simclr_config()
  base = tiny_config()
  config.data = base.data
  config.model.name = "resnet_tiny"
  config.simclr.proj_hidden_dims = (32,)
  config.simclr.proj_dim = 16
  config.knn.k = 20
  for key in (
    "batch_size",
    "eval_batch_size",
    "num_train_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "progress_bar",
  ):
    config[key] = base[key]
  config.optimizer.warmup_steps = 2
  return config


def tiny_distill_config(teacher=None, **overrides):
  """`tiny_config(**overrides)` as the student of `teacher` (a classifier
  workdir; None leaves `distill.teacher` to the command line)."""
  from jvision.train import defaults

  config = defaults.distill_config()
  base = tiny_config(**overrides)
  for key in base:
    config[key] = base[key]
  config.trainer = "distill"
  if teacher is not None:
    config.distill.teacher = str(teacher)
  return config


def idx_bytes(array):
  """An MNIST-style IDX file of a uint8 array."""
  import struct

  import numpy as np

  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
  header += struct.pack(f">{array.ndim}I", *array.shape)
  return header + np.asarray(array).astype(np.uint8).tobytes()


def shifted(image, dy: int, dx: int):
  """A 2-D image moved by (dy, dx) pixels, zeros where it uncovers."""
  import numpy as np

  out = np.zeros_like(image)
  h, w = image.shape
  out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
    max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
  ]
  return out


def png_bytes(array) -> bytes:
  """PNG of uint8 [H, W] or [H, W, 3]."""
  from PIL import Image

  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


def jpeg_bytes(array, quality: int = 95, **kwargs) -> bytes:
  """JPEG of uint8 [H, W] or [H, W, 3] (Pillow save options in kwargs)."""
  from PIL import Image

  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="JPEG", quality=quality, **kwargs)
  return buffer.getvalue()


def write_photo_folder(
  root,
  *,
  classes=("a", "b", "c"),
  per_class: int = 8,
  splits=("train", "val"),
  sizes=(40, 120),
  seed: int = 0,
):
  """A folder of JPEGs of varied sizes in ImageNet's layout.

  root/<split>/<class>/<class>_NNN.jpg, each class a different brightness
  (so that a classifier can learn it), heights and widths drawn in `sizes`;
  `classes=()` writes root/<split>/NNN.jpg (an unlabelled source).
  """
  import numpy as np

  rng = np.random.default_rng(seed)
  root = pathlib.Path(root)
  for split in splits:
    for c, name in enumerate(classes or ("",)):
      folder = root / split / name
      folder.mkdir(parents=True, exist_ok=True)
      for i in range(per_class):
        h, w = (int(v) for v in rng.integers(sizes[0], sizes[1], 2))
        base = 60 * c + rng.integers(0, 60, (h, w, 3))
        stem = f"{name}_{i:03d}" if name else f"{i:03d}"
        (folder / f"{stem}.jpg").write_bytes(jpeg_bytes(base.astype(np.uint8)))
  return root


def free_port() -> int:
  """A TCP port free on 127.0.0.1 now (for a JAX coordinator)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def requested_test_devices() -> int:
  """CPU devices of this test process: JVISION_TEST_DEVICES (default 1, a
  user's machine). `make test` runs the tests marked `devices(8)` in a
  pytest run of their own with 8, the rest with 1: a train step sharded
  over 8 fake devices on 2 cores cost the suite a fifth more CPU time."""
  value = os.environ.get("JVISION_TEST_DEVICES", "1")
  if not value.isdigit() or int(value) < 1:
    raise ValueError(f"JVISION_TEST_DEVICES={value!r}: expected a count >= 1")
  return int(value)


def xla_flags(devices: int = 1) -> str:
  """XLA_FLAGS for a test process on `devices` CPU devices."""
  if devices == 1:
    return TEST_XLA_FLAGS
  return f"--xla_force_host_platform_device_count={devices} {TEST_XLA_FLAGS}"


def cpu_env(devices: int = 1) -> dict:
  """os.environ for a subprocess that runs this checkout's jvision on
  `devices` CPU devices (1, a user's machine, unless a test needs more)."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": xla_flags(devices)}
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
  return env


def train_process(config, workdir, *extra, devices: int = 1):
  """`python -m jvision.cli train --config=CONFIG --workdir=WORKDIR EXTRA`
  started as a real process (for tests of signals, locks and multi-process
  JAX) on `devices` CPU devices: one unless the test is about more, as 8
  forced host devices on a busy 2-core machine can stall XLA's collectives;
  the Popen, text pipes."""
  return subprocess.Popen(
    [sys.executable, "-m", "jvision.cli", "train"]
    + [f"--config={config}", f"--workdir={workdir}", *extra],
    cwd=REPO,
    env=cpu_env(devices),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def run_cli(*args, cwd=REPO, timeout: int = 600):
  """`python -m jvision.cli ARGS` as a user runs it: one CPU device, this
  checkout's jvision first on the path; the CompletedProcess (text)."""
  return subprocess.run(
    [sys.executable, "-m", "jvision.cli", *args],
    capture_output=True,
    text=True,
    cwd=cwd,
    env=cpu_env(),
    timeout=timeout,
  )
