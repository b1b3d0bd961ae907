"""Stability coefficients, energy rates, one-step predictions, critical-point Jacobians, Eq A.165 and the divergence
thresholds of gradient descent and heavy ball (thesis Sections 3.3–3.5, Appendix A.1.6–A.2)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.curvature import eigen
from smoothrl.flows import coefficients as co
from smoothrl.flows import fields
from smoothrl.flows import integrate as it
from smoothrl.flows import stability as st

A = np.array([[3.0, 0.4, 0.0], [0.4, 1.5, 0.2], [0.0, 0.2, 0.5]])
B = np.array([0.2, -0.5, 0.3])
THETA = np.array([0.8, -0.6, 1.1])


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


def _quadratic(p):
  return 0.5 * p @ jnp.asarray(A) @ p + jnp.asarray(B) @ p


def _cubic(p):
  """A non-quadratic loss with a strict minimum at 0 whose Hessian there is A (cubic terms vanish at 0 to order 2)."""
  x, y, z = p[0], p[1], p[2]
  return 0.5 * p @ jnp.asarray(A) @ p + x**3 / 3 + 0.5 * x * y * z + jnp.sin(y) ** 3


@functools.partial(jax.jit, static_argnums=0)
def _eigenpairs(fun, theta):
  g = jax.grad(fun)(theta)
  pairs = eigen.dense_eigenpairs(fun, theta, g=g)
  return pairs.values, pairs.vectors, g


def _eig(fun, theta):
  """(λ, u, g): the dense Hessian's eigenpairs, u as (n, n) rows signed so that gᵀu_i ≥ 0, and g = ∇E."""
  return tuple(np.asarray(x) for x in _eigenpairs(fun, jnp.asarray(theta)))


def test_projections_are_bilinear_over_pytrees():
  rng = np.random.default_rng(0)
  g = {'w': rng.normal(size=(2, 3)), 'b': rng.normal(size=3)}
  vectors = {'w': rng.normal(size=(4, 2, 3)), 'b': rng.normal(size=(4, 3))}
  expected = np.einsum('kij,ij->k', vectors['w'], g['w']) + vectors['b'] @ g['b']
  np.testing.assert_allclose(st.projections(g, vectors), expected, rtol=1e-13)
  # gᵀu, not the conjugate product: a complex g scales the projections by its phase.
  complex_g = jax.tree.map(lambda x: (1 + 2j) * x, g)
  np.testing.assert_allclose(st.projections(complex_g, vectors), (1 + 2j) * expected, rtol=1e-13)
  with pytest.raises(ValueError, match='leading axis k'):
    st.projections(g, {'w': vectors['w'][:, 0], 'b': vectors['b']})


def test_stability_coefficients_are_log_one_minus_z_over_z_times_the_projection():
  """sc_i = α_PF(hλ_i)gᵀu_i (Definition 3.3.4), on the principal branch, against numpy's complex log."""
  h = 0.5
  values = np.array([-1.0, 0.0, 0.7, 1.6, 3.0, 3.9, 4.4, 7.0])  # hλ from −0.5 to 3.5, across 1 and 2
  x = np.linspace(0.3, 1.0, values.size)
  z = h * values
  expected = np.where(z == 0, -1.0, np.log((1 - z).astype(complex)) / np.where(z == 0, 1, z)) * x
  sc = st.stability_coefficients(values, x, h)
  assert jnp.iscomplexobj(sc)
  np.testing.assert_allclose(sc, expected, rtol=1e-13)
  # Real stable below hλ = 1, complex stable up to 2, unstable (Re sc > 0) beyond (Section 3.3.1).
  np.testing.assert_array_equal(np.real(sc) > 0, z > 2)
  np.testing.assert_array_equal(np.abs(np.imag(sc)) > 0, z > 1)


def test_growth_rates_are_the_corollaries():
  h, values = 0.4, np.array([-0.5, 0.0, 1.0, 2.0, 4.0, 6.0])
  np.testing.assert_allclose(st.growth_rates(values, h, 'ngf'), -values)
  np.testing.assert_allclose(st.growth_rates(values, h, 'igr'), -(values + h / 2 * values**2), rtol=1e-14)
  np.testing.assert_allclose(
    st.growth_rates(values, h, 'third'), -(values + h / 2 * values**2 + h**2 / 3 * values**3), rtol=1e-14
  )
  np.testing.assert_allclose(st.growth_rates(values, h, 'pf'), np.log((1 - h * values).astype(complex)) / h, rtol=1e-14)
  assert complex(st.growth_rates(np.array([2.5]), h, 'pf')[0]) == complex(-np.inf, 0)  # hλ = 1 (erratum 5)
  np.testing.assert_allclose(st.growth_rates(values, h, lambda z: -jnp.ones_like(z)), -values)
  with pytest.raises(ValueError, match='flow must be one of'):
    st.growth_rates(values, h, 'sgd')
  with pytest.raises(ValueError, match='values must be real'):
    st.growth_rates(values + 0j, h, 'pf')


