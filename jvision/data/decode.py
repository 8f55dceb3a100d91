"""Decoding image files into uint8 arrays, one at a time or many in parallel.

`decode_image` turns the bytes of one file into `uint8 [H, W, C]`:

* EXIF orientation is applied (`ImageOps.exif_transpose`), so a phone photo
  stored sideways comes out upright.
* Transparency (RGBA, LA, palette or tRNS transparency) is composited on a
  white background, the way a viewer shows it on a white page; dropping the
  alpha instead would expose whatever colour the encoder left under fully
  transparent pixels.
* 16-bit grayscale (`I;16*`, and `I`, read as 0..65535) is scaled to 8 bits
  with rounding, `round(v * 255 / 65535)`, so 65535 -> 255 and 32768 -> 128.
  Float images (`F`) are read as 0..1.
* `channels=None` keeps 1 channel for grayscale sources (1, L, LA, I, F) and
  3 for everything else (RGB, RGBA, palette, CMYK, YCbCr, ...); 1 or 3
  converts (RGB -> L uses ITU-R 601-2 luma, like PIL).
* `image_size=S` resizes the whole image to S x S when it is not already that
  size, with PIL's bilinear filter, which widens its kernel when shrinking
  (antialiased). Non-square images are squashed to square, not cropped.
* Multi-frame files (GIF, TIFF) give their first frame.

Unreadable input (zero bytes, truncated data, not an image) raises
`DecodeError`. Truncation is detected because PIL's global
`ImageFile.LOAD_TRUNCATED_IMAGES` is left at its default, False.
"""

import collections
import concurrent.futures
import io
import os
import struct
from collections.abc import Callable, Sequence

import numpy as np
import tqdm
from PIL import Image, ImageOps

from jvision.data.dataset import DataError

_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})
# What PIL raises on a file it cannot parse or that ends early.
PIL_ERRORS = (
  OSError,
  SyntaxError,
  ValueError,
  EOFError,
  struct.error,
  Image.DecompressionBombError,
)


class DecodeError(DataError):
  """An image file that cannot be decoded.

  Attributes:
    path: the file's path or id, as given to `decode_image`.
    reason: what is wrong with it, e.g. "empty file (0 bytes)".
  """

  def __init__(self, path: str, reason: str):
    super().__init__(f"cannot decode image {path!r}: {reason}")
    self.path = path
    self.reason = reason


def check_options(image_size: int | None, channels: int | None) -> None:
  """Raises DataError unless image_size is None or >= 1 and channels 1|3."""
  if image_size is not None and (
    not isinstance(image_size, int) or image_size < 1
  ):
    raise DataError(
      f"image_size must be a positive int or None, got {image_size!r}"
    )
  if channels not in (None, 1, 3):
    raise DataError(f"channels must be 1, 3 or None, got {channels!r}")


def decode_image(
  data: bytes,
  *,
  path: str,
  image_size: int | None = None,
  channels: int | None = None,
) -> np.ndarray:
  """Decodes one image file.

  Args:
    data: the file's bytes.
    path: the file's path or id, used in errors only.
    image_size: if set, the output is resized to image_size x image_size.
    channels: 1 or 3 to convert, None to keep grayscale as 1 and colour as 3.

  Returns:
    uint8 [H, W, C].

  Raises:
    DecodeError: the bytes are empty, truncated or not an image.
  """
  check_options(image_size, channels)
  if not data:
    raise DecodeError(path, "empty file (0 bytes)")
  try:
    image = _to_target(_open(data), image_size, channels)
  except Image.UnidentifiedImageError as e:
    raise DecodeError(path, "not an image in a format Pillow reads") from e
  except PIL_ERRORS as e:
    raise DecodeError(path, f"{type(e).__name__}: {e}") from e
  array = np.asarray(image)
  return array[..., None] if array.ndim == 2 else array


def open_checked(data: bytes) -> Image.Image:
  """Opens an image file's header (nothing decoded yet).

  Raises:
    DecompressionBombError: it has more than `Image.MAX_IMAGE_PIXELS`
      pixels (PIL's own limit, about 89 million), checked before any pixel
      is decoded; PIL itself only warns below twice that.
  """
  image = Image.open(io.BytesIO(data))
  limit = Image.MAX_IMAGE_PIXELS
  width, height = image.size
  if limit and width * height > limit:
    raise Image.DecompressionBombError(
      f"{width} x {height} = {width * height:,} pixels is above the "
      f"{limit:,}-pixel limit (a decompression bomb?); not decoded"
    )
  return image


def _open(data: bytes) -> Image.Image:
  """Opens, fully loads (so truncation raises) and uprights an image."""
  image = open_checked(data)
  image.load()
  if image.format == "JPEG" and "exif" not in image.info:
    return image  # No orientation tag; skips a costly EXIF parse.
  return ImageOps.exif_transpose(image)


def to_channels(image: Image.Image, channels: int | None) -> Image.Image:
  """A loaded image as 8-bit L or RGB (module docstring: bit depths,
  transparency and `channels`)."""
  gray = image.mode in _GRAY_MODES or image.mode.startswith("I;16")
  image = _drop_transparency(_to_8bit(image))
  mode = "L" if (channels or (1 if gray else 3)) == 1 else "RGB"
  return image if image.mode == mode else image.convert(mode)


def _to_target(
  image: Image.Image, image_size: int | None, channels: int | None
) -> Image.Image:
  """Converts a loaded image to 8-bit L or RGB at the requested size."""
  image = to_channels(image, channels)
  if image_size is not None and image.size != (image_size, image_size):
    image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
  return image


