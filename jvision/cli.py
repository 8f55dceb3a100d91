"""The `jvision` command: parses flags and calls the library, nothing else.

    jvision train   --config=experiments/X.py[:ARGS] --workdir=DIR
                    [--config.KEY=VALUE ...]
    jvision eval    --workdir=DIR [--split=test] [--tta=none|flip]
                    [--data=SPEC]
    jvision audit   --data=SPEC --out=DIR [--labels=labels.json]
                    [--encoder=WORKDIR] [--audit.KEY=VALUE ...]
    jvision predict --workdir=DIR --images=PATH [--out=preds.csv]
                    [--top_k=3]
    jvision export  --workdir=DIR --out=model.onnx [--batch=N] [--force]
    jvision search  --workdir=DIR --index=SPEC --query=IMAGE [--k=10]
                    [--index_split=train] | --eval [--eval_split=test]
    jvision demo    [--workdir=DIR]
    jvision pack    --data=SPEC --out=DIR [--splits=train,test]
                    [--shard_mb=64] [--workers=N] [--data_dir=TFDS_DIR]
    jvision import  --weights=FILE --arch=NAME --workdir=DIR
                    [--data=SPEC] [--labels=labels.json] [--image_size=224]

Every command first logs the JAX backend and devices it found; with
`--accelerator=gpu|tpu|cpu` (or $JVISION_ACCELERATOR) a platform JAX cannot
start is an error, not a fall-back to the CPU.

The logic lives in importable modules: `jvision.train` (trainers),
`jvision.evaluate` (metrics and reports), `jvision.audit` (data audit),
`jvision.data.pack` (record shards), `jvision.ship` (predict, export,
search, weight import), `jvision.demo`.
"""

from __future__ import annotations

import difflib
import os
import signal
import sys

import ml_collections
from absl import app, flags
from ml_collections import config_flags
from ml_collections.config_flags import config_path

from jvision import logging_setup, parallel
from jvision.audit import defaults as audit_defaults

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Experiment config file: experiments/X.py[:ARG].",
  lock_config=True,
)
_AUDIT = config_flags.DEFINE_config_dict(
  "audit",
  audit_defaults.audit_config(),
  "Audit settings (jvision.audit.defaults), e.g. "
  "--audit.near_duplicate.threshold=0.98.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.")
