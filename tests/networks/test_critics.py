"""The critic's layers equal haiku's: the same parameters and outputs as hk.Conv2D and hk.Linear, and a scale divides
their weights."""

import dataclasses

import haiku as hk
import jax
import numpy as np
import pytest

from smoothrl.launch.run import config as config_lib
from smoothrl.networks import critics


@pytest.mark.parametrize(
  'kernel, stride, padding, shape',
  [
    (3, 1, 'VALID', (10, 10, 4)),
    (3, 1, 'SAME', (10, 10, 4)),
    (8, 4, 'VALID', (84, 84, 4)),
    (4, 2, 'VALID', (20, 20, 32)),
    (3, 2, 'SAME', (9, 11, 3)),
  ],
)
def test_patch_conv_equals_haiku_conv(kernel, stride, padding, shape):
  def net(impl):
    if impl == 'haiku':
      layer = lambda: hk.Conv2D(5, kernel, stride, padding=padding, name='conv')
    else:
      layer = lambda: critics.Conv2D(5, kernel, stride, padding, impl, name='conv')
    return hk.without_apply_rng(hk.transform(lambda x: layer()(x)))

  x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
  params = net('haiku').init(jax.random.PRNGKey(1), x)
  grad = lambda impl: jax.grad(lambda p: (net(impl).apply(p, x) ** 2).sum())(params)
  for impl in ('patches', 'xla'):
    jax.tree.map(np.testing.assert_array_equal, params, net(impl).init(jax.random.PRNGKey(1), x))
    np.testing.assert_allclose(net(impl).apply(params, x), net('haiku').apply(params, x), rtol=1e-5, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), grad(impl), grad('haiku'))


def test_linear_equals_haiku_linear():
  x = np.random.default_rng(0).normal(size=(3, 7)).astype(np.float32)
  ours = hk.without_apply_rng(hk.transform(lambda x: critics.Linear(5, name='fc')(x)))
  theirs = hk.without_apply_rng(hk.transform(lambda x: hk.Linear(5, name='fc')(x)))
  params = theirs.init(jax.random.PRNGKey(1), x)
  jax.tree.map(np.testing.assert_array_equal, params, ours.init(jax.random.PRNGKey(1), x))
  np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-6)


@pytest.mark.parametrize(
  'layer',
  [
    lambda: critics.Linear(5, name='l'),
    lambda: critics.Conv2D(5, 3, name='l'),
    lambda: critics.Conv2D(5, 3, impl='xla', name='l'),
  ],
)
def test_a_scale_divides_the_weights_not_the_bias(layer):
  x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype(np.float32)
  net = hk.without_apply_rng(hk.transform(lambda x, s: layer()(x, s)))
  params = net.init(jax.random.PRNGKey(1), x, None)
  params = jax.tree.map(lambda p: p + 0.5, params)  # a nonzero bias
  divided = {'l': dict(params['l'], w=params['l']['w'] / 2.5)}
  np.testing.assert_allclose(net.apply(params, x, 2.5), net.apply(divided, x, None), rtol=1e-5, atol=1e-6)
  assert not np.allclose(net.apply(params, x, 2.5), net.apply(params, x, None) / 2.5)


def test_atari_critic_scales_uint8_frames_to_the_unit_interval():
  """The Atari critic sees frames / 255, as the thesis' code (snrl's AtariNet) and Dopamine; MinAtar's are 0/1."""
  assert critics.ATARI_NETWORK.obs_scale == 1 / 255 and critics.NetworkConfig().obs_scale == 1.0
  for name in ('dqn-adam-atari', 'c51-atari'):
    assert config_lib.preset(name).network.obs_scale == 1 / 255, name
  assert config_lib.preset('dqn-minatar').network.obs_scale == 1.0
  scaled = critics.make_critic(critics.ATARI_NETWORK, 6)
  plain = critics.make_critic(dataclasses.replace(critics.ATARI_NETWORK, obs_scale=1.0), 6)
  frames = np.random.default_rng(0).integers(0, 256, size=(2, 84, 84, 4), dtype=np.uint8)
  params, state = plain.init(jax.random.PRNGKey(1), frames.astype(np.float32) / 255, True)
  q = np.asarray(scaled.apply(params, state, None, frames, False)[0])
  np.testing.assert_allclose(
    q, plain.apply(params, state, None, frames.astype(np.float32) / 255, False)[0], rtol=1e-5, atol=1e-6
  )
  unscaled = np.asarray(plain.apply(params, state, None, frames, False)[0])
  assert np.abs(unscaled - q).max() > 10 * np.abs(q).max()  # 0-255 inputs give outputs ~255 times larger
