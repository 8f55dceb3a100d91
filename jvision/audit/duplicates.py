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
import scipy.ndimage
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


def centred(gray: np.ndarray) -> np.ndarray:
  """Each image moved to centre its mass, filled with its border value.

  Args:
    gray: float [N, H, W].

  Returns:
    float [N, H, W].
  """
  n, h, w = gray.shape
  shifts = centre_of_mass(gray)  # [N, 2]
  pad = max(h, w) // 2
  shifts = np.clip(shifts, -pad, pad)
  fills = border_values(gray).astype(gray.dtype)
  out = np.empty_like(gray)
  out[:] = fills[:, None, None]
  # One slice assignment per distinct shift (a few dozen), not per image.
  for dy, dx in np.unique(shifts, axis=0):
    members = np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
    out[members, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = (
      gray[
        members, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
      ]
    )
  return out


def gaussian_blur(gray: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian blur of float [N, H, W] over H and W (edges extended)."""
  if sigma <= 0:
    return np.asarray(gray, np.float32)
  return scipy.ndimage.gaussian_filter(
    np.asarray(gray, np.float32),
    sigma=(0, sigma, sigma),
    mode="nearest",
    truncate=3.0,
  )


def descriptors(gray: np.ndarray, *, grid: int, sigma: float) -> np.ndarray:
  """Shift-tolerant unit vectors for candidate search: float32 [N, grid^2]."""
  x = jnp.asarray(gaussian_blur(centred(gray), sigma))
  x = jax.image.resize(x, (len(x), grid, grid), "linear").reshape(len(x), -1)
  x = x - x.mean(1, keepdims=True)
  return np.asarray(x / (jnp.linalg.norm(x, axis=1, keepdims=True) + 1e-6))


@functools.partial(jax.jit, static_argnames=("k", "chunk"))
def _top_k_block(queries, bank, *, k, chunk):
  """Top-k bank rows per query, exactly, in two levels: int [b, k].

  XLA:CPU's top_k over 70,000 columns costs more than the matrix product;
  so each row is cut into chunks, the k chunks with the largest maxima are
  kept (every top-k element lies in one of them: a chunk holding one has a
  maximum at least that large, and fewer than k chunks can beat it), and
  top_k runs on those k x chunk values only. The bank's length must be a
  multiple of `chunk` (padding rows, see `nearest_neighbours`).
  """
  sims = queries @ bank.T  # [b, N]
  b = sims.shape[0]
  chunks = sims.reshape(b, -1, chunk)  # [b, C, chunk]
  _, best = jax.lax.top_k(chunks.max(-1), k)  # [b, k] chunk ids
  picked = jnp.take_along_axis(chunks, best[:, :, None], 1).reshape(b, -1)
  _, flat = jax.lax.top_k(picked, k)  # [b, k]
  rows = jnp.arange(b)[:, None]
  return best[rows, flat // chunk] * chunk + flat % chunk


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
  n, dims = vectors.shape
  k = min(k, n - 1)
  if k < 1:
    return np.zeros((n, 0), np.int64)
  queries = vectors if queries is None else queries
  chunk = max(1, min(256, n // (k + 1)))  # at least k + 1 chunks
  # Padding rows score -1e9 against every query through an extra
  # coordinate (1 for queries, 0 for real rows), so no mask is needed.
  bank = np.zeros((n + (-n % chunk), dims + 1), np.float32)
  bank[:n, :dims] = vectors
  bank[n:, dims] = -1e9
  bank = jnp.asarray(bank)
  padded = np.ones((n + (-n % block), dims + 1), np.float32)
  padded[:n, :dims] = queries
  found = []
  for start in tqdm.trange(
    0, n, block, desc="neighbours", disable=not progress
  ):
    found.append(
      np.asarray(
        _top_k_block(
          jnp.asarray(padded[start : start + block]),
          bank,
          k=k + 1,
          chunk=chunk,
        )
      )
    )
  found = np.concatenate(found)[:n]  # [N, k + 1], may include the query
  is_self = found == np.arange(n)[:, None]
  # Drop the query itself where present, else the (k + 1)-th neighbour.
  keep = ~is_self
  keep[~is_self.any(1), k] = False
  return found[keep].reshape(n, k)


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


def _fft_side(s: int) -> int:
  """FFT side >= S (a power of two): correlations do not wrap around."""
  return 1 << (s - 1).bit_length()


@functools.partial(jax.jit, static_argnames=("radius",))
def template_spectra(images: jnp.ndarray, *, radius: int) -> jnp.ndarray:
  """Conjugate spectra of each image's unit central template.

  Args:
    images: float32 [N, S, S] blurred grey images.
    radius: largest shift in pixels.

  Returns:
    complex64 [N, F, F/2+1]: the (S-2r) x (S-2r) centre with zero mean and
    unit norm (all zeros for a flat one), transformed and conjugated.
  """
  _, s, _ = images.shape
  inner = s - 2 * radius
  f = _fft_side(s)
  t = images[:, radius : radius + inner, radius : radius + inner]
  t = t - t.mean((1, 2), keepdims=True)
  norm = jnp.sqrt((t * t).sum((1, 2), keepdims=True))
  t = jnp.where(norm > 1e-4, t / jnp.maximum(norm, 1e-4), 0.0)
  return jnp.conj(jnp.fft.rfft2(t, s=(f, f)))


@functools.partial(jax.jit, static_argnames=("radius",))
def window_spectra(
  images: jnp.ndarray, *, radius: int
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Each image's spectrum and the norms of its shifted windows.

  Args:
    images: float32 [N, S, S] blurred grey images.
    radius: largest shift in pixels.

  Returns:
    (complex64 [N, F, F/2+1] spectra; float32 [N, 2r+1, 2r+1] norms of
    each shifted (S-2r) x (S-2r) window about its mean).
  """
  _, s, _ = images.shape
  inner = s - 2 * radius
  f = _fft_side(s)
  sums = _box_sums(images, inner)
  variance = _box_sums(images * images, inner) - sums * sums / inner**2
  return jnp.fft.rfft2(images, s=(f, f)), jnp.sqrt(jnp.maximum(variance, 0.0))


@functools.partial(jax.jit, static_argnames=("radius", "side"))
def _matched(image_fft, window_norm, template_conj, *, radius: int, side: int):
  """Best NCC per pair from gathered spectra: float [P]."""
  corr = jnp.fft.irfft2(image_fft * template_conj, s=(side, side))
  corr = corr[:, : 2 * radius + 1, : 2 * radius + 1]  # [P, 2r+1, 2r+1]
  ncc = jnp.where(
    window_norm > 1e-4, corr / jnp.maximum(window_norm, 1e-4), 0.0
  )
  return ncc.reshape(ncc.shape[0], -1).max(1)


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
  template_conj = template_spectra(a, radius=radius)
  image_fft, window_norm = window_spectra(b, radius=radius)
  return _matched(
    image_fft,
    window_norm,
    template_conj,
    radius=radius,
    side=_fft_side(a.shape[1]),
  )


def _blocked(fn, images: np.ndarray, radius: int, block: int = 4096):
  """`fn(images, radius=radius)` in blocks, outputs as NumPy arrays."""
  parts = [
    jax.tree.map(
      np.asarray, fn(jnp.asarray(images[i : i + block]), radius=radius)
    )
    for i in range(0, len(images), block)
  ]
  return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


def verify_pairs(
  left: np.ndarray,
  right: np.ndarray,
  pairs: np.ndarray,
  *,
  radius: int,
  batch: int = 4096,
  progress: bool = True,
) -> np.ndarray:
  """`pair_similarity(left[i], right[j])` of each pair (i, j): float32 [P].

  Each image's FFT terms are computed once (`template_spectra`,
  `window_spectra`), so a pair costs one inverse FFT.

  Args:
    left, right: float32 [N, S, S] blurred grey images (right may be the
      zoomed copies of left, or left itself).
    pairs: int [P, 2].
    radius: largest shift in pixels.
    batch: pairs per compiled call.
    progress: show a tqdm bar.
  """
  if not len(pairs):
    return np.zeros(0, np.float32)
  return _verify(
    _blocked(template_spectra, left, radius),
    _blocked(window_spectra, right, radius),
    pairs,
    radius=radius,
    side=_fft_side(left.shape[1]),
    batch=batch,
    progress=progress,
  )


def _verify(template_conj, windows, pairs, *, radius, side, batch, progress):
  """Best NCC of template i against the windows of image j per pair."""
  image_fft, window_norm = windows
  out = []
  padded = np.concatenate(
    [pairs, np.zeros((-len(pairs) % batch, 2), pairs.dtype)]
  )
  with tqdm.tqdm(
    total=len(pairs), desc="near duplicates", disable=not progress
  ) as bar:
    for start in range(0, len(padded), batch):
      i, j = padded[start : start + batch].T
      sims = _matched(
        image_fft[j],
        window_norm[j],
        template_conj[i],
        radius=radius,
        side=side,
      )
      out.append(np.asarray(sims))
      bar.update(min(batch, len(pairs) - start))
  return np.concatenate(out)[: len(pairs)]


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
  zoom_steps: tuple[float, ...] = (1.0,),
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
    zoom_steps: each zoom's candidates are verified at zoom x step for each
      step (NCC tolerates about 3% of zoom error).
    embeddings: optional float [N, D] (an encoder's).
    hashes: optional pixel digests per image.
    progress: show progress bars.

  Returns:
    (int [P, 2] unordered pairs, float32 [P] best similarity).
  """
  bank = descriptors(gray, grid=grid, sigma=descriptor_blur)
  blurred = gaussian_blur(gray, blur)
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
  # (candidate pairs, the images their second members are matched as)
  lists = [(unordered(np.concatenate(same)), [blurred])]
  for z in zooms:
    queries = descriptors(
      np.asarray(zoom(jnp.asarray(gray), z)), grid=grid, sigma=descriptor_blur
    )
    found = nearest_neighbours(
      bank, zoom_neighbours, queries=queries, progress=progress
    )
    lists.append(
      (
        neighbour_pairs(found),
        [
          gaussian_blur(np.asarray(zoom(jnp.asarray(gray), z * f)), blur)
          for f in zoom_steps
        ],
      )
    )
  templates = _blocked(template_spectra, blurred, radius)
  all_pairs, all_sims = [], []
  for pairs, views in lists:
    if hashes is not None and len(pairs):
      pairs = pairs[[hashes[a] != hashes[b] for a, b in pairs]]
    for view in views:
      # (neighbour, query): the neighbour's template against the (zoomed)
      # query's windows.
      all_sims.append(
        _verify(
          templates,
          _blocked(window_spectra, view, radius),
          pairs[:, ::-1],
          radius=radius,
          side=_fft_side(gray.shape[1]),
          batch=4096,
          progress=progress,
        )
      )
      all_pairs.append(pairs)
  return best_per_pair(np.concatenate(all_pairs), np.concatenate(all_sims))