_DATA = flags.DEFINE_string(
  "data",
  None,
  "Audit: the data spec to audit; pack: the source to pack; import: the "
  "data spec recorded for eval; eval: a data spec to evaluate on instead "
  "of the run's own (the classifier's classes, in its order).",
)
_OUT = flags.DEFINE_string(
  "out",
  None,
  "Audit and pack: the output directory; predict: the CSV (default preds.csv).",
)
_LABELS = flags.DEFINE_string(
  "labels",
  None,
  "Audit: a label spec JSON to validate the classes against; import: the "
  "names of the classifier's classes.",
)
_ENCODER = flags.DEFINE_string(
  "encoder", None, "Audit: a jvision workdir whose backbone embeds images."
)
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate.")
_TTA = flags.DEFINE_string(
  "tta", None, "Eval: test-time augmentation, none | flip (default: the run's)."
)
_IMAGES = flags.DEFINE_string(
  "images", None, "Predict: an image file, a folder or a .zip of images."
)
_TOP_K = flags.DEFINE_integer("top_k", 3, "Predict: classes per image.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Images per forward pass.")
_INDEX = flags.DEFINE_string("index", None, "Search: the data spec to index.")
_BATCH_DIM = flags.DEFINE_integer(
  "batch", None, "Export: a fixed batch size (default: dynamic)."
)
_FORCE = flags.DEFINE_bool(
  "force", False, "Export: replace an existing --out file."
)
_INDEX_SPLIT = flags.DEFINE_string(
  "index_split", "train", "Search: the split of --index that is searched."
)
_QUERY = flags.DEFINE_string("query", None, "Search: the query image file.")
_K = flags.DEFINE_integer("k", 10, "Search: results per query.")
_EVAL = flags.DEFINE_bool(
  "eval", False, "Search: recall@1/5/10 and mAP of --eval_split queries."
)
_EVAL_SPLIT = flags.DEFINE_string(
  "eval_split", "test", "Search --eval: the labelled query split."
)
_MAX_QUERIES = flags.DEFINE_integer(
  "max_queries", None, "Search --eval: a seeded sample of this many queries."
)
_SPLITS = flags.DEFINE_list(
  "splits", None, "Pack: the splits to pack (default: all of the source's)."
)
_SHARD_MB = flags.DEFINE_float(
  "shard_mb", 64.0, "Pack: the target size of a shard in megabytes."
)
_WORKERS = flags.DEFINE_integer(
  "workers", None, "Pack: processes writing shards (default: one per core)."
)
_DATA_DIR = flags.DEFINE_string(
  "data_dir", None, "Pack: the TFDS data_dir of a tfds: source."
)
_WEIGHTS = flags.DEFINE_string(
  "weights",
  None,
  "Import: a .safetensors, .pth/.pt (torchvision, timm) or .h5 (Keras) file.",
)
_ARCH = flags.DEFINE_string(
  "arch", None, "Import: resnet18 | resnet34 | resnet50 | resnet50_keras."
)
_IMAGE_SIZE = flags.DEFINE_integer(
  "image_size", 224, "Import: the input size images are resized to."
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "Multi-host: host:port of process 0 (else SLURM/TPU environment).",
)
_NUM_PROCESSES = flags.DEFINE_integer(
  "num_processes", None, "Multi-host: number of processes."
)
_PROCESS_ID = flags.DEFINE_integer(
  "process_id", None, "Multi-host: this process's index."
)
_ACCELERATOR = flags.DEFINE_enum(
  "accelerator",
  None,
  list(parallel.ACCELERATORS),
  "The platform to run on; an error if JAX cannot start it (default: "
  "$JVISION_ACCELERATOR, else a single JAX_PLATFORMS, else auto).",
)
_HEARTBEAT = flags.DEFINE_integer(
  "heartbeat_timeout",
  100,
  "Multi-host: seconds without a heartbeat after which a lost process "
  "stops the others.",
)


def _train(argv):
  from jvision import train

  config = _CONFIG.value
  if config is None:
    raise app.UsageError("train needs --config=experiments/X.py")
  _require_workdir("train")
  result = train.get_trainer(config.trainer)(config, _WORKDIR.value)
  print(f"trained {_WORKDIR.value} from {result['source']}: {result['eval']}")


def _eval(argv):
  from jvision.evaluate import run

  _require_workdir("eval")
  report = run.evaluate_workdir(
    _WORKDIR.value, _SPLIT.value, _TTA.value, data=_DATA.value
  )
  print(
    f"{_WORKDIR.value} on {report['data']} {_SPLIT.value}: accuracy "
    f"{report['accuracy']:.4f}, macro F1 {report['macro_f1']:.4f}; "
    f"report in {_WORKDIR.value}/eval/"
  )


def _audit(argv):
  from jvision.audit import run

  if not _DATA.value or not _OUT.value:
    raise app.UsageError("audit needs --data=SPEC and --out=DIR")
  summary = run.run_audit(
    _DATA.value,
    _OUT.value,
    labels=_LABELS.value,
    encoder=_ENCODER.value,
    config=_AUDIT.value,
  )
  print(run.format_summary(summary, _OUT.value))


def _predict(argv):
  from jvision.ship import predict

  _require_workdir("predict")
  if not _IMAGES.value:
    raise app.UsageError("predict needs --images=PATH (file, folder or zip)")
  summary = predict.run_predict(
    _WORKDIR.value,
    _IMAGES.value,
    _OUT.value or "preds.csv",
    top_k=_TOP_K.value,
    batch_size=_BATCH.value,
  )
  print(predict.format_summary(summary))


