"""Fixtures for the data-source tests: image writers and an isolated cache.

Test modules are imported with --import-mode=importlib, so helpers reach
them as the `imgs` fixture rather than by import.
"""

import pathlib
import types
import zipfile

import numpy as np
import pytest
from helpers import jpeg_bytes, png_bytes


@pytest.fixture
def data_cache(tmp_path, monkeypatch) -> pathlib.Path:
  """Points $JVISION_CACHE at a fresh folder for one test."""
  path = tmp_path / "jvision_cache"
  monkeypatch.setenv("JVISION_CACHE", str(path))
  return path


def solid(value: int, size: int = 8, channels: int = 3) -> np.ndarray:
  """uint8 [size, size, channels] filled with value (2-D for 1 channel)."""
  shape = (size, size) if channels == 1 else (size, size, channels)
  return np.full(shape, value, np.uint8)


def write_files(root: pathlib.Path, files: dict[str, bytes]) -> None:
  """Writes {relative path: bytes} under root."""
  for name, data in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_zip(path: pathlib.Path, files: dict[str, bytes]) -> None:
  """Writes {member name: bytes} into a stored zip."""
  with zipfile.ZipFile(path, "w") as archive:
    for name, data in files.items():
      archive.writestr(name, data)


@pytest.fixture
def imgs() -> types.SimpleNamespace:
  """The image and file writers of this module."""
  return types.SimpleNamespace(
    png=png_bytes,
    jpeg=jpeg_bytes,
    solid=solid,
    write_files=write_files,
    write_zip=write_zip,
  )
