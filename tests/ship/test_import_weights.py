"""Tests for jvision/ship/import_weights.py, weight_files.py, weight_names.py.

Parity with the libraries that made the weights: torchvision ResNets and
Keras's ResNet50 are initialised at random by those libraries, saved by their
own save functions, imported, and run through `predict` (the probabilities
it writes, and the logits of the model it loads) and through the ONNX model
`export` writes (onnxruntime); each must equal the originating library's own
forward pass on the same images to 1e-4 of the largest |logit| (float32).

torchvision's wheel is installed without its dependencies and its compiled
ops do not load with the CPU build of PyTorch, so `torchvision/__init__.py`
(which loads them) cannot run. `_torchvision_resnet` loads the wheel's own
`torchvision/models/resnet.py` unchanged: it registers empty package
modules for `torchvision` and `torchvision.models` (pointing at the
installed directories, so the package `__init__` files, the only code that
loads the compiled ops, are skipped) and imports `torchvision.models.resnet`
from there; its pure-Python imports (`_api`, `_meta`, `_utils`,
`transforms._presets`, `utils`) load from the wheel as usual.
"""

import csv
import functools
import importlib
import importlib.util
import json
import os
import pathlib
import re
import sys
import types

import numpy as np
import pytest
from helpers import REPO as REPO_ROOT
from helpers import png_bytes, run_cli

from jvision import inference
from jvision.data import augment
from jvision.ship import (
  export,
  import_weights,
  predict,
  weight_files,
  weight_names,
)

SIZE = 64  # input images: 64 x 64 RGB
NUM_IMAGES = 4
RELATIVE_TOLERANCE = 1e-4  # of the largest |logit|


@functools.cache
def _torchvision_resnet():
  """The wheel's torchvision/models/resnet.py (see the module docstring)."""
  pytest.importorskip("torch")
  spec = importlib.util.find_spec("torchvision")
  if spec is None:
    pytest.skip("torchvision is not installed (test extra)")
  root = os.path.dirname(spec.origin)
  for name, path in (
    ("torchvision", root),
    ("torchvision.models", os.path.join(root, "models")),
  ):
    if name not in sys.modules:
      package = types.ModuleType(name)
      package.__path__ = [path]
      sys.modules[name] = package
  return importlib.import_module("torchvision.models.resnet")


def _torch_model(arch: str, num_classes: int, seed: int = 0):
  """A torchvision ResNet in eval mode, batch norm moved off its init.

  Batch-norm scales, shifts and running statistics start at 1, 0, 0, 1,
  which would hide a swapped or misplaced one; they are redrawn with
  torch's own generator.
  """
  import torch

  resnet = _torchvision_resnet()
  torch.manual_seed(seed)
  model = getattr(resnet, arch)(num_classes=num_classes)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.2, 0.2)
        module.running_mean.uniform_(-0.2, 0.2)
        module.running_var.uniform_(0.5, 2.0)
  return model.eval()


