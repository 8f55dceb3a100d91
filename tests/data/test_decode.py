"""Tests for jvision/data/decode.py: modes, bit depths, EXIF, bad files."""

import io

import numpy as np
import pytest
from PIL import Image

from jvision.data import decode
from jvision.data.dataset import DataError
from jvision.data.decode import DecodeError, decode_image


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt, **kwargs)
  return buffer.getvalue()


def _decode(data: bytes, **kwargs) -> np.ndarray:
  return decode_image(data, path="x", **kwargs)


def test_grayscale_keeps_one_channel_and_converts_to_three():
  gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
  data = _encode(Image.fromarray(gray), "PNG")
  one = _decode(data)
  three = _decode(data, channels=3)
  assert one.shape == (8, 8, 1) and one.dtype == np.uint8
  np.testing.assert_array_equal(one[..., 0], gray)
  np.testing.assert_array_equal(three, np.repeat(one, 3, axis=-1))


def test_rgb_keeps_three_channels_and_converts_with_luma():
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[..., 0] = 255  # Pure red: luma 0.299 * 255 = 76.2.
  data = _encode(Image.fromarray(rgb), "PNG")
  np.testing.assert_array_equal(_decode(data), rgb)
  gray = _decode(data, channels=1)
  assert gray.shape == (4, 4, 1)
  assert (gray == 76).all()


def test_rgba_is_composited_on_white():
  rgba = np.zeros((1, 3, 4), np.uint8)
  rgba[0, 0] = (255, 0, 0, 0)  # Fully transparent red -> white.
  rgba[0, 1] = (0, 0, 255, 255)  # Opaque blue stays blue.
  rgba[0, 2] = (0, 0, 0, 128)  # Half-transparent black -> mid gray.
  out = _decode(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
  assert out.shape == (1, 3, 3)
  np.testing.assert_array_equal(out[0, 0], (255, 255, 255))
  np.testing.assert_array_equal(out[0, 1], (0, 0, 255))
  np.testing.assert_allclose(out[0, 2], 127, atol=1)


def test_grayscale_with_alpha_stays_one_channel():
  la = Image.merge(
    "LA", [Image.new("L", (2, 1), 0), Image.frombytes("L", (2, 1), b"\0\xff")]
  )
  out = _decode(_encode(la, "PNG"))
  assert out.shape == (1, 2, 1)
  assert out[0, :, 0].tolist() == [255, 0]


def test_palette_with_transparent_index_becomes_white():
  image = Image.new("P", (2, 1))
  image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
  image.putpixel((0, 0), 0)
  image.putpixel((1, 0), 1)
  out = _decode(_encode(image, "PNG", transparency=0))
  assert out.shape == (1, 2, 3)
  np.testing.assert_array_equal(out[0, 0], (255, 255, 255))
  np.testing.assert_array_equal(out[0, 1], (200, 100, 50))


def test_palette_without_transparency_gives_its_colours():
  image = Image.new("P", (1, 1))
  image.putpalette([10, 20, 30] + [0] * 765)
  out = _decode(_encode(image, "GIF"))
  np.testing.assert_array_equal(out[0, 0], (10, 20, 30))


def test_16_bit_png_is_scaled_not_clipped():
  values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
  image = Image.fromarray(values)
  assert image.mode.startswith("I;16")
  out = _decode(_encode(image, "PNG"))
  assert out.shape == (1, 4, 1)
  assert out[0, :, 0].tolist() == [0, 1, 128, 255]


def test_exif_orientation_6_is_rotated_upright():
  # Stored 40 wide x 20 high with a red block at the top left; orientation 6
  # means "rotate 90 degrees clockwise to display", which moves the block to
  # the top right of a 20 wide x 40 high image.
  pixels = np.full((20, 40, 3), 255, np.uint8)
  pixels[:8, :8] = (255, 0, 0)
  exif = Image.Exif()
  exif[0x0112] = 6
  data = _encode(Image.fromarray(pixels), "JPEG", quality=95, exif=exif)
  out = _decode(data)
  assert out.shape == (40, 20, 3)
  top_right = out[1:7, 13:19].reshape(-1, 3).mean(0)
  top_left = out[1:7, 1:7].reshape(-1, 3).mean(0)
  assert top_right[0] > 200 and top_right[1] < 60  # Red.
  assert top_left.min() > 200  # White.


def test_cmyk_jpeg_is_converted_to_rgb():
  cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # Pure red in CMYK.
  out = _decode(_encode(cmyk, "JPEG", quality=95))
  assert out.shape == (8, 8, 3)
  red, green, blue = out.reshape(-1, 3).mean(0)
  assert red > 230 and green < 25 and blue < 25


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "WEBP", "TIFF"])
def test_other_formats_decode(fmt):
  pixels = np.zeros((6, 6, 3), np.uint8)
  pixels[:, :3] = 255
  kwargs = {"lossless": True} if fmt == "WEBP" else {}
  out = _decode(_encode(Image.fromarray(pixels), fmt, **kwargs))
  assert out.shape == (6, 6, 3)
  assert out[0, 0].min() > 240 and out[0, 5].max() < 15