def _export(argv):
  from jvision.ship import export

  _require_workdir("export")
  if not _OUT.value:
    raise app.UsageError("export needs --out=model.onnx")
  summary = export.export_onnx(
    _WORKDIR.value, _OUT.value, batch=_BATCH_DIM.value, force=_FORCE.value
  )
  print(export.format_summary(summary))
  print(export.serve_example(summary))


def _search(argv):
  from jvision.ship import search

  _require_workdir("search")
  if not _INDEX.value:
    raise app.UsageError("search needs --index=SPEC (the images to search)")
  if _EVAL.value:
    metrics = search.evaluate(
      _WORKDIR.value,
      _INDEX.value,
      gallery_split=_INDEX_SPLIT.value,
      query_split=_EVAL_SPLIT.value,
      max_queries=_MAX_QUERIES.value or None,
    )
    print(search.format_evaluation(metrics))
    return
  if not _QUERY.value:
    raise app.UsageError("search needs --query=IMAGE (or --eval)")
  result = search.search(
    _WORKDIR.value,
    _INDEX.value,
    _QUERY.value,
    k=_K.value,
    split=_INDEX_SPLIT.value,
  )
  print(search.format_result(result))


def _pack(argv):
  from jvision.data import pack

  if not _DATA.value or not _OUT.value:
    raise app.UsageError("pack needs --data=SPEC and --out=DIR")
  result = pack.pack(
    _DATA.value,
    _OUT.value,
    splits=tuple(_SPLITS.value or ()),
    shard_mb=_SHARD_MB.value,
    workers=_WORKERS.value,
    data_dir=_DATA_DIR.value,
  )
  print(pack.format_summary(result))


def _import(argv):
  from jvision.ship import import_weights

  _require_workdir("import")
  if not _WEIGHTS.value or not _ARCH.value:
    raise app.UsageError("import needs --weights=FILE and --arch=NAME")
  summary = import_weights.import_weights(
    _WEIGHTS.value,
    _ARCH.value,
    _WORKDIR.value,
    data=_DATA.value,
    labels=_LABELS.value,
    image_size=_IMAGE_SIZE.value,
  )
  print(import_weights.format_summary(summary))


def _demo(argv):
  from jvision import demo

  demo.run_demo(_WORKDIR.value or "workdirs/demo")


HANDLERS = {
  "train": _train,
  "eval": _eval,
  "audit": _audit,
  "predict": _predict,
  "export": _export,
  "search": _search,
  "demo": _demo,
  "pack": _pack,
  "import": _import,
}
COMMANDS = tuple(HANDLERS)


