"""Tensors of weight files written by other libraries, read without code.

`read_tensors(path)` returns {name: float32 array} from:

* `.safetensors` (torchvision/timm state dicts): safetensors' NumPy API, no
  PyTorch needed;
* `.pth` / `.pt` (`torch.save` of a state dict): PyTorch's `weights_only`
  loader, which rebuilds tensors and plain containers only and refuses any
  other object a pickle names (so a file's code payload never runs); without
  PyTorch, an error saying how to get a `.safetensors`;
* `.h5` (Keras): h5py datasets, never the model config it may hold. HDF5
  model files (`model.save("x.h5")`) and tf.keras `save_weights` files name
  tensors "LAYER/WEIGHT" ("conv1_conv/kernel"); Keras 3's `.weights.h5` numbers
  layers by class in the model's layer order and weights by position, named
  here "conv2d_3/0" (`jvision.ship.import_weights` gives them their names).

Every failure to read is a ValueError (or ImportError for a missing reader)
naming the file.
"""

from __future__ import annotations

import os

import numpy as np

TORCH_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIXES = (".safetensors",)
KERAS_SUFFIXES = (".h5",)  # also ".weights.h5"
SUFFIXES = TORCH_SUFFIXES + SAFETENSORS_SUFFIXES + KERAS_SUFFIXES


def file_kind(path: str) -> str:
  """ "torch", "safetensors" or "keras", by the file's suffix.

  Raises:
    ValueError: for any other suffix, naming those understood.
  """
  suffix = os.path.splitext(path)[1].lower()
  for kind, suffixes in (
    ("torch", TORCH_SUFFIXES),
    ("safetensors", SAFETENSORS_SUFFIXES),
    ("keras", KERAS_SUFFIXES),
  ):
    if suffix in suffixes:
      return kind
  raise ValueError(
    f"--weights={path}: unknown weight file type {suffix!r}; expected one "
    f"of {', '.join(SUFFIXES)}"
  )


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """{name: float32 array} of a weight file (see the module docstring).

  Integer tensors (PyTorch's `num_batches_tracked` counters) are kept with
  their dtype; floating ones become float32.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the file is damaged, of an unknown type, or holds objects
      other than tensors.
    ImportError: a `.pth` without PyTorch installed.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"--weights={path} does not exist")
  kind = file_kind(path)
  reader = {"torch": _read_torch, "safetensors": _read_safetensors}
  tensors = reader.get(kind, _read_keras)(path)
  if not tensors:
    raise ValueError(f"--weights={path} holds no tensors")
  return {name: _as_float32(array) for name, array in tensors.items()}


def _as_float32(array) -> np.ndarray:
  array = np.asarray(array)
  if np.issubdtype(array.dtype, np.floating):
    return array.astype(np.float32)
  return array


def _read_safetensors(path: str) -> dict:
  import safetensors.numpy

  try:
    return dict(safetensors.numpy.load_file(path))
  except Exception as e:  # noqa: BLE001 - SafetensorError and OSError alike
    raise ValueError(
      f"--weights={path} is not a readable .safetensors file "
      f"({type(e).__name__}: {e})"
    ) from e


def _read_torch(path: str) -> dict:
  try:
    import torch
  except ImportError as e:
    raise ImportError(
      f"--weights={path}: reading a PyTorch file needs PyTorch (pip install "
      "torch); or convert it to .safetensors where PyTorch is installed: "
      'python -c "import torch, safetensors.torch as st; st.save_file('
      f"torch.load('{path}', weights_only=True), 'model.safetensors')\" "
      "and import model.safetensors"
    ) from e
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # noqa: BLE001 - UnpicklingError, RuntimeError, ...
    raise ValueError(
      f"--weights={path} was refused or is damaged: PyTorch's weights-only "
      "loader reads tensors and plain containers only, nothing that runs "
      f"code ({type(e).__name__}: {str(e).splitlines()[0][:300]})"
    ) from e
  state = _state_dict(loaded, path)
  return {name: tensor.detach().cpu().numpy() for name, tensor in state.items()}


def _state_dict(loaded, path: str) -> dict:
  """The {name: tensor} inside what `torch.load` returned.

  A bare state dict, or one under "state_dict" or "model" (the usual
  training-checkpoint layouts); entries that are not tensors are refused.
  """
  import torch

  for key in ("state_dict", "model"):
    if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
      loaded = loaded[key]
      break
  if not isinstance(loaded, dict):
    raise ValueError(
      f"--weights={path} holds a {type(loaded).__name__}, not a state dict "
      "({name: tensor}); save `model.state_dict()`"
    )
  other = sorted(k for k, v in loaded.items() if not torch.is_tensor(v))
  if other:
    raise ValueError(
      f"--weights={path}: entries that are not tensors: {other[:10]}"
    )
  return loaded


def _read_keras(path: str) -> dict:
  import h5py

  try:
    with h5py.File(path, "r") as f:
      if "layers" in f:  # Keras 3 .weights.h5
        return _keras3_tensors(f["layers"])
      group = f.get("model_weights", f)
      if "layer_names" not in group.attrs:
        raise ValueError("neither Keras 3 weights nor a legacy Keras file")
      return _legacy_keras_tensors(group)
  except (OSError, KeyError, ValueError) as e:
    raise ValueError(
      f"--weights={path} is not a readable Keras weights file "
      f"({type(e).__name__}: {e})"
    ) from e


def _keras3_tensors(layers) -> dict:
  """{"LAYER/i": array} of a Keras 3 file's "layers" group."""
  out = {}
  for layer, group in layers.items():
    variables = group.get("vars", {})
    for index, dataset in variables.items():
      out[f"{layer}/{index}"] = dataset[()]
  return out


def _legacy_keras_tensors(group) -> dict:
  """{"LAYER/WEIGHT": array} of a legacy (Keras 2 / .h5) weights group."""
  out = {}
  for layer in _strings(group.attrs["layer_names"]):
    layer_group = group[layer]
    for weight in _strings(layer_group.attrs.get("weight_names", [])):
      leaf = weight.split("/")[-1].split(":")[0]  # "kernel:0" -> "kernel"
      out[f"{layer}/{leaf}"] = layer_group[weight][()]
  return out


def _strings(values) -> list[str]:
  return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
