"""`jvision import`: weights trained elsewhere as an ordinary workdir.

`import_weights(weights, arch, workdir)` reads a weight file
(`jvision.ship.weight_files`), maps its tensors onto the jvision model
`arch`, checks every tensor's name and shape against that model, and
writes DIR/config.json (trainer "import", the model, the preprocessing the
weights expect, where they came from) and an Orbax checkpoint of params and
batch statistics. `eval`, `predict`, `search`, `export`, `audit --encoder`
and fine-tuning (`config.init_from`) then read it like a trained run.

Layouts (ARCHS; the names in `jvision.ship.weight_names`):

* torchvision / timm ResNets ("resnet18", "resnet34", "resnet50"), read
  from .safetensors or .pth/.pt; preprocessing: RGB in [0, 1], ImageNet
  mean and std.
* Keras's ResNet50 ("resnet50_keras", ResNet v1), read from .weights.h5 or
  .h5; preprocessing: Keras's "caffe" mode, BGR with [103.939, 116.779,
  123.68] subtracted from 0..255 values.

A classifier in the file (fc / predictions) becomes the model's "head";
without one the workdir holds a backbone. Nothing is written when the file
does not fit the model, and an existing non-empty DIR is never touched: the
workdir is assembled beside DIR and renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jvision import checkpoint as checkpoint_lib
from jvision import models
from jvision import workdir as workdir_lib
from jvision.data import labels as labels_lib
from jvision.ship import weight_files, weight_names
from jvision.train import defaults

HEAD = models.HEAD

# What `normalize` needs for each layout, in [0, 1] units (augment.normalize).
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet statistics
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # Keras "caffe", 0..255 units
PREPROCESSING = {
  "torchvision": {
    "mean": IMAGENET_MEAN,
    "std": IMAGENET_STD,
    "channel_order": "rgb",
  },
  "keras": {
    "mean": tuple(v / 255 for v in CAFFE_BGR_MEAN),
    "std": (1 / 255,) * 3,  # no scaling: x * 255 - mean in 0..255 units
    "channel_order": "bgr",
  },
}

# --arch names: the layout of the files each one reads.
ARCHS = {
  "resnet18": "torchvision",
  "resnet34": "torchvision",
  "resnet50": "torchvision",
  "resnet50_keras": "keras",
}
_FILE_KINDS = {"torchvision": ("torch", "safetensors"), "keras": ("keras",)}
_SHOWN = 25  # tensors listed per kind of mismatch


class WeightsMismatchError(ValueError):
  """A weight file's tensors do not fit the model named by --arch."""


# --- mapping and checking ---------------------------------------------------


def _transformed(array: np.ndarray, transform: str) -> np.ndarray:
  if transform == "oihw_to_hwio":
    return np.transpose(array, (2, 3, 1, 0))  # [O, I, H, W] -> [H, W, I, O]
  if transform == "transpose":
    return array.T  # [K, C] -> [C, K]
  return array


def head_size(tensors: dict, layout: str) -> int:
  """Number of classes of the file's classifier; 0 when it has none."""
  if layout == "torchvision":
    weight = tensors.get("fc.weight")
    return int(weight.shape[0]) if weight is not None else 0
  kernel = tensors.get(f"{weight_names.KERAS_HEAD}/kernel")
  return int(kernel.shape[-1]) if kernel is not None else 0


def model_shapes(arch: str, num_classes: int, image_size: int = 64) -> dict:
  """{"params/...": shape} of the jvision model `arch` (nothing computed)."""
  model = models.create_model(arch, num_classes=num_classes)
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  return {
    "/".join(k.key for k in path): tuple(leaf.shape)
    for path, leaf in jax.tree_util.tree_leaves_with_path(shapes)
  }


def _shape(shape) -> str:
  return "(" + ", ".join(str(d) for d in shape) + ")"


