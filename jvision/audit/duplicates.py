"""Exact and near duplicates, within a split and across splits (leakage).

Exact duplicates have identical decoded pixels (same size, same values):
they are grouped by a hash of the pixels.

Near duplicates are found in two steps on the grey work copies (every image
resized to the audit's working size S x S):

1. Candidates: each image's `k` nearest neighbours by cosine similarity of
   a small shift-tolerant descriptor (the image moved so that its centre of
   mass, measured as distance from the border colour, is at the centre,
   blurred and average-pooled to `grid` x `grid`), and, when an encoder is
   given, of its embeddings too.
   For each zoom factor z in `zooms`, every image zoomed in by z about its
   centre is also looked up, so that cropped-and-resized copies are found.
2. Verification: both images, slightly blurred, are compared by template
   matching: the best normalised cross-correlation (NCC) of one's central
   crop with the other's windows shifted by up to `radius` pixels (for a
   zoomed lookup, the zoomed image against its neighbour). Shifted,
   rescaled, noised, re-encoded and brightened copies score close to 1 (NCC
   ignores brightness and contrast); pairs at or above `threshold` are near
   duplicates.

A pair in one split flags its later image (by path) as a duplicate of the
earlier; a pair across splits flags the image of the later split (train
first, test last) as leakage from the earlier one.
"""

from __future__ import annotations

import functools
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import tqdm


def pixel_hash(image: np.ndarray) -> bytes:
  """A digest of an image's shape and pixels (uint8 [H, W, C])."""
  digest = hashlib.blake2b(digest_size=16)
  digest.update(np.asarray(image.shape, np.int64).tobytes())
  digest.update(np.ascontiguousarray(image).tobytes())
  return digest.digest()


def exact_groups(hashes: list[bytes | None]) -> list[list[int]]:
  """Indices sharing a hash, in groups of two or more (None: skipped)."""
  groups: dict[bytes, list[int]] = {}
  for i, h in enumerate(hashes):
    if h is not None:
      groups.setdefault(h, []).append(i)
  return [g for g in groups.values() if len(g) > 1]


def border_values(gray: np.ndarray) -> np.ndarray:
  """The median of each image's outermost pixels: float [N]."""
  border = np.concatenate(
    [gray[:, 0], gray[:, -1], gray[:, :, 0], gray[:, :, -1]], axis=1
  )
  return np.median(border, axis=1)


def centre_of_mass(gray: np.ndarray) -> np.ndarray:
  """Integer shifts (dy, dx) that centre each image's mass: int [N, 2].

  The mass is each pixel's distance from the median border value, so a
  dark object on light ground counts like a light one on dark ground.
  """
  n, h, w = gray.shape
  mass = np.abs(gray - border_values(gray)[:, None, None])
  total = mass.sum((1, 2)) + 1e-6
  cy = (mass.sum(2) * np.arange(h)).sum(1) / total
  cx = (mass.sum(1) * np.arange(w)).sum(1) / total
  shifts = np.stack([(h - 1) / 2 - cy, (w - 1) / 2 - cx], axis=1)
  return np.rint(shifts).astype(np.int64)


def shift_image(x: np.ndarray, dy: int, dx: int, fill: float) -> np.ndarray:
  """Moves float [H, W] by (dy, dx) pixels; uncovered pixels get `fill`."""
  h, w = x.shape
  out = np.full_like(x, fill)
  out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
    max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
  ]
  return out


def centred(gray: np.ndarray) -> np.ndarray:
  """Each image moved to centre its mass, filled with its border value."""
  shifts = centre_of_mass(gray)
  fills = border_values(gray)
  return np.stack(
    [
      shift_image(x, dy, dx, f)
      for x, (dy, dx), f in zip(gray, shifts, fills, strict=True)
    ]
  )


def gaussian_blur(gray: jnp.ndarray, sigma: float) -> jnp.ndarray:
  """Separable Gaussian blur of float [N, H, W] (edges replicated)."""
  if sigma <= 0:
    return gray
  radius = max(1, int(np.ceil(3 * sigma)))
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps = jnp.asarray(taps / taps.sum(), jnp.float32)
  x = jnp.pad(gray, ((0, 0), (radius, radius), (radius, radius)), "edge")
  h, w = gray.shape[1:]
  x = sum(t * x[:, i : i + h, :] for i, t in enumerate(taps))
  return sum(t * x[:, :, i : i + w] for i, t in enumerate(taps))


def descriptors(gray: np.ndarray, *, grid: int, sigma: float) -> np.ndarray:
  """Shift-tolerant unit vectors for candidate search: float32 [N, grid^2]."""
  x = gaussian_blur(jnp.asarray(centred(gray)), sigma)
  x = jax.image.resize(x, (len(x), grid, grid), "linear").reshape(len(x), -1)
  x = x - x.mean(1, keepdims=True)
  return np.asarray(x / (jnp.linalg.norm(x, axis=1, keepdims=True) + 1e-6))


