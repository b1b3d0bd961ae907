"""Dirac-GAN against its closed forms (Section 4.5.1, B.6): the conserved radius, the Euler step's exact factor,
the modified flow of Eqs B.211–B.212 and its radius growth (Eq 4.39), the Jacobians at the equilibrium (Eqs
B.222, B.224) and the regularisers' threshold γ, ζ > hv/4 on the discrete iterates."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl import games
from smoothrl.games import dirac, drift, pf

H = 0.2
C = dirac.L_PRIME_0
START = (np.array(0.5), np.array(1.0))


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


def _points():
  rng = np.random.default_rng(0)
  return rng.uniform(-2, 2, size=(2, 16))


@jax.jit
def _pointwise(phi, theta):
  """Fields, modified field and one simultaneous step at many points at once: E sums l(θ_iφ_i) over the entries
  of φ and θ, so every entry is its own Dirac-GAN."""
  game = dirac.game()
  f, g = game.fields(phi, theta)
  mf, mg = drift.modified_field(game, H)(phi, theta)
  update = games.make_update(game, H)
  s = update.step(update.init(phi, theta))
  return f, g, mf, mg, s.phi, s.theta


def test_fields_conserve_the_radius_and_one_euler_step_multiplies_it_exactly():
  phi, theta = _points()
  f, g, _, _, phi1, theta1 = _pointwise(phi, theta)
  want_f, want_g = dirac.fields(phi, theta)
  np.testing.assert_allclose(f, want_f, rtol=1e-14)
  np.testing.assert_allclose(g, want_g, rtol=1e-14)
  np.testing.assert_allclose(2 * phi * f + 2 * theta * g, 0.0, atol=1e-15)  # Eq 4.38
  ratio = (phi1**2 + theta1**2) / (phi**2 + theta**2)
  np.testing.assert_allclose(ratio, dirac.euler_radius_factor(phi, theta, H), rtol=1e-14)
  assert np.all(ratio > 1)


def test_modified_flow_is_eqs_b211_b212_and_grows_the_radius_by_eq_4_39():
  phi, theta = _points()
  _, _, mf, mg, _, _ = _pointwise(phi, theta)
  z = theta * phi
  lp = np.asarray(dirac.l_prime(z))
  lpp = -np.asarray(jax.nn.sigmoid(z) * jax.nn.sigmoid(-z))
  np.testing.assert_allclose(
    mf, lp * theta + H / 2 * (-(theta**3) * lp * lpp + phi * lp**2 + phi**2 * theta * lp * lpp), rtol=1e-13
  )
  np.testing.assert_allclose(
    mg, -lp * phi - H / 2 * (-theta * lp**2 - theta**2 * phi * lp * lpp + phi**3 * lp * lpp), rtol=1e-13
  )
  rate = 2 * phi * mf + 2 * theta * mg
  np.testing.assert_allclose(rate, dirac.modified_radius_rate(phi, theta, H), rtol=1e-12)
  assert np.all(rate > 0)


@jax.jit
def _flow_jacobian(gamma, zeta, coefficients):
  """The Jacobian at the equilibrium of the modified flow with drift `coefficients` of the regularised Dirac-GAN."""
  field = drift.modified_field(dirac.regularised(gamma, zeta), H, coefficients=drift.DriftCoefficients(*coefficients))
  return drift.jacobian(field, jnp.zeros(()), jnp.zeros(()))


@functools.partial(jax.jit, static_argnames=('scheme',))
def _update_jacobian(gamma, zeta, v_phi, v_theta, scheme):
  update = games.make_update(dirac.regularised(gamma, zeta), H, scheme=scheme, v_phi=v_phi, v_theta=v_theta)

  def step(x):
    s = update.step(update.init(x[0], x[1]))
    return jnp.stack([s.phi, s.theta])

  return jax.jacfwd(step)(jnp.zeros(2))


def _jacobians(gamma, zeta, v_phi, v_theta, scheme='simultaneous', clock='player'):
  """(the modified flow's Jacobian, the update's Jacobian) at the equilibrium of the regularised Dirac-GAN."""
  c = tuple(map(float, drift.drift_coefficients(scheme, v_phi=v_phi, v_theta=v_theta, clock=clock)))
  return _flow_jacobian(gamma, zeta, c), _update_jacobian(gamma, zeta, v_phi, v_theta, scheme)


def test_jacobians_at_the_equilibrium():
  for scheme, clock in [('simultaneous', 'player'), ('alternating', 'player'), ('alternating', 'shared')]:
    flow, _ = _jacobians(0.0, 0.0, 0.5, 1.5, scheme, clock)
    want = dirac.modified_jacobian(H, scheme=scheme, clock=clock, v_phi=0.5, v_theta=1.5)
    np.testing.assert_allclose(flow, want, rtol=1e-13, atol=1e-15)
  flow, _ = _jacobians(0.0, 0.0, 1.0, 1.0)
  np.testing.assert_allclose(flow, [[H * C**2 / 2, C], [-C, H * C**2 / 2]], rtol=1e-14)  # Eq B.222
  # With regularisers, Eq B.224 to first order: the neglected terms are O(h²).
  gamma, zeta = 0.3 * H, 0.7 * H
  flow, update = _jacobians(gamma, zeta, 0.5, 1.5)
  want = [[(H * 0.5 / 2 - 2 * gamma) * C**2, C], [-C, (H * 1.5 / 2 - 2 * zeta) * C**2]]
  np.testing.assert_allclose(flow, want, atol=H**2)
  np.testing.assert_allclose(
    flow, dirac.modified_jacobian(H, v_phi=0.5, v_theta=1.5, gamma=gamma, zeta=zeta), atol=H**2
  )
  lin = dirac.linearised_update(H, v_phi=0.5, v_theta=1.5, gamma=gamma, zeta=zeta)
  np.testing.assert_allclose(update, lin, rtol=1e-14)
  _, update = _jacobians(gamma, zeta, 0.5, 1.5, 'alternating')
  lin = dirac.linearised_update(H, scheme='alternating', v_phi=0.5, v_theta=1.5, gamma=gamma, zeta=zeta)
  np.testing.assert_allclose(update, lin, rtol=1e-14)


def test_regularised_centre_at_h_over_4():
  flow, update = _jacobians(H / 4, H / 4, 1.0, 1.0)
  # The modified flow: a centre up to the O(h³) BEA error; the discrete map: |μ|² = 1 + h⁴c⁴/4.
  assert np.max(np.abs(np.linalg.eigvals(np.asarray(flow)).real)) < H**3
  modulus = np.abs(np.linalg.eigvals(np.asarray(update)))
  np.testing.assert_allclose(modulus**2, 1 + H**4 * C**4 / 4, rtol=1e-14)
  for frac, sign in [(1 / 8, 1), (1 / 2, -1)]:
    flow, update = _jacobians(frac * H, frac * H, 1.0, 1.0)
    assert np.all(sign * np.linalg.eigvals(np.asarray(flow)).real > 0), frac
    assert np.all(sign * (np.abs(np.linalg.eigvals(np.asarray(update))) - 1) > 0), frac
  # Unequal rates: B.6.3's per-player thresholds hv_φ/4, hv_θ/4 decide the player clock's modified flow, but the
  # discrete map follows the shared clock, stable to first order iff γv_φ + ζv_θ > hv_φv_θ/2, whose cancelling
  # coefficients (hv_θ/4, hv_φ/4) (Table 4.1) sit exactly on it.
  g_t, z_t = dirac.stability_thresholds(H, 0.5, 1.5)
  assert (g_t, z_t) == (H * 0.5 / 4, H * 1.5 / 4)
  for factor in (1.2, 0.8):
    flow, update = _jacobians(factor * g_t, factor * z_t, 0.5, 1.5)
    assert bool(np.all(np.linalg.eigvals(np.asarray(flow)).real < 0)) == (factor > 1)
    assert np.all(np.abs(np.linalg.eigvals(np.asarray(update))) < 1)  # 0.02·0.5 + 0.06·1.5 > 0.075: stable
  shared = games.cancel_interaction(H, v_phi=0.5, v_theta=1.5, clock='shared')
  for factor in (1.2, 0.8):
    gamma, zeta = factor * shared.phi_interaction, factor * shared.theta_interaction
    flow, update = _jacobians(gamma, zeta, 0.5, 1.5, 'simultaneous', 'shared')
    assert bool(np.all(np.linalg.eigvals(np.asarray(flow)).real < 0)) == (factor > 1)
    assert bool(np.all(np.abs(np.linalg.eigvals(np.asarray(update))) < 1)) == (factor > 1)


@functools.partial(jax.jit, static_argnames=('steps', 'scheme'))
def _radii(gamma, zeta, v_phi, v_theta, steps=300, scheme='simultaneous'):
  update = games.make_update(dirac.regularised(gamma, zeta), H, scheme=scheme, v_phi=v_phi, v_theta=v_theta)
  out = games.rollout(update, update.init(*START), steps)
  return jnp.sqrt(out.phi**2 + out.theta**2)


def _assert_converges(gamma, zeta):
  r = np.asarray(_radii(gamma, zeta, 1.0, 1.0))
  assert np.all(np.isfinite(r)) and r[-1] < 0.5 * r[0], (gamma, zeta, r[-1] / r[0])


def test_iterates_converge_above_h_over_4_and_diverge_below():
  _assert_converges(H / 2, H / 2)
  r_centre = np.asarray(_radii(H / 4, H / 4, 1.0, 1.0))
  assert abs(r_centre[-1] / r_centre[0] - 1) < 0.03  # the radius stays nearly constant
  r_below = np.asarray(_radii(H / 8, H / 8, 1.0, 1.0))
  assert r_below[-1] > 1.5 * r_below[0]  # spirals out
  with pytest.raises(AssertionError):  # the convergence check fails below the threshold, and at it
    _assert_converges(H / 8, H / 8)
  with pytest.raises(AssertionError):
    _assert_converges(H / 4, H / 4)
  r_plain = np.asarray(_radii(0.0, 0.0, 1.0, 1.0))
  assert r_plain[-1] > r_below[-1] > r_centre[-1]


def test_alternating_with_unequal_rates_is_a_centre_on_the_shared_clock_only():
  player, update = _jacobians(0.0, 0.0, 0.5, 1.0, 'alternating', 'player')
  shared, _ = _jacobians(0.0, 0.0, 0.5, 1.0, 'alternating', 'shared')
  assert np.linalg.det(np.asarray(update)) == pytest.approx(1.0, abs=1e-14)  # the discrete map preserves area
  np.testing.assert_allclose(np.abs(np.linalg.eigvals(np.asarray(update))), 1.0, rtol=1e-14)
  assert np.all(np.linalg.eigvals(np.asarray(player)).real > 1e-3)  # the player clock predicts divergence
  np.testing.assert_allclose(np.linalg.eigvals(np.asarray(shared)).real, 0.0, atol=1e-15)  # a centre
  r = np.asarray(_radii(0.0, 0.0, 0.5, 1.0, scheme='alternating'))
  assert r.max() < 1.2 * r[0] and r.min() > 0.7 * r[0]


def test_game_pf_at_the_equilibrium():
  # H = −du/dψ: minus the Jacobian of the flow without drift (the compiled `_flow_jacobian`).
  hessian = -np.asarray(_flow_jacobian(0.0, 0.0, (1.0, 1.0, 0.0, 0.0, 0.0, 0.0)))
  np.testing.assert_allclose(hessian, [[0.0, -C], [C, 0.0]], atol=1e-15)
  s = pf.pf_stability(hessian, H)
  np.testing.assert_allclose(s.gd_factors, np.sqrt(1 + H**2 * C**2), rtol=1e-14)  # |1 ∓ ihc|: spirals out
  assert not bool(s.stable)
