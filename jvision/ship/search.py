"""Similar-image search over a split embedded by a trained workdir.

    jvision search --workdir=DIR --index=SPEC --query=IMAGE [--k=10] [--eval]

`build_index` embeds every image of one split with the workdir's backbone
(L2-normalised features, so a dot product is the cosine similarity) and
caches the result in the workdir:

    DIR/search/<spec>_<split>_step<step>.npz   ids [N], labels [N],
                                               embeddings float32 [N, D]
    DIR/search/<spec>_<split>_step<step>.json  spec, split, step, size, ...
    DIR/search/results/<query stem>.png        the strip `search` draws

`<spec>` is the spec with each run of characters outside [A-Za-z0-9._-]
turned into "_", cut to 48 characters, then "-" and 8 hex digits of its
SHA-1 (so `idx:/a/b` and `idx:/a_b` differ): `fashion_mnist-c4cf1deb`.
`<split>` keeps [A-Za-z0-9.-] and turns the rest into "-". An index is
reused while the workdir's newest checkpoint step matches (and, when the
caller has loaded the split, its ids); a newer checkpoint gives a new
file. Nothing is written outside DIR/search.

`query` is an exact search: one matrix-vector product and a partial sort in
NumPy. For N=60,000, D=84 on two CPU cores it takes 0.3-0.4 ms at the
median, against 0.45-0.55 ms for a jitted JAX product + `lax.top_k`;
float16 embeddings give the same recall and mAP but NumPy has no float16
BLAS (26 ms), so the index stays float32 (20 MB at that size).
benchmarks/search.py measures all three.

`evaluate` scores retrieval with recall@k and mAP, where a gallery item is
relevant to a query when it has the query's label.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import re

import numpy as np
from PIL import Image, ImageDraw

import jvision.data
from jvision import inference
from jvision.data import decode

_log = logging.getLogger(__name__)

SEARCH_DIR = "search"
RESULTS_DIR = "results"
FORMAT_VERSION = 1
# Strip layout: each tile is at least this many pixels on a side, with a
# gap around tiles and room for two caption lines (score, class) below.
MIN_TILE = 64
PAD = 4
CAPTION = 28
EVAL_CHUNK = 128  # Queries ranked at once: 128 x 60,000 scores is 31 MB.


@dataclasses.dataclass(frozen=True, eq=False)
class Index:
  """A split embedded by one checkpoint.

  Attributes:
    ids: numpy unicode [N], the split's stable example ids.
    labels: int32 [N].
    class_names: names indexed by label id.
    embeddings: float32 [N, D], unit rows.
    spec: the data spec that was indexed.
    split: the split that was indexed.
    step: the checkpoint step that embedded it.
  """

  ids: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]
  embeddings: np.ndarray
  spec: str
  split: str
  step: int

  def __len__(self) -> int:
    return int(self.labels.shape[0])


# ---------------------------------------------------------------- the cache


def safe_name(spec: str) -> str:
  """A file-name-safe, collision-resistant name for a data spec."""
  digest = hashlib.sha1(spec.encode()).hexdigest()[:8]
  readable = re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("_")[:48]
  return f"{readable}-{digest}"


def cache_path(workdir: str, spec: str, split: str, step: int) -> pathlib.Path:
  """DIR/search/<safe spec>_<split>_step<step>.npz."""
  plain_split = re.sub(r"[^A-Za-z0-9.-]+", "-", split)
  name = f"{safe_name(spec)}_{plain_split}_step{step}.npz"
  return pathlib.Path(workdir) / SEARCH_DIR / name


def save_index(index: Index, path: pathlib.Path) -> None:
  """Writes the .npz and its .json sidecar (atomically, each by rename)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp.npz")
  np.savez(tmp, ids=index.ids, labels=index.labels, embeddings=index.embeddings)
  os.replace(tmp, path)
  sidecar = {
    "format_version": FORMAT_VERSION,
    "spec": index.spec,
    "split": index.split,
    "step": index.step,
    "size": len(index),
    "dim": int(index.embeddings.shape[1]),
    "dtype": str(index.embeddings.dtype),
    "class_names": list(index.class_names),
  }
  tmp_json = path.with_suffix(".tmp.json")
  tmp_json.write_text(json.dumps(sidecar, indent=2))
  os.replace(tmp_json, path.with_suffix(".json"))


