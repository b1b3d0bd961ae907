"""Tests for smoothrl.gan.metrics and smoothrl.gan.mixtures against closed forms and brute force."""

from __future__ import annotations

import itertools
import math

import jax
import numpy as np
import pytest
import scipy.linalg

from smoothrl.gan import metrics, mixtures


def test_frechet_distance_closed_form_for_diagonal_covariances():
  rng = np.random.default_rng(0)
  mu1, mu2 = rng.standard_normal(5), rng.standard_normal(5)
  a, b = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
  assert metrics.frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances():
  rng = np.random.default_rng(1)
  x, y = rng.standard_normal((4, 4)), rng.standard_normal((4, 6))
  cov1, cov2 = x @ x.T + 0.1 * np.eye(4), y @ y.T / 6
  mu1, mu2 = rng.standard_normal(4), rng.standard_normal(4)
  root = np.real(scipy.linalg.sqrtm(cov1 @ cov2))
  expected = np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * root)
  assert metrics.frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-8)
  assert metrics.frechet_distance(mu2, cov2, mu1, cov1) == pytest.approx(expected, rel=1e-8)  # symmetric


def test_fid_proxy_fits_gaussians_to_features_and_states_its_counts():
  rng = np.random.default_rng(2)
  real, fake = rng.standard_normal((50, 3)), 2.0 + rng.standard_normal((40, 3))
  result = metrics.fid_proxy(real, fake)
  mu_r, cov_r = real.mean(0), np.cov(real, rowvar=False)
  mu_f, cov_f = fake.mean(0), np.cov(fake, rowvar=False)
  assert result.value == pytest.approx(metrics.frechet_distance(mu_r, cov_r, mu_f, cov_f), rel=1e-12)
  assert (result.num_real, result.num_fake, result.feature_dim, result.features) == (50, 40, 3, 'given features')

  def doubled(x):
    return 2 * np.asarray(x).reshape(len(x), -1)

  scaled = metrics.fid_proxy(real.reshape(50, 3, 1), fake.reshape(40, 3, 1), doubled)
  assert scaled.value == pytest.approx(4 * result.value, rel=1e-10) and scaled.features == 'doubled'
  assert 'fid_proxy' in str(scaled) and '40 samples vs 50 real' in str(scaled)
  with pytest.raises(ValueError, match='differ in size'):
    metrics.fid_proxy(real, fake[:, :2])


def _brute_force_mmd2(x, y):
  d = x.shape[1]
  k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3
  m, n = len(x), len(y)
  xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
  xy = sum(k(a, b) for a in x for b in y) / (m * n)
  return xx + yy - 2 * xy


def test_unbiased_mmd2_and_kid_proxy_against_brute_force():
  rng = np.random.default_rng(3)
  x, y = rng.standard_normal((6, 3)), 0.5 + rng.standard_normal((5, 3))
  assert metrics.mmd2_unbiased(x, y) == pytest.approx(_brute_force_mmd2(x, y), rel=1e-10)
  # Subsets are capped at the smaller set.
  kid = metrics.kid_proxy(x, y, num_subsets=1, subset_size=100)
  assert (kid.subset_size, kid.std, kid.num_real, kid.num_fake) == (5, 0.0, 6, 5)
  # Subsets holding every row: permutations of the full sets, which MMD² does not see.
  full = metrics.kid_proxy(x[:5], y, num_subsets=2, subset_size=5)
  assert full.value == pytest.approx(_brute_force_mmd2(x[:5], y), rel=1e-10) and full.std == pytest.approx(0.0)
  # Unbiased: the same distribution gives a mean near 0; a shifted one a clearly positive value.
  same = metrics.kid_proxy(rng.standard_normal((400, 4)), rng.standard_normal((400, 4)), num_subsets=5, subset_size=200)
  shifted = metrics.kid_proxy(
    rng.standard_normal((400, 4)), 1.0 + rng.standard_normal((400, 4)), num_subsets=5, subset_size=200
  )
  assert abs(same.value) < 0.05 < shifted.value
  assert 'kid_proxy' in str(shifted) and '5 subsets of 200' in str(shifted)


def test_mixtures_ring_and_grid_and_their_samples():
  ring = mixtures.ring()
  np.testing.assert_allclose(np.linalg.norm(ring.means, axis=1), 2.0, rtol=1e-6)
  np.testing.assert_allclose(ring.means[2], [0.0, 2.0], atol=1e-6)
  assert (ring.num_modes, ring.std) == (8, 0.02)
  grid = mixtures.grid()
  assert grid.num_modes == 25 and grid.std == 0.05
  assert sorted(set(grid.means[:, 0].tolist())) == [-4.0, -2.0, 0.0, 2.0, 4.0]
  x = np.asarray(jax.jit(lambda k: ring.sample(k, 4000))(jax.random.PRNGKey(0)))
  distances = np.linalg.norm(x[:, None] - ring.means[None], axis=-1)
  assert x.shape == (4000, 2) and np.all(distances.min(axis=1) < 5 * ring.std)
  counts = np.bincount(distances.argmin(axis=1), minlength=8)
  assert counts.min() > 4000 / 8 * 0.8
  assert np.std(x - ring.means[distances.argmin(axis=1)]) == pytest.approx(0.02, rel=0.05)
  with pytest.raises(ValueError, match='std'):
    mixtures.mixture(ring.means, 0.0)


def test_mode_coverage_on_hand_made_samples():
  ring = mixtures.ring()
  offset = np.asarray([0.05, 0.0])  # within 3σ = 0.06
  far = np.asarray([0.0, 0.07])  # beyond 3σ
  samples = np.concatenate(
    [np.repeat(ring.means[k : k + 1] + offset, 10, axis=0) for k in range(3)]
    + [np.repeat(ring.means[3:4] + far, 5, axis=0), np.zeros((5, 2))]
  )
  cov = metrics.mode_coverage(samples, ring)
  assert cov.counts.tolist() == [10, 10, 10, 0, 0, 0, 0, 0]
  assert (cov.modes_covered, cov.num_modes, cov.num_samples, cov.min_count) == (3, 8, 40, math.ceil(0.2 * 40 / 8))
  assert cov.high_quality_fraction == pytest.approx(30 / 40)
  assert metrics.mode_coverage(samples, ring, min_count=11).modes_covered == 0
  assert metrics.mode_coverage(samples, ring, num_std=4.0).counts.tolist() == [10, 10, 10, 5, 0, 0, 0, 0]
  grid = mixtures.grid()
  every = metrics.mode_coverage(np.repeat(grid.means, 4, axis=0), grid)
  assert (every.modes_covered, every.high_quality_fraction, every.min_count) == (25, 1.0, 1)
  half = metrics.mode_coverage(np.repeat(grid.means[:12], 8, axis=0), grid)
  assert half.modes_covered == 12 and half.min_count == math.ceil(0.2 * 96 / 25)
  # The default count: ⌈0.2 · 400 / 8⌉ = 10 high-quality samples, reached exactly by mode 2 and missed by mode 3.
  counts = [200, 185, 10, 5]
  uneven = np.concatenate([np.repeat(ring.means[k : k + 1], c, axis=0) for k, c in enumerate(counts)])
  cov = metrics.mode_coverage(uneven, ring)
  assert (cov.min_count, cov.modes_covered, cov.counts.tolist()[:4]) == (10, 3, counts)
  with pytest.raises(ValueError, match=r'samples must be \(N, 2\)'):
    metrics.mode_coverage(np.zeros((3, 3)), ring)
