"""What a run records in its workdir: the resolved config and provenance.

DIR/config.json holds {"config", "git_revision", "git_dirty", "versions",
"devices", "created"}. A workdir is only ever written by jvision: a
non-empty directory without config.json is refused, and resuming with a
config that differs in anything but the keys in `RESUMABLE_CHANGES` is an
error listing the differences.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess

import jax
import ml_collections

# Keys that may change between a run and its resumption (e.g. to extend it).
RESUMABLE_CHANGES = frozenset(
  {
    "num_train_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "progress_bar",
    "async_checkpointing",
    "eval_batch_size",
    "data.feed",  # the same batches either way (jvision/data/feed.py)
    "eval_tta",  # evaluation only
  }
)

_PACKAGES = (
  "jax",
  "jaxlib",
  "flax",
  "optax",
  "orbax-checkpoint",
  "tensorflow-datasets",
  "ml-collections",
  "numpy",
  "pillow",
)


def git_revision() -> tuple[str | None, bool]:
  """(commit hash, whether the tree has uncommitted changes) of jvision."""
  repo = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
  try:
    rev = subprocess.run(
      ["git", "-C", repo, "rev-parse", "HEAD"],
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
    dirty = subprocess.run(
      ["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
      capture_output=True,
      text=True,
      check=True,
    ).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None, False
  return rev, bool(dirty)


def package_versions() -> dict[str, str]:
  versions = {"python": platform.python_version()}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = "not installed"
  return versions


def flatten(tree: dict, prefix: str = "") -> dict:
  """{"a": {"b": 1}} -> {"a.b": 1}."""
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(flatten(value, f"{name}."))
    else:
      flat[name] = value
  return flat


# Keys added to the config after workdirs were first written (dotted when
# nested), with the value that runs recorded without them used: resuming
# such a run is no change.
ADDED_KEYS = {
  "grad_accum_steps": 1,
  "dtype": "float32",
  "data.manifest": None,
  "data.feed": "host",
  "eval_tta": "none",
  "optimizer.bn_and_bias_lr_factor": 1.0,
  "data.channel_order": "rgb",
  "finetune.init_head": False,
}


def config_differences(old: dict, new: dict) -> list[str]:
  """Human-readable lines for the keys whose values differ."""
  old, new = flatten(old), flatten(new)
  old = {**{k: v for k, v in ADDED_KEYS.items() if k in new}, **old}
  lines = []
  for key in sorted(set(old) | set(new)):
    if _jsonable(old.get(key)) != _jsonable(new.get(key)):
      lines.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
  return lines


def _jsonable(value):
  return json.loads(json.dumps(value))


def check(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises unless `config` may run in `workdir` (new, empty or resumable).

  Raises:
    FileExistsError: the directory holds other files but no config.json.
    ValueError: it holds a run whose config differs in a key outside
      `RESUMABLE_CHANGES`.
  """
  path = os.path.join(workdir, "config.json")
  resolved = config.to_dict()
  if os.path.exists(path):
    with open(path) as f:
      old = json.load(f)["config"]
    changed = [
      line
      for line in config_differences(old, resolved)
      if line.split(":")[0] not in RESUMABLE_CHANGES
    ]
    if changed:
      raise ValueError(
        f"{workdir} holds a run with a different config; resuming it with "
        "this one would mix two experiments. Differences:\n  "
        + "\n  ".join(changed)
        + "\nUse a new --workdir, or change only: "
        + ", ".join(sorted(RESUMABLE_CHANGES))
      )
  elif os.path.isdir(workdir) and os.listdir(workdir):
    raise FileExistsError(
      f"{workdir} is not empty and holds no config.json: it is not a "
      "jvision workdir, and jvision will not write into it"
    )


def record(
  workdir: str,
  config: ml_collections.ConfigDict,
  *,
  class_names=None,
  image_shape=None,
) -> None:
  """Writes DIR/config.json: the resolved config and the run's provenance.

  Also what a model trained here expects and answers, for `jvision predict`,
  `export` and `search`: `class_names` (by label id) and `image_shape`
  ([H, W, C] of its input images).

  Call `check` first; this overwrites the record of a resumed run (whose
  config may differ only in `RESUMABLE_CHANGES`).
  """
  path = os.path.join(workdir, "config.json")
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  rev, dirty = git_revision()
  record = {
    "config": config.to_dict(),
    "git_revision": rev,
    "git_dirty": dirty,
    "versions": package_versions(),
    "devices": [str(d) for d in jax.devices()],
    "process_count": jax.process_count(),
    "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
  }
  if class_names is not None:
    record["class_names"] = list(class_names)
  if image_shape is not None:
    record["image_shape"] = [int(d) for d in image_shape]
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
