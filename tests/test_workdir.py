"""Tests for jvision/workdir.py: what may resume where, reading a workdir
back, and the lock (one live writer).

Lock holders are real processes killed with real signals; the end-to-end
test runs `python -m jvision.cli train` twice on one workdir.
"""

import concurrent.futures
import datetime
import errno
import fcntl
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest
from helpers import REPO, cpu_env, free_port, train_process

from jvision import checkpoint, workdir
from jvision.train import defaults

HOST = socket.gethostname()
HOLDER = """
import sys, time
from jax._src import xla_bridge
from jvision import workdir
with workdir.hold_lock(sys.argv[1]):
  print("held, backend", xla_bridge.backends_are_initialized(), flush=True)
  time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
  """A live process holding the lock of tmp_path / "wd"; killed at the end."""
  process = subprocess.Popen(
    [sys.executable, "-c", HOLDER, str(tmp_path / "wd")],
    cwd=REPO,
    env=cpu_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  # A trainer refused on a GPU must not have claimed its memory first.
  line = process.stdout.readline()
  assert line == "held, backend False\n", process.communicate()
  yield process
  if process.poll() is None:
    process.kill()
  process.communicate()


def _dead_pid() -> int:
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def _write_record(directory, mtime=None, **record):
  directory.mkdir(exist_ok=True)
  path = directory / workdir.LOCK_FILE
  path.write_text(json.dumps(record))
  if mtime is not None:
    os.utime(path, (mtime, mtime))
  return path


def _record(directory) -> dict:
  return json.loads((directory / workdir.LOCK_FILE).read_text())


def test_the_lock_records_its_holder_and_goes_away_with_it(tmp_path):
  (tmp_path / "kept").mkdir()
  for name in ("new", "kept"):
    start = datetime.datetime.now(datetime.timezone.utc)
    with workdir.hold_lock(str(tmp_path / name)):
      record = _record(tmp_path / name)
      assert record["host"] == HOST and record["pid"] == os.getpid()
      since = datetime.datetime.fromisoformat(record["since"])
      assert 0 <= (since - start).total_seconds() < 5
      assert record["command"] == shlex.join(sys.orig_argv)  # this process
    assert not (tmp_path / name / workdir.LOCK_FILE).exists()
  assert not (tmp_path / "new").exists()  # it made the directory, left empty
  assert (tmp_path / "kept").is_dir()  # the user's directory stays


def test_the_holder_refreshes_its_heartbeat(tmp_path):
  with workdir.hold_lock(str(tmp_path), heartbeat_seconds=0.05):
    path = tmp_path / workdir.LOCK_FILE
    os.utime(path, (0, 0))
    time.sleep(0.5)
    assert time.time() - path.stat().st_mtime < 5


def test_a_live_holder_refuses_others_and_a_killed_one_is_taken_over(
  tmp_path, holder, caplog
):
  wd = tmp_path / "wd"
  record = _record(wd)
  assert record["pid"] == holder.pid
  with pytest.raises(workdir.WorkdirLocked) as refused:
    workdir.acquire(str(wd))
  message = str(refused.value)
  assert f"pid {holder.pid} on host {HOST} since {record['since']}" in message
  assert f"kill {holder.pid} on {HOST}" in message
  assert _record(wd) == record  # the refused one changed nothing
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  assert _record(wd) == record  # SIGKILL leaves the file behind
  caplog.set_level(logging.WARNING)
  with workdir.hold_lock(str(wd)):
    assert _record(wd)["pid"] == os.getpid()
  taken = [r.getMessage() for r in caplog.records if "taking over" in r.msg]
  assert len(taken) == 1
  assert f"left by pid {holder.pid} on host {HOST}" in taken[0]
  assert "no longer running" in taken[0]
  assert not (wd / workdir.LOCK_FILE).exists()


def test_a_released_lock_is_taken_without_a_takeover(tmp_path, caplog):
  caplog.set_level(logging.WARNING)
  for _ in range(2):
    with workdir.hold_lock(str(tmp_path)):
      pass
  assert not [r for r in caplog.records if "taking over" in r.msg]


def test_another_hosts_lock_is_taken_over_only_once_its_heartbeat_stops(
  tmp_path, caplog
):
  record = {"host": "elsewhere", "pid": 1, "since": "then", "command": "c"}
  _write_record(tmp_path, **record)
  with pytest.raises(workdir.WorkdirLocked, match="pid 1 on host elsewhere"):
    workdir.acquire(str(tmp_path))
  assert _record(tmp_path) == record
  _write_record(tmp_path, mtime=time.time() - 120, **record)
  caplog.set_level(logging.WARNING)
  with workdir.hold_lock(str(tmp_path)):
    assert _record(tmp_path)["host"] == HOST
  (taken,) = [r.getMessage() for r in caplog.records if "taking" in r.msg]
  assert "heartbeat stopped 120 s ago" in taken


def _contend(wd: str, rounds: int) -> None:
  """Takes and lets go of the lock `rounds` times; fails if it is shared."""
  marker, held = os.path.join(wd, "holder"), 0
  while held < rounds:
    try:
      lock = workdir.acquire(wd)
    except workdir.WorkdirLocked:
      time.sleep(0.001)
      continue
    try:
      os.close(os.open(marker, os.O_CREAT | os.O_EXCL))  # fails if shared
      os.remove(marker)
    finally:
      workdir.release(lock)
    held += 1


def test_contenders_hold_the_lock_one_at_a_time(tmp_path):
  # Each release removes the file a waiting contender may have opened: the
  # one that locks the removed file must notice and try the new one. Threads
  # contend like processes: each has its own open file, so its own flock.
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    runs = [pool.submit(_contend, str(tmp_path), 100) for _ in range(4)]
    for run in runs:
      run.result()
  assert os.listdir(tmp_path) == []


def test_a_contender_that_locked_a_removed_file_sees_it(tmp_path):
  path = str(tmp_path / workdir.LOCK_FILE)
  first = workdir.acquire(str(tmp_path))
  stale = os.open(path, os.O_RDWR)  # a contender opens the file...
  workdir.release(first)  # ...its holder removes it and lets go...
  fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ...the flock is free
  assert not workdir._same_file(stale, path)  # so it tries again
  second = workdir.acquire(str(tmp_path))
  assert workdir._same_file(second.fd, path)
  workdir.release(second)
  os.close(stale)


def test_takeover_reasons():
  reason = workdir.takeover_reason
  mine = {"host": HOST, "pid": os.getpid()}
  dead = {"host": HOST, "pid": _dead_pid()}
  remote = {"host": "elsewhere", "pid": os.getpid()}
  # flock got on this host: the holder is gone whatever its pid says now.
  assert reason(mine, this_host=HOST, flocked=True, heartbeat_age=0)
  # without flock, this host checks the pid
  assert reason(mine, this_host=HOST, flocked=False, heartbeat_age=0) is None
  assert reason(dead, this_host=HOST, flocked=False, heartbeat_age=0)
  # another host's pid cannot be checked: its heartbeat decides
  stale = workdir.STALE_AFTER_SECONDS
  for flocked in (True, False):
    fresh = reason(remote, this_host=HOST, flocked=flocked, heartbeat_age=5)
    assert fresh is None
    assert reason(
      remote, this_host=HOST, flocked=flocked, heartbeat_age=stale + 1
    )
  assert reason({}, this_host=HOST, flocked=True, heartbeat_age=0)
  assert reason({}, this_host=HOST, flocked=False, heartbeat_age=0) is None


def test_without_flock_the_record_decides(tmp_path, monkeypatch):
  def no_flock(fd, operation):
    raise OSError(errno.ENOLCK, "No locks available")

  monkeypatch.setattr(fcntl, "flock", no_flock)
  _write_record(tmp_path, host=HOST, pid=os.getpid(), since="s", command="c")
  with pytest.raises(workdir.WorkdirLocked, match=f"pid {os.getpid()} "):
    workdir.acquire(str(tmp_path))
  _write_record(tmp_path, host=HOST, pid=_dead_pid(), since="s", command="c")
  with workdir.hold_lock(str(tmp_path)):
    assert _record(tmp_path)["pid"] == os.getpid()


def test_a_directory_holding_only_a_lock_file_is_a_new_workdir(tmp_path):
  from helpers import tiny_config

  _write_record(tmp_path, host=HOST, pid=_dead_pid())
  workdir.check(str(tmp_path), tiny_config())
  (tmp_path / "notes.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="holds no config.json"):
    workdir.check(str(tmp_path), tiny_config())


def test_every_trainer_holds_the_lock_until_it_ends_fails_or_is_preempted(
  tmp_path,
):
  from jvision import train
  from jvision.train import loop, setup

  for name in ("supervised", "simclr", "finetune"):
    assert train.get_trainer(name).__wrapped__  # made by setup.one_writer
  wd, lock = str(tmp_path), tmp_path / workdir.LOCK_FILE

  @setup.one_writer
  def trainer(error, workdir_):
    assert _record(tmp_path)["pid"] == os.getpid()
    if error is not None:
      raise error
    return "trained"

  assert trainer(None, wd) == "trained" and not lock.exists()
  for error in (loop.Preempted(3, wd), loop.NonFiniteLossError("nan")):
    with pytest.raises(type(error)):
      trainer(error, wd)
    assert not lock.exists()


TRAIN_CONFIG = f"""
import sys
sys.path.insert(0, {str(REPO / "tests")!r})
from helpers import tiny_config