def test_pf_predicts_the_next_gradient_projection_exactly_on_a_quadratic_and_the_others_do_not():
  """Remarks 3.4.2–3.4.4: after one GD step, g(θ_1)ᵀu_i = (1 − hλ_i)g(θ_0)ᵀu_i on a quadratic, for any h."""
  values, u, g = _eig(_quadratic, THETA)
  for scaled in (0.5, 1.5, 2.5):  # hλ_0 in each regime
    h = scaled / values[0]
    theta_1 = THETA - h * g
    actual = u @ (A @ theta_1 + B)
    x = st.projections(jnp.asarray(g), jnp.asarray(u))
    np.testing.assert_allclose(st.predict_projection(x, values, h, 'pf'), actual, rtol=1e-12, atol=1e-13)
    for flow in ('ngf', 'igr'):
      gap = np.abs(np.asarray(st.predict_projection(x, values, h, flow)) - actual)[0]
      assert gap > 0.05 * abs(actual[0]) + 1e-3, flow
  np.testing.assert_allclose(st.predict_projection(2.0, 1.5, 0.4, 'ngf'), 2 * np.exp(-0.6))
  np.testing.assert_allclose(st.predict_projection(2.0, 1.5, 0.4, 'igr'), 2 * np.exp(-0.6 - 0.36 / 2))


def test_gd_energy_change_is_exact_on_a_quadratic_and_the_printed_a165_is_not():
  """Erratum 3: E(θ − hg) − E(θ) = −hΣ(1 − hλ_i/2)(gᵀu_i)²; A.165 prints Σ(1 − h/(2λ_i))(gᵀu_i)²."""
  values, u, g = _eig(_quadratic, THETA)
  x = u @ g
  for h in (0.1, 0.5, 0.9):
    energy = lambda p: 0.5 * p @ A @ p + B @ p
    change = energy(THETA - h * g) - energy(THETA)
    np.testing.assert_allclose(st.gd_energy_change(values, x, h), change, rtol=1e-12)
    printed = np.sum((1 - h / (2 * values)) * x**2)
    assert abs(printed - change) > 0.1 * abs(change)


def test_energy_rate_is_the_gradient_along_each_field():
  """Eq 3.12: dE/dt = gᵀθ̇ = Σ_i α(hλ_i)(gᵀu_i)² for the NGF, IGR and principal fields, off the quadratic case;
  the PF's on its complex branch (hλ_0 > 1 here)."""
  theta = jnp.array([0.4, -0.3, 0.6])
  values, u, g = _eig(_cubic, theta)
  x = u @ g
  h = 1.4 / values[0]
  names = ('ngf', 'igr', 'pf')
  theta_dots = jax.jit(lambda t: {name: fields.make(name, _cubic, h)(t) for name in names})(theta)  # one program
  for name in names:
    theta_dot = theta_dots[name]
    np.testing.assert_allclose(st.energy_rate(values, x, h, name), jnp.sum(g * theta_dot), rtol=1e-10, err_msg=name)
  rate = st.energy_rate(values, x, h, 'pf')
  assert jnp.iscomplexobj(rate) and abs(rate.imag) > 1e-3
  assert float(st.energy_rate(values, x, h, 'ngf')) == pytest.approx(-float(g @ g), rel=1e-12)
  np.testing.assert_allclose(st.energy_rate(values, x, h, co.alpha_igr), st.energy_rate(values, x, h, 'igr'))


JACOBIAN_FLOWS = ('ngf', 'igr', 'third', 'pf')


