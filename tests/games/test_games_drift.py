"""The modified flows of Theorems 4.2.1, 4.2.2, 4.7.1, 4.7.2 and RK4's drift: one-step errors O(h³) against the
discrete updates (O(h²) for the game's own flow), the modified Jacobians of Eqs 4.24–4.28 at an equilibrium, and
the modified losses of Corollaries 4.4.1, 4.5.1, 4.5.2, 4.7.1, 4.7.2 written out as printed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from smoothrl import games
from smoothrl.games import dirac, drift

HS = np.array([0.01, 0.02, 0.04, 0.08])


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


def _general_phi(phi, theta):
  return jnp.sum(jnp.sin(phi['a']) * theta) + 0.5 * phi['b'] ** 2 * jnp.sum(theta**2) + 0.2 * jnp.sum(phi['a'] ** 3)


def _general_theta(phi, theta):
  return jnp.sum(jnp.cos(phi['a'] * theta)) + 0.3 * jnp.sum(theta**3) + phi['b'] * theta[0]


GENERAL = games.Game(_general_phi, _general_theta)
GENERAL_START = ({'a': np.array([0.3, -0.5]), 'b': np.array(0.4)}, np.array([0.6, -0.2]))
DIRAC_START = (np.array(0.7), np.array(-0.4))


def _flow_error(game):
  """A jitted (h, coefficients, t_φ, t_θ, start, target) -> the distance after one update between `target` and the
  flow with drift `coefficients`, φ read at time t_φh and θ at t_θh: one compilation for every scheme and clock."""

  def error(h, coefficients, t_phi, t_theta, start, target):
    field = drift.modified_field(game, h, coefficients=drift.DriftCoefficients(*coefficients))
    update = lambda p, t: target
    return drift.one_step_error(field, update, *start, h, v_phi=t_phi, v_theta=t_theta, steps=40)

  return jax.jit(error)


FLOW_ERRORS = {'dirac': _flow_error(dirac.game()), 'general': _flow_error(GENERAL)}


def _errors(game_name, start, scheme, clock='player', m=1, k=1):
  """h, v_φ, v_θ -> (error of the modified flow, error of the game's own flow) after one update."""
  game = dirac.game() if game_name == 'dirac' else GENERAL

  @jax.jit
  def step(h, v_phi, v_theta):
    update = games.make_update(game, h, scheme=scheme, v_phi=v_phi, v_theta=v_theta, m=m, k=k)
    s = update.step(update.init(*start))
    return s.phi, s.theta

  def errors(h, v_phi, v_theta):
    c = drift.drift_coefficients(scheme, v_phi=v_phi, v_theta=v_theta, m=m, k=k, clock=clock)
    plain = c._replace(phi_self=0.0, phi_interaction=0.0, theta_interaction=0.0, theta_self=0.0)
    times = (v_phi, v_theta) if clock == 'player' else (1.0, 1.0)
    target = step(h, v_phi, v_theta)
    flow = FLOW_ERRORS[game_name]
    return [float(flow(h, tuple(map(float, x)), *times, start, target)) for x in (c, plain)]

  return errors


def _slopes(errors, v_phi, v_theta):
  e = np.array([errors(h, v_phi, v_theta) for h in HS])  # (len(HS), 2)
  assert np.all(e > 0), e
  return [float(np.polyfit(np.log(HS), np.log(e[:, i]), 1)[0]) for i in range(2)]


def _assert_orders(slopes, modified=3.0, plain=2.0):
  assert abs(slopes[0] - modified) < 0.15 and abs(slopes[1] - plain) < 0.15, slopes


def test_simultaneous_modified_flow_follows_the_updates_to_third_order():
  errors = _errors('dirac', DIRAC_START, 'simultaneous')
  _assert_orders(_slopes(errors, 1.0, 1.0))  # Theorem 4.2.1
  _assert_orders(_slopes(errors, 0.5, 1.5))  # each player on its own clock


def test_alternating_modified_flow_follows_the_updates_to_third_order():
  # m = 2 and k = 3 check the 1/m and 1/k; v_φ/v_θ = 1/3 the (1 − 2v_φ/v_θ) interaction factor.
  errors = _errors('dirac', DIRAC_START, 'alternating', m=2, k=3)
  _assert_orders(_slopes(errors, 0.5, 1.5))
  _assert_orders(_slopes(errors, 1.0, 1.0))


def test_same_physical_time_flows_on_a_general_game():
  # Theorems 4.7.1 and 4.7.2 on pytree players of a game that is neither zero-sum nor common-payoff.
  _assert_orders(_slopes(_errors('general', GENERAL_START, 'simultaneous', clock='shared'), 0.5, 2.0))
  _assert_orders(_slopes(_errors('general', GENERAL_START, 'alternating', clock='shared', m=2), 0.5, 2.0))


def test_rk4_drift_with_unequal_rates_and_none_with_equal_rates():
  errors = _errors('dirac', DIRAC_START, 'rk4')
  _assert_orders(_slopes(errors, 0.5, 1.5))  # Eqs B.164–B.165: O(h²) drift in the interaction terms only
  assert abs(_slopes(errors, 1.0, 1.0)[1] - 5.0) < 0.2  # equal rates: the game's own flow to O(h⁵)


def _linear_game(eps1, eps2):
  """Eq 4.23: f = −ε₁φ + θ, g = ε₂θ − φ."""
  return games.Game(
    lambda p, t: eps1 * p**2 / 2 - t * p,
    lambda p, t: -eps2 * t**2 / 2 + p * t,
  )


def test_modified_jacobians_of_eqs_4_27_4_28_and_their_stability():
  eps, h = 0.09, 0.2
  game = _linear_game(eps, eps)
  jac = jax.jit(
    lambda c: drift.jacobian(
      drift.modified_field(game, h, coefficients=drift.DriftCoefficients(*c)), np.array(0.0), np.array(0.0)
    )
  )
  sim, alt = (np.asarray(jac(tuple(map(float, drift.drift_coefficients(s))))) for s in ('simultaneous', 'alternating'))
  np.testing.assert_allclose(
    sim,
    [
      [-eps - h / 2 * eps**2 + h / 2, 1 + h / 2 * eps - h / 2 * eps],
      [-1 - h / 2 * eps + h / 2 * eps, eps + h / 2 - h / 2 * eps**2],
    ],
    rtol=1e-14,
  )
  np.testing.assert_allclose(
    alt,
    [
      [-eps - h / 2 * eps**2 + h / 2, 1 + h / 2 * eps - h / 2 * eps],
      [-1 + h / 2 * eps + h / 2 * eps, eps - h / 2 - h / 2 * eps**2],
    ],
    rtol=1e-14,
  )
  # Section 4.3's numbers (printed truncated: 0.19, −0.0016, 0.981).
  assert np.trace(sim) == pytest.approx(0.19838, abs=1e-12) and np.trace(sim) > 0
  assert np.trace(alt) == pytest.approx(-0.00162, abs=1e-12)
  assert np.linalg.det(alt) == pytest.approx(0.98190, abs=1e-5)
  assert np.all(np.linalg.eigvals(alt).real < 0) and np.any(np.linalg.eigvals(sim).real > 0)


def _equilibrium_game():
  """A nonlinear general game with an equilibrium at 0: quadratic parts P, B, C, Q plus cubic terms."""
  rng = np.random.default_rng(0)
  p = rng.normal(size=(2, 2))
  p = p + p.T
  q = rng.normal(size=(3, 3))
  q = q + q.T
  b, c = rng.normal(size=(2, 3)), rng.normal(size=(3, 2))

  def loss_phi(phi, theta):
    return phi @ p @ phi / 2 + phi @ b @ theta + jnp.sum(phi**2) * theta[0] + phi[0] ** 3

  def loss_theta(phi, theta):
    return theta @ q @ theta / 2 + theta @ c @ phi + theta[1] * phi[0] * phi[1] + jnp.sum(theta**3)

  # f = −∇_φE_φ, g = −∇_θE_θ: their Jacobians at 0.
  return games.Game(loss_phi, loss_theta), -p, -b, -c, -q


def test_modified_jacobian_at_an_equilibrium_is_j_minus_h_over_2_k():
  game, fp, ft, gp, gt = _equilibrium_game()
  h, vp, vt, m, k = 0.1, 0.7, 1.3, 2, 3
  jac = jax.jit(
    lambda c: drift.jacobian(
      drift.modified_field(game, h, coefficients=drift.DriftCoefficients(*c)), np.zeros(2), np.zeros(3)
    )
  )
  sim, alt = (
    np.asarray(jac(tuple(map(float, drift.drift_coefficients(s, v_phi=vp, v_theta=vt, **mk)))))
    for s, mk in (('simultaneous', {}), ('alternating', dict(m=m, k=k)))
  )
  j = np.block([[fp, ft], [gp, gt]])
  k_sim = np.block(  # Eq 4.25 (B.177 prints g_φ f_θ for g_φ f_φ in the lower-left block)
    [[vp * (fp @ fp + ft @ gp), vp * (fp @ ft + ft @ gt)], [vt * (gt @ gp + gp @ fp), vt * (gt @ gt + gp @ ft)]]
  )
  r = 1 - 2 * vp / vt
  k_alt = np.block(  # Eq 4.26
    [
      [vp / m * fp @ fp + vp * ft @ gp, vp / m * fp @ ft + vp * ft @ gt],
      [vt / k * gt @ gp + vt * r * gp @ fp, vt / k * gt @ gt + vt * r * gp @ ft],
    ]
  )
  np.testing.assert_allclose(sim, j - h / 2 * k_sim, rtol=1e-12, atol=1e-13)
  np.testing.assert_allclose(alt, j - h / 2 * k_alt, rtol=1e-12, atol=1e-13)


def _value(phi, theta):
  return jnp.sum(jnp.tanh(phi * theta)) + phi[0] * theta[1] ** 3 / 3


def test_modified_loss_coefficients_are_the_corollaries_as_printed():
  h, vp, vt, m, k = 0.1, 0.6, 1.7, 2, 3
  r = 1 - 2 * vp / vt
  printed = {  # (E, ‖∇_φE‖², ‖∇_θE‖²) in Ẽ_φ, then in Ẽ_θ
    ('zero_sum', 'simultaneous', 'player'): ((-1, vp * h / 4, -vp * h / 4), (1, -vt * h / 4, vt * h / 4)),  # 4.5.1
    ('zero_sum', 'alternating', 'player'): (
      (-1, vp * h / (4 * m), -vp * h / 4),
      (1, -vt * h / 4 * r, vt * h / (4 * k)),
    ),
    ('zero_sum', 'simultaneous', 'shared'): (
      (-vp, vp**2 * h / 4, -vp * vt * h / 4),
      (vt, -vp * vt * h / 4, vt**2 * h / 4),
    ),  # 4.7.1
    ('zero_sum', 'alternating', 'shared'): (
      (-vp, vp**2 * h / (4 * m), -vp * vt * h / 4),
      (vt, vp * vt * h / 4, vt**2 * h / (4 * k)),
    ),  # 4.7.2
    ('common_payoff', 'alternating', 'player'): (
      (1, vp * h / (4 * m), vp * h / 4),
      (1, vt * h / 4 * r, vt * h / (4 * k)),
    ),  # 4.4.1 with m and k
  }
  for (kind, scheme, clock), want in printed.items():
    mk = dict(m=m, k=k) if scheme == 'alternating' else {}
    got = drift.modified_loss_coefficients(kind, scheme, h=h, v_phi=vp, v_theta=vt, clock=clock, **mk)
    np.testing.assert_allclose(
      np.array(got, float), np.array(want, float), rtol=1e-14, err_msg=str((kind, scheme, clock))
    )


def test_modified_losses_give_the_modified_flows():
  h, vp, vt, m, k = 0.1, 0.6, 1.7, 2, 3
  cases = [('zero_sum', 'alternating', 'shared'), ('common_payoff', 'alternating', 'player')]

  @jax.jit
  def fields(phi, theta):
    out = []
    for kind, scheme, clock in cases:
      kw = dict(scheme=scheme, v_phi=vp, v_theta=vt, m=m, k=k, clock=clock)
      game = games.zero_sum(_value) if kind == 'zero_sum' else games.common_payoff(_value)
      lp, lt = drift.modified_losses(_value, h, kind=kind, **kw)
      out.append(
        (drift.modified_field(game, h, **kw)(phi, theta), (-jax.grad(lp, 0)(phi, theta), -jax.grad(lt, 1)(phi, theta)))
      )
    return out

  for case, (field, from_losses) in zip(cases, fields(np.array([0.3, -0.5]), np.array([0.6, -0.2]))):
    np.testing.assert_allclose(ravel_pytree(field)[0], ravel_pytree(from_losses)[0], rtol=1e-12, err_msg=str(case))


def test_bad_drift_arguments_are_named():
  with pytest.raises(ValueError, match='scheme'):
    drift.drift_coefficients('euler')
  with pytest.raises(ValueError, match='clock'):
    drift.modified_field(GENERAL, 0.1, clock='wall')
  with pytest.raises(ValueError, match='kind'):
    drift.modified_losses(_value, 0.1, kind='general')
  with pytest.raises(ValueError, match='m and k'):
    drift.drift_coefficients('simultaneous', m=2)
  with pytest.raises(ValueError, match='multiple'):
    drift.integrate(drift.flow_field(GENERAL), *GENERAL_START, 1.0, steps=10, saves=3)
