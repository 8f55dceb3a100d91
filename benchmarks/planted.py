"""Planted-issue benchmark sets: real images with known, injected problems.

    python -m benchmarks.planted [--out=benchmarks/workdirs/planted]
        [--sources=fashion_mnist,cifar10] [--size=5000] [--seed=0]

For each source, `--size` images are drawn (seeded) from the official test
split (Fashion-MNIST from its IDX files, 28x28 grayscale; CIFAR-10 from the
shared q75 zip, 32x32 RGB, see ../shared/data/README.md) and written as PNG
files to OUT/<source>/{train,test}/<class>/<id>.png, 80% in train and 20% in
test. Then issues are planted, each on a disjoint set of images, so every
planted file carries exactly one issue and every copy's source is clean:

    corrupt           the file replaced by zero bytes, a truncated PNG, a
                      truncated JPEG, a JPEG with a broken header, or an
                      HTML error page named .png
    exact_duplicate   the same pixels under a new name in the source's
                      folder (byte-identical, or PNG re-encoded at another
                      compression level); one in four sources gets two
    near_duplicate    a copy in the source's folder: shifted 1-3 px (edge
                      fill), rescaled up 20-45%, zoomed (1-2 px border
                      cropped and resized back), gaussian noise sigma 5-10,
                      brightness +-15-25%, or re-encoded as JPEG q50-80
    leakage           an exact (half) or near (half) copy of a train image
                      in test, same class
    blurry            gaussian blur, sigma 1.3-1.8 px per 28 px of height
    dark              intensities scaled by 0.2-0.35
    light             washed out: x * 0.35-0.45 + 140-160
    odd_size          resized to 8x8 or 3.5x the base size (98 or 112 px)
    odd_aspect_ratio  resized to the base area at 1:4 or 4:1 (14x56, 56x14)
    label_issue       moved to a random other class folder (train only)

OUT/<source>/truth.csv lists them (`path,issue,related,detail`, paths
relative to OUT/<source>): `related` is the source image of a copy (for
duplicates and leakage, else empty), `detail` the variant and its
parameters, e.g. "shift:dx=2,dy=-1" or "truncated_png". Copies take the ids
of source images that were not drawn, so file names say nothing. The build
is deterministic given the seed and size. The base images are real data:
they hold their own near-duplicates and label errors, which are not in
truth.csv. Building both default sets takes about 6 s on 2 cores.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import io
import itertools
import json
import os
import pathlib
import shutil

import numpy as np
from PIL import Image, ImageFilter

from jvision.data import sources

SOURCES = ("fashion_mnist", "cifar10")
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "workdirs" / "planted"
DEFAULT_SIZE, DEFAULT_SEED = 5000, 0
TEST_FRACTION = 0.2
# Planted images per issue as a fraction of the split they are planted in
# (leakage: of the whole set, all in test; label_issue: train only).
FRACTIONS = {
  "corrupt": 0.015,
  "exact_duplicate": 0.015,
  "near_duplicate": 0.02,
  "leakage": 0.015,
  "blurry": 0.015,
  "dark": 0.015,
  "light": 0.015,
  "odd_size": 0.005,
  "odd_aspect_ratio": 0.005,
  "label_issue": 0.03,
}
CORRUPT_KINDS = (
  "zero_bytes",
  "truncated_png",
  "truncated_jpeg",
  "bad_jpeg_header",
  "html_as_png",
)
NEAR_KINDS = ("shift", "rescale", "zoom", "noise", "brightness", "jpeg")
LEAKAGE_KINDS = tuple(  # exact, shift, exact, rescale, ...
  itertools.chain.from_iterable(("exact", kind) for kind in NEAR_KINDS)
)
EXACT_GROUPS = (1, 1, 1, 2)  # Copies per source, cycled.
TRUTH_HEADER = ("path", "issue", "related", "detail")
IN_PLACE = (
  "corrupt",
  "blurry",
  "dark",
  "light",
  "odd_size",
  "odd_aspect_ratio",
  "label_issue",
)


@dataclasses.dataclass(frozen=True)
class Example:
  """One drawn base image: where it goes and its pixels uint8 [H, W, C]."""

  split: str
  label: int
  name: str
  pixels: np.ndarray


@dataclasses.dataclass(frozen=True)
class Truth:
  """One row of truth.csv."""

  path: str
  issue: str
  related: str = ""
  detail: str = ""


def load_base(source: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """The official test split: images [N, H, W, C], labels [N], classes."""
  data = sources.load(source, "test", progress=False)
  return data.images, data.labels, data.class_names


def draw_examples(
  images: np.ndarray, labels: np.ndarray, size: int, rng
) -> tuple[list[Example], list[str]]:
  """Draws `size` images into train/test; returns them and spare names."""
  if size > len(images):
    raise ValueError(f"--size={size} exceeds the {len(images)} base images")
  order = rng.permutation(len(images))
  num_test = round(size * TEST_FRACTION)
  examples = [
    Example(
      "test" if k >= size - num_test else "train",
      int(labels[i]),
      f"{i:05d}",
      images[i],
    )
    for k, i in enumerate(order[:size])
  ]
  spare = [f"{i:05d}" for i in order[size:]]
  return examples, spare


def plan_counts(examples: list[Example]) -> dict[str, dict[str, int]]:
  """Planted images per split and issue (see FRACTIONS)."""
  sizes = collections.Counter(e.split for e in examples)
  counts = {}
  for split, n in sizes.items():
    counts[split] = {
      issue: round(fraction * n) for issue, fraction in FRACTIONS.items()
    }
  counts["train"]["leakage"] = 0
  counts["test"]["leakage"] = round(FRACTIONS["leakage"] * len(examples))
  counts["test"]["label_issue"] = 0
  return counts


def exact_groups(copies: int) -> list[int]:
  """Copies per source, cycling EXACT_GROUPS, summing to `copies`."""
  groups = []
  for size in itertools.cycle(EXACT_GROUPS):
    if sum(groups) >= copies:
      return groups
    groups.append(min(size, copies - sum(groups)))


def assign_roles(
  examples: list[Example], counts: dict[str, dict[str, int]], rng
) -> dict[str, list[Example]]:
  """Disjoint examples per issue: the ones to alter, or the copies' sources.

  Leakage sources come from train. A source is listed once per copy, so an
  exact_duplicate source with two copies appears twice.
  """
  shuffled = [examples[i] for i in rng.permutation(len(examples))]
  pools = {s: [e for e in shuffled if e.split == s] for s in ("train", "test")}
  roles = {issue: [] for issue in FRACTIONS}
  for split, pool in pools.items():
    for issue, n in counts[split].items():
      where = pools["train"] if issue == "leakage" else pool
      if issue != "exact_duplicate":
        roles[issue] += [where.pop() for _ in range(n)]
        continue
      for copies in exact_groups(n):
        roles[issue] += [where.pop()] * copies
  return roles


def to_image(pixels: np.ndarray) -> Image.Image:
  """uint8 [H, W, 1|3] -> a PIL image (L or RGB)."""
  if pixels.shape[-1] == 1:
    return Image.fromarray(pixels[..., 0], "L")
  return Image.fromarray(pixels, "RGB")


def from_image(image: Image.Image) -> np.ndarray:
  """A PIL image -> uint8 [H, W, C]."""
  array = np.asarray(image, np.uint8)
  return array[..., None] if array.ndim == 2 else array


def encode(pixels: np.ndarray, fmt: str = "png", **options) -> bytes:
  """PNG (default) or JPEG bytes of uint8 [H, W, C] pixels."""
  buffer = io.BytesIO()
  to_image(pixels).save(buffer, format=fmt.upper(), **options)
  return buffer.getvalue()


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
  image = to_image(pixels).resize((width, height), Image.Resampling.BICUBIC)
  return from_image(image)


def clip(values: np.ndarray) -> np.ndarray:
  return np.clip(np.round(values), 0, 255).astype(np.uint8)


def shift(pixels, rng) -> tuple[np.ndarray, str]:
  """Moves the image 1-3 px along one or both axes, repeating the edge."""
  dx, dy = 0, 0
  while dx == dy == 0:
    dx, dy = (int(v) for v in rng.integers(-3, 4, size=2))
  height, width = pixels.shape[:2]
  padded = np.pad(pixels, ((3, 3), (3, 3), (0, 0)), mode="edge")
  moved = padded[3 - dy : 3 - dy + height, 3 - dx : 3 - dx + width]
  return moved, f"shift:dx={dx},dy={dy}"


def rescale(pixels, rng) -> tuple[np.ndarray, str]:
  """Resizes to 1.2-1.45x the side (e.g. 28 -> 36)."""
  side = pixels.shape[0]
  new = round(side * rng.uniform(1.2, 1.45))
  return resize(pixels, new, new), f"rescale:{side}->{new}"


def zoom(pixels, rng) -> tuple[np.ndarray, str]:
  """Crops 1-2 px from each border and resizes back."""
  crop = int(rng.integers(1, 3))
  height, width = pixels.shape[:2]
  inner = pixels[crop : height - crop, crop : width - crop]
  return resize(inner, width, height), f"zoom:crop={crop}"


def noise(pixels, rng) -> tuple[np.ndarray, str]:
  """Adds gaussian noise, sigma 5-10 (of 255)."""
  sigma = rng.uniform(5, 10)
  noisy = pixels + rng.normal(0, sigma, pixels.shape)
  return clip(noisy), f"noise:sigma={sigma:.1f}"


def brightness(pixels, rng) -> tuple[np.ndarray, str]:
  """Scales intensities by 1 +- 0.15-0.25."""
  factor = 1 + rng.choice((-1, 1)) * rng.uniform(0.15, 0.25)
  return clip(pixels * factor), f"brightness:x{factor:.2f}"


def blur(pixels, rng) -> tuple[np.ndarray, str]:
  """Gaussian blur, sigma 1.3-1.8 px per 28 px of height."""
  sigma = rng.uniform(1.3, 1.8) * pixels.shape[0] / 28
  image = to_image(pixels).filter(ImageFilter.GaussianBlur(sigma))
  return from_image(image), f"sigma={sigma:.2f}"


def darken(pixels, rng) -> tuple[np.ndarray, str]:
  factor = rng.uniform(0.2, 0.35)
  return clip(pixels * factor), f"x{factor:.2f}"


def lighten(pixels, rng) -> tuple[np.ndarray, str]:
  scale, offset = rng.uniform(0.35, 0.45), rng.uniform(140, 160)
  return clip(pixels * scale + offset), f"x{scale:.2f}+{offset:.0f}"


def odd_size(pixels, k: int) -> tuple[np.ndarray, str]:
  """8x8 (even k) or 3.5x the base side (odd k)."""
  side = 8 if k % 2 == 0 else round(pixels.shape[0] * 3.5)
  return resize(pixels, side, side), f"{side}x{side}"


def odd_aspect(pixels, k: int) -> tuple[np.ndarray, str]:
  """The base area at 1:4 (even k) or 4:1 (odd k), width x height."""
  side = pixels.shape[0]
  width, height = (side // 2, side * 2) if k % 2 == 0 else (side * 2, side // 2)
  return resize(pixels, width, height), f"{width}x{height}"


ALTER = {"blurry": blur, "dark": darken, "light": lighten}
NEAR = {
  "shift": shift,
  "rescale": rescale,
  "zoom": zoom,
  "noise": noise,
  "brightness": brightness,
}


def corrupt_bytes(pixels, kind: str) -> tuple[bytes, str]:
  """The bytes of a broken file of `kind` and its extension."""
  if kind == "zero_bytes":
    return b"", ".png"
  if kind == "truncated_png":
    data = encode(pixels)
    return data[: len(data) // 2], ".png"
  if kind == "html_as_png":
    return b"<html><body><h1>404 Not Found</h1></body></html>\n", ".png"
  data = encode(pixels, "jpeg", quality=90)
  if kind == "truncated_jpeg":
    return data[: len(data) // 2], ".jpg"
  return data[:2] + bytes(18) + data[20:], ".jpg"  # bad_jpeg_header


class Builder:
  """Collects the files and truth rows of one planted set."""

  def __init__(self, class_names, spare_names, rng):
    self.class_names = class_names
    self.spare = iter(spare_names)
    self.rng = rng
    self.files: dict[str, bytes] = {}
    self.truth: list[Truth] = []

  def path(self, e: Example, *, label=None, name=None, ext=".png") -> str:
    label = e.label if label is None else label
    return f"{e.split}/{self.class_names[label]}/{name or e.name}{ext}"

  def new_name(self) -> str:
    try:
      return next(self.spare)
    except StopIteration:
      raise ValueError("no spare ids left for copies; lower --size") from None

  def add(self, path: str, data: bytes, truth: Truth | None = None):
    if path in self.files:
      raise AssertionError(f"{path} written twice")
    self.files[path] = data
    if truth is not None:
      self.truth.append(truth)

  def copy(self, e: Example, issue: str, kind: str, split: str):
    """A copy of e (`kind`: exact, png_reencoded, jpeg or a NEAR kind)."""
    ext, detail = ".png", kind
    if kind == "exact":
      data = encode(e.pixels)
    elif kind == "png_reencoded":
      data = encode(e.pixels, compress_level=1)
    elif kind == "jpeg":
      quality = int(self.rng.integers(50, 81))
      data = encode(e.pixels, "jpeg", quality=quality)
      ext, detail = ".jpg", f"jpeg:q={quality}"
    else:
      pixels, detail = NEAR[kind](e.pixels, self.rng)
      data = encode(pixels)
    target = dataclasses.replace(e, split=split)
    path = self.path(target, name=self.new_name(), ext=ext)
    self.add(path, data, Truth(path, issue, self.path(e), detail))


def corrupt(b: Builder, e: Example, k: int):
  kind = CORRUPT_KINDS[k % len(CORRUPT_KINDS)]
  data, ext = corrupt_bytes(e.pixels, kind)
  path = b.path(e, ext=ext)
  b.add(path, data, Truth(path, "corrupt", "", kind))


def mislabel(b: Builder, e: Example):
  """Moves e to a random other class folder."""
  num_classes = len(b.class_names)
  wrong = (e.label + 1 + int(b.rng.integers(num_classes - 1))) % num_classes
  path = b.path(e, label=wrong)
  detail = f"true_class={b.class_names[e.label]}"
  b.add(path, encode(e.pixels), Truth(path, "label_issue", "", detail))


def plant_in_place(b: Builder, issue: str, k: int, e: Example):
  """Writes e altered by `issue` (its k-th image) instead of the original."""
  if issue == "corrupt":
    return corrupt(b, e, k)
  if issue == "label_issue":
    return mislabel(b, e)
  if issue in ALTER:
    pixels, detail = ALTER[issue](e.pixels, b.rng)
  elif issue == "odd_size":
    pixels, detail = odd_size(e.pixels, k)
  else:
    pixels, detail = odd_aspect(e.pixels, k)
  b.add(b.path(e), encode(pixels), Truth(b.path(e), issue, "", detail))


def plant_copies(b: Builder, roles: dict[str, list[Example]]):
  """Writes the duplicate and leakage copies (sources stay as they are)."""
  for k, e in enumerate(roles["exact_duplicate"]):
    kind = ("exact", "png_reencoded")[k % 2]
    b.copy(e, "exact_duplicate", kind, e.split)
  for k, e in enumerate(roles["near_duplicate"]):
    b.copy(e, "near_duplicate", NEAR_KINDS[k % len(NEAR_KINDS)], e.split)
  for k, e in enumerate(roles["leakage"]):
    b.copy(e, "leakage", LEAKAGE_KINDS[k % len(LEAKAGE_KINDS)], "test")


def build_files(source: str, size: int, seed: int) -> Builder:
  """Draws, alters and copies the images of one planted set, in memory."""
  rng = np.random.default_rng(seed)
  images, labels, class_names = load_base(source)
  examples, spare = draw_examples(images, labels, size, rng)
  roles = assign_roles(examples, plan_counts(examples), rng)
  b = Builder(class_names, spare, rng)
  altered = set()
  for issue in IN_PLACE:
    for k, e in enumerate(roles[issue]):
      plant_in_place(b, issue, k, e)
      altered.add(e.name)
  plant_copies(b, roles)
  for e in examples:
    if e.name not in altered:
      b.add(b.path(e), encode(e.pixels))
  return b


def write_truth(path: pathlib.Path, truth: list[Truth]):
  rank = {issue: i for i, issue in enumerate(FRACTIONS)}
  rows = sorted(truth, key=lambda t: (rank[t.issue], t.path))
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(TRUTH_HEADER)
    writer.writerows(dataclasses.astuple(t) for t in rows)


def read_truth(path: str | os.PathLike) -> list[Truth]:
  """The rows of a truth.csv written by this module."""
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    if tuple(reader.fieldnames or ()) != TRUTH_HEADER:
      raise ValueError(
        f"{path}: header {reader.fieldnames} is not {list(TRUTH_HEADER)}"
      )
    return [Truth(**row) for row in reader]


def write_set(root: pathlib.Path, b: Builder, params: dict):
  """Writes the files, truth.csv and planted.json under root (replaced)."""
  if root.exists():
    if not (root / "truth.csv").exists():
      raise FileExistsError(f"{root} exists and is not a planted set")
    shutil.rmtree(root)
  for path, data in sorted(b.files.items()):
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
  write_truth(root / "truth.csv", b.truth)
  counts = collections.Counter(t.issue for t in b.truth)
  record = {**params, "files": len(b.files), "planted": dict(counts)}
  (root / "planted.json").write_text(json.dumps(record, indent=2) + "\n")


def build(out: str | os.PathLike, source: str, *, size: int, seed: int):
  """Builds OUT/<source>; returns the planted counts and the file count."""
  b = build_files(source, size, seed)
  params = {"source": source, "size": size, "seed": seed}
  write_set(pathlib.Path(out) / source, b, params)
  return collections.Counter(t.issue for t in b.truth), len(b.files)


def is_built(
  out: str | os.PathLike, source: str, *, size: int, seed: int
) -> bool:
  """Whether OUT/<source> holds a complete set built with these settings."""
  record = pathlib.Path(out) / source / "planted.json"
  if not record.exists():
    return False
  params = json.loads(record.read_text())
  return (params["size"], params["seed"]) == (size, seed)


def print_counts(source: str, counts: collections.Counter, files: int):
  print(f"{source}: {files} files, {sum(counts.values())} planted")
  for issue in FRACTIONS:
    print(f"  {issue:18s} {counts[issue]:5d}")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=str(DEFAULT_OUT))
  parser.add_argument("--sources", default=",".join(SOURCES))
  parser.add_argument("--size", type=int, default=DEFAULT_SIZE)
  parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  for source in args.sources.split(","):
    counts, files = build(args.out, source, size=args.size, seed=args.seed)
    print_counts(source, counts, files)
  print(f"written under {args.out}")


if __name__ == "__main__":
  main()