def load_index(path: pathlib.Path, *, step: int) -> Index | None:
  """The cached index at `path` if it is complete and from `step`, else None.

  Args:
    path: a `cache_path`.
    step: the checkpoint step the index must come from.
  """
  sidecar_path = path.with_suffix(".json")
  if not (path.exists() and sidecar_path.exists()):
    return None
  try:
    sidecar = json.loads(sidecar_path.read_text())
    if (
      sidecar.get("format_version") != FORMAT_VERSION
      or sidecar.get("step") != step
    ):
      return None
    with np.load(path) as arrays:
      index = Index(
        ids=arrays["ids"],
        labels=arrays["labels"],
        class_names=tuple(sidecar["class_names"]),
        embeddings=arrays["embeddings"].astype(np.float32, copy=False),
        spec=sidecar["spec"],
        split=sidecar["split"],
        step=step,
      )
  except (OSError, ValueError, KeyError) as e:
    _log.warning("Ignoring unreadable search index %s: %s", path, e)
    return None
  if not index.embeddings.shape[0] == len(index.ids) == sidecar["size"]:
    return None
  return index


# ---------------------------------------------------------------- building


def load_at_model_size(
  model: inference.Inference, spec: str, split: str, *, progress: bool
) -> jvision.data.ArrayDataset:
  """A split decoded at the model's input size (the size `model.prepare`
  converts to), so that photos of any sizes, labelled or not, index."""
  height, _, channels = model.image_shape
  return jvision.data.load(
    spec, split, image_size=height, channels=channels, progress=progress
  )


def embed_dataset(
  model: inference.Inference,
  dataset: jvision.data.ArrayDataset,
  *,
  batch_size: int = 256,
  progress: bool = True,
) -> Index:
  """Embeds every image of a loaded split (no cache)."""
  embeddings = model.embeddings(
    model.prepare(dataset.images), batch_size=batch_size, progress=progress
  )  # [N, D]
  return Index(
    ids=dataset.ids,
    labels=dataset.labels,
    class_names=tuple(dataset.class_names),
    embeddings=embeddings.astype(np.float32, copy=False),  # [N, D]
    spec="",
    split="",
    step=model.step,
  )


def build_index(
  workdir: str,
  spec: str,
  split: str,
  *,
  batch_size: int = 256,
  progress: bool = True,
  model: inference.Inference | None = None,
  dataset: jvision.data.ArrayDataset | None = None,
) -> Index:
  """The cached index of a split, embedding it first when needed.

  Args:
    workdir: a trained jvision workdir (SimCLR, supervised or fine-tuned).
    spec: a data spec (DESIGN "Data specs").
    split: the split to index.
    batch_size: images embedded at once.
    progress: show progress bars while loading and embedding.
    model: `jvision.inference.load(workdir)`, if the caller has it.
    dataset: the loaded split, if the caller has it; a cached index whose
      ids differ from it is rebuilt.

  Returns:
    The index, also saved to `cache_path(workdir, spec, split, step)`.
  """
  model = model or inference.load(workdir)
  path = cache_path(workdir, spec, split, model.step)
  index = load_index(path, step=model.step)
  if index is not None and (
    dataset is None or np.array_equal(index.ids, dataset.ids)
  ):
    _log.info("Using the search index %s (%d images)", path, len(index))
    return index
  if index is not None:
    _log.info("%s holds other images than %s %s; rebuilding", path, spec, split)
  if dataset is None:
    dataset = load_at_model_size(model, spec, split, progress=progress)
  _log.info("Embedding %d images of %s %s", len(dataset), spec, split)
  index = dataclasses.replace(
    embed_dataset(model, dataset, batch_size=batch_size, progress=progress),
    spec=spec,
    split=split,
  )
  save_index(index, path)
  _log.info("Saved the search index to %s", path)
  return index


# ---------------------------------------------------------------- querying


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
  """Indices of the k largest scores, largest first.

  Args:
    scores: float [N].
    k: how many; more than N gives all N.

  Returns:
    int [min(k, N)]; ties keep the lower index first.
  """
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  if k >= scores.shape[0]:
    return np.argsort(-scores, kind="stable")
  candidates = np.argpartition(-scores, k - 1)[:k]
  order = np.lexsort((candidates, -scores[candidates]))
  return candidates[order]


