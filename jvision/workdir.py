"""The one place that writes and reads a workdir, trained or imported.

DIR/config.json holds {"config", "git_revision", "git_dirty", "versions",
"devices", "created"} and, for a model that classifies or takes images,
"class_names" and "image_shape"; DIR/checkpoints/ the Orbax checkpoints.
`record` writes config.json, `load` reads a workdir back as a `Trained`
(config, class names, image shape, preprocessing, the newest checkpoint's
variables), which `jvision.inference` runs. A workdir written by `jvision
import` holds weights trained elsewhere (`config.trainer == IMPORTED`).

A workdir is only ever written by jvision: a
non-empty directory without config.json is refused, and resuming with a
config that differs in anything but the keys in `RESUMABLE_CHANGES` is an
error listing the differences.

One live writer per workdir: a trainer holds DIR/lock.json (`hold_lock`)
for its whole run, recording {"host", "pid", "since", "command"}. The lock
is `fcntl.flock` on that open file, because the kernel releases it when
the process dies however it dies (SIGKILL, OOM): a second trainer's
non-blocking flock fails while the holder lives, and it is refused with the
holder named, before it writes anything. A lock file whose flock is free
but whose record is still there was left by a dead process: it is taken
over with a warning naming that process. The file is removed when the
holder lets go (training ends, fails, or is pre-empted by SIGTERM), unlinked
before its flock is released; a contender that locked the unlinked file
sees that its inode is no longer DIR/lock.json and tries again.

Across hosts, flock on a shared filesystem is only as good as the
filesystem (NFSv4 carries it to the server; some mounts keep it local to a
host), and a pid on another host cannot be checked. So the holder also
refreshes the file's mtime every `HEARTBEAT_SECONDS` (a daemon thread), and
a record from another host is taken over only when that heartbeat is
older than `STALE_AFTER_SECONDS`, even when flock succeeded; on a
filesystem without flock, a record from this host is taken over when its
pid is gone. A multi-host run shares one workdir: process 0 takes the lock
for all processes and tells the others whether it got it.

`jvision eval`, `predict`, `search` and `export` do not take the lock:
they read the newest finished checkpoint, which Orbax writes atomically, so
evaluating a running job is legitimate; `eval` writes only DIR/eval/, which
no trainer touches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import importlib.metadata
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import threading
import time

import jax
import ml_collections
import numpy as np
from absl import logging

from jvision import checkpoint as checkpoint_lib
from jvision.data import augment, from_config, sources

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
    "data.workers",  # the same batches with any number of workers
    "data.max_memory_gib",  # data.loading is recorded resolved
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
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
  "data.loading": "memory",
  "data.max_memory_gib": 4.0,
  "data.workers": None,
  "data.eval_crop_fraction": 0.875,
  "data.stats_sample": 2000,
  "augment.crop_scale": [0.08, 1.0],
  "augment.crop_ratio": [3 / 4, 4 / 3],
  "knn.monitor_data": None,
  "knn.monitor_splits": ["train", "test"],
  "data.channel_order": "rgb",
  "finetune.init_head": False,
  "simclr.decoupled": False,
}


# Config keys whose value names a file or directory: two spellings of one
# path (relative and absolute, or through a symbolic link) are one value,
# so `jvision demo --workdir=workdirs/demo` resumes what
# `--workdir=$PWD/workdirs/demo` started. Relative paths are read from the
# current directory.
PATH_KEYS = (
  "init_from",
  "distill.teacher",
  "data.manifest",
  "data.data_dir",
  "data.label_spec",
)
# The data spec: its folder:, idx: or packed: path compares by the file too.
DATA_SPEC_KEY = "data.name"


def _same_value(key: str, old, new) -> bool:
  if isinstance(old, str) and isinstance(new, str):
    if key in PATH_KEYS:
      return os.path.realpath(old) == os.path.realpath(new)
    if key == DATA_SPEC_KEY:
      return sources.same_spec(old, new)
  return _jsonable(old) == _jsonable(new)


def changed_keys(old: dict, new: dict) -> dict[str, tuple]:
  """{dotted key: (old value, new value)} for the keys whose values differ
  between two (nested) config dicts, in key order; a key missing on one
  side is None there, a key added to jvision after `old` was recorded
  (`ADDED_KEYS`) counts as its default, and the paths of `PATH_KEYS` and
  of the data spec's folder:/idx:/packed: path differ only when they name
  different files."""
  old, new = flatten(old), flatten(new)
  old = {**{k: v for k, v in ADDED_KEYS.items() if k in new}, **old}
  return {
    key: (old.get(key), new.get(key))
    for key in sorted(set(old) | set(new))
    if not _same_value(key, old.get(key), new.get(key))
  }


def config_differences(old: dict, new: dict) -> list[str]:
  """Human-readable lines for the keys whose values differ."""
  return [change_line(k, *pair) for k, pair in changed_keys(old, new).items()]


def change_line(key: str, old, new) -> str:
  """One entry of `changed_keys` as `key: old -> new`."""
  return f"{key}: {old!r} -> {new!r}"


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
      change_line(key, *pair)
      for key, pair in changed_keys(old, resolved).items()
      if key not in RESUMABLE_CHANGES
    ]
    if changed:
      raise ValueError(
        f"{workdir} holds a run with a different config; resuming it with "
        "this one would mix two experiments. Differences:\n  "
        + "\n  ".join(changed)
        + "\nUse a new --workdir, or change only: "
        + ", ".join(sorted(RESUMABLE_CHANGES))
      )
  elif os.path.isdir(workdir) and set(os.listdir(workdir)) - {LOCK_FILE}:
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


# config.trainer of a workdir that `jvision import` wrote from weights
# trained elsewhere (jvision/ship/import_weights.py).
IMPORTED = "import"
CHECKPOINTS = "checkpoints"  # DIR/checkpoints: the Orbax checkpoints


def read_record(workdir: str) -> dict:
  """DIR/config.json: the resolved config, provenance, class names."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} does not exist: {workdir} is not a jvision workdir "
      "(run `jvision train --workdir=...` first)"
    )
  with open(path) as f:
    return json.load(f)


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run stored in DIR/config.json."""
  return ml_collections.ConfigDict(read_record(workdir)["config"])


def load_variables(workdir: str) -> tuple[dict, int]:
  """({"params", "batch_stats"}, step) of the newest checkpoint."""
  checkpointer = checkpoint_lib.Checkpointer(
    os.path.join(workdir, CHECKPOINTS), async_save=False
  )
  step = checkpointer.latest_step()
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {workdir}/{CHECKPOINTS}")
  state = checkpointer.restore_raw(step)
  checkpointer.close()
  variables = {"params": state["params"]}
  if state.get("batch_stats"):
    variables["batch_stats"] = state["batch_stats"]
  return variables, step


@dataclasses.dataclass(frozen=True)
class Trained:
  """A workdir's network as stored, ready for `jvision.inference`.

  Attributes:
    workdir: where it was read from.
    config: the run's resolved config (its `model` section builds the
      network, `trainer` says what made it).
    class_names: label names by id, as recorded (SimCLR pretraining records
      its data's; an imported backbone none).
    image_shape: (H, W, C) of the images the network takes.
    preprocessing: `augment.normalize`'s mean, std (per channel, [0, 1]
      units) and channel_order.
    step: the checkpoint step.
    variables: {"params", "batch_stats" (when it has batch norm)} of the
      newest checkpoint, the whole network's.
  """

  workdir: str
  config: ml_collections.ConfigDict
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  preprocessing: dict
  step: int
  variables: dict

  @property
  def trainer(self) -> str:
    """ "supervised", "finetune", "simclr", "distill" or IMPORTED."""
    return self.config.trainer

  def describe(self) -> str:
    """E.g. "runs/a (supervised, step 600)", for logs and reports."""
    return f"{self.workdir} ({self.trainer}, step {self.step})"


def _classes_and_shape(record: dict, config) -> tuple[tuple, tuple]:
  """Class names and image shape: recorded at training, else from data."""
  if "class_names" in record and "image_shape" in record:
    return tuple(record["class_names"]), tuple(record["image_shape"])
  # Workdirs written before config.json held them: load the eval split.
  dataset = from_config.load_split(
    config, config.data.eval_split, progress=False
  )
  return tuple(dataset.class_names), tuple(dataset.images.shape[1:])


def load(workdir: str) -> Trained:
  """The newest checkpoint of a workdir, with what it needs to run."""
  record = read_record(workdir)
  config = ml_collections.ConfigDict(record["config"])
  class_names, image_shape = _classes_and_shape(record, config)
  variables, step = load_variables(workdir)
  return Trained(
    workdir=workdir,
    config=config,
    class_names=class_names,
    image_shape=tuple(int(d) for d in image_shape),
    preprocessing=augment.preprocessing(config.data),
    step=step,
    variables=variables,
  )


LOCK_FILE = "lock.json"
HEARTBEAT_SECONDS = 10.0  # how often the holder refreshes the file's mtime
# A record from another host whose heartbeat is older than this is dead.
STALE_AFTER_SECONDS = 60.0
# flock errors meaning "this filesystem has no flock", not "it is held".
_NO_FLOCK = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS})


class WorkdirLocked(OSError):
  """Another live trainer holds the workdir."""


def describe_holder(holder: dict) -> str:
  """Names a lock record's holder: pid, host, since when, its command."""
  if not holder.get("pid"):
    return "a process that had not yet recorded itself"
  return (
    f"pid {holder['pid']} on host {holder.get('host')} since "
    f"{holder.get('since')} (command: {holder.get('command')})"
  )


