"""Tests for smoothrl.curvature.density: Hutchinson's trace and stochastic Lanczos quadrature against exact spectra.

Two kinds of check: exact ones on a separable loss (diagonal Hessian), where every Rademacher probe gives the trace
and the moments exactly (Gaussian probes would not), and statistical ones on rotated spectra, with tolerances from
the estimator's variance (Var[vᵀMv] = 2 Σ_{i≠j} M_ij² for Rademacher v) and a fixed key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.curvature import density


def _rotation(seed: int, n: int) -> np.ndarray:
  q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
  return q


def _quadratic_loss(theta: jax.Array, a: jax.Array) -> jax.Array:
  return 0.5 * theta @ a @ theta


def _separable_loss(params: dict[str, jax.Array], scale: dict[str, jax.Array]) -> jax.Array:
  """Σ s_i cosh(θ_i) over a pytree: H = diag(s_i cosh θ_i), not constant in θ."""
  return sum(jnp.sum(s * jnp.cosh(p)) for p, s in zip(jax.tree.leaves(params), jax.tree.leaves(scale)))


def _separable(seed: int) -> tuple[dict[str, jax.Array], dict[str, jax.Array], np.ndarray]:
  rng = np.random.default_rng(seed)
  params = {'a': jnp.asarray(rng.uniform(-1, 1, (4, 5)), jnp.float32), 'b': jnp.asarray(rng.uniform(-1, 1, 10))}
  scale = {'a': jnp.asarray(rng.uniform(0.5, 1.5, (4, 5)), jnp.float32), 'b': jnp.asarray(rng.uniform(-1, 1, 10))}
  diagonal = np.concatenate(
    [np.asarray(scale[k], np.float64).ravel() * np.cosh(np.asarray(params[k], np.float64).ravel()) for k in 'ab']
  )
  return params, scale, diagonal


def _rademacher_std(m: np.ndarray) -> float:
  """The standard deviation of vᵀMv for one Rademacher probe v and symmetric M."""
  off = m - np.diag(np.diag(m))
  return float(np.sqrt(2 * np.sum(off**2)))


def test_hutchinson_is_exact_on_a_diagonal_hessian():
  params, scale, diagonal = _separable(0)
  run = jax.jit(lambda p, s, key: density.hutchinson_trace(_separable_loss, p, s, key=key, num_probes=8))
  estimate = run(params, scale, jax.random.key(0))
  np.testing.assert_allclose(float(estimate.value), diagonal.sum(), rtol=1e-5)
  assert float(estimate.stderr) < 1e-5 * np.abs(diagonal).sum()
  assert int(estimate.num_matvecs) == 8


def test_hutchinson_matches_the_trace_within_its_standard_error():
  n, num_probes = 40, 400
  rng = np.random.default_rng(1)
  b = rng.standard_normal((n, n))
  a = b @ b.T / n + np.diag(rng.uniform(0, 2, n))
  run = jax.jit(
    lambda theta, a, key: density.hutchinson_trace(_quadratic_loss, theta, a, key=key, num_probes=num_probes)
  )
  estimate = run(jnp.zeros(n), jnp.asarray(a, jnp.float32), jax.random.key(2))
  sigma = _rademacher_std(a) / np.sqrt(num_probes)
  assert abs(float(estimate.value) - np.trace(a)) < 4 * sigma
  np.testing.assert_allclose(float(estimate.stderr), sigma, rtol=0.2)  # the reported error is the true one
  assert sigma < 0.05 * np.trace(a)  # and small enough for the check above to mean something


CENTRES, COUNTS = np.array([-1.0, 2.0, 5.0]), np.array([10, 30, 20])
NUM_PROBES, DEPTH = 10, 16


def _tree_quadratic_loss(params: dict[str, jax.Array], a: jax.Array) -> jax.Array:
  """½θᵀAθ with θ = ravel_pytree(params): 60 parameters in two leaves."""
  theta = jnp.concatenate([params['u'], params['w'].ravel()])
  return 0.5 * theta @ a @ theta


@jax.jit
def _slq(a: jax.Array, key: jax.Array):
  params = {'u': jnp.zeros(20), 'w': jnp.zeros((8, 5))}
  spectrum = density.spectral_density(
    _tree_quadratic_loss,
    params,
    a,
    key=key,
    num_probes=NUM_PROBES,
    krylov_depth=DEPTH,
    grid=np.linspace(-4.0, 8.0, 601),
    width=0.15,
  )
  return spectrum, density.trace_of_function(spectrum, lambda t: t), density.trace_of_function(spectrum, jnp.square)


@pytest.fixture(scope='module')
def clusters():
  """Three well-separated clusters, 10 values near −1, 30 near 2 and 20 near 5, as a diagonal H and rotated."""
  rng = np.random.default_rng(5)
  spectrum = np.concatenate([c + rng.uniform(-0.05, 0.05, m) for c, m in zip(CENTRES, COUNTS)])
  q = _rotation(6, spectrum.size)
  a = (q * spectrum) @ q.T
  diagonal = _slq(jnp.asarray(np.diag(spectrum), jnp.float32), jax.random.key(8))
  rotated = _slq(jnp.asarray(a, jnp.float32), jax.random.key(7))
  return spectrum, a, diagonal, rotated


def test_slq_moments_are_exact_per_probe_on_a_diagonal_hessian(clusters):
  """With H diagonal and v Rademacher, vᵀH^p v/‖v‖² = Σ λ_i^p / n for every probe, and Gauss quadrature on m
  Lanczos steps reproduces it for p ≤ 2m − 1 (the Krylov space is nearly invariant here, so also the dropped steps
  are exercised)."""
  spectrum, _, (result, trace, frobenius), _ = clusters
  nodes, weights = np.asarray(result.nodes, np.float64), np.asarray(result.weights, np.float64)
  assert nodes.shape == weights.shape == (NUM_PROBES, DEPTH)
  for p in range(7):
    per_probe = np.nansum(weights * nodes**p, axis=1)
    np.testing.assert_allclose(per_probe, np.mean(spectrum**p), rtol=1e-4, err_msg=f'moment {p}')
  np.testing.assert_allclose(float(trace), spectrum.sum(), rtol=1e-5)
  np.testing.assert_allclose(float(frobenius), np.sum(spectrum**2), rtol=1e-5)
  assert int(result.num_params) == 60 and int(result.num_matvecs) == NUM_PROBES * DEPTH


def test_slq_density_integrates_to_one_and_peaks_at_the_clusters(clusters):
  spectrum, _, _, (result, _, _) = clusters
  grid, phi = np.asarray(result.grid, np.float64), np.asarray(result.density, np.float64)
  np.testing.assert_allclose(np.trapezoid(phi, grid), 1, atol=1e-3)
  np.testing.assert_allclose(np.asarray(result.weights).sum(axis=1), 1, atol=1e-5)
  peaks = grid[1:-1][(phi[1:-1] > phi[:-2]) & (phi[1:-1] > phi[2:]) & (phi[1:-1] > 0.05 * phi.max())]
  assert peaks.size == 3, peaks
  np.testing.assert_allclose(peaks, CENTRES, atol=0.1)
  for c, m in zip(CENTRES, COUNTS):
    near = (grid > c - 1) & (grid < c + 1)
    np.testing.assert_allclose(np.trapezoid(phi[near], grid[near]), m / spectrum.size, atol=0.08)


def test_slq_moments_match_the_exact_moments(clusters):
  spectrum, a, _, (result, trace, _) = clusters
  nodes, weights = np.asarray(result.nodes, np.float64), np.asarray(result.weights, np.float64)
  for p in range(1, 4):
    estimate = np.mean(np.nansum(weights * nodes**p, axis=1))
    exact = np.mean(spectrum**p)
    sigma = _rademacher_std(np.linalg.matrix_power(a, p)) / spectrum.size / np.sqrt(NUM_PROBES)
    assert abs(estimate - exact) < 4 * sigma + 1e-4 * abs(exact), (p, estimate, exact, sigma)
  assert abs(float(trace) - spectrum.sum()) < 4 * _rademacher_std(a) / np.sqrt(NUM_PROBES)


def test_gaussian_density_is_the_weighted_mixture():
  nodes = jnp.asarray([[0.0, 1.0, jnp.nan], [2.0, 0.0, 0.0]])
  weights = jnp.asarray([[0.25, 0.75, 0.0], [1.0, 0.0, 0.0]])
  t = np.array([-0.5, 0.0, 0.7, 2.0])
  got = np.asarray(jax.jit(density.gaussian_density)(nodes, weights, jnp.asarray(t), 0.5))
  normal = lambda t, mu: np.exp(-0.5 * ((t - mu) / 0.5) ** 2) / (0.5 * np.sqrt(2 * np.pi))
  expected = 0.5 * (0.25 * normal(t, 0) + 0.75 * normal(t, 1) + normal(t, 2))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_bad_input():
  loss = lambda p: jnp.sum(p**2)
  theta, key = jnp.ones(4), jax.random.key(0)
  with pytest.raises(ValueError, match='num_probes'):
    density.hutchinson_trace(loss, theta, key=key, num_probes=0)
  with pytest.raises(ValueError, match='PRNG'):
    density.hutchinson_trace(loss, theta, key=None, num_probes=2)
  with pytest.raises(ValueError, match='real floating point'):
    density.hutchinson_trace(loss, jnp.arange(4), key=key, num_probes=2)
  spectral = lambda **kw: density.spectral_density(
    loss, theta, **{'key': key, 'num_probes': 2, 'krylov_depth': 2, 'grid': jnp.zeros(3), 'width': 0.1, **kw}
  )
  with pytest.raises(ValueError, match='krylov_depth'):
    spectral(krylov_depth=5)
  with pytest.raises(ValueError, match='grid'):
    spectral(grid=jnp.zeros((2, 2)))
  with pytest.raises(ValueError, match='width'):
    spectral(width=0.0)
  with pytest.raises(ValueError, match='num_probes'):
    spectral(num_probes=1.5)