def map_tensors(tensors: dict, arch: str, *, source: str) -> dict:
  """The model variables of `arch` from a file's tensors.

  Args:
    tensors: {file name: array} (`weight_files.read_tensors`).
    arch: a key of ARCHS.
    source: the file, for messages.

  Returns:
    {"params": tree, "batch_stats": tree} of float32 arrays, the head
    included when the file has a classifier.

  Raises:
    WeightsMismatchError: listing the model tensors missing from the file,
      the file tensors the model has no place for, and those whose shapes
      differ, each with its shape.
  """
  layout = ARCHS[arch]
  if layout == "keras":
    stage_sizes = models.MODELS[arch].keywords["stage_sizes"]
    tensors = weight_names.keras3_names(tensors, stage_sizes)
    target_of = weight_names.keras_target
  else:
    target_of = weight_names.torchvision_target
  wanted = model_shapes(arch, head_size(tensors, layout))
  mapped, found, unexpected, misshaped = {}, set(), [], []
  for name in sorted(tensors):
    array = tensors[name]
    if layout == "torchvision" and weight_names.TORCH_IGNORED.match(name):
      continue
    target = target_of(name)
    key = target and f"{target.collection}/{target.path}"
    if key is None or key not in wanted or key in found:
      unexpected.append(f"{name} {_shape(array.shape)}")
      continue
    found.add(key)
    array = _transformed(array, target.transform)
    if array.shape != wanted[key]:
      misshaped.append(
        f"{name} -> {key}: file {_shape(array.shape)}, model "
        f"{_shape(wanted[key])}"
      )
      continue
    mapped[key] = np.asarray(array, np.float32)
  missing = [
    f"{key} {_shape(shape)}"
    for key, shape in sorted(wanted.items())
    if key not in found
  ]
  if missing or unexpected or misshaped:
    raise WeightsMismatchError(
      _mismatch_message(source, arch, layout, missing, unexpected, misshaped)
    )
  return _unflatten(mapped)


def _mismatch_message(source, arch, layout, missing, unexpected, misshaped):
  lines = [
    f"--weights={source} does not fit --arch={arch} ({layout} layout; "
    f"arches: {', '.join(f'{a} ({o})' for a, o in ARCHS.items())}):"
  ]
  for title, items in (
    ("missing from the file", missing),
    ("in the file but not in the model", unexpected),
    ("shape differs", misshaped),
  ):
    if items:
      lines.append(f"  {title} ({len(items)}):")
      lines += [f"    {item}" for item in items[:_SHOWN]]
      if len(items) > _SHOWN:
        lines.append(f"    ... and {len(items) - _SHOWN} more")
  lines.append("Nothing was written.")
  return "\n".join(lines)


def _unflatten(flat: dict) -> dict:
  tree = {"params": {}, "batch_stats": {}}
  for key, value in flat.items():
    *parents, leaf = key.split("/")
    node = tree
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = value
  return tree


# --- the workdir --------------------------------------------------------------


def class_names(num_classes: int, labels: str | None) -> list[str]:
  """Names of the classifier's classes, by id.

  From a label spec JSON when given (its class count must match); else
  "imagenet_0000".."imagenet_0999" for a 1000-class head (the ImageNet-1k
  ids the published ResNets use) and "class_0".. otherwise.
  """
  if labels:
    spec = labels_lib.load_label_spec(labels)
    if spec.num_classes != num_classes:
      raise ValueError(
        f"--labels={labels} names {spec.num_classes} classes but the "
        f"weights' classifier has {num_classes}"
      )
    return list(spec.class_names)
  if num_classes == 1000:
    return [f"imagenet_{i:04d}" for i in range(num_classes)]
  width = len(str(num_classes - 1))
  return [f"class_{i:0{width}d}" for i in range(num_classes)]


def import_config(
  arch: str, *, weights: str, sha256: str, data: str | None, image_size: int
) -> ml_collections.ConfigDict:
  """The config.json of an imported workdir (trainer "import")."""
  layout = ARCHS[arch]
  config = defaults.supervised_config()
  config.trainer = workdir_lib.IMPORTED
  config.model = ml_collections.ConfigDict({"name": arch})
  config.data.name = data
  config.data.image_size = image_size
  config.data.channels = 3
  config.data.update(PREPROCESSING[layout])
  config.eval_batch_size = 64  # a 224 px ResNet-50 batch fits a laptop
  config.imported = ml_collections.ConfigDict(
    {"weights": os.path.abspath(weights), "layout": layout, "sha256": sha256}
  )
  return config


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def check_workdir(workdir: str) -> None:
  """Raises unless `workdir` is absent or an empty directory."""
  if os.path.isdir(workdir) and os.listdir(workdir):
    raise FileExistsError(
      f"--workdir={workdir} exists and is not empty; jvision import writes "
      "only a new (or empty) directory"
    )
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise FileExistsError(f"--workdir={workdir} exists and is a file")


