"""Host-side decode and crops of the streaming path, one example at a time.

The streaming workers turn an encoded image into the fixed-size uint8 view
a train or eval step takes; colour, blur and normalisation stay on device.

* Training: an Inception-style random-resized crop (a box of `scale` of the
  area and log-uniform aspect `ratio`, drawn as torchvision's
  `RandomResizedCrop` does: ten tries, then a centre crop of the clamped
  ratio), resized to `size` x `size`, and a mirror image with
  probability 1/2. SimCLR's two views are two such crops of the original,
  decoded once (`train_views`).
* Evaluation: the centre square of side `crop_fraction` x the shorter side
  (resize the shorter side to size / crop_fraction, then centre-crop size:
  224 of 256 for ImageNet), resized to `size` x `size`.

JPEGs are decoded at a reduced scale where the box allows it (Pillow's
draft mode: 1/2, 1/4 or 1/8 in the DCT), never below the box's output
resolution, so a 4000-px photo cropped to 224 costs a fraction of a full
decode. The box is drawn from the header's size before decoding.

Randomness comes from `example_rng(seed, step, index, view)`: a NumPy
generator keyed by the example's place in the run, so a resumed run redraws
exactly what an uninterrupted one drew, whatever the worker or order.

Errors (unreadable, truncated, decompression bombs) are the `DecodeError`
of `jvision.data.decode`.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageOps

from jvision.data import decode

_ROTATING = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_ORIENTATION_TAG = 0x0112


def example_rng(seed: int, step: int, index: int, view: int = 0):
  """The generator of one example's crop in one step (and view)."""
  return np.random.default_rng([seed, step, index, view])


def random_box(
  rng: np.random.Generator,
  width: int,
  height: int,
  *,
  scale: tuple[float, float],
  ratio: tuple[float, float],
) -> tuple[float, float, float, float]:
  """A random-resized-crop box (left, top, right, bottom) in pixels.

  Args:
    rng: the example's generator.
    width: the image's width.
    height: the image's height.
    scale: (min, max) fraction of the image's area.
    ratio: (min, max) aspect ratio width / height, drawn log-uniformly.
  """
  area = width * height
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(*log_ratio))
    w = round(math.sqrt(target * aspect))
    h = round(math.sqrt(target / aspect))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return left, top, left + w, top + h
  in_ratio = width / height  # fallback: centre crop of the clamped ratio
  if in_ratio < min(ratio):
    w, h = width, round(width / min(ratio))
  elif in_ratio > max(ratio):
    w, h = round(height * max(ratio)), height
  else:
    w, h = width, height
  left, top = (width - w) // 2, (height - h) // 2
  return left, top, left + w, top + h


def centre_box(
  width: int, height: int, *, crop_fraction: float
) -> tuple[float, float, float, float]:
  """The centre square of side crop_fraction x the shorter side."""
  side = min(width, height) * crop_fraction
  left, top = (width - side) / 2, (height - side) / 2
  return left, top, left + side, top + side


def _oriented_size(image: Image.Image) -> tuple[int, int]:
  """(width, height) after the EXIF orientation is applied."""
  width, height = image.size
  if image.format == "JPEG" and "exif" not in image.info:
    return width, height
  if image.getexif().get(_ORIENTATION_TAG) in _ROTATING:
    return height, width
  return width, height


def _load_for_boxes(image: Image.Image, boxes, size: int) -> Image.Image:
  """Loads `image` (a JPEG at the smallest DCT scale that keeps every box
  at least `size` pixels on its shorter side) and uprights it."""
  if image.format == "JPEG":
    reduce = min(min(b[2] - b[0], b[3] - b[1]) for b in boxes) / size
    if reduce >= 2:  # draft scales by 1/2, 1/4 or 1/8 at most this far
      width, height = image.size
      image.draft(
        image.mode, (math.ceil(width / reduce), math.ceil(height / reduce))
      )
  image.load()
  if _is_rotated(image):
    return ImageOps.exif_transpose(image)
  return image


def _is_rotated(image: Image.Image) -> bool:
  """Whether an EXIF orientation other than "upright" is set."""
  if image.format == "JPEG" and "exif" not in image.info:
    return False
  return image.getexif().get(_ORIENTATION_TAG, 1) != 1


