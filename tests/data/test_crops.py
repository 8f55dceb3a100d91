"""Tests for jvision/data/crops.py: boxes, draft-mode decode, EXIF, seeds.

Images are generated here; references are computed independently with
Pillow (full decode, then the same crop), PyTorch (bilinear resampling)
and NumPy (area averages).
"""

import io
import math
import time

import numpy as np
import pytest
from PIL import Image, ImageOps

from jvision.data import crops
from jvision.data.decode import DecodeError

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


def _smooth(
  height: int, width: int, seed: int = 0, cycles: float = 4
) -> np.ndarray:
  """uint8 [height, width, 3]: colour waves of at most `cycles` periods
  across the image (few, so that resampling differences stay small)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width] / max(height, width)
  channels = []
  for _ in range(3):
    fy, fx, phase = rng.uniform(cycles / 4, cycles, 3)
    channels.append(np.sin(2 * np.pi * (fy * y + fx * x) + phase))
  return np.round(127.5 + 120 * np.stack(channels, -1)).astype(np.uint8)


def _jpeg(pixels: np.ndarray, **kwargs) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, **kwargs)
  return buffer.getvalue()


def _png(pixels: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


def _boxes(width, height, draws, scale=SCALE, ratio=RATIO):
  """[draws, 4] boxes (left, top, right, bottom), one generator per draw."""
  return np.asarray(
    [
      crops.random_box(
        crops.example_rng(0, 0, i), width, height, scale=scale, ratio=ratio
      )
      for i in range(draws)
    ]
  )


def test_random_box_stays_inside_scale_and_ratio():
  width, height = 640, 480
  boxes = _boxes(width, height, 3000)
  w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  assert (boxes[:, :2] >= 0).all()
  assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
  area = w * h / (width * height)
  # Rounding w and h to pixels moves the area and ratio by < 1 pixel a side.
  assert area.min() >= SCALE[0] * 0.97 and area.max() <= SCALE[1]
  aspect = w / h
  assert aspect.min() >= RATIO[0] * 0.98 and aspect.max() <= RATIO[1] * 1.02
  assert area.min() < 0.1 and area.max() > 0.9  # The whole range is drawn.


def test_random_box_distribution_matches_the_definition():
  # With scale up to 0.7 and ratio up to 4/3 every first try fits a square
  # image, so the area fraction is uniform(0.08, 0.7), log(w / h) is
  # uniform(log 3/4, log 4/3), and the position is uniform.
  side, draws, scale = 1000, 4000, (0.08, 0.7)
  boxes = _boxes(side, side, draws, scale=scale)
  w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
  area = w * h / side**2
  uniform_sd = (scale[1] - scale[0]) / math.sqrt(12)
  tolerance = 4 * uniform_sd / math.sqrt(draws)  # 4 standard errors.
  assert area.mean() == pytest.approx(sum(scale) / 2, abs=tolerance)
  assert area.std() == pytest.approx(uniform_sd, rel=0.05)
  log_aspect = np.log(w / h)
  log_sd = math.log(RATIO[1] / RATIO[0]) / math.sqrt(12)
  assert log_aspect.mean() == pytest.approx(0, abs=4 * log_sd / 63)
  assert log_aspect.std() == pytest.approx(log_sd, rel=0.05)
  # The left edge is uniform over [0, side - w]: its relative place is
  # uniform(0, 1), mean 1/2.
  free = side - w
  place = boxes[free > 50, 0] / free[free > 50]
  assert place.mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
  "width, height, box",
  [
    (2000, 10, (993, 0, 1006, 10)),  # w = round(10 * 4/3) = 13.
    (10, 2000, (0, 993, 10, 1006)),  # h = round(10 / (3/4)) = 13.
  ],
)
def test_extreme_aspect_falls_back_to_a_centre_crop(width, height, box):
  # No box of >= 8% of the area with ratio in [3/4, 4/3] fits: ten tries
  # fail, then the centre crop of the clamped ratio is taken.
  for i in range(20):
    rng = crops.example_rng(1, 2, i)
    got = crops.random_box(rng, width, height, scale=SCALE, ratio=RATIO)
    assert got == box


def test_centre_box_is_the_centred_square_of_the_shorter_side():
  left, top, right, bottom = crops.centre_box(300, 200, crop_fraction=0.875)
  assert (right - left, bottom - top) == (175, 175)
  assert (left, top) == (62.5, 12.5)


@pytest.mark.parametrize(
  "width, height, tolerance",
  [
    (320, 256, 0.5),  # Both crops fall on whole pixels: only resampling.
    (192, 288, 0.5),
    (300, 200, 2.5),  # The reference's crop is whole pixels (0.5 px off).
  ],
)
def test_eval_crop_matches_resize_then_centre_crop(width, height, tolerance):
  size, fraction = 56, 0.875
  pixels = _smooth(height, width, cycles=1.5)
  got = crops.eval_crop(
    _png(pixels), path="x", size=size, channels=3, crop_fraction=fraction
  )
  # Reference: shorter side to size / fraction, then the centre size x size.
  short = round(size / fraction)  # 64
  scale = short / min(width, height)
  resized = Image.fromarray(pixels).resize(
    (round(width * scale), round(height * scale)), Image.Resampling.BILINEAR
  )
  left = (resized.width - size) // 2
  top = (resized.height - size) // 2
  want = np.asarray(resized.crop((left, top, left + size, top + size)))
  assert got.shape == (size, size, 3) and got.dtype == np.uint8
  diff = np.abs(got.astype(int) - want.astype(int))
  assert diff.mean() < tolerance
  # The same comparison against the whole shorter side (no crop) fails.
  scale = size / min(width, height)
  whole = Image.fromarray(pixels).resize(
    (round(width * scale), round(height * scale)), Image.Resampling.BILINEAR
  )
  left, top = (whole.width - size) // 2, (whole.height - size) // 2
  wrong = np.asarray(whole.crop((left, top, left + size, top + size)))
  assert np.abs(got.astype(int) - wrong.astype(int)).mean() > 2 * tolerance


def _draft_sizes(monkeypatch) -> list:
  """Records the size of each image `crops` decodes."""
  sizes = []
  original = crops._decode_for_boxes

  def spy(*args):
    loaded = original(*args)  # [H, W, C]
    sizes.append((loaded.shape[1], loaded.shape[0]))
    return loaded

  monkeypatch.setattr(crops, "_decode_for_boxes", spy)
  return sizes


def test_draft_decode_matches_a_full_decode_and_is_faster(monkeypatch):
  pixels = _smooth(1500, 2000, seed=3)
  data = _jpeg(pixels)
  box = (200, 100, 1200, 1100)  # 1000 px to 64: draft at 1/8 (125 px).
  size = 64
  sizes = _draft_sizes(monkeypatch)
  got = crops.crop_to_size(
    data, path="x", size=size, channels=3, box_fn=lambda w, h: box
  )
  assert sizes == [(250, 188)]  # ceil(2000 / 8), ceil(1500 / 8).
  full = Image.open(io.BytesIO(data)).convert("RGB")
  want = np.asarray(
    full.resize((size, size), Image.Resampling.BILINEAR, box=box)
  )
  diff = np.abs(got.astype(int) - want.astype(int))
  # The DCT's 1/8 scale, then bilinear 125 -> 64 px, against Pillow's
  # antialiased resize of the full decode: close, not equal.
  assert diff.mean() < 3.0 and np.percentile(diff, 99) < 12

  def seconds(fn) -> float:
    best = math.inf
    for _ in range(3):
      start = time.perf_counter()
      fn()
      best = min(best, time.perf_counter() - start)
    return best

  drafted = seconds(
    lambda: crops.crop_to_size(
      data, path="x", size=size, channels=3, box_fn=lambda w, h: box
    )
  )
  decoded = seconds(
    lambda: (
      Image.open(io.BytesIO(data))
      .convert("RGB")
      .resize((size, size), Image.Resampling.BILINEAR, box=box)
    )
  )
  assert drafted < decoded  # about 1/10 of it; only the order is asserted


def test_small_box_decodes_at_full_scale(monkeypatch):
  data = _jpeg(_smooth(300, 400))
  sizes = _draft_sizes(monkeypatch)
  crops.crop_to_size(
    data, path="x", size=64, channels=3, box_fn=lambda w, h: (0, 0, 100, 100)
  )
  assert sizes == [(400, 300)]  # 100 px box for 64 px: no reduction.


@pytest.mark.parametrize("stored", [(40, 80), (400, 800)])
def test_exif_orientation_6_is_cropped_upright(stored, monkeypatch):
  # Stored wide with a red block at the top left; orientation 6 ("rotate 90
  # degrees clockwise to display") puts it at the top right of the upright,
  # tall image. The large one is decoded in draft mode.
  height, width = stored
  pixels = np.full((height, width, 3), 255, np.uint8)
  pixels[: height // 2, : height // 2] = (255, 0, 0)  # Output [0:4, 8:16].
  exif = Image.Exif()
  exif[0x0112] = 6
  data = _jpeg(pixels, exif=exif)
  seen = []

  def whole(w, h):
    seen.append((w, h))
    return 0, 0, w, h

  out = crops.crop_to_size(data, path="x", size=16, channels=3, box_fn=whole)
  assert seen == [(height, width)]  # The box is drawn on the upright size.
  top_right = out[0:3, 10:15].reshape(-1, 3).mean(0)
  assert top_right[0] > 200 and top_right[1] < 60  # Red.
  assert out[0:3, 1:6].min() > 200  # White.
  assert out[8:].min() > 200  # White.
  mirrored = crops.crop_to_size(
    data, path="x", size=16, channels=3, box_fn=whole, flip=True
  )
  np.testing.assert_array_equal(mirrored, out[:, ::-1])


def test_same_key_same_crop_and_other_step_other_crop():
  data = _jpeg(_smooth(240, 320))

  def crop(seed, step, index, view=0):
    return crops.train_crop(
      data,
      crops.example_rng(seed, step, index, view),
      path="x",
      size=32,
      channels=3,
      scale=SCALE,
      ratio=RATIO,
      flip=True,
    )

  np.testing.assert_array_equal(crop(0, 5, 7), crop(0, 5, 7))
  for other in (crop(0, 6, 7), crop(0, 5, 8), crop(1, 5, 7), crop(0, 5, 7, 1)):
    assert np.abs(other.astype(int) - crop(0, 5, 7).astype(int)).mean() > 2


def test_flip_is_drawn_half_of_the_time():
  data = _png(_smooth(20, 20))
  flips = 0
  for i in range(200):
    kwargs = dict(path="x", size=8, channels=3, scale=(1, 1), ratio=(1, 1))
    plain = crops.train_crop(
      data, crops.example_rng(0, 0, i), flip=False, **kwargs
    )
    maybe = crops.train_crop(
      data, crops.example_rng(0, 0, i), flip=True, **kwargs
    )
    if not np.array_equal(plain, maybe):
      np.testing.assert_array_equal(maybe, plain[:, ::-1])
      flips += 1
  assert 65 < flips < 135  # Binomial(200, 1/2): 5 standard deviations.


def test_decoded_arrays_and_gray_channels():
  pixels = _smooth(30, 40)
  got = crops.crop_to_size(
    pixels, path="x", size=10, channels=3, box_fn=lambda w, h: (0, 0, w, h)
  )
  # 40 x 30 -> 10 x 10 shrinks by 4 x 3: the area average of each block.
  blocks = pixels.reshape(10, 3, 10, 4, 3).astype(float)
  want = np.round(blocks.mean(axis=(1, 3)))
  assert np.abs(got - want).max() <= 1
  gray = crops.crop_to_size(
    _png(pixels[..., 0]),
    path="x",
    size=10,
    channels=None,
    box_fn=lambda w, h: (0, 0, w, h),
  )
  assert gray.shape == (10, 10, 1)
  three = crops.crop_to_size(
    _png(pixels[..., 0]),
    path="x",
    size=10,
    channels=3,
    box_fn=lambda w, h: (0, 0, w, h),
  )
  assert three.shape == (10, 10, 3)
  np.testing.assert_array_equal(three[..., 0], gray[..., 0])


@pytest.mark.parametrize(
  "data, reason",
  [
    (b"", "empty file"),
    (b"just some notes\n", "not an image"),
  ],
)
def test_bad_files_raise_decode_error(data, reason):
  with pytest.raises(DecodeError, match=reason) as info:
    crops.eval_crop(data, path="a/b.jpg", size=8, channels=3, crop_fraction=1)
  assert info.value.path == "a/b.jpg"


@pytest.mark.parametrize("encode", [_jpeg, _png])
def test_truncated_file_raises_decode_error(encode):
  pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
  data = encode(pixels)
  with pytest.raises(DecodeError, match="cut"):
    crops.eval_crop(
      data[: len(data) // 2], path="cut", size=8, channels=3, crop_fraction=1
    )


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
  decoded = []
  monkeypatch.setattr(crops, "_decode_for_boxes", lambda *a: decoded.append(a))
  with pytest.raises(DecodeError, match="bomb.png.*40 x 40 = 1,600 pixels"):
    crops.eval_crop(
      _png(_smooth(40, 40)),
      path="bomb.png",
      size=8,
      channels=3,
      crop_fraction=1,
    )
  assert decoded == []


def test_views_are_crops_of_one_decode(monkeypatch):
  kwargs = dict(path="x", size=32, channels=3, scale=SCALE, ratio=RATIO)
  png = _png(_smooth(120, 160))
  sizes = _draft_sizes(monkeypatch)
  rngs = [crops.example_rng(0, 3, 5, view) for view in range(3)]
  views = crops.train_views(png, rngs, flip=True, **kwargs)
  assert len(sizes) == 1  # One decode for three views.
  for view, got in enumerate(views):  # Each is its generator's train_crop.
    rng = crops.example_rng(0, 3, 5, view)
    want = crops.train_crop(png, rng, flip=True, **kwargs)
    np.testing.assert_array_equal(got, want)
  # A JPEG is decoded at the scale the smallest box allows: each view is
  # then as close to a full decode's crop as its own draft would be.
  pixels = _smooth(1200, 1600, seed=4)
  jpeg = _jpeg(pixels)
  boxes = [(0, 0, 1200, 1200), (400, 300, 700, 600)]  # alone: 1/8, 1/4
  sizes.clear()
  got = crops.crops_to_size(
    jpeg,
    path="x",
    size=64,
    channels=3,
    boxes_fn=lambda w, h: boxes,
    flips=[False, True],
  )
  assert sizes == [(400, 300)]  # 1/4 for both
  full = Image.open(io.BytesIO(jpeg)).convert("RGB")
  for box, out, flipped in zip(boxes, got, (False, True), strict=True):
    want = np.asarray(full.resize((64, 64), Image.Resampling.BILINEAR, box=box))
    want = want[:, ::-1] if flipped else want
    assert np.abs(out.astype(int) - want.astype(int)).mean() < 2


@pytest.mark.parametrize(
  "box, size",
  [
    ((0, 0, 40, 30), 56),  # enlarged
    ((7, 3, 27, 28), 16),  # a box, 20 x 25 -> 16: shrunk by < 2
    ((5, 2, 35, 29), 32),  # 30 x 27 -> 32: one side each way
  ],
)
def test_resize_box_is_bilinear_with_half_pixel_centres(box, size):
  import torch

  pixels = _smooth(30, 40, seed=2)
  got = crops.resize_box(pixels, box, size)
  left, top, right, bottom = box
  region = torch.from_numpy(pixels[top:bottom, left:right].astype(np.float32))
  want = torch.nn.functional.interpolate(
    region.permute(2, 0, 1)[None],  # [1, C, h, w]
    size=(size, size),
    mode="bilinear",
    align_corners=False,
    antialias=False,
  )[0].permute(1, 2, 0)  # [size, size, C]
  assert got.shape == (size, size, 3) and got.dtype == np.uint8
  # OpenCV's 11-bit fixed-point weights: within one level of the float.
  assert np.abs(got - want.numpy()).max() <= 1.0


def test_resize_box_averages_a_box_at_least_twice_the_size():
  pixels = np.zeros((8, 8, 1), np.uint8)
  pixels[::2, ::2] = 255  # a grid that bilinear sampling would alias
  got = crops.resize_box(pixels, (0, 0, 8, 8), 4)
  np.testing.assert_array_equal(got, np.full((4, 4, 1), 64, np.uint8))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_turned_as_pillow_turns_it(orientation):
  pixels = _smooth(48, 64, seed=orientation, cycles=1.5)
  pixels[:8, :8] = (255, 0, 0)  # a mark that tells the turns apart
  exif = Image.Exif()
  exif[0x0112] = orientation
  data = _jpeg(pixels, exif=exif)
  upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
  want = np.asarray(upright.convert("RGB"))  # [H', W', 3]
  got = crops.crop_to_size(
    data,
    path="x",
    size=32,
    channels=3,
    box_fn=lambda w, h: (0, 0, w, h),
  )
  expected = crops.resize_box(want, (0, 0, want.shape[1], want.shape[0]), 32)
  assert np.abs(got.astype(int) - expected.astype(int)).mean() < 1.0
