"""A trained classifier as one ONNX file, preprocessing included.

`export_onnx(workdir, out)` writes a model that takes the run's uint8 images
[N, H, W, C] (NHWC, the run's size and channels) and returns float32
"logits" [N, K] and softmax "probabilities" [N, K]; preprocessing (the
run's channel order, mean and std) happens inside, so onnxruntime alone
serves it (`serve_example(summary)` fills in the path and shape):

  import json, numpy as np, onnxruntime as ort
  session = ort.InferenceSession("model.onnx")
  images = np.zeros((8, 28, 28, 1), np.uint8)  # your images: uint8 NHWC
  logits, probabilities = session.run(None, {"images": images})
  meta = session.get_modelmeta().custom_metadata_map
  names = json.loads(meta["class_names"])
  print([names[i] for i in probabilities.argmax(axis=1)])

The route: jax traces the inference function to a jaxpr, which jax2onnx
lowers to ONNX ops. The trace happens here rather than inside jax2onnx so
that its tracing-time patches of flax layers never see our modules, and
one primitive is rewritten on the way (see `_channel_first_max_pool`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from jvision import inference

OPSET = 17  # ONNX opset: onnxruntime >= 1.12 runs it.
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "probabilities")
BATCH_SYMBOL = "N"


def export_onnx(
  workdir: str, out: str, *, batch: int | None = None, force: bool = False
) -> dict:
  """Writes the classifier of a workdir's newest checkpoint as ONNX.

  Args:
    workdir: a finished supervised or fine-tuning run.
    out: the .onnx file to write.
    batch: a fixed batch size, or None for a dynamic batch dimension.
    force: overwrite `out` if it exists (else that is an error).

  Returns:
    The summary of `export_classifier`, with the workdir and step added.
  """
  model = inference.load(workdir)
  module = model.require_classifier()
  metadata = {
    "workdir": os.path.abspath(workdir),
    "step": str(model.step),
    "class_names": json.dumps(list(model.class_names)),
  }
  summary = export_classifier(
    module,
    model.variables,
    **model.preprocessing,
    image_shape=model.image_shape,
    out=out,
    batch=batch,
    force=force,
    metadata=metadata,
  )
  return {"workdir": workdir, "step": model.step, **summary}


def export_classifier(
  module,
  variables,
  *,
  mean: Sequence[float],
  std: Sequence[float],
  image_shape: Sequence[int],
  out: str,
  channel_order: str = "rgb",
  batch: int | None = None,
  force: bool = False,
  metadata: dict[str, str] | None = None,
) -> dict:
  """Writes uint8 images -> (logits, probabilities) of a flax classifier.

  Args:
    module: a jvision classifier (`__call__(x, *, train)` -> [N, K] logits).
    variables: its variables (params and, for batch norm, batch_stats).
    mean, std: per-channel normalisation in [0, 1] pixel units.
    channel_order: "rgb" or "bgr", see `augment.normalize`.
    image_shape: (H, W, C) of the images the network takes.
    out: the .onnx file to write.
    batch: a fixed batch size, or None for a dynamic batch dimension.
    force: overwrite `out` if it exists.
    metadata: strings stored in the model's metadata_props.

  Returns:
    path, opset, bytes, and the inputs' and outputs' names, dtypes and
    shapes (the dynamic batch dimension appears as "N").
  """
  _check_out(out, force)
  fn = inference_fn(
    module, variables, mean=mean, std=std, channel_order=channel_order
  )
  proto = to_onnx_proto(fn, image_shape=image_shape, batch=batch)
  if metadata:
    import onnx

    onnx.helper.set_model_props(proto, metadata)
  _write(proto, out)
  return _summary(proto, out)


def inference_fn(module, variables, *, mean, std, channel_order="rgb"):
  """uint8 [N, H, W, C] -> (logits, probabilities), both float32 [N, K]."""

  preprocessing = dict(mean=mean, std=std, channel_order=channel_order)

  def predict(images):
    logits = inference.logits_step(
      variables,
      {"image": images},
      apply_fn=module.apply,
      preprocessing=preprocessing,
    )  # [N, K]
    return logits, jax.nn.softmax(logits, axis=-1)

  return predict


def to_onnx_proto(fn, *, image_shape: Sequence[int], batch: int | None):
  """The ONNX ModelProto of `fn` on uint8 [batch, H, W, C] images."""
  jax2onnx = _import_jax2onnx()
  import onnx

  spec = _input_spec(image_shape, batch)
  closed = jax.make_jaxpr(fn)(spec)
  with _quiet("jax2onnx", "onnx_ir"), _restoring(jnp):
    proto = jax2onnx.to_onnx(
      _rewritten(closed),
      inputs=[spec],
      model_name="jvision_classifier",
      opset=OPSET,
      input_names=[INPUT_NAME],
      output_names=list(OUTPUT_NAMES),
    )
  onnx.checker.check_model(proto)
  return proto


def format_summary(summary: dict) -> str:
  """A few lines for the terminal: what was written and its signature."""

  def shapes(items):
    return ", ".join(
      f"{i['name']} {i['dtype']} [{', '.join(str(d) for d in i['shape'])}]"
      for i in items
    )

  return (
    f"exported {summary['workdir']} (step {summary['step']}) to "
    f"{summary['path']} ({summary['bytes'] / 1024:.0f} KiB, ONNX opset "
    f"{summary['opset']})\n  input:  {shapes(summary['inputs'])}\n"
    f"  output: {shapes(summary['outputs'])}\nserve it with onnxruntime:"
  )


def serve_example(summary: dict) -> str:
  """The onnxruntime code that serves an export, for its summary."""
  _, *image_shape = summary["inputs"][0]["shape"]
  shape = ", ".join(str(d) for d in (8, *image_shape))
  return "\n".join(
    [
      "import json, numpy as np, onnxruntime as ort",
      f"session = ort.InferenceSession({summary['path']!r})",
      f"images = np.zeros(({shape}), np.uint8)  # your images: uint8 NHWC",
      'logits, probabilities = session.run(None, {"images": images})',
      "meta = session.get_modelmeta().custom_metadata_map",
      'names = json.loads(meta["class_names"])',
      "print([names[i] for i in probabilities.argmax(axis=1)])",
    ]
  )


def _import_jax2onnx():
  try:
    import jax2onnx
  except ImportError as e:
    raise ImportError(
      "`jvision export` needs jax2onnx, onnx and onnxruntime: pip install "
      "onnx onnx-ir onnxruntime && pip install --no-deps jax2onnx==0.17.1 "
      "(its declared deps would downgrade orbax-checkpoint)"
    ) from e
  return jax2onnx


@contextlib.contextmanager
def _restoring(*modules):
  """Puts back module attributes that the converter replaced.

  jax2onnx 0.17.1 swaps in its own `jnp.cumsum` while tracing and leaves
  it there, and that one rejects `jnp.cumsum(x, 1)`: every later caller in
  the process (the audit's box sums, for one) would break.
  """
  saved = [(module, dict(vars(module))) for module in modules]
  try:
    yield
  finally:
    for module, attributes in saved:
      for name, value in attributes.items():
        if getattr(module, name, None) is not value:
          setattr(module, name, value)


@contextlib.contextmanager
def _quiet(*names: str):
  """Silences warnings of the converter's loggers.

  jax2onnx warns about each optional example plugin it cannot import
  (equinox, dm_pix), onnx_ir about shape constants it leaves untyped.
  """
  loggers = [logging.getLogger(name) for name in names]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    for logger, level in zip(loggers, levels, strict=True):
      logger.setLevel(level)


def _input_spec(image_shape, batch) -> jax.ShapeDtypeStruct:
  """uint8 [N, H, W, C]; N symbolic when `batch` is None."""
  if batch is None:
    (n,) = jax.export.symbolic_shape(BATCH_SYMBOL)
  elif batch < 1:
    raise ValueError(f"batch must be a positive size or None, got {batch}")
  else:
    n = batch
  return jax.ShapeDtypeStruct((n, *image_shape), jnp.uint8)


def _rewritten(closed: jex_core.ClosedJaxpr):
  """A function evaluating `closed` with NHWC max-pools made channel-first.

  jax2onnx lowers reduce_window_max over an [N, H, W, C] array to a MaxPool
  with four spatial dimensions, which onnxruntime rejects.
  """
  jaxpr = closed.jaxpr

  def fn(*args):
    env = dict(zip(jaxpr.constvars, closed.consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    for eqn in jaxpr.eqns:
      invals = [_read(env, v) for v in eqn.invars]
      env.update(zip(eqn.outvars, _apply(eqn, invals), strict=True))
    return [_read(env, v) for v in jaxpr.outvars]

  return fn


def _read(env, var):
  return var.val if isinstance(var, jex_core.Literal) else env[var]


def _apply(eqn, invals) -> list:
  """The outputs of one equation, rebound (or rewritten)."""
  if eqn.primitive.name == "reduce_window_max" and _is_nhwc_pool(eqn.params):
    return [_channel_first_max_pool(invals[0], **eqn.params)]
  # As jax.core.eval_jaxpr does it (jax 0.10).
  params = eqn.primitive.get_bind_params(eqn.params)
  with eqn.ctx.manager:
    outvals = eqn.primitive.bind(*invals, **params)
  return outvals if eqn.primitive.multiple_results else [outvals]


def _is_nhwc_pool(params) -> bool:
  """A 2D pool over [N, H, W, C]: size-1 windows on the batch and channels."""
  window, strides = params["window_dimensions"], params["window_strides"]
  padding = params["padding"]
  return (
    len(window) == 4
    and window[0] == window[3] == strides[0] == strides[3] == 1
    and tuple(padding[0]) == tuple(padding[3]) == (0, 0)
    and all(d == 1 for d in params["base_dilation"])
  )


def _channel_first_max_pool(
  x,
  *,
  window_dimensions,
  window_strides,
  padding,
  base_dilation,
  window_dilation,
):
  """reduce_window_max of [N, H, W, C] computed on [N * C, H, W].

  The result is the same; jax2onnx then emits a MaxPool whose spatial
  dimensions are (N * C, H, W) with a size-1 window on the first, which
  onnxruntime runs.
  """
  del base_dilation  # All ones (checked by `_is_nhwc_pool`).
  n, h, w, c = x.shape
  y = jnp.transpose(x, (0, 3, 1, 2)).reshape(n * c, h, w)  # [N * C, H, W]
  y = jax.lax.reduce_window(
    y,
    -jnp.inf,
    jax.lax.max,
    window_dimensions=(1, *window_dimensions[1:3]),
    window_strides=(1, *window_strides[1:3]),
    padding=((0, 0), *padding[1:3]),
    window_dilation=(1, *window_dilation[1:3]),
  )
  return jnp.transpose(y.reshape(n, c, *y.shape[1:]), (0, 2, 3, 1))


def _check_out(out: str, force: bool) -> None:
  if not out.endswith(".onnx"):
    raise ValueError(f"--out should name a .onnx file, got {out!r}")
  if os.path.exists(out) and not force:
    raise FileExistsError(
      f"{out} already exists; pass --force to overwrite it or choose "
      "another --out"
    )


def _write(proto, out: str) -> None:
  """Writes via a temporary file, so a failed export leaves no half file."""
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  tmp = f"{out}.tmp"
  try:
    with open(tmp, "wb") as f:
      f.write(proto.SerializeToString())
    os.replace(tmp, out)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _summary(proto, out: str) -> dict:
  return {
    "path": out,
    "opset": max(o.version for o in proto.opset_import if o.domain == ""),
    "bytes": os.path.getsize(out),
    "inputs": [_describe(v) for v in proto.graph.input],
    "outputs": [_describe(v) for v in proto.graph.output],
  }


def _describe(value) -> dict:
  """name, dtype and shape (ints, or names for dynamic dimensions)."""
  import onnx

  tensor = value.type.tensor_type
  shape = [d.dim_param or d.dim_value for d in tensor.shape.dim]
  dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type))
  return {"name": value.name, "dtype": dtype.name, "shape": shape}