def test_resize_to_square_with_bilinear():
  pixels = np.zeros((48, 64, 3), np.uint8)
  pixels[:, 32:] = 200
  out = _decode(_encode(Image.fromarray(pixels), "PNG"), image_size=32)
  assert out.shape == (32, 32, 3)
  assert out[:, :15].max() == 0 and out[:, 17:].min() == 200
  assert 0 < out[0, 15, 0] < 200 or 0 < out[0, 16, 0] < 200  # Blended edge.


def test_same_size_is_not_resampled():
  pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
  out = _decode(_encode(Image.fromarray(pixels), "PNG"), image_size=16)
  np.testing.assert_array_equal(out, pixels)


def test_zero_bytes_raise_decode_error():
  with pytest.raises(DecodeError, match="empty file") as info:
    decode_image(b"", path="a/empty.png")
  assert info.value.path == "a/empty.png"
  assert isinstance(info.value, DataError)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_raise_decode_error(fmt):
  rng = np.random.default_rng(1)
  pixels = rng.integers(0, 256, (64, 64, 3), np.uint8)
  data = _encode(Image.fromarray(pixels), fmt)
  with pytest.raises(DecodeError, match="cut.img") as info:
    decode_image(data[: len(data) // 2], path="cut.img")
  assert "truncated" in info.value.reason or "broken" in info.value.reason


def test_text_file_raises_decode_error():
  with pytest.raises(DecodeError, match="notes.png.*not an image"):
    decode_image(b"hello, not an image\n", path="notes.png")


@pytest.mark.parametrize(
  "kwargs", [{"image_size": 0}, {"channels": 2}, {"image_size": 3.5}]
)
def test_bad_options_raise(kwargs):
  data = _encode(Image.new("L", (2, 2)), "PNG")
  with pytest.raises(DataError, match="image_size|channels"):
    decode_image(data, path="x", **kwargs)


def test_decode_many_skips_bad_files_in_key_order():
  good = _encode(Image.new("RGB", (4, 4), (1, 2, 3)), "PNG")
  blobs = {"a.png": good, "b.png": b"", "c.png": b"junk", "d.png": good}

  def read(key):
    if key == "e.png":
      raise PermissionError("denied")
    return blobs[key]

  images, skipped = decode.decode_many(
    [*blobs, "e.png"],
    read,
    image_size=None,
    channels=None,
    workers=2,
    progress=False,
  )
  assert [image is None for image in images] == [
    False,
    True,
    True,
    False,
    True,
  ]
  assert [key for key, _ in skipped] == ["b.png", "c.png", "e.png"]
  assert "PermissionError" in skipped[2][1]


def test_stack_images_promotes_gray_and_rejects_mixed_sizes():
  gray, rgb = np.zeros((4, 4, 1), np.uint8), np.ones((4, 4, 3), np.uint8)
  assert decode.stack_images([gray, rgb], ["g", "c"]).shape == (2, 4, 4, 3)
  with pytest.raises(DataError, match=r"4x4.*'a'.*8x8.*'b'.*image_size"):
    decode.stack_images(
      [gray, np.zeros((8, 8, 1), np.uint8), gray], ["a", "b", "c"]
    )


def test_convert_arrays_resizes_and_converts_channels():
  images = np.zeros((2, 28, 28, 1), np.uint8)
  images[1] = 255
  out = decode.convert_arrays(images, image_size=32, channels=3)
  assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
  assert out[0].max() == 0 and out[1].min() == 255


def _png_header(width: int, height: int) -> bytes:
  """A PNG that declares width x height RGB pixels and holds none."""
  import struct
  import zlib

  def chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  idat = zlib.compress(b"\0" * 16)
  return (
    b"\x89PNG\r\n\x1a\n"
    + chunk(b"IHDR", ihdr)
    + chunk(b"IDAT", idat)
    + chunk(b"IEND", b"")
  )


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [10_000, 100_000])
def test_decompression_bomb_is_refused_from_its_header(side):
  # 10,000^2 = 1e8 pixels lies between PIL's limit (about 8.9e7) and twice
  # it, where PIL itself only warns; 1e10 is beyond both.
  data = _png_header(side, side)
  assert len(data) < 100
  with pytest.raises(DecodeError, match="bomb.png.*pixels") as info:
    decode_image(data, path="bomb.png")
  assert "limit" in info.value.reason


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_open_checked_reads_the_limit_when_called(monkeypatch):
  data = _encode(Image.new("RGB", (40, 30)), "PNG")
  assert decode.open_checked(data).size == (40, 30)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
  with pytest.raises(
    Image.DecompressionBombError,
    match="40 x 30 = 1,200 pixels is above the 1,000-pixel limit",
  ):
    decode.open_checked(data)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's "no limit"
  assert decode.open_checked(data).size == (40, 30)


def test_to_channels_converts_modes():
  rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
  assert (
    np.asarray(decode.to_channels(rgba, None)).tolist()
    == [[[255, 255, 255]] * 2] * 2
  )  # Transparent on white.
  gray = Image.new("L", (2, 2), 7)
  assert decode.to_channels(gray, None).mode == "L"
  assert decode.to_channels(gray, 3).mode == "RGB"
  assert decode.to_channels(Image.new("RGB", (2, 2)), 1).mode == "L"
