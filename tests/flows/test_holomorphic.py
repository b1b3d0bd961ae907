"""check_holomorphic: holomorphic losses pass, piecewise and conjugating ones raise naming the cause."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.flows import holomorphic as ho


def _mlp(activation):
  def loss(p, x, y):
    hidden = activation(x @ p['w1'] + p['b1'])
    return jnp.mean((hidden @ p['w2'] - y) ** 2)

  return loss


@pytest.fixture(scope='module')
def problem():
  rng = np.random.default_rng(0)
  params = {'w1': rng.normal(size=(2, 4)), 'b1': np.zeros(4), 'w2': rng.normal(size=4)}
  params = {name: jnp.asarray(value, jnp.float32) for name, value in params.items()}
  x = rng.normal(size=(5, 2)).astype(np.float32)
  return params, x, np.sin(x[:, 0])


@pytest.mark.parametrize(
  'activation', [jnp.tanh, jax.nn.sigmoid, jax.nn.softplus, jax.nn.gelu], ids=lambda f: f.__name__
)
def test_squared_error_networks_of_holomorphic_activations_pass(problem, activation):
  params, x, y = problem
  ho.check_holomorphic(_mlp(activation), params, x, y)


def test_softmax_cross_entropy_passes_its_max_is_under_stop_gradient(problem):
  params, x, y = problem
  labels = jnp.array([0, 1, 2, 3, 0])

  def cross_entropy(p, x, labels):
    logits = jnp.tanh(x @ p['w1'] + p['b1'])
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=1))

  ho.check_holomorphic(cross_entropy, params, x, labels)
  ho.check_holomorphic(lambda p, x: jax.nn.logsumexp(x @ p['w1']), params, x)
  # |·| of the data alone, and a max whose result only passes through stop_gradient, are constants of θ.
  ho.check_holomorphic(lambda p, x: jnp.sum(jnp.abs(x) @ p['w1']), params, x)
  ho.check_holomorphic(lambda p: jnp.sum(p['w2'] - jax.lax.stop_gradient(jnp.max(p['w2']))), params)


@pytest.mark.parametrize(
  ('activation', 'named'),
  [(jax.nn.relu, 'max'), (jax.nn.elu, 'gt'), (jax.nn.leaky_relu, 'ge'), (jnp.abs, 'abs')],
  ids=['relu', 'elu', 'leaky_relu', 'abs'],
)
def test_piecewise_and_modulus_networks_raise_naming_the_operation(problem, activation, named):
  params, x, y = problem
  with pytest.raises(ho.NotHolomorphicError, match=f'applies [a-z, _]*\\b{named}\\b'):
    ho.check_holomorphic(_mlp(activation), params, x, y)


def test_real_valued_conjugating_sorting_and_failing_losses_raise(problem):
  params, _, _ = problem
  w = lambda p: p['w1']
  with pytest.raises(ho.NotHolomorphicError, match='applies abs'):
    ho.check_holomorphic(lambda p: jnp.sum(jnp.abs(w(p)) * w(p)), params)
  with pytest.raises(ho.NotHolomorphicError, match='real value'):
    ho.check_holomorphic(lambda p: jnp.linalg.norm(w(p)) ** 2, params)
  with pytest.raises(ho.NotHolomorphicError, match='conj'):
    ho.check_holomorphic(lambda p: jnp.sum(w(p) * jnp.conj(w(p))), params)
  with pytest.raises(ho.NotHolomorphicError, match='sort'):
    ho.check_holomorphic(lambda p: jnp.sum(jnp.sort(w(p), axis=None)[:3] ** 2), params)
  with pytest.raises(ho.NotHolomorphicError, match='fails on complex parameters'):
    ho.check_holomorphic(lambda p: jnp.sum(jnp.clip(w(p), -1, 1)), params)
  with pytest.raises(ValueError, match='one scalar'):
    ho.check_holomorphic(lambda p: w(p), params)


def test_a_custom_derivative_that_conjugates_fails_the_cauchy_riemann_check(problem):
  """No primitive gives this one away (its JVP rule is Python): the numerical check J(iv) = iJ(v) does."""
  params, _, _ = problem

  @jax.custom_jvp
  def square(z):
    return z**2

  square.defjvp(lambda primals, tangents: (square(primals[0]), 2 * jnp.conj(primals[0]) * tangents[0]))
  with pytest.raises(ho.NotHolomorphicError, match='Cauchy–Riemann'):
    ho.check_holomorphic(lambda p: jnp.sum(square(p['w1'])), params)
  ho.check_holomorphic(lambda p: jnp.sum(p['w1'] ** 2), params, key=jax.random.key(3))


def test_complexify_and_is_complex():
  with jax.enable_x64(True):
    z = ho.complexify({'a': jnp.ones(2, jnp.float32), 'b': np.ones(2), 'c': jnp.ones(1, jnp.complex64)})
    assert [z[k].dtype for k in 'abc'] == [jnp.complex64, jnp.complex128, jnp.complex64]
  assert ho.is_complex(z) and not ho.is_complex({'a': jnp.ones(2)})
  with pytest.raises(ValueError, match='mixes real and complex'):
    ho.is_complex({'a': jnp.ones(2), 'b': jnp.ones(2, jnp.complex64)})
  with pytest.raises(ValueError, match='dtype int32'):
    ho.complexify({'a': jnp.ones(2, jnp.int32)})
  with pytest.raises(ValueError, match='at least one array'):
    ho.is_complex({})