@functools.partial(jax.jit, static_argnames=("k",))
def _top_k_block(queries, bank, offset, *, k):
  sims = queries @ bank.T  # [b, N]
  rows = jnp.arange(queries.shape[0]) + offset
  sims = sims.at[jnp.arange(queries.shape[0]), rows].set(-jnp.inf)  # no self
  return jax.lax.top_k(sims, k)


def nearest_neighbours(
  vectors: np.ndarray,
  k: int,
  *,
  queries: np.ndarray | None = None,
  block: int = 1024,
  progress: bool = True,
) -> np.ndarray:
  """Each query's k most cosine-similar rows of `vectors`, itself excluded.

  Args:
    vectors: float32 [N, D] unit vectors (the bank).
    k: neighbours per query (capped at N - 1).
    queries: float32 [N, D] unit vectors, row i standing for image i (e.g.
      a zoomed copy of it); default `vectors`.
    block: query rows per matrix product.
    progress: show a tqdm bar.

  Returns:
    int [N, k] indices into `vectors`, most similar first.
  """
  n = len(vectors)
  k = min(k, n - 1)
  if k < 1:
    return np.zeros((n, 0), np.int64)
  queries = vectors if queries is None else queries
  bank = jnp.asarray(vectors, jnp.float32)
  padded = np.concatenate(
    [queries, np.zeros((-n % block, queries.shape[1]), np.float32)]
  )
  idx = []
  for start in tqdm.trange(
    0, n, block, desc="neighbours", disable=not progress
  ):
    _, i = _top_k_block(
      jnp.asarray(padded[start : start + block]), bank, start, k=k
    )
    idx.append(np.asarray(i))
  return np.concatenate(idx)[:n]


def neighbour_pairs(idx: np.ndarray) -> np.ndarray:
  """(query, neighbour) rows of an [N, k] neighbour array: int [N * k, 2]."""
  rows = np.repeat(np.arange(len(idx)), idx.shape[1])
  return np.stack([rows, idx.reshape(-1)], axis=1)


def unordered(pairs: np.ndarray) -> np.ndarray:
  """Unique pairs with the smaller index first: int [P, 2]."""
  if not len(pairs):
    return np.zeros((0, 2), np.int64)
  both = np.stack([pairs.min(1), pairs.max(1)], axis=1)
  return np.unique(both, axis=0)


def zoom(b: jnp.ndarray, scale: float) -> jnp.ndarray:
  """Zooms float [P, S, S] in by `scale` about the centre, keeping S x S.

  Output pixel y shows input position (y - S/2) / scale + S/2 (linear
  interpolation, edges extended), as cropping the central S/scale square
  and resizing it to S would.
  """
  if scale == 1.0:
    return b
  s = b.shape[1]
  return jax.image.scale_and_translate(
    b,
    b.shape,
    spatial_dims=(1, 2),
    scale=jnp.asarray([scale, scale], jnp.float32),
    translation=jnp.full((2,), s / 2 * (1 - scale), jnp.float32),
    method="linear",
    antialias=False,
  )


def _box_sums(x: jnp.ndarray, n: int) -> jnp.ndarray:
  """Sums over every n x n window of float [P, S, S]: [P, S-n+1, S-n+1]."""
  c = jnp.pad(jnp.cumsum(jnp.cumsum(x, 1), 2), ((0, 0), (1, 0), (1, 0)))
  return c[:, n:, n:] - c[:, :-n, n:] - c[:, n:, :-n] + c[:, :-n, :-n]


@functools.partial(jax.jit, static_argnames=("radius",))
def pair_similarity(
  a: jnp.ndarray, b: jnp.ndarray, *, radius: int
) -> jnp.ndarray:
  """Best NCC of a's centre against b's shifted windows: float [P].

  The central (S-2r) x (S-2r) crop of `a` is matched against every window
  of `b` shifted by up to `radius` pixels: template matching, with the
  correlations of all shifts computed at once by FFT and each window's
  mean and norm from cumulative sums.

  Args:
    a, b: float32 [P, S, S] blurred grey images, pair by pair.
    radius: largest shift in pixels.
  """
  p, s, _ = a.shape
  inner = s - 2 * radius
  t = a[:, radius : radius + inner, radius : radius + inner]
  t = t - t.mean((1, 2), keepdims=True)
  norm = jnp.sqrt((t * t).sum((1, 2), keepdims=True))
  t = jnp.where(norm > 1e-4, t / jnp.maximum(norm, 1e-4), 0.0)  # flat: 0
  size = 1 << (s - 1).bit_length()  # FFT side >= S: no wrap-around
  corr = jnp.fft.irfft2(
    jnp.fft.rfft2(b, s=(size, size))
    * jnp.conj(jnp.fft.rfft2(t, s=(size, size))),
    s=(size, size),
  )[:, : 2 * radius + 1, : 2 * radius + 1]  # [P, 2r+1, 2r+1]
  sums = _box_sums(b, inner)
  variance = _box_sums(b * b, inner) - sums * sums / (inner * inner)
  ncc = jnp.where(
    variance > 1e-8, corr / jnp.sqrt(jnp.maximum(variance, 1e-8)), 0.0
  )
  return ncc.reshape(p, -1).max(1)


