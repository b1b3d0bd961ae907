"""Tests for smoothrl.gan.networks: shapes, layer specs, and SN's bound against exact SVDs of the conv operators."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.gan import networks
from smoothrl.networks import spectral, spectral_norm

# XLA's convolutions: quicker to compile than 'patches' (the same parameters and outputs).
SMALL_28 = networks.NetworkConfig(
  latent_dim=8, generator_channels=(8, 4), discriminator_channels=(4, 4, 8, 8), conv_impl='xla'
)
SMALL_8 = networks.NetworkConfig(
  data_shape=(8, 8, 1), latent_dim=4, generator_channels=(6, 4), discriminator_channels=(3, 4), conv_impl='xla'
)


def _operator_matrix(spec, w) -> np.ndarray:
  """A layer's bias-free operator as a dense matrix, from XLA's convolution of the standard basis."""
  if spec.kind == 'dense':
    return np.asarray(w, np.float64)
  n = math.prod(spec.input_shape)
  basis = jnp.eye(n, dtype=jnp.float32).reshape((n, *spec.input_shape))
  out = jax.lax.conv_general_dilated(
    basis, w, (spec.stride, spec.stride), spec.padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )
  return np.asarray(out.reshape(n, -1), np.float64)


def _svd_sigma(spec, w) -> float:
  return float(np.linalg.svd(_operator_matrix(spec, w), compute_uv=False)[0])


def test_dcgan_28_shapes_specs_and_ranges():
  nets = networks.make_networks(SMALL_28)
  g_params = nets.generator.init(jax.random.PRNGKey(0))
  d_params = nets.discriminator.init(jax.random.PRNGKey(1))
  x = nets.generator.apply(g_params, 3 * np.random.default_rng(2).normal(size=(3, 8)).astype(np.float32))
  assert x.shape == (3, 28, 28, 1) and float(np.max(np.abs(x))) <= 1.0
  assert nets.discriminator.apply(d_params, x).shape == (3,)
  assert {k: v['w'].shape for k, v in g_params.items()} == {
    'dense': (8, 7 * 7 * 8),
    'deconv_0': (4, 4, 4, 8),
    'deconv_1': (4, 4, 1, 4),
  }
  # 28 -> conv 3x3/1 -> 28 -> conv 4x4/2 -> 14 -> 3x3/1 -> 14 -> 4x4/2 -> 7, then the dense logit.
  expected = [
    ('conv_0', (28, 28, 1), 1),
    ('conv_1', (28, 28, 4), 2),
    ('conv_2', (14, 14, 4), 1),
    ('conv_3', (14, 14, 8), 2),
    ('out', (7 * 7 * 8,), 1),
  ]
  assert [(s.name, s.input_shape, s.stride) for s in nets.discriminator.specs] == expected
  weights = {k: v['w'].shape for k, v in d_params.items()}
  assert weights == {'conv_0': (3, 3, 1, 4), 'conv_1': (4, 4, 4, 4), 'conv_2': (3, 3, 4, 8), 'conv_3': (4, 4, 8, 8)} | {
    'out': (392, 1)
  }
  with pytest.raises(ValueError, match=r'discriminator takes a batch of shape \(N, 28, 28, 1\)'):
    nets.discriminator.apply(d_params, jnp.zeros((2, 8, 8, 1)))
  with pytest.raises(ValueError, match='generator takes a batch'):
    nets.generator.apply(g_params, jnp.zeros((2, 5)))


def test_mlp_pair_shapes():
  nets = networks.make_networks(networks.MIXTURE_NETWORK)
  g_params = nets.generator.init(jax.random.PRNGKey(0))
  d_params = nets.discriminator.init(jax.random.PRNGKey(1))
  x = nets.generator.apply(g_params, np.random.default_rng(2).normal(size=(5, 16)).astype(np.float32))
  assert x.shape == (5, 2) and nets.discriminator.apply(d_params, x).shape == (5,)
  assert [(s.name, s.input_shape) for s in nets.discriminator.specs] == [
    ('hidden_0', (2,)),
    ('hidden_1', (128,)),
    ('out', (128,)),
  ]
  assert networks.num_parameters(d_params) == 2 * 128 + 128 + 128 * 128 + 128 + 128 + 1
  # haiku's initialisation from one pooled draw: a normal truncated at ±2 standard deviations of 1/sqrt(fan_in)
  # (its standard deviation is 0.8796 of that), zero biases, and distinct draws for distinct layers.
  for params in (g_params, d_params):
    for layer in params.values():
      w, scale = np.asarray(layer['w']), 1 / np.sqrt(layer['w'].shape[0])
      assert np.max(np.abs(w)) <= 2 * scale * (1 + 1e-6) and not np.any(layer['b'])
      if w.size >= 1000:
        assert np.std(w) == pytest.approx(0.8796 * scale, rel=0.05)
  unit = lambda name: np.asarray(d_params[name]['w']).ravel() * np.sqrt(d_params[name]['w'].shape[0])
  assert not np.allclose(unit('hidden_0'), unit('hidden_1')[:256], atol=1e-3)


@pytest.fixture(scope='module')
def small_8():
  nets = networks.make_networks(SMALL_8)
  d_params = nets.discriminator.init(jax.random.PRNGKey(3))
  x = np.random.default_rng(4).normal(size=(6, 8, 8, 1)).astype(np.float32)
  return nets, d_params, x


def test_scales_divide_each_layer_as_dividing_its_weights(small_8):
  nets, d_params, x = small_8
  scales = {s.name: jnp.asarray(1.5 + i) for i, s in enumerate(nets.discriminator.specs)}
  divided = {name: dict(p, w=p['w'] / scales[name]) for name, p in d_params.items()}
  np.testing.assert_allclose(
    nets.discriminator.apply(d_params, x, scales), nets.discriminator.apply(divided, x), rtol=1e-5, atol=1e-6
  )


def test_sn_bounds_every_layer_by_one_against_the_svd_of_its_operator(small_8):
  nets, d_params, x = small_8
  specs = nets.discriminator.specs
  vectors = networks.initial_vectors(jax.random.PRNGKey(5), specs)
  assert {k: v.shape for k, v in vectors.items()} == {s.name: s.input_shape for s in specs}
  np.testing.assert_allclose([float(jnp.linalg.norm(v)) for v in vectors.values()], 1.0, rtol=1e-6)
  sigmas, _ = spectral.estimate(specs, d_params, vectors, 500)
  normalised = spectral_norm.normalise(d_params, sigmas, [s.name for s in specs], always=True)
  for spec in specs:
    exact = _svd_sigma(spec, d_params[spec.name]['w'])
    # Power iteration approaches σ from below: ‖Av‖ <= σ for a unit v.
    assert float(sigmas[spec.name]) <= exact * (1 + 1e-5)
    assert float(sigmas[spec.name]) == pytest.approx(exact, rel=1e-3)
    assert _svd_sigma(spec, normalised[spec.name]['w']) == pytest.approx(1.0, abs=1e-3), spec.name
    if spec.kind == 'conv':  # the operator norm, not the norm of the reshaped kernel
      w = np.asarray(d_params[spec.name]['w'], np.float64)
      reshaped = np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]
      assert abs(reshaped - exact) > 1e-2 * exact, spec.name
  # The normalised discriminator is (1 + tol)^L-Lipschitz (leaky ReLU is 1-Lipschitz): check on random pairs.
  y = x + 0.1 * np.random.default_rng(6).normal(size=x.shape).astype(np.float32)
  scales = spectral_norm.scales(sigmas, [s.name for s in specs], always=True)
  gap = jnp.abs(nets.discriminator.apply(d_params, x, scales) - nets.discriminator.apply(d_params, y, scales))
  distance = np.linalg.norm((x - y).reshape(x.shape[0], -1), axis=1)
  assert bool(np.all(np.asarray(gap) <= distance * (1 + 1e-3) ** len(specs)))
  # Without SN the raw discriminator is far from 1-Lipschitz in its layers.
  assert max(_svd_sigma(s, d_params[s.name]['w']) for s in specs) > 1.2


def test_invalid_configs_name_the_field():
  with pytest.raises(ValueError, match='divisible by 4'):
    networks.make_networks(networks.NetworkConfig(data_shape=(10, 10, 1)))
  with pytest.raises(ValueError, match='discriminator_channels'):
    networks.make_networks(networks.NetworkConfig(discriminator_channels=()))
  with pytest.raises(ValueError, match='leaky_slope'):
    networks.make_networks(networks.NetworkConfig(leaky_slope=1.5))
  with pytest.raises(ValueError, match=r"networks.kind 'gru'"):
    networks.make_networks(networks.NetworkConfig(kind='gru'))
  with pytest.raises(ValueError, match=r'data_shape must be \(D,\)'):
    networks.make_networks(networks.NetworkConfig(kind='mlp', data_shape=(2, 2)))
