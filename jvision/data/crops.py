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

Pillow reads the header (size, EXIF orientation, the decompression-bomb
check); the box is drawn from it before any pixel is decoded. JPEGs are
then decoded by libjpeg-turbo (simplejpeg) at a reduced scale where the box
allows it (1/2, 1/4 or 1/8 in the DCT), never below the box's output
resolution, so a 4000-px photo cropped to 224 costs a fraction of a full
decode; other formats by Pillow. The box is resized by OpenCV
(`resize_box`: bilinear, as `tf.image.resize` in the Flax and SimCLR
recipes). Against Pillow's decode and antialiased resize, this takes 0.7
instead of 1.8 ms per 300-500 px JPEG here (benchmarks/NOTES.md).

Randomness comes from `example_rng(seed, step, index, view)`: a NumPy
generator keyed by the example's place in the run, so a resumed run redraws
exactly what an uninterrupted one drew, whatever the worker or order.

Errors (unreadable, truncated, decompression bombs) are the `DecodeError`
of `jvision.data.decode`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import simplejpeg
from PIL import Image

from jvision.data import decode

cv2.setNumThreads(0)  # one small image per call: stay on the worker's core
_ROTATING = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_ORIENTATION_TAG = 0x0112
# EXIF orientation -> (swap the axes, then row step, column step): 2 mirror,
# 3 half turn, 4 upside-down mirror, 5 transpose, 6 quarter turn clockwise,
# 7 transverse, 8 quarter turn anticlockwise.
_TURNS = {
  2: (False, 1, -1),
  3: (False, -1, -1),
  4: (False, -1, 1),
  5: (True, 1, 1),
  6: (True, 1, -1),
  7: (True, -1, -1),
  8: (True, -1, 1),
}


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


def _orientation(image: Image.Image) -> int:
  """The EXIF orientation (1 = upright, also when there is no EXIF)."""
  if image.format == "JPEG" and "exif" not in image.info:
    return 1  # no EXIF block: skips a costly parse
  return image.getexif().get(_ORIENTATION_TAG, 1)


def _oriented_size(image: Image.Image, orientation: int) -> tuple[int, int]:
  """(width, height) after EXIF `orientation` is applied."""
  width, height = image.size
  if orientation in _ROTATING:
    return height, width
  return width, height


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
  """Stored pixels [H, W, C] turned as EXIF `orientation` says to display
  them (what Pillow's `ImageOps.exif_transpose` does to an image)."""
  if orientation not in _TURNS:
    return pixels  # 1 (upright) or not a valid orientation
  transpose, rows, cols = _TURNS[orientation]
  if transpose:
    pixels = pixels.transpose(1, 0, 2)  # [W, H, C]
  return np.ascontiguousarray(pixels[::rows, ::cols])


def _dct_reduction(boxes, size: int) -> int:
  """The largest of 1, 2, 4, 8 that keeps every box >= `size` pixels on
  its shorter side (the JPEG decoder scales the DCT by 1/2, 1/4, 1/8)."""
  reduce = min(min(b[2] - b[0], b[3] - b[1]) for b in boxes) / size
  return max((r for r in (1, 2, 4, 8) if r <= reduce), default=1)


def _decode_for_boxes(
  image: Image.Image,
  encoded: bytes,
  boxes,
  size: int,
  channels: int | None,
  path: str,
  orientation: int,
) -> np.ndarray:
  """The upright image, uint8 [H, W, C] (C as `channels` says, see
  `decode.to_channels`), from its opened header `image`, file bytes and
  EXIF `orientation`; `path` names it in a DecodeError.

  8-bit grey and colour JPEGs are decoded by libjpeg-turbo (simplejpeg) at
  `_dct_reduction` of their size; every other image (PNG, CMYK JPEG, ...)
  by Pillow at full size.
  """
  if image.format == "JPEG" and image.mode in ("L", "RGB"):
    gray = (channels or (1 if image.mode == "L" else 3)) == 1
    reduce = _dct_reduction(boxes, size)
    width, height = image.size
    try:
      pixels = simplejpeg.decode_jpeg(
        encoded,
        colorspace="GRAY" if gray else "RGB",
        min_width=math.ceil(width / reduce),
        min_height=math.ceil(height / reduce),
        strict=True,  # truncated or corrupt data raises, as Pillow's does
      )  # [H / reduce, W / reduce, C]
    except ValueError as e:
      raise decode.DecodeError(
        path, f"truncated or corrupt JPEG data ({e})"
      ) from e
  else:
    image.load()
    pixels = np.asarray(decode.to_channels(image, channels))
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
  return _upright(pixels, orientation)


def resize_box(pixels: np.ndarray, box, size: int) -> np.ndarray:
  """The box (left, top, right, bottom; pixels of `pixels`, rounded to
  whole ones) of uint8 [H, W, C] `pixels`, resized to [size, size, C].

  Bilinear with half-pixel centres and no antialiasing, as
  `tf.image.resize` in the Flax ImageNet and SimCLR input pipelines
  (OpenCV's INTER_LINEAR, ~8x faster than Pillow's); a box at least twice
  `size` on its shorter side (only un-drafted images: PNGs and the like)
  is averaged over its area (INTER_AREA) so it does not alias.
  """
  height, width = pixels.shape[:2]
  left = min(max(round(box[0]), 0), width - 1)
  top = min(max(round(box[1]), 0), height - 1)
  right = min(max(round(box[2]), left + 1), width)
  bottom = min(max(round(box[3]), top + 1), height)
  region = pixels[top:bottom, left:right]  # [h, w, C]
  shrink = min(bottom - top, right - left) / size
  out = cv2.resize(
    region,
    (size, size),
    interpolation=cv2.INTER_AREA if shrink >= 2 else cv2.INTER_LINEAR,
  )
  return out[..., None] if out.ndim == 2 else out  # [size, size, C]


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
      pixels = decode.convert_array(encoded, image_size=None, channels=channels)
      oriented = pixels.shape[1], pixels.shape[0]
      boxes = boxes_fn(*oriented)
    else:
      if not encoded:
        raise decode.DecodeError(path, "empty file (0 bytes)")
      image = decode.open_checked(encoded)
      orientation = _orientation(image)  # EXIF parsed once per example
      oriented = _oriented_size(image, orientation)
      boxes = boxes_fn(*oriented)
      pixels = _decode_for_boxes(
        image, encoded, boxes, size, channels, path, orientation
      )
  except decode.DecodeError:
    raise  # already says what is wrong (a ValueError, like PIL's errors)
  except Image.UnidentifiedImageError as e:
    raise decode.DecodeError(
      path, "not an image in a format Pillow reads"
    ) from e
  except decode.PIL_ERRORS as e:
    raise decode.DecodeError(path, f"{type(e).__name__}: {e}") from e
  sx, sy = pixels.shape[1] / oriented[0], pixels.shape[0] / oriented[1]
  outs = []
  for box, flip in zip(boxes, flips, strict=True):
    scaled = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    out = resize_box(pixels, scaled, size)  # [size, size, C]
    outs.append(np.ascontiguousarray(out[:, ::-1]) if flip else out)
  return outs


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