def verify_pairs(
  left: np.ndarray,
  right: np.ndarray,
  pairs: np.ndarray,
  *,
  radius: int,
  batch: int = 2048,
  progress: bool = True,
) -> np.ndarray:
  """`pair_similarity(left[i], right[j])` of each pair (i, j): float32 [P].

  Args:
    left, right: float32 [N, S, S] blurred grey images (right may be the
      zoomed copies of left).
    pairs: int [P, 2].
    radius: largest shift in pixels.
    batch: pairs per compiled call.
    progress: show a tqdm bar.
  """
  out = []
  padded = np.concatenate(
    [pairs, np.zeros((-len(pairs) % batch, 2), pairs.dtype)]
  )
  with tqdm.tqdm(
    total=len(pairs), desc="near duplicates", disable=not progress
  ) as bar:
    for start in range(0, len(padded), batch):
      chunk = padded[start : start + batch]
      sims = pair_similarity(
        jnp.asarray(left[chunk[:, 0]]),
        jnp.asarray(right[chunk[:, 1]]),
        radius=radius,
      )
      out.append(np.asarray(sims))
      bar.update(min(batch, len(pairs) - start))
  return np.concatenate(out)[: len(pairs)] if out else np.zeros(0)


def best_per_pair(
  pairs: np.ndarray, sims: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """Unordered unique pairs and the highest similarity each was given."""
  if not len(pairs):
    return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
  both = np.stack([pairs.min(1), pairs.max(1)], axis=1)
  keys = both[:, 0] * (both.max() + 1) + both[:, 1]
  order = np.lexsort((-sims, keys))
  keys, both, sims = keys[order], both[order], sims[order]
  first = np.r_[True, keys[1:] != keys[:-1]]
  return both[first], sims[first]


def search(
  gray: np.ndarray,
  *,
  neighbours: int,
  grid: int,
  descriptor_blur: float,
  blur: float,
  radius: int,
  zooms: tuple[float, ...],
  zoom_neighbours: int,
  embeddings: np.ndarray | None = None,
  hashes: list | None = None,
  progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
  """Candidate near-duplicate pairs and their verified similarity.

  Candidates: each image's nearest neighbours by descriptor (and by
  embedding, when given), and, for each zoom z, the neighbours of the
  image zoomed in by z (a cropped copy of it is then found). Each candidate
  list is verified at its own zoom. Pairs of identical pixels (equal
  `hashes`) are left to the exact check.

  Args:
    gray: float32 [N, S, S] grey images in [0, 1].
    neighbours: candidates per image and list.
    grid, descriptor_blur: see `descriptors`.
    blur: Gaussian sigma (px) before matching.
    radius: largest shift tried (px).
    zooms: zoom-in factors tried besides 1.
    zoom_neighbours: candidates per image and zoom.
    embeddings: optional float [N, D] (an encoder's).
    hashes: optional pixel digests per image.
    progress: show progress bars.

  Returns:
    (int [P, 2] unordered pairs, float32 [P] best similarity).
  """
  bank = descriptors(gray, grid=grid, sigma=descriptor_blur)
  blurred = np.asarray(gaussian_blur(jnp.asarray(gray), blur))
  found = nearest_neighbours(bank, neighbours, progress=progress)
  same = [unordered(neighbour_pairs(found))]
  if embeddings is not None:
    unit = embeddings / (
      np.linalg.norm(embeddings, axis=1, keepdims=True) + 1e-12
    )
    found = nearest_neighbours(
      unit.astype(np.float32), neighbours, progress=progress
    )
    same.append(unordered(neighbour_pairs(found)))
  lists = [(unordered(np.concatenate(same)), blurred)]
  for z in zooms:
    zoomed = np.asarray(zoom(jnp.asarray(gray), z))
    found = nearest_neighbours(
      bank,
      zoom_neighbours,
      queries=descriptors(zoomed, grid=grid, sigma=descriptor_blur),
      progress=progress,
    )
    lists.append(
      (
        neighbour_pairs(found),
        np.asarray(gaussian_blur(jnp.asarray(zoomed), blur)),
      )
    )
  all_pairs, all_sims = [], []
  for pairs, queries in lists:
    if hashes is not None and len(pairs):
      pairs = pairs[[hashes[a] != hashes[b] for a, b in pairs]]
    # (query, neighbour): the query's (maybe zoomed) copy vs the neighbour.
    sims = verify_pairs(
      blurred, queries, pairs[:, ::-1], radius=radius, progress=progress
    )
    all_pairs.append(pairs)
    all_sims.append(sims)
  return best_per_pair(np.concatenate(all_pairs), np.concatenate(all_sims))
