"""Games, their fields and drift terms against dense Jacobians, and the regularised gradients against autodiff of
the gradient norms they stand for (Table 4.2, Eqs B.95–B.98)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from smoothrl import games
from smoothrl.games import regularisers as reg


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


def loss_phi(phi, theta):
  return (
    jnp.sum(jnp.sin(phi['a']) * theta[:2])
    + 0.5 * phi['b'] ** 2 * theta[2] ** 2
    + 0.3 * phi['b'] * jnp.sum(phi['a'] ** 3)
  )


def loss_theta(phi, theta):
  return jnp.sum(jnp.cos(phi['a'] * theta[:2])) + 0.5 * (1 + phi['b'] ** 2) * jnp.sum(theta**2) + theta[2] * phi['a'][0]


def value(phi, theta):
  return jnp.sum(jnp.tanh(phi['a'] * theta[:2])) + phi['b'] * theta[2] ** 3 / 3 + 0.2 * phi['b'] ** 2 * jnp.sum(theta)


PHI = {'a': np.array([0.3, -0.7]), 'b': np.array(0.4)}  # numpy float64: jax keeps float64 under x64
THETA = np.array([0.5, 0.2, -0.6])


GAME = games.Game(loss_phi, loss_theta)


@functools.cache
def _dense_products(game=GAME):
  """f, g and the four products from the dense Jacobian of the flattened (f, g)."""
  flat, unravel = ravel_pytree((PHI, THETA))
  n_phi = ravel_pytree(PHI)[0].size

  def u(x):
    return ravel_pytree(game.fields(*unravel(x)))[0]

  jac, uf = (np.asarray(x) for x in jax.jit(lambda x: (jax.jacfwd(u)(x), u(x)))(flat))
  f, g = uf[:n_phi], uf[n_phi:]
  return f, g, jac[:n_phi, :n_phi] @ f, jac[:n_phi, n_phi:] @ g, jac[n_phi:, :n_phi] @ f, jac[n_phi:, n_phi:] @ g


def _flat(tree):
  return np.asarray(ravel_pytree(tree)[0])


def test_fields_are_minus_the_players_gradients_and_drift_terms_match_the_dense_jacobian():
  c = games.Regulariser(0.1, 0.2, 0.3, 0.4)
  terms, grad_phi, grad_theta, regularised = jax.jit(
    lambda p, t: (
      games.drift_terms(GAME.fields, p, t),
      jax.grad(loss_phi, 0)(p, t),
      jax.grad(loss_theta, 1)(p, t),
      GAME.with_regulariser(c).gradients(p, t),
    )
  )(PHI, THETA)
  np.testing.assert_allclose(_flat(terms.f), -_flat(grad_phi), rtol=1e-14)
  np.testing.assert_allclose(_flat(terms.g), -_flat(grad_theta), rtol=1e-14)
  for got, want in zip(terms, _dense_products()):
    np.testing.assert_allclose(_flat(got), want, rtol=1e-12, atol=1e-14)
  assert jax.tree.structure(terms.f_theta_g) == jax.tree.structure(PHI)
  assert jax.tree.structure(terms.g_phi_f) == jax.tree.structure(THETA)
  # A coefficient moves a general game's gradient by twice its drift term.
  f, g, ff, fg, gf, gg = _dense_products()
  np.testing.assert_allclose(_flat(regularised[0]), -f + 2 * 0.1 * ff - 2 * 0.2 * fg, rtol=1e-12)
  np.testing.assert_allclose(_flat(regularised[1]), -g - 2 * 0.3 * gf + 2 * 0.4 * gg, rtol=1e-12)


def test_zero_sum_and_common_payoff_losses():
  z = games.zero_sum(value)
  assert (
    float(jax.jit(z.loss_phi)(PHI, THETA)) == -float(jax.jit(value)(PHI, THETA))
    and z.loss_theta is value
    and z.value is value
  )
  c = games.common_payoff(value)
  assert c.loss_phi is value and c.loss_theta is value and c.value is None


def test_regularised_gradients_are_the_gradients_of_the_zero_sum_norms():
  c = games.Regulariser(phi_self=0.13, phi_interaction=0.07, theta_interaction=-0.05, theta_self=0.11)

  def norms(phi, theta):
    gp, gt = jax.grad(value, (0, 1))(phi, theta)
    return sum(jnp.sum(x**2) for x in jax.tree.leaves(gp)), jnp.sum(gt**2)

  def reg_phi(phi, theta):
    n_phi, n_theta = norms(phi, theta)
    return -value(phi, theta) + c.phi_self * n_phi + c.phi_interaction * n_theta

  def reg_theta(phi, theta):
    n_phi, n_theta = norms(phi, theta)
    return value(phi, theta) + c.theta_interaction * n_phi + c.theta_self * n_theta

  p_phi, p_theta = reg.zero_sum_penalties(value, c)
  (want_phi, want_theta), (got_phi, got_theta), (extra_phi, extra_theta) = jax.jit(
    lambda p, t: (
      (jax.grad(reg_phi, 0)(p, t), jax.grad(reg_theta, 1)(p, t)),
      games.zero_sum(value, c).gradients(p, t),
      (
        jax.grad(lambda p, t: -value(p, t) + p_phi(p, t), 0)(p, t),
        jax.grad(lambda p, t: value(p, t) + p_theta(p, t), 1)(p, t),
      ),
    )
  )(PHI, THETA)
  np.testing.assert_allclose(_flat(got_phi), _flat(want_phi), rtol=1e-12)
  np.testing.assert_allclose(_flat(got_theta), _flat(want_theta), rtol=1e-12)
  # The same penalties as extra losses (full batch: the exact norms).
  np.testing.assert_allclose(_flat(extra_phi), _flat(want_phi), rtol=1e-12)
  np.testing.assert_allclose(_flat(extra_theta), _flat(want_theta), rtol=1e-12)


def test_regulariser_arithmetic():
  c = games.Regulariser(0.1, 0.2, 0.3, 0.4)
  assert GAME.regulariser.is_zero() and not c.is_zero()
  assert c.plus(games.Regulariser(phi_self=1.0)) == games.Regulariser(1.1, 0.2, 0.3, 0.4)


def test_table_4_2_coefficients():
  h, vp, vt = 0.1, 0.5, 2.0
  np.testing.assert_allclose(reg.cancel_interaction(h, v_phi=vp, v_theta=vt), (0, vp * h / 4, vt * h / 4, 0))
  np.testing.assert_allclose(
    reg.cancel_interaction(h, scheme='alternating', v_phi=vp, v_theta=vt), (0, vp * h / 4, -(2 * vp - vt) * h / 4, 0)
  )
  np.testing.assert_allclose(
    reg.cancel_interaction(h, scheme='alternating', v_phi=vp, v_theta=vt, players='phi'), (0, vp * h / 4, 0, 0)
  )
  # The same physical time (Table 4.1): the other player's rate.
  np.testing.assert_allclose(
    reg.cancel_interaction(h, v_phi=vp, v_theta=vt, clock='shared'), (0, vt * h / 4, vp * h / 4, 0)
  )
  np.testing.assert_allclose(
    reg.cancel_interaction(h, scheme='alternating', v_phi=vp, v_theta=vt, clock='shared'),
    (0, vt * h / 4, -vp * h / 4, 0),
  )
  np.testing.assert_allclose(reg.strengthen_self(h, v_phi=vp, v_theta=vt), (vp * h / 4, 0, 0, vt * h / 4))
  np.testing.assert_allclose(
    reg.strengthen_self(h, scheme='alternating', v_phi=vp, v_theta=vt, m=2, k=5), (vp * h / 8, 0, 0, vt * h / 20)
  )
  assert reg.sga() == games.Regulariser(0.0, 0.5, 0.5, 0.0)
  assert reg.consensus(0.3) == games.Regulariser(0.3, 0.3, 0.3, 0.3)
  assert reg.locally_stable(0.3) == games.Regulariser(theta_interaction=0.3)
  assert reg.ode_gan(0.3) == games.Regulariser(phi_interaction=0.3)
  assert reg.explicit(0.1, 0.2) == games.Regulariser(phi_interaction=0.1, theta_interaction=0.2)


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match='loss_phi'):
    games.Game(None, loss_theta)
  with pytest.raises(ValueError, match='regulariser'):
    games.Game(loss_phi, loss_theta, regulariser=(0.1, 0, 0, 0))
  with pytest.raises(ValueError, match='players'):
    reg.cancel_interaction(0.1, players='generator')
  with pytest.raises(ValueError, match='clock'):
    reg.cancel_interaction(0.1, clock='wall')
