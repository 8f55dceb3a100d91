"""Tests for `jvision.losses.nt_xent` (SimCLR's NT-Xent loss).

Runs on the 8 fake CPU devices that tests/conftest.py asks XLA for.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec

from jvision import losses, parallel

NUM_DEVICES = 8
AXIS = "batch"


def _projections(n, d, seed=0):
  """Two [n, d] float32 arrays of random projections (not unit norm)."""
  rng = np.random.default_rng(seed)
  z1 = rng.normal(size=(n, d)).astype(np.float32)  # [n, d]
  z2 = rng.normal(size=(n, d)).astype(np.float32)  # [n, d]
  return z1, z2


def _reference_nt_xent(z1, z2, temperature, decoupled=False):
  """Float64 NumPy NT-Xent with an explicit loop over the 2N anchors (with
  `decoupled`, the positive is left out of each denominator: DCL)."""
  views = np.concatenate([z1, z2]).astype(np.float64)  # [2N, D]
  views /= np.linalg.norm(views, axis=1, keepdims=True)
  num_views = len(views)
  num_images = num_views // 2
  total = 0.0
  for anchor in range(num_views):
    positive = (anchor + num_images) % num_views
    others = [k for k in range(num_views) if k != anchor]
    if decoupled:
      others.remove(positive)
    logits = np.array([views[anchor] @ views[k] for k in others]) / temperature
    log_denominator = np.logaddexp.reduce(logits)
    positive_logit = views[anchor] @ views[positive] / temperature
    total += log_denominator - positive_logit
  return total / num_views


def _loss(z1, z2, temperature=0.5, axis_name=None, decoupled=False):
  return losses.nt_xent(
    z1=z1,
    z2=z2,
    temperature=temperature,
    decoupled=decoupled,
    axis_name=axis_name,
  )


# Compiled once per shape and temperature: faster than eager dispatch.
_loss_and_grads = jax.jit(
  jax.value_and_grad(_loss, argnums=(0, 1)), static_argnums=(2,)
)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_matches_optax_ntxent(temperature):
  # optax takes all 2N views stacked, [2N, D], and labels [2N] that are equal
  # exactly for the two views of one image.
  z1, z2 = _projections(6, 5)
  embeddings = jnp.concatenate([z1, z2])  # [2N, D]
  labels = jnp.concatenate([jnp.arange(6), jnp.arange(6)])  # [2N]
  expected = optax.losses.ntxent(embeddings, labels, temperature)
  loss = _loss(z1, z2, temperature)
  assert loss.shape == () and loss.dtype == jnp.float32
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize("temperature", [0.07, 0.5, 2.0])
def test_matches_float64_loop_reference(temperature):
  z1, z2 = _projections(7, 4, seed=1)
  np.testing.assert_allclose(
    _loss(z1, z2, temperature),
    _reference_nt_xent(z1, z2, temperature),
    rtol=1e-5,
  )


def test_hand_computed_orthogonal_views():
  # Views (z1 then z2) are e1, e2, e1, e2 (the scales must not matter).
  # Anchor e1 sees e2 (cos 0), its positive e1 (cos 1) and e2 (cos 0), so
  # with t = 0.5 its loss is -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2); all
  # four anchors are alike.
  z1 = jnp.array([[3.0, 0.0], [0.0, 1.0]])
  z2 = jnp.array([[0.5, 0.0], [0.0, 2.0]])
  np.testing.assert_allclose(
    _loss(z1, z2, 0.5), math.log(1.0 + 2.0 * math.exp(-2.0)), rtol=1e-6
  )
  # Swapping the second views (e2, e1) puts every positive at cos 0 and one
  # negative at cos 1: the loss is -log(1 / (1 + 1 + e^2)) = log(2 + e^2).
  np.testing.assert_allclose(
    _loss(z1, z2[::-1], 0.5), math.log(2.0 + math.exp(2.0)), rtol=1e-6
  )


@pytest.mark.parametrize("temperature", [0.1, 1.0])
def test_decoupled_matches_float64_loop_reference(temperature):
  z1, z2 = _projections(7, 4, seed=10)
  loss = _loss(z1, z2, temperature, decoupled=True)
  np.testing.assert_allclose(
    loss, _reference_nt_xent(z1, z2, temperature, decoupled=True), rtol=1e-5
  )
  # Without the positive in the denominator the loss is lower: the
  # coupled loss is the decoupled one plus log(1 + p / sum of negatives).
  assert loss < _loss(z1, z2, temperature)


def test_decoupled_hand_computed_orthogonal_views():
  # Views e1, e2, e1, e2 as above: anchor e1's negatives are two e2 (cos 0)
  # and its positive is e1 (cos 1), so with t = 0.5 its loss is
  # log(e^0 + e^0) - 2 = log 2 - 2; it can go below zero, unlike NT-Xent.
  z1 = jnp.array([[3.0, 0.0], [0.0, 1.0]])
  z2 = jnp.array([[0.5, 0.0], [0.0, 2.0]])
  np.testing.assert_allclose(
    _loss(z1, z2, 0.5, decoupled=True), math.log(2.0) - 2.0, rtol=1e-6
  )


def test_bfloat16_inputs_are_computed_in_float32():
  z1, z2 = _projections(5, 8, seed=2)
  z1, z2 = jnp.asarray(z1, jnp.bfloat16), jnp.asarray(z2, jnp.bfloat16)
  loss = _loss(z1, z2, 0.2)
  assert loss.dtype == jnp.float32
  reference = _reference_nt_xent(
    np.asarray(z1, np.float64), np.asarray(z2, np.float64), 0.2
  )
  np.testing.assert_allclose(loss, reference, rtol=1e-5)


def _single_device(z1, z2):
  return _loss_and_grads(z1, z2)


@pytest.mark.devices(8)
def test_jit_over_8_devices_equals_single_device():
  z1, z2 = _projections(16, 8, seed=3)
  expected_loss, expected_grads = _single_device(z1, z2)
  mesh = parallel.create_mesh()
  assert mesh.devices.size == NUM_DEVICES

  def step(state, batch):
    del state  # Nothing replicated is needed.
    return _loss_and_grads(batch["z1"], batch["z2"])

  batch = parallel.shard_batch({"z1": z1, "z2": z2}, mesh)
  assert batch["z1"].addressable_shards[0].data.shape == (2, 8)
  loss, grads = parallel.jit_data_parallel(step, mesh)({}, batch)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
  for grad, expected in zip(grads, expected_grads, strict=True):
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
  "seed, temperature, decoupled", [(4, 0.5, False), (11, 0.2, True)]
)
def test_shard_map_over_8_devices_equals_single_device(
  seed, temperature, decoupled
):
  # shard_map tracks which values vary over the mesh axis, so the pmean at
  # the end of nt_xent transposes to a split of the cotangent and the
  # gradient of a local shard is exactly that of the global loss.
  z1, z2 = _projections(16, 8, seed=seed)
  single = functools.partial(
    _loss, temperature=temperature, decoupled=decoupled
  )
  expected_loss, expected_grads = jax.value_and_grad(single, argnums=(0, 1))(
    z1, z2
  )
  mesh = parallel.create_mesh()
  sharded = PartitionSpec(parallel.DATA_AXIS)
  per_device = functools.partial(single, axis_name=parallel.DATA_AXIS)
  mapped = jax.shard_map(
    jax.value_and_grad(per_device, argnums=(0, 1)),
    mesh=mesh,
    in_specs=(sharded, sharded),
    out_specs=(PartitionSpec(), (sharded, sharded)),
  )
  loss, grads = jax.jit(mapped)(z1, z2)
  np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
  for grad, expected in zip(grads, expected_grads, strict=True):
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.devices(8)
def test_pmap_over_8_devices_equals_single_device():
  z1, z2 = _projections(16, 8, seed=5)
  expected_loss, expected_grads = _single_device(z1, z2)
  per_device = functools.partial(_loss, axis_name=AXIS)
  p_loss_and_grads = jax.pmap(
    jax.value_and_grad(per_device, argnums=(0, 1)), axis_name=AXIS
  )
  loss, grads = p_loss_and_grads(
    z1.reshape(NUM_DEVICES, 2, 8), z2.reshape(NUM_DEVICES, 2, 8)
  )
  # Every device returns the global mean over all 32 anchors.
  np.testing.assert_allclose(
    loss, np.full(NUM_DEVICES, expected_loss), rtol=1e-5
  )
  # pmap differentiates the sum over devices of each device's output: the
  # pmean transposes to a psum, so with 8 devices all returning the global
  # loss L, the gradient of a local shard is 8 dL/dz. The sum over the
  # devices that use each row comes from all_gather's transpose.
  for grad, expected in zip(grads, expected_grads, strict=True):
    np.testing.assert_allclose(
      grad.reshape(16, 8) / NUM_DEVICES, expected, rtol=1e-5, atol=1e-7
    )


@pytest.mark.devices(8)
def test_pmap_parameter_gradient_equals_single_device():
  # The training pattern of the pmap path (Flax imagenet): replicated
  # parameters, local gradients, then pmean. With a linear projection head
  # the averaged gradient is exactly the single-device one.
  rng = np.random.default_rng(6)
  head = rng.normal(size=(6, 4)).astype(np.float32)  # [D_in, D]
  x1 = rng.normal(size=(16, 6)).astype(np.float32)  # [N, D_in]
  x2 = rng.normal(size=(16, 6)).astype(np.float32)  # [N, D_in]

  def head_loss(w, x1, x2, axis_name=None):
    return _loss(x1 @ w, x2 @ w, 0.3, axis_name=axis_name)

  expected_loss, expected_grad = jax.value_and_grad(head_loss)(head, x1, x2)

  def p_step(w, x1, x2):
    loss, grad = jax.value_and_grad(head_loss)(w, x1, x2, axis_name=AXIS)
    return loss, jax.lax.pmean(grad, AXIS)

  loss, grad = jax.pmap(p_step, axis_name=AXIS, in_axes=(None, 0, 0))(
    head, x1.reshape(NUM_DEVICES, 2, 6), x2.reshape(NUM_DEVICES, 2, 6)
  )
  np.testing.assert_allclose(
    loss, np.full(NUM_DEVICES, expected_loss), rtol=1e-5
  )
  for device_grad in grad:
    np.testing.assert_allclose(device_grad, expected_grad, rtol=1e-5, atol=1e-7)


def _assert_finite(z1, z2, temperature):
  loss, grads = _loss_and_grads(z1, z2, temperature)
  assert np.isfinite(loss)
  for grad in grads:
    assert np.all(np.isfinite(grad))
  return loss, grads


@pytest.mark.parametrize("temperature", [0.01, 10.0])
def test_gradients_finite_at_extreme_temperatures(temperature):
  z1, z2 = _projections(8, 4, seed=7)
  loss, grads = _assert_finite(z1, z2, temperature)
  np.testing.assert_allclose(
    loss, _reference_nt_xent(z1, z2, temperature), rtol=1e-5
  )
  assert any(np.abs(grad).max() > 0 for grad in grads)


@pytest.mark.parametrize("temperature", [0.01, 10.0])
def test_identical_and_collinear_projections(temperature):
  # All 2N = 8 views equal: each anchor has 7 candidates of equal logit, one
  # the positive, so the loss is log 7 however cold the temperature.
  same = jnp.ones((4, 3))
  loss, _ = _assert_finite(same, same, temperature)
  np.testing.assert_allclose(loss, math.log(7.0), rtol=1e-6)
  # Collinear views of both signs, and a zero row (normalised to zero).
  scales = jnp.array([[1.0], [-2.0], [0.5], [3.0]])  # [N, 1]
  direction = jnp.array([[1.0, -1.0, 2.0]])  # [1, D]
  _assert_finite(scales * direction, -scales * direction, temperature)
  z1, z2 = _projections(4, 3, seed=8)
  _assert_finite(jnp.asarray(z1).at[0].set(0.0), z2, temperature)


def test_invariant_to_scale_and_symmetric_in_the_views():
  z1, z2 = _projections(6, 5, seed=9)
  loss, (grad1, grad2) = _loss_and_grads(z1, z2)
  row_scales = np.array([[1e-3], [0.1], [1.0], [7.0], [1e2], [1e3]])  # [N, 1]
  np.testing.assert_allclose(_loss(z1 * row_scales, z2 * 1e3), loss, rtol=1e-5)
  swapped_loss, (swapped1, swapped2) = _loss_and_grads(z2, z1)
  np.testing.assert_allclose(swapped_loss, loss, rtol=1e-6)
  np.testing.assert_allclose(swapped1, grad2, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(swapped2, grad1, rtol=1e-5, atol=1e-7)


def test_rejects_mismatched_views_and_bad_temperature():
  z1, z2 = _projections(4, 3)
  with pytest.raises(ValueError, match=r"\(4, 3\) and \(3, 3\)"):
    _loss(z1, z2[:3])
  with pytest.raises(ValueError, match="temperature must be positive"):
    _loss(z1, z2, 0.0)
  with pytest.raises(TypeError):
    losses.nt_xent(z1, z2, 0.5)
