"""Simultaneous, alternating and RK4 updates against hand-written steps and closed forms on a linear game."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from smoothrl import games

EPS1, EPS2 = 0.09, 0.3


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


# Eq 4.23 as losses: f = −ε₁φ + θ = −∇_φE_φ, g = ε₂θ − φ = −∇_θE_θ (vector players, coupled entrywise).
def linear_phi(phi, theta):
  return jnp.sum(EPS1 * phi**2 / 2 - theta * phi)


def linear_theta(phi, theta):
  return jnp.sum(-EPS2 * theta**2 / 2 + phi * theta)


LINEAR = games.Game(linear_phi, linear_theta)
A = np.array([[-EPS1, 1.0], [-1.0, EPS2]])  # (φ̇, θ̇) = A (φ, θ) per coordinate


def nonlinear_phi(phi, theta):
  return jnp.sum(jnp.sin(phi) * theta) + 0.1 * jnp.sum(phi**4)


def nonlinear_theta(phi, theta):
  return jnp.sum(jnp.cos(phi * theta)) + 0.2 * jnp.sum(theta**2)


NONLINEAR = games.Game(nonlinear_phi, nonlinear_theta)
PHI, THETA = np.array([0.4, -0.3]), np.array([0.7, 0.1])


def test_simultaneous_step_is_eqs_4_13_4_14():
  h, vp, vt = 0.1, 0.5, 2.0
  update = games.make_update(NONLINEAR, h, v_phi=vp, v_theta=vt)
  state, gp, gt = jax.jit(
    lambda p, t: (update.step(update.init(p, t)), jax.grad(nonlinear_phi, 0)(p, t), jax.grad(nonlinear_theta, 1)(p, t))
  )(PHI, THETA)
  np.testing.assert_allclose(state.phi, PHI - vp * h * gp, rtol=1e-14)
  np.testing.assert_allclose(state.theta, THETA - vt * h * gt, rtol=1e-14)
  assert int(state.count) == 1


def test_alternating_step_divides_each_rate_by_its_step_count():
  h, vp, vt, m, k = 0.1, 0.5, 2.0, 2, 3
  update = games.make_update(NONLINEAR, h, scheme='alternating', v_phi=vp, v_theta=vt, m=m, k=k)
  state = jax.jit(update.step)(update.init(PHI, THETA))
  phi, theta = PHI.copy(), THETA.copy()
  grad_phi, grad_theta = jax.jit(jax.grad(nonlinear_phi, 0)), jax.jit(jax.grad(nonlinear_theta, 1))
  for _ in range(m):
    phi = phi - vp * h / m * np.asarray(grad_phi(phi, THETA))  # θ held at θ_{t−1}
  for _ in range(k):
    theta = theta - vt * h / k * np.asarray(grad_theta(phi, theta))  # at the new φ
  np.testing.assert_allclose(state.phi, phi, rtol=1e-13)
  np.testing.assert_allclose(state.theta, theta, rtol=1e-13)


def test_optimiser_runs_at_the_players_rate():
  h, vp, vt = 0.01, 0.5, 2.0
  update = games.make_update(
    NONLINEAR, h, v_phi=vp, v_theta=vt, optimizer_phi=optax.adam(1.0, b1=0.5), optimizer_theta=optax.adam(1.0)
  )
  out = jax.jit(lambda p, t: games.rollout(update, update.init(p, t), 3))(PHI, THETA)
  adam_phi, adam_theta = optax.adam(vp * h, b1=0.5), optax.adam(vt * h)

  @jax.jit
  def reference(phi, theta):
    s_phi, s_theta = adam_phi.init(phi), adam_theta.init(theta)
    for _ in range(3):
      gp, gt = jax.grad(nonlinear_phi, 0)(phi, theta), jax.grad(nonlinear_theta, 1)(phi, theta)
      up, s_phi = adam_phi.update(gp, s_phi)
      ut, s_theta = adam_theta.update(gt, s_theta)
      phi, theta = phi + up, theta + ut
    return phi, theta

  phi, theta = reference(PHI, THETA)
  np.testing.assert_allclose(out.phi[-1], phi, rtol=1e-12)
  np.testing.assert_allclose(out.theta[-1], theta, rtol=1e-12)
  assert out.phi.shape == (4, 2) and np.array_equal(out.phi[0], PHI)


@pytest.mark.parametrize('v_phi, v_theta', [(1.0, 1.0), (0.5, 2.0)])
def test_rk4_is_the_fourth_order_taylor_polynomial_on_a_linear_game(v_phi, v_theta):
  # u = Aψ: with the stages of Eqs B.131–B.142 (the 4th at the full step) one update is
  # Σ_{n≤4} (hVA)ⁿ/n! ψ, V = diag(v_φ, v_θ); a half-step 4th stage changes the h⁴ term.
  h = 0.3
  update = games.make_update(LINEAR, h, scheme='rk4', v_phi=v_phi, v_theta=v_theta)
  state = jax.jit(update.step)(update.init(PHI, THETA))
  step = h * np.diag([v_phi, v_theta]) @ A
  poly = sum(np.linalg.matrix_power(step, n) / math.factorial(n) for n in range(5))
  want = poly @ np.stack([PHI, THETA])
  np.testing.assert_allclose(np.stack([state.phi, state.theta]), want, rtol=1e-13)


def test_steps_vmap_over_seeds():
  h, steps = 0.1, 5
  update = games.make_update(LINEAR, h, scheme='alternating', m=2)
  rng = np.random.default_rng(0)
  phis, thetas = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
  batched = jax.jit(jax.vmap(lambda p, t: games.rollout(update, update.init(p, t), steps).phi))(phis, thetas)
  for i in range(4):  # Eq 4.23 by hand: two half-rate steps of φ at θ_{t−1}, then one of θ at the new φ
    phi, theta, want = phis[i].copy(), thetas[i].copy(), [phis[i].copy()]
    for _ in range(steps):
      for _ in range(2):
        phi = phi + h / 2 * (-EPS1 * phi + theta)
      theta = theta + h * (EPS2 * theta - phi)
      want.append(phi.copy())
    np.testing.assert_allclose(batched[i], np.array(want), rtol=1e-12)


def test_bad_update_arguments_are_named():
  with pytest.raises(ValueError, match='scheme'):
    games.make_update(LINEAR, 0.1, scheme='leapfrog')
  with pytest.raises(ValueError, match='h'):
    games.make_update(LINEAR, 0.0)
  with pytest.raises(ValueError, match='v_theta'):
    games.make_update(LINEAR, 0.1, v_theta=-1.0)
  with pytest.raises(ValueError, match='m'):
    games.make_update(LINEAR, 0.1, scheme='alternating', m=0)
  with pytest.raises(ValueError, match='m and k'):
    games.make_update(LINEAR, 0.1, k=2)
  with pytest.raises(ValueError, match='optimiser'):
    games.make_update(LINEAR, 0.1, scheme='rk4', optimizer_phi=optax.sgd(1.0))
  with pytest.raises(ValueError, match='Game'):
    games.make_update(linear_phi, 0.1)