def _images(seed: int = 0) -> np.ndarray:
  """uint8 [4, 64, 64, 3]: smooth random colour fields plus noise."""
  rng = np.random.default_rng(seed)
  low = rng.uniform(0, 255, (NUM_IMAGES, 4, 4, 3))
  smooth = np.kron(low, np.ones((1, SIZE // 4, SIZE // 4, 1)))
  noise = rng.normal(0, 20, smooth.shape)
  return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def _torch_logits(model, images: np.ndarray) -> np.ndarray:
  """torchvision's forward pass on its documented preprocessing."""
  import torch

  mean = np.array(import_weights.IMAGENET_MEAN, np.float32)
  std = np.array(import_weights.IMAGENET_STD, np.float32)
  x = (images.astype(np.float32) / 255.0 - mean) / std  # [N, H, W, 3]
  with torch.no_grad():
    out = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
  return out.numpy()


def _write_images(images: np.ndarray, folder: pathlib.Path) -> list[str]:
  folder.mkdir(parents=True, exist_ok=True)
  names = []
  for i, image in enumerate(images):
    names.append(f"{i:02d}.png")
    (folder / names[-1]).write_bytes(png_bytes(image))
  return names


def _softmax(logits: np.ndarray) -> np.ndarray:
  z = np.exp(logits - logits.max(axis=1, keepdims=True))
  return z / z.sum(axis=1, keepdims=True)


def _jvision_logits(workdir, images) -> np.ndarray:
  """Logits of the classifier `predict` loads, on its own preprocessing."""
  model = inference.load(str(workdir))
  module = model.require_classifier()
  x = augment.normalize(model.prepare(list(images)), **model.preprocessing)
  logits = module.apply(model.variables, x, train=False)
  return np.asarray(logits)


def _predicted_probabilities(workdir, images, tmp_path) -> np.ndarray:
  """float [N, K] of the CSV `predict` writes, in class-id order."""
  names = _write_images(images, tmp_path / "images")
  out = tmp_path / "preds.csv"
  model = inference.load(str(workdir))
  k = len(model.class_names)
  predict.run_predict(
    str(workdir), str(tmp_path / "images"), str(out), top_k=k, progress=False
  )
  with open(out, newline="") as f:
    rows = {row["path"]: row for row in csv.DictReader(f)}
  ids = {name: i for i, name in enumerate(model.class_names)}
  probs = np.zeros((len(names), k))
  for n, name in enumerate(names):
    row = rows[name]
    for j in range(1, k + 1):
      suffix = "" if j == 1 else f"_{j}"
      probs[n, ids[row["label" + suffix]]] = float(row["score" + suffix])
  return probs


def _onnx_outputs(workdir, images, tmp_path):
  import onnxruntime as ort

  path = tmp_path / "model.onnx"
  export.export_onnx(str(workdir), str(path))
  session = ort.InferenceSession(str(path))
  return session.run(None, {"images": images})


def _check_parity(workdir, images, reference, tmp_path, *, onnx=True):
  """predict's logits and CSV, and the ONNX export, against `reference`."""
  bound = RELATIVE_TOLERANCE * float(np.abs(reference).max())
  assert np.std(reference) > 0.1  # a real, non-constant forward pass
  logits = _jvision_logits(workdir, images)
  assert np.abs(logits - reference).max() <= bound
  probs = _predicted_probabilities(workdir, images, tmp_path)
  # The CSV rounds to 4 decimals.
  assert np.abs(probs - _softmax(reference)).max() <= 5e-5 + bound
  if onnx:
    onnx_logits, onnx_probs = _onnx_outputs(workdir, images, tmp_path)
    assert np.abs(onnx_logits - reference).max() <= bound
    assert np.abs(onnx_probs - _softmax(reference)).max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize(
  ("arch", "suffix", "num_classes"),
  [("resnet18", ".pth", 7), ("resnet50", ".safetensors", 1000)],
)
def test_torchvision_parity(arch, suffix, num_classes, tmp_path):
  model = _torch_model(arch, num_classes)  # skips without torchvision
  import safetensors.torch
  import torch

  path = tmp_path / f"{arch}{suffix}"
  if suffix == ".pth":
    torch.save(model.state_dict(), path)
  else:
    safetensors.torch.save_file(model.state_dict(), path)
  images = _images()
  reference = _torch_logits(model, images)
  workdir = tmp_path / "imported"
  summary = import_weights.import_weights(
    str(path), arch, str(workdir), image_size=SIZE
  )
  assert summary["classes"] == num_classes
  assert summary["params"] == sum(p.numel() for p in model.parameters())
  _check_parity(workdir, images, reference, tmp_path, onnx=arch == "resnet18")
  names = inference.load(str(workdir)).class_names
  if num_classes == 1000:
    assert (names[0], names[-1]) == ("imagenet_0000", "imagenet_0999")
  else:
    assert names == tuple(f"class_{i}" for i in range(num_classes))


@pytest.fixture(scope="module")
def keras_resnet50():
  """keras.applications.ResNet50 (JAX backend, no TensorFlow), logits out.

  Random Keras initialisation; batch-norm weights and moving statistics
  (Keras starts them at 1, 0, 0, 1) are redrawn.
  """
  os.environ.setdefault("KERAS_BACKEND", "jax")
  keras = pytest.importorskip("keras")
  if keras.backend.backend() != "jax":
    pytest.skip("Keras runs on another backend in this process")
  keras.utils.set_random_seed(0)
  model = keras.applications.ResNet50(
    weights=None, input_shape=(SIZE, SIZE, 3), classifier_activation=None
  )
  rng = np.random.default_rng(0)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.set_weights(
        [
          rng.uniform(0.5, 1.5, c),
          rng.uniform(-0.2, 0.2, c),
          rng.uniform(-0.2, 0.2, c),
          rng.uniform(0.5, 2.0, c),
        ]
      )
  return keras, model


def _keras_logits(keras, model, images) -> np.ndarray:
  """Keras's forward pass on its own ResNet50 preprocessing ("caffe")."""
  x = keras.applications.resnet50.preprocess_input(images.astype(np.float32))
  return np.asarray(model(x, training=False))


@pytest.mark.slow
def test_keras_resnet50_parity(keras_resnet50, tmp_path):
  keras, model = keras_resnet50
  assert model.count_params() == 25_636_712
  path = tmp_path / "resnet50.weights.h5"
  model.save_weights(path)
  images = _images(1)
  reference = _keras_logits(keras, model, images)
  workdir = tmp_path / "imported"
  summary = import_weights.import_weights(
    str(path), "resnet50_keras", str(workdir), image_size=SIZE
  )
  assert summary["params"] + summary["batch_stats"] == 25_636_712
  _check_parity(workdir, images, reference, tmp_path)


def test_keras_legacy_h5_parity(keras_resnet50, tmp_path):
  keras, model = keras_resnet50
  path = tmp_path / "resnet50.h5"
  model.save(path)  # Keras's legacy HDF5 format, layers named
  images = _images(2)
  reference = _keras_logits(keras, model, images)
  workdir = tmp_path / "imported"
  import_weights.import_weights(
    str(path), "resnet50_keras", str(workdir), image_size=SIZE
  )
  bound = RELATIVE_TOLERANCE * float(np.abs(reference).max())
  assert np.abs(_jvision_logits(workdir, images) - reference).max() <= bound


def test_keras_layer_order_is_keras_own(keras_resnet50):
  keras, model = keras_resnet50
  order = weight_names.keras_layer_order((3, 4, 6, 3))
  for kind, cls in (
    ("conv2d", keras.layers.Conv2D),
    ("batch_normalization", keras.layers.BatchNormalization),
    ("dense", keras.layers.Dense),
  ):
    names = [layer.name for layer in model.layers if isinstance(layer, cls)]
    assert order[kind] == names


def _write_resnet18(tmp_path, suffix=".safetensors", num_classes=3):
  model = _torch_model("resnet18", num_classes)  # skips without torchvision
  import safetensors.torch
  import torch

  path = tmp_path / f"resnet18{suffix}"
  if suffix == ".safetensors":
    safetensors.torch.save_file(model.state_dict(), path)
  else:
    torch.save(model.state_dict(), path)
  return path


def test_wrong_arch_lists_missing_and_misshaped_tensors(tmp_path):
  path = _write_resnet18(tmp_path)
  workdir = tmp_path / "out" / "wd"
  with pytest.raises(import_weights.WeightsMismatchError) as error:
    import_weights.import_weights(str(path), "resnet50", str(workdir))
  message = str(error.value)
  assert "missing from the file (" in message
  assert "batch_stats/stage1_block1/bn3/mean (256)" in message
  assert re.search(r"\n    \.\.\. and \d+ more\n", message)
  assert "shape differs (" in message
  assert (
    "layer1.0.conv1.weight -> params/stage1_block1/conv1/kernel: file "
    "(3, 3, 64, 64), model (1, 1, 64, 64)" in message
  )
  assert not (tmp_path / "out").exists() or not any(
    (tmp_path / "out").iterdir()
  )


def test_a_damaged_file_is_an_error_and_writes_nothing(tmp_path):
  path = _write_resnet18(tmp_path)
  data = path.read_bytes()
  damaged = tmp_path / "damaged.safetensors"
  damaged.write_bytes(data[: len(data) // 2])
  workdir = tmp_path / "wd"
  with pytest.raises(ValueError, match="not a readable .safetensors file"):
    import_weights.import_weights(str(damaged), "resnet18", str(workdir))
  assert not workdir.exists()


def test_missing_and_unexpected_tensors_are_listed_with_shapes(tmp_path):
  tensors = weight_files.read_tensors(str(_write_resnet18(tmp_path)))
  import safetensors.numpy

  del tensors["layer2.0.downsample.1.running_var"]
  tensors["layer5.0.conv1.weight"] = np.zeros((8, 4, 3, 3), np.float32)
  path = tmp_path / "edited.safetensors"
  safetensors.numpy.save_file(tensors, str(path))
  with pytest.raises(import_weights.WeightsMismatchError) as error:
    import_weights.import_weights(str(path), "resnet18", str(tmp_path / "wd"))
  lines = str(error.value).splitlines()
  assert lines[1:] == [
    "  missing from the file (1):",
    "    batch_stats/stage2_block1/proj_bn/var (128)",
    "  in the file but not in the model (1):",
    "    layer5.0.conv1.weight (8, 4, 3, 3)",
    "Nothing was written.",
  ]
  assert not (tmp_path / "wd").exists()


def test_a_non_empty_workdir_is_never_overwritten(tmp_path):
  path = _write_resnet18(tmp_path)
  workdir = tmp_path / "wd"
  workdir.mkdir()
  (workdir / "mine.txt").write_text("keep")
  with pytest.raises(FileExistsError, match="not empty"):
    import_weights.import_weights(str(path), "resnet18", str(workdir))
  assert [p.name for p in workdir.iterdir()] == ["mine.txt"]
  assert (workdir / "mine.txt").read_text() == "keep"


def test_a_file_of_another_library_names_the_right_arch(tmp_path):
  path = tmp_path / "x.weights.h5"
  path.write_bytes(b"")
  with pytest.raises(ValueError, match=r"use --arch one of \['resnet50_k"):
    import_weights.import_weights(str(path), "resnet50", str(tmp_path / "w"))


def test_a_file_without_classifier_imports_as_a_backbone(tmp_path):
  tensors = weight_files.read_tensors(str(_write_resnet18(tmp_path)))
  import safetensors.numpy

  backbone = {k: v for k, v in tensors.items() if not k.startswith("fc.")}
  path = tmp_path / "backbone.safetensors"
  safetensors.numpy.save_file(backbone, str(path))
  workdir = tmp_path / "wd"
  summary = import_weights.import_weights(
    str(path), "resnet18", str(workdir), image_size=32
  )
  assert summary["classes"] == 0
  assert summary["params"] == 11_176_512  # ResNet-18 without its fc
  model = inference.load(str(workdir))
  assert model.class_names == () and model.classifier is None
  with pytest.raises(ValueError, match="imported without a classifier"):
    model.require_classifier()
  features = model.embeddings(_images()[:2, :32, :32])
  assert features.shape == (2, 512)
  np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1, rtol=1e-5)


def test_labels_name_the_classes_and_must_match_their_count(tmp_path):
  path = _write_resnet18(tmp_path, num_classes=2)
  spec = tmp_path / "labels.json"
  classes = [{"id": i, "name": n} for i, n in enumerate(("cat", "dog"))]
  spec.write_text(json.dumps({"name": "pets", "classes": classes}))
  workdir = tmp_path / "wd"
  import_weights.import_weights(
    str(path), "resnet18", str(workdir), labels=str(spec), image_size=32
  )
  record = json.loads((workdir / "config.json").read_text())
  assert record["class_names"] == ["cat", "dog"]
  assert record["image_shape"] == [32, 32, 3]
  spec.write_text(json.dumps({"name": "one", "classes": classes[:1]}))
  with pytest.raises(ValueError, match="names 1 classes but the weights'"):
    import_weights.import_weights(
      str(path), "resnet18", str(tmp_path / "wd2"), labels=str(spec)
    )
  assert not (tmp_path / "wd2").exists()


class _Payload:
  """Pickles as a call to open(path, "w"): it creates a file when loaded."""

  def __init__(self, path):
    self.path = str(path)

  def __reduce__(self):
    return (open, (self.path, "w"))


def test_a_pth_with_a_code_payload_is_refused_and_does_not_run(tmp_path):
  torch = pytest.importorskip("torch")
  marker = tmp_path / "payload_ran"
  path = tmp_path / "evil.pth"
  state = {"conv1.weight": torch.zeros(64, 3, 7, 7), "extra": _Payload(marker)}
  torch.save(state, path)
  with pytest.raises(ValueError, match="refused or is damaged"):
    import_weights.import_weights(str(path), "resnet18", str(tmp_path / "wd"))
  assert not marker.exists()
  assert not (tmp_path / "wd").exists()
  # The payload is real: an unrestricted unpickling runs it.
  torch.load(path, weights_only=False)
  assert marker.exists()


def test_a_pth_without_torch_says_how_to_convert(tmp_path, monkeypatch):
  path = tmp_path / "model.pth"
  path.write_bytes(b"not read")
  monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails
  with pytest.raises(ImportError, match=r"safetensors.*save_file"):
    weight_files.read_tensors(str(path))


# --- as a user runs it ------------------------------------------------------

CLASSES = ("cat", "dog")


def _jvision(*args, cwd):
  return run_cli(*args, cwd=cwd)


def _folder(root: pathlib.Path, per_class: int = 8) -> pathlib.Path:
  """root/{train,test}/{cat,dog}/*.png: reddish and bluish 32 px images."""
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for c, name in enumerate(CLASSES):
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(per_class):
        image = rng.integers(0, 100, (32, 32, 3))
        image[..., 0 if c == 0 else 2] += 120
        (folder / f"{i}.png").write_bytes(png_bytes(image.astype(np.uint8)))
  return root


@pytest.fixture(scope="module")
def imported_cli(tmp_path_factory):
  """(root, workdir, data folder): a 2-class torchvision ResNet-18 imported
  with `jvision import` on the command line."""
  root = tmp_path_factory.mktemp("import_cli")
  weights = _write_resnet18(root, num_classes=len(CLASSES))
  data = _folder(root / "data")
  workdir = root / "imported"
  out = _jvision(
    "import",
    f"--weights={weights}",
    "--arch=resnet18",
    f"--workdir={workdir}",
    f"--data=folder:{data}",
    "--image_size=32",
    cwd=REPO_ROOT,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "imported resnet18 (torchvision layout)" in out.stdout
  assert "a 2-class classifier" in out.stdout
  return root, workdir, data


@pytest.mark.slow
def test_every_command_runs_on_an_imported_workdir(imported_cli):
  """predict, eval, search and audit --encoder on the command line (export
  runs in the parity tests)."""
  root, workdir, data = imported_cli
  record = json.loads((workdir / "config.json").read_text())
  assert record["config"]["trainer"] == "import"
  assert record["config"]["data"]["mean"] == list(import_weights.IMAGENET_MEAN)
  assert record["class_names"] == ["class_0", "class_1"]
  # predict with its default --top_k=3 on 2 classes: both classes.
  out = _jvision(
    "predict",
    f"--workdir={workdir}",
    f"--images={data / 'test'}",
    f"--out={root / 'preds.csv'}",
    cwd=root,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  header = (root / "preds.csv").read_text().splitlines()[0]
  assert header == "path,label,score,label_2,score_2,error"
  out = _jvision("eval", f"--workdir={workdir}", cwd=root)
  assert out.returncode == 0, out.stderr[-3000:]
  metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
  assert sum(metrics["confusion_matrix"], []) and metrics["split"] == "test"
  out = _jvision(
    "search",
    f"--workdir={workdir}",
    f"--index=folder:{data}",
    f"--query={data / 'test' / 'cat' / '0.png'}",
    "--k=3",
    cwd=root,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "cat/0.png" in out.stdout
  out = _jvision(
    "audit",
    f"--data=folder:{data}",
    f"--out={root / 'audit'}",
    f"--encoder={workdir}",
    cwd=root,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert (root / "audit" / "issues.csv").exists()


@pytest.mark.slow
def test_transfer_recipe_trains_both_stages_from_an_import(imported_cli):
  root, workdir, data = imported_cli
  common = [
    f"--config.data.name=folder:{data}",
    "--config.model.name=resnet18",  # the imported arch; the recipe's is 50
  ]
  head = root / "head"
  out = _jvision(
    "train",
    f"--config={REPO_ROOT / 'experiments' / 'transfer_resnet50.py'}"
    ":head,runlocal",
    f"--config.init_from={workdir}",
    f"--workdir={head}",
    *common,
    cwd=root,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  config = json.loads((head / "config.json").read_text())["config"]
  assert config["data"]["mean"] == list(import_weights.IMAGENET_MEAN)
  assert config["finetune"]["mode"] == "linear"
  full = root / "full"
  out = _jvision(
    "train",
    f"--config={REPO_ROOT / 'experiments' / 'transfer_resnet50.py'}"
    ":full,runlocal",
    f"--config.init_from={head}",
    f"--workdir={full}",
    *common,
    cwd=root,
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "with its head" in out.stdout
  config = json.loads((full / "config.json").read_text())["config"]
  assert config["data"]["mean"] == list(import_weights.IMAGENET_MEAN)
  assert config["finetune"]["init_head"] is True
