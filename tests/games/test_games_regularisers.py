"""The two-half estimator of ‖∇L‖² and its gradient, enumerated over every pair of independent draws, and the
minibatch penalties built on it."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl import games
from smoothrl.games import regularisers as reg


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


X = np.array([[0.5, -1.0], [1.5, 0.3], [-0.7, 0.8], [0.2, 2.0]])  # four data points, a draw is one of them


def value(phi, theta, batch):
  """A zero-sum E: the mean over the batch of a per-point term."""
  return jnp.mean(jnp.tanh(batch @ phi * theta[0]) + theta[1] * (batch @ phi) ** 2 / 2)


PHI, THETA = np.array([0.4, -0.3]), np.array([0.9, 0.5])


def _pairs():
  """Every ordered pair (i, j) of draws, i = j included: x₁, x₂ independent and uniform over X."""
  return np.stack([np.stack([X[i], X[j]]) for i, j in itertools.product(range(len(X)), repeat=2)])


def test_the_two_half_estimate_is_unbiased_in_value_and_gradient():
  def norm_theta(phi, batch):
    first, second = reg.split_halves(batch)
    grad = jax.grad(value, 1)
    return reg.unbiased_squared_norm(grad(phi, THETA, first), grad(phi, THETA, second))

  def naive(phi, batch):  # ∇L(x₁)ᵀ stop_grad(∇L(x₂)) alone
    first, second = reg.split_halves(batch)
    grad = jax.grad(value, 1)
    return jnp.vdot(grad(phi, THETA, first), jax.lax.stop_gradient(grad(phi, THETA, second)))

  def exact(phi):
    return jnp.sum(jax.grad(value, 1)(phi, THETA, X) ** 2)

  @jax.jit
  def averages():
    pairs = _pairs()
    v = jax.vmap(norm_theta, (None, 0))(PHI, pairs)
    g = jax.vmap(jax.grad(norm_theta), (None, 0))(PHI, pairs)
    g_naive = jax.vmap(jax.grad(naive), (None, 0))(PHI, pairs)
    return v.mean(), g.mean(0), g_naive.mean(0), exact(PHI), jax.grad(exact)(PHI)

  v, g, g_naive, v_exact, g_exact = averages()
  np.testing.assert_allclose(v, v_exact, rtol=1e-12)
  np.testing.assert_allclose(g, g_exact, rtol=1e-12)
  np.testing.assert_allclose(g_naive, g_exact / 2, rtol=1e-12)  # the stop-gradient alone halves the gradient


def test_minibatch_penalties_average_to_the_full_batch_penalties():
  c = games.Regulariser(phi_self=0.2, phi_interaction=0.3, theta_interaction=0.4, theta_self=0.5)
  halves = reg.zero_sum_penalties(value, c, halves=True)
  full = reg.zero_sum_penalties(value, c)

  @jax.jit
  def compare():
    pairs = _pairs()
    out = []
    for i, arg in enumerate((0, 1)):
      per_pair = jax.vmap(jax.value_and_grad(halves[i], arg), (None, None, 0))(PHI, THETA, pairs)
      out.append((per_pair[0].mean(), per_pair[1].mean(0), *jax.value_and_grad(full[i], arg)(PHI, THETA, X)))
    return out

  for v, g, v_full, g_full in compare():
    np.testing.assert_allclose(v, v_full, rtol=1e-12)
    np.testing.assert_allclose(g, g_full, rtol=1e-12)


def test_bad_batches_are_named():
  with pytest.raises(ValueError, match='even'):
    reg.split_halves(np.zeros((3, 2)))
  with pytest.raises(ValueError, match='batch'):
    reg.zero_sum_penalties(value, reg.sga(), halves=True)[0](PHI, THETA)
  with pytest.raises(ValueError, match='Regulariser'):
    reg.zero_sum_penalties(value, (0.1, 0.1, 0.1, 0.1))