def check_arch(weights: str, arch: str) -> str:
  """The layout of `arch`; raises for an unknown arch or file type."""
  if arch not in ARCHS:
    raise ValueError(
      f"--arch={arch!r} is not importable; choose one of {', '.join(ARCHS)}"
    )
  layout = ARCHS[arch]
  kind = weight_files.file_kind(weights)
  if kind not in _FILE_KINDS[layout]:
    other = [a for a, o in ARCHS.items() if kind in _FILE_KINDS[o]]
    raise ValueError(
      f"--weights={weights} is a {kind} file but --arch={arch} reads "
      f"{layout} weights; for this file use --arch one of {other}"
    )
  return layout


def write_workdir(
  workdir: str, config, variables: dict, *, class_names, image_shape
) -> None:
  """Writes config.json and a step-0 checkpoint into a new `workdir`.

  Assembled in a sibling directory and renamed into place, so an
  interrupted import leaves no half-written workdir.
  """
  parent = os.path.dirname(os.path.abspath(workdir))
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(
    parent,
    f".{os.path.basename(os.path.abspath(workdir))}.import-{os.getpid()}",
  )
  try:
    workdir_lib.record(
      tmp, config, class_names=class_names, image_shape=image_shape
    )
    checkpointer = checkpoint_lib.Checkpointer(
      os.path.join(tmp, "checkpoints"), async_save=False
    )
    state = {**variables, "step": np.int32(0)}
    checkpointer.save(0, state, data={"imported": config.imported.weights})
    checkpointer.wait()
    checkpointer.close()
    if os.path.isdir(workdir):
      os.rmdir(workdir)  # empty (check_workdir); fails if that changed
    os.rename(tmp, workdir)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)


def import_weights(
  weights: str,
  arch: str,
  workdir: str,
  *,
  data: str | None = None,
  labels: str | None = None,
  image_size: int = 224,
) -> dict:
  """Turns a weight file into a jvision workdir (see the module docstring).

  Args:
    weights: a .safetensors, .pth/.pt or Keras .h5 file.
    arch: a key of ARCHS naming the model the weights belong to.
    workdir: the new workdir (absent or empty).
    data: a data spec recorded as the workdir's data (for `jvision eval`
      and fine-tuning defaults), e.g. a folder of the classifier's classes.
    labels: a label spec JSON naming the classifier's classes.
    image_size: the square input size predict/export/eval resize images to.

  Returns:
    {"workdir", "arch", "layout", "classes", "params", "batch_stats",
    "preprocessing"} for the summary line.

  Raises:
    WeightsMismatchError: the file does not fit `arch` (nothing written).
    FileExistsError: `workdir` is not empty.
    ValueError, FileNotFoundError, ImportError: see `check_arch` and
      `weight_files.read_tensors`.
  """
  check_workdir(workdir)
  layout = check_arch(weights, arch)
  if not isinstance(image_size, int) or image_size < 32:
    raise ValueError(f"--image_size must be an integer >= 32, got {image_size}")
  tensors = weight_files.read_tensors(weights)
  variables = map_tensors(tensors, arch, source=weights)
  num_classes = len(variables["params"].get(HEAD, {}).get("bias", ()))
  names = class_names(num_classes, labels) if num_classes else []
  config = import_config(
    arch,
    weights=weights,
    sha256=_sha256(weights),
    data=data,
    image_size=image_size,
  )
  write_workdir(
    workdir,
    config,
    variables,
    class_names=names,
    image_shape=(image_size, image_size, 3),
  )
  return {
    "workdir": workdir,
    "arch": arch,
    "layout": layout,
    "classes": num_classes,
    "params": models.count_params(variables["params"]),
    "batch_stats": models.count_params(variables["batch_stats"]),
    "preprocessing": dict(PREPROCESSING[layout]),
  }


def format_summary(summary: dict) -> str:
  """The terminal line of a finished import."""
  p = summary["preprocessing"]
  head = (
    f"a {summary['classes']}-class classifier"
    if summary["classes"]
    else "a backbone (no classifier)"
  )
  return (
    f"imported {summary['arch']} ({summary['layout']} layout) into "
    f"{summary['workdir']}: {head}, {summary['params']:,} parameters and "
    f"{summary['batch_stats']:,} batch statistics; preprocessing "
    f"{p['channel_order'].upper()}, mean {_rounded(p['mean'])}, std "
    f"{_rounded(p['std'])} ([0, 1] units)"
  )


def _rounded(values) -> str:
  return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