def _require_workdir(command: str):
  if not _WORKDIR.value:
    raise app.UsageError(f"{command} needs --workdir=DIR")


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("usage: jvision {" + "|".join(COMMANDS) + "} ...")
  command, rest = argv[1], argv[2:]
  if rest:
    raise app.UsageError(f"unexpected arguments: {' '.join(rest)}")
  if command not in HANDLERS:
    close = difflib.get_close_matches(command, COMMANDS, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise app.UsageError(
      f"unknown command {command!r}{hint} (commands: {', '.join(COMMANDS)})"
    )
  from jvision.train import loop

  try:
    parallel.initialize(
      _COORDINATOR.value,
      _NUM_PROCESSES.value,
      _PROCESS_ID.value,
      heartbeat_timeout=_HEARTBEAT.value,
    )
    parallel.start_devices(_ACCELERATOR.value)
    HANDLERS[command](argv)
  except loop.Preempted as error:
    print(f"jvision {command}: {error}", file=sys.stderr)
    sys.exit(128 + signal.SIGTERM)  # 143, as if SIGTERM had killed it
  except (ValueError, OSError, ImportError, FloatingPointError) as error:
    if os.environ.get("JVISION_TRACEBACK"):
      raise
    print(
      f"jvision {command}: {error}\n(set JVISION_TRACEBACK=1 for the "
      "traceback)",
      file=sys.stderr,
    )
    sys.exit(1)


def _config_keys(argv) -> list[str]:
  """Every dotted key of the config file named in argv (for hints)."""
  from jvision.configs_io import flat_keys, load_config_file

  for arg in argv:
    if arg.startswith("--config="):
      try:
        return flat_keys(load_config_file(arg.split("=", 1)[1]))
      except Exception:  # the hint is best-effort; the error is raised anyway
        return []
  return []


def _unknown_override_message(argv) -> str | None:
  """Names each --config.KEY of argv that the config lacks, with hints."""
  keys = _config_keys(argv)
  lines = []
  for arg in argv:
    if not arg.startswith("--config.") or not keys:
      continue
    key = arg[len("--config.") :].split("=", 1)[0]
    if key not in keys and not any(k.startswith(key + ".") for k in keys):
      close = difflib.get_close_matches(key, keys, n=5)
      hint = f"; close valid keys: {', '.join(close)}" if close else ""
      lines.append(f"unknown config key {key!r}{hint}")
  return "\n".join(lines) or None


# The config flags whose keys `--FLAG.KEY=None` can unset.
NULLABLE_FLAGS = ("config", "audit")


def none_overrides(argv) -> tuple[list[str], list[tuple[str, str]]]:
  """(argv without its `--config.KEY=None` and `--audit.KEY=None`, those
  overrides as (flag, KEY) in argv's order).

  ml_collections parses an override with its key's type: None fails for
  an int key (e.g. a runlocal recipe's `data.max_per_class`) and is the
  string "None" for a str key (a path "None"). The CLI takes these out and
  sets the keys to None itself (`unset_keys`).
  """
  kept, unset, args = [], [], list(argv)
  while args:
    arg = args.pop(0)
    name, equals, value = arg.partition("=")
    flag, dot, key = name.removeprefix("--").partition(".")
    if not (name.startswith("--") and flag in NULLABLE_FLAGS and dot and key):
      kept.append(arg)
      continue
    if not equals and args and args[0] == "None":  # `--config.KEY None`
      value = args.pop(0)
    if value == "None":
      unset.append((flag, key))
    else:
      kept.append(arg)
  return kept, unset


def unset_keys(configs: dict, unset, kept_argv) -> None:
  """Sets each (flag, KEY) of `unset` to None in `configs[flag]`.

  Raises:
    KeyError: the config lacks KEY (the caller adds close-match hints).
    ValueError: KEY is a section, not a value; the same key is also set
      to a value in `kept_argv`; or the flag's config was not given.
  """
  for flag, key in unset:
    override = f"--{flag}.{key}"
    where = f"{override}=None"
    if any(a == override or a.startswith(f"{override}=") for a in kept_argv):
      raise ValueError(f"{where}: the key is also given a value; give one")
    config = configs.get(flag)
    if config is None:
      raise ValueError(f"{where} needs --{flag}=FILE before it")
    try:  # config_flags' own dotted-path access
      value = config_path.get_value(key, config)
    except KeyError:
      raise KeyError(key) from None
    if isinstance(value, ml_collections.ConfigDict):
      raise ValueError(f"{where}: {key} is a section; only a value can be None")
    config_path.set_value(key, config, None)


def parse_flags(argv):
  """absl's parser, with close-match hints for unknown --config.KEY and
  `--config.KEY=None` / `--audit.KEY=None` setting the key to None."""
  kept, unset = none_overrides(argv)
  try:
    rest = flags.FLAGS(kept)
    configs = {name: flags.FLAGS[name].value for name in NULLABLE_FLAGS}
    unset_keys(configs, unset, kept)
    return rest
  except (flags.Error, KeyError, AttributeError, ValueError) as error:
    message = _unknown_override_message(argv) or str(error)
    print(f"jvision: {message}", file=sys.stderr)
    sys.exit(2)


def run():
  """Console-script entry point."""
  logging_setup.configure()
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