def get_config():
  return tiny_config(
    num_train_steps=1_000_000,
    checkpoint_every_steps=10,
    eval_every_steps=0,
    log_every_steps=5,
  )
"""


def _wait_for(ready, process, timeout=300):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if ready():
      return
    assert process.poll() is None, process.communicate()
    time.sleep(0.05)
  raise TimeoutError(f"{ready.__doc__} did not happen")


def _checkpointed(wd):
  def ready():
    """a checkpoint"""
    ckpts = wd / "checkpoints"
    return ckpts.is_dir() and any(p.name.isdigit() for p in ckpts.iterdir())

  return ready


def _logged_once(wd):
  lines = (wd / "metrics.jsonl").read_text().splitlines()
  keys = [(r["step"], r["split"]) for r in map(json.loads, lines)]
  assert len(keys) == len(set(keys)), keys
  return keys


@pytest.mark.slow
def test_a_second_trainer_is_refused_and_a_killed_ones_lock_taken_over(
  tmp_path,
):
  config = tmp_path / "config.py"
  config.write_text(TRAIN_CONFIG)
  wd = tmp_path / "wd"
  first = train_process(config, wd)
  try:
    _wait_for((wd / "config.json").exists, first)  # it holds the lock
    record, recorded = _record(wd), (wd / "config.json").read_bytes()
    assert record["pid"] == first.pid
    second = train_process(config, wd)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 1, err[-3000:]
    holder = f"pid {first.pid} on host {HOST} since {record['since']}"
    assert holder in err and "in use by another jvision trainer" in err
    assert "starting from" not in err + out  # it stopped before any state
    assert (wd / "config.json").read_bytes() == recorded
    assert _record(wd) == record
    _wait_for(_checkpointed(wd), first)  # the holder trains on
  finally:
    first.kill()
    first.communicate()
  _logged_once(wd)  # the refused trainer logged nothing
  latest = checkpoint.Checkpointer(str(wd / "checkpoints")).latest_step()
  third = train_process(config, wd, f"--config.num_train_steps={latest + 3}")
  out, err = third.communicate(timeout=300)
  assert third.returncode == 0, err[-3000:]
  assert f"taking over the lock left by pid {first.pid} on host {HOST}" in err
  assert "from checkpoint step" in out
  assert (latest + 3, "train") in _logged_once(wd)
  assert not (wd / workdir.LOCK_FILE).exists()


@pytest.mark.slow
def test_a_multihost_run_is_refused_as_one(tmp_path, holder):
  config = tmp_path / "config.py"
  config.write_text(TRAIN_CONFIG)
  port = free_port()
  processes = [
    train_process(
      config,
      tmp_path / "wd",
      f"--coordinator_address=127.0.0.1:{port}",
      "--num_processes=2",
      f"--process_id={i}",
    )
    for i in range(2)
  ]
  (_, err0), (_, err1) = [p.communicate(timeout=300) for p in processes]
  assert [p.returncode for p in processes] == [1, 1], err0[-2000:] + err1
  assert f"pid {holder.pid} on host {HOST}" in err0  # process 0 asked
  assert "process 0 could not take the lock" in err1  # and told process 1
  assert _record(tmp_path / "wd")["pid"] == holder.pid
  assert os.listdir(tmp_path / "wd") == [workdir.LOCK_FILE]


def test_keys_added_later_resume_at_their_old_meaning():
  new = defaults.supervised_config().to_dict()
  old = {k: v for k, v in new.items() if k not in workdir.ADDED_KEYS}
  assert workdir.config_differences(old, new) == []
  new["dtype"] = "bfloat16"
  assert workdir.config_differences(old, new) == [
    "dtype: 'float32' -> 'bfloat16'"
  ]


def test_a_simclr_run_recorded_before_decoupled_resumes():
  new = defaults.simclr_config().to_dict()
  old = {**new, "simclr": dict(new["simclr"])}
  del old["simclr"]["decoupled"]
  assert workdir.config_differences(old, new) == []
  new["simclr"]["decoupled"] = True
  assert workdir.config_differences(old, new) == [
    "simclr.decoupled: False -> True"
  ]


def test_differences_name_nested_keys():
  old = defaults.supervised_config().to_dict()
  new = defaults.supervised_config().to_dict()
  new["optimizer"]["learning_rate"] = 0.3
  assert workdir.config_differences(old, new) == [
    "optimizer.learning_rate: 0.1 -> 0.3"
  ]


def test_two_spellings_of_one_directory_are_one_init_from(
  tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "runs" / "simclr").mkdir(parents=True)
  (tmp_path / "link").symlink_to(tmp_path / "runs")
  old = defaults.finetune_config().to_dict()
  new = defaults.finetune_config().to_dict()
  old["init_from"] = "runs/simclr"
  for same in (
    str(tmp_path / "runs" / "simclr"),
    "link/simclr/",
    "./runs/simclr",
  ):
    new["init_from"] = same
    assert workdir.changed_keys(old, new) == {}, same
  new["init_from"] = "runs/other"
  assert workdir.config_differences(old, new) == [
    "init_from: 'runs/simclr' -> 'runs/other'"
  ]
  # Other keys keep comparing strings: a model name is not a path.
  new = defaults.finetune_config().to_dict()
  new["model"]["name"] = "./" + old["model"]["name"]
  assert list(workdir.changed_keys(old | {"init_from": None}, new)) == [
    "model.name"
  ]


def test_two_spellings_of_one_data_folder_are_one_data_spec(
  tmp_path, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  (tmp_path / "pets").mkdir()
  old = defaults.supervised_config().to_dict()
  new = defaults.supervised_config().to_dict()
  old["data"]["name"] = "folder:pets"
  new["data"]["name"] = f"folder:{tmp_path}/pets/"
  assert workdir.changed_keys(old, new) == {}
  new["data"]["name"] = "folder:cats"
  assert workdir.config_differences(old, new) == [
    "data.name: 'folder:pets' -> 'folder:cats'"
  ]


def test_the_data_feed_may_change_on_resume():
  old = defaults.supervised_config().to_dict()
  new = defaults.supervised_config().to_dict()
  new["data"]["feed"] = "device"
  assert workdir.config_differences(old, new) == [
    "data.feed: 'auto' -> 'device'"
  ]
  assert "data.feed" in workdir.RESUMABLE_CHANGES


def test_load_reads_back_what_training_recorded(trained_workdir):
  trained = workdir.load(str(trained_workdir))
  assert trained.trainer == "supervised" and trained.step == 6
  assert trained.class_names == tuple(str(d) for d in range(10))
  assert trained.image_shape == (28, 28, 1)
  assert set(trained.preprocessing) == {"mean", "std", "channel_order"}
  assert trained.variables["params"]["head"]["kernel"].shape[-1] == 10
  assert trained.describe() == f"{trained_workdir} (supervised, step 6)"


def test_load_of_a_record_without_checkpoint_names_the_folder(tmp_path):
  config = defaults.supervised_config()
  workdir.record(
    str(tmp_path), config, class_names=["a"], image_shape=(8, 8, 1)
  )
  with pytest.raises(FileNotFoundError, match="no checkpoint in .*checkpoints"):
    workdir.load(str(tmp_path))
