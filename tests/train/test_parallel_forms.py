"""jit-8, pmap-8 and jit-1 train identically (config.parallel, 1 vs 8 devices).

Three steps of the real supervised, SimCLR and distillation steps of a
ResNet with batch norm, on 8 CPU devices (conftest) and on one: the same
losses and parameters, to float tolerance, for the same global batch.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config, tiny_simclr_config

from jvision import models, optim, parallel
from jvision.data import augment, simclr_augment
from jvision.train import distill, simclr, supervised
from jvision.train.state import create_train_state

pytestmark = pytest.mark.devices(8)
BATCH = 16
FORMS = [("jit", 8), ("pmap", 8), ("jit", 1)]


def _data():
  rng = np.random.default_rng(0)
  return {
    "image": rng.integers(0, 256, (BATCH, 16, 16, 1), dtype=np.uint8),
    "label": rng.integers(0, 10, (BATCH,), dtype=np.int32),
  }


def _lr():
  return optim.create_learning_rate_fn(
    base_learning_rate=0.1, num_train_steps=10, warmup_steps=0
  )


def _supervised(bn_axis_name):
  config = tiny_config(**{"model.name": "resnet_tiny"})
  model = models.create_model(
    "resnet_tiny", num_classes=10, bn_axis_name=bn_axis_name
  )
  state = create_train_state(
    config, model, image_shape=(16, 16, 1), learning_rate_fn=_lr()
  )
  step = functools.partial(
    supervised.train_step,
    learning_rate_fn=_lr(),
    preprocess=functools.partial(
      augment.train_preprocess,
      mean=(0.5,),
      std=(0.25,),
      crop_padding=2,
      flip=True,
    ),
    label_smoothing=0.1,
  )
  return state, step


def _simclr(bn_axis_name):
  config = tiny_simclr_config()
  model = simclr.build_model(config, 10, {"bn_axis_name": bn_axis_name})
  state = create_train_state(
    config, model, image_shape=(16, 16, 1), learning_rate_fn=_lr()
  )
  views = functools.partial(
    simclr_augment.two_views, config=config.augment, mean=(0.5,), std=(0.25,)
  )
  step = functools.partial(
    simclr.train_step,
    learning_rate_fn=_lr(),
    views=views,
    temperature=0.5,
    probe_weight=1.0,
  )
  return state, step


def _distill(bn_axis_name):
  """A CNN student learning a CNN teacher, half the labels shown: the
  labelled term's normalisation over devices (batch norm under pmap is the
  other two builds')."""
  del bn_axis_name  # the seed CNN has no batch norm
  student = models.create_model("cnn", num_classes=10)
  state = create_train_state(
    tiny_config(), student, image_shape=(16, 16, 1), learning_rate_fn=_lr()
  )
  teacher = models.create_model("cnn", num_classes=10)
  variables = teacher.init(
    jax.random.PRNGKey(1), np.zeros((1, 16, 16, 1), np.float32), train=False
  )
  preprocess = functools.partial(
    augment.train_preprocess,
    mean=(0.5,),
    std=(0.25,),
    crop_padding=2,
    flip=True,
  )

  def step(state, batch, constants, axis_name):
    labels = jnp.where(batch["label"] < 5, batch["label"], -1)  # [B]
    return distill.train_step(
      state,
      {**batch, "label": labels},
      constants,
      teacher_apply=teacher.apply,
      learning_rate_fn=_lr(),
      preprocess=preprocess,
      temperature=2.0,
      label_weight=0.5,
      axis_name=axis_name,
    )

  return state, step, variables


def _three_steps(build, form, num_devices):
  state, step, *constants = build(
    parallel.PMAP_AXIS if form == "pmap" else None
  )
  mesh = parallel.create_mesh(jax.devices()[:num_devices])
  compiled = parallel.compile_train_step(
    step, mesh, form=form, constants=constants[0] if constants else None
  )
  state = parallel.replicate(state, mesh)
  losses = []
  for _ in range(3):
    state, metrics = compiled(state, parallel.shard_batch(_data(), mesh))
    losses.append(float(metrics["loss"]))
  return losses, jax.device_get((state.params, state.batch_stats))


@pytest.mark.slow
@pytest.mark.parametrize(
  "build", [_supervised, _simclr, _distill], ids=["sup", "simclr", "distill"]
)
def test_jit8_pmap8_jit1_agree(build):
  assert jax.device_count() == 8
  runs = [_three_steps(build, form, n) for form, n in FORMS]
  (ref_losses, ref), others = runs[-1], runs[:-1]
  assert ref_losses[0] != ref_losses[2]  # it trains
  for (losses, tree), (form, n) in zip(others, FORMS, strict=False):
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, err_msg=form)
    for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(ref), strict=True):
      # Relative to the tensor's scale: sums reduced in another order
      # differ in the last bits, which near-zero elements would magnify.
      scale = max(np.max(np.abs(b)), 1e-12)
      assert np.max(np.abs(a - b)) <= 1e-5 * scale, (form, n)


def test_unknown_form_is_an_error():
  mesh = parallel.create_mesh(jax.devices()[:1])
  with pytest.raises(ValueError, match="config.parallel='vmap'; use one of"):
    parallel.compile_train_step(
      lambda s, b, axis_name: (s, {}), mesh, form="vmap"
    )
