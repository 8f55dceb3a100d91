"""Tests for jvision/ship/export.py (`jvision export`).

The exported files are run with onnxruntime on real MNIST test digits and
compared with jvision's own forward pass: the trained seed CNN of the
`trained_workdir` fixture, and an initialised ResNet-tiny (batch norm in
inference mode, the imagenet stem's padded max-pool) whose batch statistics
are moved off their initial values so that normalisation matters.
"""

import json

import jax
import numpy as np
import onnxruntime as ort
import pytest
from flax import traverse_util

from jvision import data, inference, models
from jvision.data import augment
from jvision.ship import export

NUM_DIGITS = 32
TOLERANCE = 1e-4  # Max abs difference, float32 logits and probabilities.


@pytest.fixture(scope="module")
def digits(shared_data) -> np.ndarray:
  """uint8 [32, 28, 28, 1] MNIST test digits."""
  test = data.load(f"idx:{shared_data / 'mnist'}", "test")
  return test.images[:NUM_DIGITS]


@pytest.fixture(scope="module")
def exported(trained_workdir, tmp_path_factory):
  """(summary, path) of the tiny trained run exported with a dynamic batch."""
  path = tmp_path_factory.mktemp("export") / "model.onnx"
  return export.export_onnx(str(trained_workdir), str(path)), path


def _run(path, images) -> tuple[np.ndarray, np.ndarray]:
  session = ort.InferenceSession(str(path))
  logits, probabilities = session.run(None, {"images": images})
  return logits, probabilities


def _max_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def test_trained_cnn_matches_jvision_on_real_digits(
  exported, trained_workdir, digits
):
  _, path = exported
  model = inference.load(str(trained_workdir))
  x = augment.normalize(digits, **model.preprocessing)
  expected = model.classifier.apply(model.variables, x, train=False)
  logits, probabilities = _run(path, digits)
  assert logits.shape == probabilities.shape == (NUM_DIGITS, 10)
  assert logits.dtype == probabilities.dtype == np.float32
  assert _max_diff(logits, expected) <= TOLERANCE
  assert _max_diff(probabilities, model.probabilities(digits)) <= TOLERANCE


def test_batch_dimension_is_dynamic(exported, digits):
  _, path = exported
  all_logits, _ = _run(path, digits)
  for size in (1, 5):
    logits, _ = _run(path, digits[:size])
    assert _max_diff(logits, all_logits[:size]) <= TOLERANCE


def test_summary_and_metadata(exported, trained_workdir):
  summary, path = exported
  assert summary["path"] == str(path)
  assert summary["opset"] == export.OPSET
  assert summary["bytes"] == path.stat().st_size > 0
  assert summary["inputs"] == [
    {"name": "images", "dtype": "uint8", "shape": ["N", 28, 28, 1]}
  ]
  assert summary["outputs"] == [
    {"name": "logits", "dtype": "float32", "shape": ["N", 10]},
    {"name": "probabilities", "dtype": "float32", "shape": ["N", 10]},
  ]
  meta = ort.InferenceSession(str(path)).get_modelmeta()
  names = json.loads(meta.custom_metadata_map["class_names"])
  assert names == list(inference.load(str(trained_workdir)).class_names)
  assert int(meta.custom_metadata_map["step"]) == summary["step"]


def test_serve_example_runs(exported, capsys):
  summary, _ = exported
  exec(export.serve_example(summary), {})
  printed = capsys.readouterr().out
  assert printed.startswith("[") and printed.count(",") == 7  # 8 names.


def test_refuses_to_overwrite_unless_forced(exported, trained_workdir):
  summary, path = exported
  before = path.read_bytes()
  with pytest.raises(FileExistsError, match="already exists"):
    export.export_onnx(str(trained_workdir), str(path))
  assert path.read_bytes() == before
  forced = export.export_onnx(str(trained_workdir), str(path), force=True)
  assert forced["bytes"] == summary["bytes"]


def test_rejects_a_path_that_is_not_onnx(trained_workdir, tmp_path):
  with pytest.raises(ValueError, match=r"\.onnx"):
    export.export_onnx(str(trained_workdir), str(tmp_path / "model.pb"))


def _resnet_tiny(image_shape):
  """ResNet-tiny with the imagenet stem and random batch statistics."""
  module = models.create_model("resnet_tiny", num_classes=10, stem="imagenet")
  x = np.zeros((1, *image_shape), np.float32)
  variables = module.init(jax.random.key(0), x, train=False)
  rng = np.random.default_rng(0)
  stats = traverse_util.flatten_dict(variables["batch_stats"])
  for path, value in stats.items():
    if path[-1] == "mean":
      stats[path] = value + 0.1 * rng.standard_normal(value.shape)
    else:  # "var"
      stats[path] = value * rng.uniform(0.5, 2.0, value.shape)
  stats = traverse_util.unflatten_dict(stats)
  return module, {**variables, "batch_stats": stats}


def test_resnet_with_batch_norm_and_max_pool(digits, tmp_path):
  module, variables = _resnet_tiny(digits.shape[1:])
  mean, std = (0.1307,), (0.3081,)
  path = tmp_path / "resnet.onnx"
  summary = export.export_classifier(
    module,
    variables,
    mean=mean,
    std=std,
    image_shape=digits.shape[1:],
    out=str(path),
    batch=NUM_DIGITS,
  )
  assert summary["inputs"][0]["shape"] == [NUM_DIGITS, 28, 28, 1]
  fn = export.inference_fn(module, variables, mean=mean, std=std)
  expected_logits, expected_probabilities = fn(digits)
  logits, probabilities = _run(path, digits)
  assert _max_diff(logits, expected_logits) <= TOLERANCE
  assert _max_diff(probabilities, expected_probabilities) <= TOLERANCE
  assert np.std(np.asarray(expected_logits)) > 1e-3  # Not a constant net.


def test_export_leaves_jax_numpy_as_it_was(tmp_path):
  """jax2onnx replaces jnp.cumsum while tracing; the export puts it back."""
  import jax.numpy as jnp

  before = jnp.cumsum
  module = models.create_model("cnn", num_classes=3)
  variables = module.init(
    jax.random.PRNGKey(0), np.zeros((1, 32, 32, 1), np.float32), train=False
  )
  export.export_classifier(
    module,
    variables,
    mean=(0.5,),
    std=(0.5,),
    image_shape=(32, 32, 1),
    out=str(tmp_path / "m.onnx"),
  )
  assert jnp.cumsum is before
  np.testing.assert_array_equal(jnp.cumsum(jnp.ones((2, 3)), 1)[:, -1], 3)