@pytest.fixture(scope='module')
def critical():
  """At the minimum 0 of `_cubic`: its dense Hessian eigenpairs, h with hλ = (≈0.55, ≈1.35, ≈2.8), and
  jax.jacfwd of each field there (one compiled program for all of them)."""
  theta = jnp.zeros(3)
  pairs = jax.jit(eigen.dense_eigenpairs, static_argnums=0)(_cubic, theta)
  h = 2.8 / float(pairs.values[0])
  jacobians = jax.jit(lambda t: {n: jax.jacfwd(fields.make(n, _cubic, h))(t) for n in JACOBIAN_FLOWS})(theta)
  return np.asarray(pairs.values), np.asarray(pairs.vectors), h, jax.tree.map(np.asarray, jacobians)


@pytest.mark.parametrize('name', JACOBIAN_FLOWS)
def test_critical_jacobian_is_the_derivative_of_the_field(critical, name):
  """Eq 3.13 and its NGF/IGR analogues against jax.jacfwd of the field at the minimum (hλ_0 > 2 for the PF)."""
  values, u, h, jacobians = critical
  expected = st.critical_jacobian(values, jnp.asarray(u), h, name)
  np.testing.assert_allclose(expected, jacobians[name], rtol=1e-9, atol=1e-10)
  if name == 'pf':  # the PF is repelled along u_0 (Re > 0 beyond hλ = 2) and oscillates along u_1
    rates = np.linalg.eigvals(np.asarray(expected))
    assert np.sum(rates.real > 0) == 1 and np.sum(np.abs(rates.imag) > 0.1) == 2


def test_the_printed_igr_jacobian_is_not_the_derivative_of_the_field(critical):
  """Erratum 2: A.141's −(λ + h²λ²/2) is not the derivative of −g − (h/2)Hg at a critical point."""
  values, u, h, jacobians = critical
  jac = jacobians['igr']
  printed = u.T @ np.diag(-(values + h**2 / 2 * values**2)) @ u
  assert np.max(np.abs(printed - jac)) > 0.1


def test_critical_jacobian_takes_pytree_vectors():
  params = {'a': jnp.array([0.0, 0.0]), 'b': jnp.array(0.0)}
  loss = lambda p: 0.5 * (3.0 * p['a'][0] ** 2 + p['a'][1] ** 2 + 0.5 * p['b'] ** 2) + p['a'][0] * p['b'] ** 2
  pairs = jax.jit(eigen.dense_eigenpairs, static_argnums=0)(loss, params)
  jac = st.critical_jacobian(pairs.values, pairs.vectors, 0.2, 'igr')
  np.testing.assert_allclose(jac, np.diag(-(np.array([3.0, 1.0, 0.5]) + 0.1 * np.array([9.0, 1.0, 0.25]))), atol=1e-12)
  with pytest.raises(ValueError, match='one eigenvalue per vector'):
    st.critical_jacobian(pairs.values[:2], pairs.vectors, 0.2, 'igr')


def _run_gd(h, lam, steps):
  return np.asarray(it.gd(lambda p: 0.5 * jnp.sum(lam * p**2), jnp.ones(2), h, steps))[-1]


def _run_heavy_ball(h, lam, beta, steps):
  """v_t = βv_{t−1} − hg; θ_t = θ_{t−1} + v_t (Eq 2.16) on E = ½Σλθ²."""

  def step(carry, _):
    theta, v = carry
    v = beta * v - h * lam * theta
    return (theta + v, v), None

  (theta, _), _ = jax.lax.scan(step, (jnp.ones(2), jnp.zeros(2)), None, length=steps)
  return np.asarray(theta)


def test_divergence_thresholds_match_the_iterations_either_side():
  lam = jnp.array([3.0, 0.5])  # λ_0 = 3
  for factor in (0.99, 1.01):
    h = factor * 2 / 3
    grows = np.linalg.norm(_run_gd(h, lam, 1000)) > 1
    assert bool(st.gd_diverges(h, 3.0)) == grows == (factor > 1)
    beta = 0.9
    h = factor * 2 * (1 + beta) / 3
    grows = np.linalg.norm(_run_heavy_ball(h, lam, beta, 500)) > 1
    assert bool(st.heavy_ball_diverges(h, 3.0, beta)) == grows == (factor > 1)
  # GD's threshold is not heavy ball's: at hλ_0 = 3 GD diverges and heavy ball with β = 0.9 converges.
  assert bool(st.gd_diverges(1.0, 3.0)) and not bool(st.heavy_ball_diverges(1.0, 3.0, 0.9))
  assert np.linalg.norm(_run_heavy_ball(1.0, lam, 0.9, 4000)) < 1e-3