def query(
  index: Index, embedding: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
  """Exact cosine search.

  Args:
    index: the gallery.
    embedding: float [D], a unit vector from the same model.
    k: how many results.

  Returns:
    (indices int [k], scores float32 [k]) into the index, best first.
  """
  dim = index.embeddings.shape[1]
  if embedding.shape != (dim,):
    raise ValueError(
      f"query embedding has shape {embedding.shape}; the index of "
      f"{index.spec} {index.split} holds {dim}-dim embeddings"
    )
  scores = index.embeddings @ embedding.astype(np.float32)  # [N]
  indices = top_k(scores, k)
  return indices, scores[indices]


def embed_images(model: inference.Inference, images) -> np.ndarray:
  """float32 [M, D] unit embeddings of uint8 [H, W, C] images of any size."""
  prepared = model.prepare(images)
  return model.embeddings(prepared, batch_size=len(prepared))


def read_query(path: str) -> np.ndarray:
  """Decodes an image file: uint8 [H, W, C]."""
  with open(path, "rb") as f:
    return decode.decode_image(f.read(), path=path)


def search(
  workdir: str,
  spec: str,
  query_path: str,
  *,
  k: int = 10,
  split: str = "train",
  progress: bool = True,
) -> dict:
  """Finds the k images of a split most similar to an image file.

  Args:
    workdir: a trained jvision workdir.
    spec: the data spec to search.
    query_path: an image file Pillow reads.
    k: how many results.
    split: the split to search.
    progress: show progress bars if the index must be built.

  Returns:
    {"query", "spec", "split", "step", "index_path", "strip", "results"}
    where results is a list of {"rank", "id", "label", "class_name",
    "score"}, best first, and strip the PNG written to
    DIR/search/results/<query stem>.png.
  """
  image = read_query(query_path)
  model = inference.load(workdir)
  dataset = load_at_model_size(model, spec, split, progress=progress)
  index = build_index(
    workdir, spec, split, progress=progress, model=model, dataset=dataset
  )
  indices, scores = query(index, embed_images(model, [image])[0], k)
  results = [
    {
      "rank": rank + 1,
      "id": str(index.ids[i]),
      "label": int(index.labels[i]),
      "class_name": _class_name(index, int(index.labels[i])),
      "score": float(score),
    }
    for rank, (i, score) in enumerate(zip(indices, scores, strict=True))
  ]
  strip = draw_strip(
    image,
    [dataset.images[i] for i in indices],
    [f"{r['score']:.3f}\n{r['class_name']}" for r in results],
  )
  out = pathlib.Path(workdir) / SEARCH_DIR / RESULTS_DIR
  out.mkdir(parents=True, exist_ok=True)
  strip_path = out / f"{pathlib.Path(query_path).stem}.png"
  strip.save(strip_path)
  return {
    "query": query_path,
    "spec": spec,
    "split": split,
    "step": index.step,
    "index_path": str(cache_path(workdir, spec, split, index.step)),
    "strip": str(strip_path),
    "results": results,
  }


def _class_name(index: Index, label: int) -> str:
  if label < 0:
    return ""  # an unlabelled source
  if 0 <= label < len(index.class_names):
    return index.class_names[label]
  return str(label)


# ---------------------------------------------------------------- the strip


def tile_size(height: int) -> int:
  """The strip's tile side: `height` times the smallest integer factor
  that reaches MIN_TILE (28 -> 84, 32 -> 64, 100 -> 100)."""
  return height * max(1, math.ceil(MIN_TILE / height))


def strip_size(num_results: int, tile: int) -> tuple[int, int]:
  """(width, height) of a strip of the query and `num_results` tiles."""
  return (
    (num_results + 1) * (tile + PAD) + PAD,
    tile + CAPTION + 2 * PAD,
  )


def _thumbnail(image: np.ndarray, tile: int) -> Image.Image:
  """uint8 [H, W, C] -> an RGB tile x tile image, nearest-neighbour."""
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  return pil.convert("RGB").resize((tile, tile), Image.Resampling.NEAREST)


def draw_strip(
  query_image: np.ndarray,
  result_images: list[np.ndarray],
  captions: list[str],
) -> Image.Image:
  """The query and its results side by side, a caption under each result.

  Args:
    query_image: uint8 [H, W, C], any size.
    result_images: uint8 [h, w, C] each, the gallery's size.
    captions: one (possibly two-line) string per result.

  Returns:
    An RGB image of `strip_size(len(result_images), tile)`, where tile is
    `tile_size(h)` of the results (of the query when there are none).
  """
  first = result_images[0] if result_images else query_image
  tile = tile_size(first.shape[0])
  strip = Image.new("RGB", strip_size(len(result_images), tile), "white")
  draw = ImageDraw.Draw(strip)
  for i, (image, caption) in enumerate(
    zip([query_image, *result_images], ["query", *captions], strict=True)
  ):
    x = PAD + i * (tile + PAD)
    strip.paste(_thumbnail(image, tile), (x, PAD))
    draw.multiline_text((x, tile + PAD + 1), caption, fill="black", spacing=1)
  return strip


# ---------------------------------------------------------------- metrics


def relevance(
  scores: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray
) -> np.ndarray:
  """Ranks the gallery for each query and marks same-label items.

  Args:
    scores: float [M, N], query-gallery similarities.
    query_labels: int [M].
    gallery_labels: int [N].

  Returns:
    bool [M, N]: [i, r] is True when the gallery item at rank r (0 = best)
    for query i has query i's label. Ties keep gallery order.
  """
  order = np.argsort(-scores, axis=1, kind="stable")  # [M, N]
  return gallery_labels[order] == query_labels[:, None]


def recall_at_k(relevant: np.ndarray, k: int) -> float:
  """Share of queries with at least one relevant item in the top k.

  Args:
    relevant: bool [M, N] from `relevance`.
    k: the cut-off, >= 1.

  Returns:
    A float in [0, 1].
  """
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  return float(np.mean(np.any(relevant[:, :k], axis=1)))


def average_precision(relevant: np.ndarray) -> np.ndarray:
  """Average precision over the whole ranking of each query.

  AP = (1 / R) * sum over relevant ranks r of precision@r, where R is the
  query's number of relevant gallery items; a query with R = 0 has AP 0.

  Args:
    relevant: bool [M, N] from `relevance`.

  Returns:
    float64 [M].
  """
  hits = np.cumsum(relevant, axis=1, dtype=np.int32)  # [M, N]
  ranks = np.arange(1, relevant.shape[1] + 1)  # [N]
  precision_sum = np.sum(np.where(relevant, hits / ranks, 0.0), axis=1)
  return precision_sum / np.maximum(relevant.sum(axis=1), 1)


def retrieval_metrics(
  query_embeddings: np.ndarray,
  query_labels: np.ndarray,
  gallery: Index,
  ks: tuple[int, ...] = (1, 5, 10),
  *,
  exclude_same_id: np.ndarray | None = None,
) -> dict:
  """recall@k and mAP of queries against a gallery, in chunks of queries.

  Args:
    query_embeddings: float32 [M, D], unit rows.
    query_labels: int [M].
    gallery: the index searched.
    ks: the recall cut-offs.
    exclude_same_id: optional numpy unicode [M] query ids; a gallery item
      with the query's id is dropped from its ranking (for a query split
      that is also the gallery split).

  Returns:
    {"recall@k": float for each k, "map": float, "num_queries": M}.
  """
  hits = {k: 0.0 for k in ks}
  ap_sum = 0.0
  position = {}
  if exclude_same_id is not None:
    position = {str(g): j for j, g in enumerate(gallery.ids)}
  for start in range(0, len(query_labels), EVAL_CHUNK):
    stop = start + EVAL_CHUNK
    scores = query_embeddings[start:stop] @ gallery.embeddings.T  # [m, N]
    selves = None
    if exclude_same_id is not None:
      selves = _rank_self_last(scores, exclude_same_id[start:stop], position)
    relevant = relevance(scores, query_labels[start:stop], gallery.labels)
    if selves is not None:
      relevant[selves, -1] = False  # A query's own image is not a result.
    for k in ks:
      hits[k] += recall_at_k(relevant, k) * len(relevant)
    ap_sum += float(np.sum(average_precision(relevant)))
  count = len(query_labels)
  out = {f"recall@{k}": hits[k] / max(count, 1) for k in ks}
  out["map"] = ap_sum / max(count, 1)
  out["num_queries"] = count
  return out


def _rank_self_last(scores, query_ids, position) -> np.ndarray:
  """Sets each query's score for its own gallery image to -inf, in place.

  Args:
    scores: float32 [m, N].
    query_ids: numpy unicode [m].
    position: gallery id -> column.

  Returns:
    bool [m]: the rows whose own image is in the gallery (now ranked last).
  """
  selves = np.zeros(len(query_ids), bool)
  for row, qid in enumerate(query_ids):
    column = position.get(str(qid))
    if column is not None:
      scores[row, column] = -np.inf
      selves[row] = True
  return selves


def sample_queries(count: int, max_queries: int | None, seed: int = 0):
  """Sorted indices of a seeded random subset of `count` queries (all when
  max_queries is None or at least count): int [min(count, max_queries)]."""
  if max_queries is None or max_queries >= count:
    return np.arange(count)
  if max_queries < 1:
    raise ValueError(f"max_queries must be >= 1 or None, got {max_queries}")
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(count, size=max_queries, replace=False))


