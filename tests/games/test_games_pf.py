"""The game principal flow: α_PF(hH) against scipy's logm, the flow through the Euler iterates of a linear game,
the JVP series against the eigendecomposition, and the stability test |1 − hλ| < 1 with Eq 4.74's rate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from smoothrl import games
from smoothrl.games import drift, pf

EPS = 0.09


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


def test_pf_matrix_is_the_matrix_logarithm():
  rng = np.random.default_rng(1)
  hessian = rng.normal(size=(4, 4))
  h = 0.15
  got = jax.jit(pf.pf_matrix)(hessian, h)
  want = scipy.linalg.logm(np.eye(4) - h * hessian) @ np.linalg.inv(hessian) / h
  np.testing.assert_allclose(got.matrix, want, rtol=1e-10, atol=1e-12)
  assert float(got.condition) < 1e3


# Eq 4.23: f = −ε₁φ + θ, g = ε₂θ − φ on vector players (entrywise), a linear u = Aψ.
LINEAR = games.Game(
  lambda p, t: jnp.sum(EPS * p**2 / 2 - t * p),
  lambda p, t: jnp.sum(-EPS * t**2 / 2 + p * t),
)


@pytest.mark.parametrize('v_phi, v_theta', [(1.0, 1.0), (0.5, 1.5)])
def test_the_pf_passes_through_the_simultaneous_iterates_of_a_linear_game(v_phi, v_theta):
  h, n = 0.2, 10
  phi0, theta0 = np.array([1.0, -0.3]), np.array([0.5, 0.8])

  @jax.jit
  def run(v_phi, v_theta):
    update = games.make_update(LINEAR, h, v_phi=v_phi, v_theta=v_theta)
    iterates = games.rollout(update, update.init(phi0, theta0), n)
    field = pf.principal_field(LINEAR, h, v_phi=v_phi, v_theta=v_theta)
    series = pf.principal_field(LINEAR, h, method='series', terms=40, v_phi=v_phi, v_theta=v_theta)
    flow = drift.integrate(field, phi0, theta0, n * h, steps=20 * n, saves=n)
    return iterates, flow, field(phi0, theta0), series(phi0, theta0)

  iterates, flow, by_eig, by_series = run(v_phi, v_theta)
  np.testing.assert_allclose(flow[0], iterates.phi[1:], atol=1e-9)
  np.testing.assert_allclose(flow[1], iterates.theta[1:], atol=1e-9)
  np.testing.assert_allclose(np.stack(by_series), np.stack(by_eig), rtol=1e-12)


def test_pf_stability_of_the_linear_game_and_eq_4_74():
  h = 0.2
  hessian = jax.jit(lambda: pf.negative_jacobian(LINEAR, np.zeros(1), np.zeros(1)))()
  np.testing.assert_allclose(hessian, [[EPS, -1.0], [1.0, -EPS]])
  s = pf.pf_stability(hessian, h)
  # λ = ±i√(1 − ε²): simultaneous steps spiral out at any h (Figure 4.3a), |1 − hλ|² = 1 + h²(1 − ε²).
  np.testing.assert_allclose(np.sort(s.gd_factors), np.sqrt(1 + h**2 * (1 - EPS**2)) * np.ones(2), rtol=1e-14)
  assert not bool(s.stable) and np.all(np.asarray(s.max_learning_rates) == 0)
  np.testing.assert_allclose(s.rates, np.log(s.gd_factors) / h)
  # λ = x ± iy: stable iff h < 2x/(x² + y²), where the Euler map I − hH has spectral radius 1.
  x, y = 0.3, 0.8
  rotation = np.array([[x, -y], [y, x]])
  limit = 2 * x / (x**2 + y**2)
  np.testing.assert_allclose(pf.pf_stability(rotation, 0.5).max_learning_rates, [limit, limit], rtol=1e-14)
  assert bool(pf.pf_stability(rotation, 0.999 * limit).stable) and not bool(
    pf.pf_stability(rotation, 1.001 * limit).stable
  )
  radius = np.max(np.abs(np.linalg.eigvals(np.eye(2) - limit * rotation)))
  assert radius == pytest.approx(1.0, abs=1e-14)


def test_bad_pf_arguments_are_named():
  with pytest.raises(ValueError, match='square'):
    pf.pf_matrix(np.zeros((2, 3)), 0.1)
  with pytest.raises(ValueError, match='method'):
    pf.principal_field(LINEAR, 0.1, method='jordan')
  with pytest.raises(ValueError, match='terms'):
    pf.principal_field(LINEAR, 0.1, method='series', terms=0)