def crop_to_size(
  encoded,
  *,
  path: str,
  size: int,
  channels: int | None,
  box_fn,
  flip: bool = False,
) -> np.ndarray:
  """Decodes `encoded` and resizes the box `box_fn(width, height)` of it.

  Args:
    encoded: an image file's bytes, or uint8 [H, W, C] already decoded.
    path: the example's id, for errors.
    size: the output side.
    channels: 1, 3 or None (as `decode.decode_image`).
    box_fn: (width, height) -> (left, top, right, bottom) in the upright
      image's pixels.
    flip: mirror the result left-right.

  Returns:
    uint8 [size, size, C].

  Raises:
    DecodeError: the file is empty, truncated, too large or not an image.
  """
  return crops_to_size(
    encoded,
    path=path,
    size=size,
    channels=channels,
    boxes_fn=lambda width, height: [box_fn(width, height)],
    flips=[flip],
  )[0]


def crops_to_size(
  encoded,
  *,
  path: str,
  size: int,
  channels: int | None,
  boxes_fn,
  flips,
) -> list[np.ndarray]:
  """Decodes `encoded` once and resizes each box of `boxes_fn(width,
  height)` (a list of boxes, as `crop_to_size`'s box_fn gives one),
  mirroring those whose entry of `flips` is true; JPEGs are decoded at the
  DCT scale the smallest box allows. Returns [uint8 [size, size, C]] in
  the boxes' order. Raises DecodeError as `crop_to_size`."""
  try:
    if isinstance(encoded, np.ndarray):  # stored decoded (some TFDS sets)
      pixels = encoded[..., 0] if encoded.shape[-1] == 1 else encoded
      image = Image.fromarray(pixels)
      oriented = image.size
      boxes = boxes_fn(*oriented)
    else:
      if not encoded:
        raise decode.DecodeError(path, "empty file (0 bytes)")
      image = decode.open_checked(encoded)
      oriented = _oriented_size(image)
      boxes = boxes_fn(*oriented)
      image = _load_for_boxes(image, boxes, size)
    image = decode.to_channels(image, channels)
    sx, sy = image.size[0] / oriented[0], image.size[1] / oriented[1]
    outs = []
    for box, flip in zip(boxes, flips, strict=True):
      scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
      out = image.resize((size, size), Image.Resampling.BILINEAR, box=scaled)
      if flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
      outs.append(out)
  except decode.DecodeError:
    raise  # already says what is wrong (a ValueError, like PIL's errors)
  except Image.UnidentifiedImageError as e:
    raise decode.DecodeError(
      path, "not an image in a format Pillow reads"
    ) from e
  except decode.PIL_ERRORS as e:
    raise decode.DecodeError(path, f"{type(e).__name__}: {e}") from e
  arrays = [np.asarray(out) for out in outs]
  return [a[..., None] if a.ndim == 2 else a for a in arrays]


def train_crop(
  encoded,
  rng: np.random.Generator,
  *,
  path: str,
  size: int,
  channels: int | None,
  scale: tuple[float, float],
  ratio: tuple[float, float],
  flip: bool,
) -> np.ndarray:
  """A random-resized crop (and a mirror image with p = 1/2 when `flip`):
  uint8 [size, size, C]."""
  return train_views(
    encoded,
    [rng],
    path=path,
    size=size,
    channels=channels,
    scale=scale,
    ratio=ratio,
    flip=flip,
  )[0]


def train_views(
  encoded,
  rngs: list[np.random.Generator],
  *,
  path: str,
  size: int,
  channels: int | None,
  scale: tuple[float, float],
  ratio: tuple[float, float],
  flip: bool,
) -> list[np.ndarray]:
  """One `train_crop` per generator of one image decoded once (SimCLR's
  views): [uint8 [size, size, C]]. Each generator draws what `train_crop`
  draws, in its order (the mirror, then the box)."""
  mirrored = [bool(flip and rng.random() < 0.5) for rng in rngs]
  return crops_to_size(
    encoded,
    path=path,
    size=size,
    channels=channels,
    boxes_fn=lambda w, h: [
      random_box(rng, w, h, scale=scale, ratio=ratio) for rng in rngs
    ],
    flips=mirrored,
  )


def eval_crop(
  encoded, *, path: str, size: int, channels: int | None, crop_fraction: float
) -> np.ndarray:
  """The centre crop evaluation sees: uint8 [size, size, C]."""
  return crop_to_size(
    encoded,
    path=path,
    size=size,
    channels=channels,
    box_fn=lambda w, h: centre_box(w, h, crop_fraction=crop_fraction),
  )