def _to_8bit(image: Image.Image) -> Image.Image:
  """Scales 16-bit, 32-bit int and float grayscale to mode L."""
  if not (image.mode.startswith("I") or image.mode == "F"):
    return image
  values = np.asarray(image)
  if image.mode == "F":
    scaled = np.clip(values, 0.0, 1.0) * 255.0 + 0.5
  else:
    values = np.clip(values.astype(np.int64), 0, 65535)
    scaled = (values * 255 + 32767) // 65535
  return Image.fromarray(scaled.astype(np.uint8))


def _drop_transparency(image: Image.Image) -> Image.Image:
  """Composites an image with any transparency on white; returns RGB or L."""
  if not image.has_transparency_data:
    return image
  gray = image.mode in _GRAY_MODES
  rgba = image.convert("RGBA")
  white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
  flat = Image.alpha_composite(white, rgba).convert("RGB")
  return flat.convert("L") if gray else flat


def convert_array(
  image: np.ndarray, *, image_size: int | None, channels: int | None
) -> np.ndarray:
  """Applies `channels` and `image_size` to a decoded image.

  Args:
    image: uint8 [H, W, C], C in {1, 3}.
    image_size: as in `decode_image`.
    channels: as in `decode_image`.

  Returns:
    uint8 [H', W', C'] (the input itself when nothing changes).
  """
  if channels is not None and image.shape[-1] != channels:
    image = _luma(image) if channels == 1 else np.repeat(image, 3, axis=-1)
  height, width = image.shape[:2]
  if image_size is None or (height, width) == (image_size, image_size):
    return image
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  pil = pil.resize((image_size, image_size), Image.Resampling.BILINEAR)
  return np.asarray(pil).reshape(image_size, image_size, image.shape[-1])


def convert_arrays(
  images: np.ndarray, *, image_size: int | None, channels: int | None
) -> np.ndarray:
  """`convert_array` over uint8 [N, H, W, C]; returns uint8 [N, H', W', C']."""
  check_options(image_size, channels)
  if channels is not None and images.shape[-1] != channels:
    images = _luma(images) if channels == 1 else np.repeat(images, 3, -1)
  if image_size is None or images.shape[1:3] == (image_size, image_size):
    return images
  out = np.empty(
    (len(images), image_size, image_size, images.shape[-1]), np.uint8
  )
  for i, image in enumerate(images):
    out[i] = convert_array(image, image_size=image_size, channels=None)
  return out


def _luma(rgb: np.ndarray) -> np.ndarray:
  """uint8 [..., 3] -> uint8 [..., 1] with PIL's fixed-point 601-2 luma."""
  r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
  luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16
  return luma.astype(np.uint8)[..., None]


def default_workers() -> int:
  """Decoding threads: one per core, at most 8."""
  return max(1, min(8, os.cpu_count() or 1))


def decode_many(
  keys: Sequence[str],
  read: Callable[[str], bytes],
  *,
  image_size: int | None,
  channels: int | None,
  workers: int | None = None,
  progress: bool = True,
  desc: str = "decoding",
) -> tuple[list[np.ndarray | None], list[tuple[str, str]]]:
  """Reads and decodes many images in a thread pool, skipping bad ones.

  Args:
    keys: one id per file; passed to `read` and used in skip reasons.
    read: returns the bytes of a key; an OSError marks the file unreadable.
    image_size: as in `decode_image`.
    channels: as in `decode_image`.
    workers: threads; None for `default_workers()`, 1 to run inline.
    progress: show a tqdm bar.
    desc: the bar's label.

  Returns:
    (images, skipped): images[i] is uint8 [H, W, C] for keys[i] or None where
    the file was skipped; skipped lists (key, reason) in key order.
  """
  check_options(image_size, channels)

  def decode_chunk(chunk):
    results = []
    for key in chunk:
      try:
        data = read(key)
        image = decode_image(
          data, path=key, image_size=image_size, channels=channels
        )
        results.append((image, None))
      except DecodeError as e:
        results.append((None, e.reason))
      except OSError as e:
        results.append((None, f"unreadable: {type(e).__name__}: {e}"))
    return results

  chunks = [keys[i : i + 256] for i in range(0, len(keys), 256)]
  workers = workers or default_workers()
  results = []
  with (
    tqdm.tqdm(total=len(keys), desc=desc, disable=not progress) as bar,
    concurrent.futures.ThreadPoolExecutor(workers) as pool,
  ):
    mapped = pool.map if workers > 1 else map
    for chunk_results in mapped(decode_chunk, chunks):
      results.extend(chunk_results)
      bar.update(len(chunk_results))
  images = [image for image, _ in results]
  skipped = [
    (k, r) for k, (_, r) in zip(keys, results, strict=True) if r is not None
  ]
  return images, skipped


def stack_images(
  images: Sequence[np.ndarray], ids: Sequence[str]
) -> np.ndarray:
  """Stacks decoded images into one uint8 [N, H, W, C] array.

  Grayscale images are repeated to 3 channels when colour ones are present
  (only possible when decoding with channels=None).

  Args:
    images: uint8 [H, W, C] each.
    ids: one per image, named in the error.

  Returns:
    uint8 [N, H, W, C].

  Raises:
    DataError: the images differ in height or width.
  """
  if not images:
    return np.zeros((0, 0, 0, 3), np.uint8)
  sizes = collections.Counter(image.shape[:2] for image in images)
  if len(sizes) > 1:
    examples = {}
    for image, key in zip(images, ids, strict=True):
      examples.setdefault(image.shape[:2], key)
    listed = ", ".join(
      f"{h}x{w} ({n} images, e.g. {examples[(h, w)]!r})"
      for (h, w), n in sizes.most_common()
    )
    raise DataError(
      f"images differ in size: {listed}; pass image_size=... to resize them"
    )
  if len({image.shape[-1] for image in images}) > 1:
    images = [convert_array(i, image_size=None, channels=3) for i in images]
  return np.stack(images)