def evaluate(
  workdir: str,
  spec: str,
  *,
  gallery_split: str = "train",
  query_split: str = "test",
  ks: tuple[int, ...] = (1, 5, 10),
  max_queries: int | None = None,
  progress: bool = True,
) -> dict:
  """Retrieval quality: each query image searches the gallery split.

  Both splits are embedded through `build_index` (and so cached). With
  `max_queries`, a seeded random subset of the query split is used.

  Args:
    workdir: a trained jvision workdir.
    spec: the data spec.
    gallery_split: the split searched.
    query_split: the split the queries come from; if it is the gallery
      split, each query's own image is left out of its ranking.
    ks: recall cut-offs.
    max_queries: at most this many queries, or None for all.
    progress: show progress bars.

  Returns:
    {"recall@k" for each k, "map", "num_queries", "gallery_size", "spec",
    "gallery_split", "query_split", "step"}.
  """
  model = inference.load(workdir)
  gallery = build_index(
    workdir, spec, gallery_split, model=model, progress=progress
  )
  if not gallery.class_names:
    raise ValueError(
      f"search --eval scores retrieval by labels, and {spec} is unlabelled "
      "(no class folders); search it with --query=IMAGE instead"
    )
  queries = build_index(
    workdir, spec, query_split, model=model, progress=progress
  )
  chosen = sample_queries(len(queries), max_queries)
  metrics = retrieval_metrics(
    queries.embeddings[chosen],
    queries.labels[chosen],
    gallery,
    ks,
    exclude_same_id=(
      queries.ids[chosen] if query_split == gallery_split else None
    ),
  )
  return {
    **metrics,
    "gallery_size": len(gallery),
    "spec": spec,
    "gallery_split": gallery_split,
    "query_split": query_split,
    "step": gallery.step,
  }


# ---------------------------------------------------------------- printing


def format_result(result: dict) -> str:
  """The terminal table of a `search` result."""
  lines = [
    f"{result['query']}: top {len(result['results'])} of {result['spec']} "
    f"{result['split']} (checkpoint step {result['step']})",
    f"{'rank':>4}  {'score':>6}  {'class':<16} id",
  ]
  for r in result["results"]:
    lines.append(
      f"{r['rank']:>4}  {r['score']:>6.3f}  {r['class_name']:<16} {r['id']}"
    )
  lines.append(f"strip: {result['strip']}")
  return "\n".join(lines)


def format_evaluation(metrics: dict) -> str:
  """The terminal line of an `evaluate` result."""
  recalls = "  ".join(
    f"{key} {value:.4f}"
    for key, value in metrics.items()
    if key.startswith("recall@")
  )
  return (
    f"retrieval {metrics['spec']}: {metrics['num_queries']} "
    f"{metrics['query_split']} queries against {metrics['gallery_size']} "
    f"{metrics['gallery_split']} images: {recalls}  mAP {metrics['map']:.4f}"
  )
