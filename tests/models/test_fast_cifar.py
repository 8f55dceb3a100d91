"""Tests for jvision/models/fast_cifar.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jvision import configs_io, demo, models
from jvision.models.fast_cifar import FastCIFARNet, global_max_pool


def _init(model, shape=(2, 32, 32, 3)):
  x = jax.random.normal(jax.random.key(1), shape)
  return x, model.init(jax.random.key(0), x, train=False)


def test_param_count_by_hand():
  # stem 2*2*3*24 + 24; block convs 9 * (24*64 + 64*64 + 64*256 + 3*256*256);
  # batch-norm biases 2 * (64 + 256 + 256); head 256 * 10.
  expected = 312 + 9 * (1536 + 4096 + 16384 + 3 * 65536) + 1152 + 2560
  assert expected == 1_971_640
  variables = jax.eval_shape(
    lambda: _init(models.create_model("fast_cifar", num_classes=10))[1]
  )
  assert models.count_params(variables["params"]) == expected


def test_param_count_of_widths_16_32_64():
  # stem 2*2*1*8 + 8; convs 9 * (8*16 + 16*16 + 16*32 + 32*32 + 32*64 +
  # 64*64); batch-norm biases 2 * (16 + 32 + 64); head 64 * 10.
  expected = 40 + 9 * 8064 + 224 + 640
  assert expected == 73_480
  model = models.create_model(
    "fast_cifar", num_classes=10, widths=(16, 32, 64), stem_width=8
  )
  variables = jax.eval_shape(lambda: _init(model, (2, 28, 28, 1))[1])
  assert models.count_params(variables["params"]) == expected


def test_param_count_of_the_fashion_mnist_demo_network():
  # stem 2*2*1*8 + 8; convs 9 * (8*16 + 16*16 + 16*32 + 32*32); batch-norm
  # biases 2 * (16 + 32); head (6*6*32) * 10 on the flattened 28 -> 27 ->
  # 13 -> 6 map.
  expected = 40 + 9 * 1920 + 96 + 1152 * 10
  assert expected == 28_936
  config = configs_io.load_config_file(
    f"{demo.experiments_dir()}/{demo.PRETRAIN_CONFIG}"
  )
  model = models.create_model(
    config.model.name, num_classes=10, **models.config_kwargs(config.model)
  )
  variables = jax.eval_shape(lambda: _init(model, (2, 28, 28, 1))[1])
  assert models.count_params(variables["params"]) == expected


def test_flattened_features_are_the_last_map():
  x, variables = _init(FastCIFARNet(widths=(4, 8), pool="flatten"))
  net = FastCIFARNet(num_classes=0, widths=(4, 8), pool="flatten")
  features, state = net.apply(
    variables, x, train=False, capture_intermediates=True
  )
  # The last map: GELU of the last batch norm's output, 32 -> 31 -> 15 -> 7.
  last = jax.nn.gelu(state["intermediates"]["block2_bn2"]["__call__"][0])
  assert last.shape == (2, 7, 7, 8) and features.shape == (2, 7 * 7 * 8)
  np.testing.assert_array_equal(features, last.reshape(2, -1))
  pooled = FastCIFARNet(num_classes=0, widths=(4, 8)).apply(
    variables, x, train=False
  )
  np.testing.assert_allclose(pooled, last.max(axis=(1, 2)), rtol=1e-6)


def test_an_unknown_pool_names_the_value_and_the_choices():
  with pytest.raises(ValueError, match=r"model.pool='mean'.*'max', 'flatten'"):
    _init(FastCIFARNet(pool="mean"))


def test_batch_norms_have_no_scale_and_the_head_no_bias():
  _, variables = _init(FastCIFARNet(num_classes=10))
  params = variables["params"]
  assert set(params["block1_bn1"]) == {"bias"}
  assert set(params["head"]) == {"kernel"}
  assert set(variables["batch_stats"]["block3_bn2"]) == {"mean", "var"}


def test_features_and_scaled_logits():
  x, variables = _init(FastCIFARNet(num_classes=10))
  features, state = FastCIFARNet(num_classes=0).apply(
    variables, x, train=False, mutable=["intermediates"]
  )
  assert features.shape == (2, 256)
  np.testing.assert_array_equal(
    state["intermediates"]["pre_logits"][0], features
  )
  logits = FastCIFARNet(num_classes=10).apply(variables, x, train=False)
  unscaled = features @ variables["params"]["head"]["kernel"]
  np.testing.assert_allclose(logits, unscaled / 9, rtol=1e-5, atol=1e-6)


def test_running_statistics_move_with_momentum_0_4():
  x, variables = _init(FastCIFARNet(num_classes=10))
  model = FastCIFARNet(num_classes=10)

  def update(v):
    _, updates = model.apply(v, x, train=True, mutable=["batch_stats"])
    return {**v, "batch_stats": updates["batch_stats"]}

  once = update(variables)
  twice = update(once)
  # From zero: m1 = 0.6 b, m2 = 0.4 m1 + 0.6 b = 1.4 m1 (b: batch mean).
  m1 = once["batch_stats"]["block2_bn1"]["mean"]
  m2 = twice["batch_stats"]["block2_bn1"]["mean"]
  np.testing.assert_allclose(m2, 1.4 * m1, rtol=1e-4, atol=1e-7)


def test_global_max_pool_values_and_nan():
  x = jax.random.normal(jax.random.key(2), (2, 3, 3, 5))
  np.testing.assert_array_equal(global_max_pool(x), jnp.max(x, axis=(1, 2)))
  poisoned = x.at[1, 2, 0, 3].set(jnp.nan)
  out = np.asarray(global_max_pool(poisoned))
  assert np.isnan(out[1, 3]) and np.isfinite(out[0]).all()