def pid_running(pid: int) -> bool:
  """Whether a process `pid` exists on this host."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # it exists, under another user
    return True
  return True


def takeover_reason(
  holder: dict, *, this_host: str, flocked: bool, heartbeat_age: float
) -> str | None:
  """Why a leftover lock record may be taken over; None: its holder may live.

  Args:
    holder: the record in the lock file ({} when empty or unreadable).
    this_host: this process's host name.
    flocked: whether this process got the file's flock.
    heartbeat_age: seconds since the holder last refreshed the file.
  """
  if not holder.get("pid"):  # a garbled record: only its age can tell
    if flocked or heartbeat_age > STALE_AFTER_SECONDS:
      return "it holds no complete record"
    return None
  if holder.get("host") == this_host:
    if flocked or not pid_running(holder["pid"]):
      return "that process is no longer running"
    return None
  if heartbeat_age > STALE_AFTER_SECONDS:
    return f"its heartbeat stopped {heartbeat_age:.0f} s ago"
  return None


def _refusal(path: str, holder: dict, heartbeat_age: float | None) -> str:
  message = (
    f"{os.path.dirname(path)} is in use by another jvision trainer ("
    f"{path}): {describe_holder(holder)}. Two trainers in one workdir "
    "would log every metric twice and save over each other's checkpoints. "
    f"Wait for it to end, stop it ({_how_to_stop(holder)}), or train in "
    "another --workdir."
  )
  if heartbeat_age is not None:
    message += (
      f" Its heartbeat is {heartbeat_age:.0f} s old and this host cannot "
      "see whether it is alive; if that run is dead, run again in "
      f"{max(STALE_AFTER_SECONDS - heartbeat_age, 1):.0f} s and its lock "
      "is taken over."
    )
  return message


def _how_to_stop(holder: dict) -> str:
  kill = f"kill {holder['pid']}" if holder.get("pid") else "kill it"
  if holder.get("host"):
    kill += f" on {holder['host']}"
  return f"{kill}: SIGTERM saves its step and the same command resumes it"


def _read_record(fd: int) -> dict:
  try:
    record = json.loads(os.pread(fd, 1 << 16, 0) or b"{}")
  except ValueError:
    return {}
  return record if isinstance(record, dict) else {}


def _same_file(fd: int, path: str) -> bool:
  try:
    on_disk = os.stat(path)
  except FileNotFoundError:
    return False
  held = os.fstat(fd)
  return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _open_and_flock(path: str) -> tuple[int, bool]:
  """(fd of `path`, whether flock holds it); refuses if another holds it."""
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_record(fd)
      os.close(fd)
      raise WorkdirLocked(_refusal(path, holder, None)) from None
    except OSError as error:
      if error.errno not in _NO_FLOCK:
        os.close(fd)
        raise
      logging.warning(
        "%s: this filesystem has no flock (%s); the lock relies on its "
        "record alone",
        path,
        error,
      )
      return fd, False
    if _same_file(fd, path):
      return fd, True
    os.close(fd)  # its holder removed it as we locked it: try the new one


@dataclasses.dataclass
class Lock:
  """A held workdir lock: the open file and its heartbeat thread."""

  path: str
  fd: int
  stop: threading.Event
  heartbeat: threading.Thread
  created_dir: bool  # the workdir did not exist before the lock


def _beat(fd: int, stop: threading.Event, every: float) -> None:
  while not stop.wait(every):
    try:
      os.utime(fd)
    except OSError:
      return


def acquire(workdir: str, *, heartbeat_seconds: float = HEARTBEAT_SECONDS):
  """Takes `workdir`'s lock, creating the directory if need be.

  A lock left by a dead holder (`takeover_reason`) is taken over with a
  warning naming it.

  Returns:
    The held `Lock`; give it to `release`.

  Raises:
    WorkdirLocked: a live process holds it (the message names it).
  """
  created = not os.path.isdir(workdir)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd, flocked = _open_and_flock(path)
  holder, age = _read_record(fd), time.time() - os.fstat(fd).st_mtime
  host = socket.gethostname()
  if os.fstat(fd).st_size:
    reason = takeover_reason(
      holder, this_host=host, flocked=flocked, heartbeat_age=age
    )
    if reason is None:
      os.close(fd)
      remote = holder.get("host") != host
      raise WorkdirLocked(_refusal(path, holder, age if remote else None))
    logging.warning(
      "%s: taking over the lock left by %s: %s",
      path,
      describe_holder(holder),
      reason,
    )
  record = {
    "host": host,
    "pid": os.getpid(),
    "since": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    "command": shlex.join(sys.orig_argv),
  }
  os.ftruncate(fd, 0)
  os.pwrite(fd, json.dumps(record, indent=2).encode(), 0)
  os.fsync(fd)
  stop = threading.Event()
  heartbeat = threading.Thread(
    target=_beat, args=(fd, stop, heartbeat_seconds), daemon=True
  )
  heartbeat.start()
  return Lock(path, fd, stop, heartbeat, created)


def release(lock: Lock) -> None:
  """Lets go of `lock`: removes the file, then its flock.

  A workdir the lock created and that stayed empty is removed too, so a
  run refused by a config error leaves no trace.
  """
  lock.stop.set()
  lock.heartbeat.join()
  if _same_file(lock.fd, lock.path):
    os.remove(lock.path)
  os.close(lock.fd)
  if lock.created_dir:
    with contextlib.suppress(OSError):  # not empty: the run wrote into it
      os.rmdir(os.path.dirname(lock.path))


def _process_index_and_count() -> tuple[int, int]:
  """This process's index and the process count, without starting a
  backend in a single-process run: a trainer refused the lock must not
  first claim memory on a GPU that its holder is using."""
  if not jax.distributed.is_initialized():
    return 0, 1
  return jax.process_index(), jax.process_count()


@contextlib.contextmanager
def hold_lock(workdir: str, *, heartbeat_seconds: float = HEARTBEAT_SECONDS):
  """Holds `workdir`'s lock for the block: one live writer per workdir.

  In a multi-host run only process 0 takes it, and every process raises if
  process 0 was refused, so that none of them starts. A single-process run
  takes it before JAX starts its backend.

  Raises:
    WorkdirLocked: a live process holds it.
  """
  index, count = _process_index_and_count()
  lock, error = None, None
  if index == 0:
    try:
      lock = acquire(workdir, heartbeat_seconds=heartbeat_seconds)
    except OSError as e:
      error = e
  if count > 1:
    from jax.experimental import multihost_utils

    refused = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
    if refused and error is None:
      raise WorkdirLocked(
        f"process 0 could not take the lock of {workdir}; its error names "
        "the reason"
      )
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    if lock is not None:
      release(lock)
