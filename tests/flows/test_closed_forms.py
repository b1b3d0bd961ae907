"""The principal flow of a quadratic in closed form (erratum 1's correction of Eq A.121) against gradient descent,
against the integrated PF field, and on E = ½z² (Figure 3.6)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.flows import coefficients as co
from smoothrl.flows import integrate as it
from smoothrl.flows import stability as st

A = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.4]])
B = np.array([0.3, -0.7, 0.5])
THETA_0 = np.array([2.0, 1.0, -0.5])
LAMBDA_0 = float(np.linalg.eigvalsh(A)[-1])
# hλ_0 below 1 (real), between 1 and 2 (complex, oscillating), above 2 (divergent), and exactly 1 (erratum 5).
REGIMES = {'real': 0.6, 'oscillating': 1.5, 'divergent': 2.3, 'at_one': 1.0}


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


def _quadratic(p):
  return 0.5 * p @ jnp.asarray(A) @ p + jnp.asarray(B) @ p


def _pf_field(p, h, a, b):
  """The PF of ½θᵀAθ + bᵀθ (Eq 3.9) from A's eigenpairs: Σ α_PF(hλ_i)(gᵀu_i)u_i, bilinear for complex p."""
  values, u = jnp.linalg.eigh(a)
  g = a @ p + b
  alpha = co.alpha_pf((h * values).astype(jnp.complex128))
  return u.astype(jnp.complex128) @ (alpha * (u.T @ g))


FRACTIONS = np.array([0.37, 1.0, 1.25, 2.0, 2.75])  # t/h, on and off the GD grid


@jax.jit
def _pf_paths(hs, a, b, theta_0):
  """θ(h·FRACTIONS) of the integrated complex PF field for each h: one compiled diffrax solve, mapped over h."""

  def solve(h):
    return it.integrate(
      _pf_field, theta_0, FRACTIONS[-1] * h, h, a, b, saveat=h * FRACTIONS, rtol=1e-11, atol=1e-12, holomorphic=True
    ).ys

  return jax.lax.map(solve, hs)


@pytest.mark.parametrize('regime', list(REGIMES))
def test_the_closed_form_is_gradient_descent_at_every_step(regime):
  h = REGIMES[regime] / LAMBDA_0
  steps = 20
  iterates = it.gd(_quadratic, jnp.asarray(THETA_0), h, steps)
  closed = st.quadratic_pf_solution(A, B, THETA_0, h, h * np.arange(steps + 1))
  np.testing.assert_allclose(closed, iterates, rtol=1e-12, atol=1e-12)
  star = -np.linalg.solve(A, B)
  if regime == 'divergent':
    assert np.linalg.norm(iterates[-1] - star) > 10 * np.linalg.norm(THETA_0 - star)


def test_the_printed_closed_form_is_not_gradient_descent():
  """Remark 3.3.1 / Eq A.121 as printed: Σ e^{a_it}θ_0ᵀu_iu_i + tΣ α_PF(hλ_i)bᵀu_i (no u_i on the second sum)."""
  h = 0.6 / LAMBDA_0
  t = 3 * h
  values, u = np.linalg.eigh(A)
  a = np.log1p(-h * values) / h
  printed = u @ (np.exp(a * t) * (u.T @ THETA_0)) + t * np.sum(np.log1p(-h * values) / (h * values) * (u.T @ B))
  iterate = np.asarray(it.gd(_quadratic, jnp.asarray(THETA_0), h, 3))[-1]
  assert np.linalg.norm(printed - iterate) > 0.1
  np.testing.assert_allclose(st.quadratic_pf_solution(A, B, THETA_0, h, t), iterate, rtol=1e-12)


def test_the_corrected_form_with_the_minimum_shifted_out():
  """θ(t) = θ* + Σ_i e^{a_it}((θ_0 − θ*)ᵀu_i)u_i, θ* = −A⁻¹b, evaluated literally (erratum 1)."""
  h, t = 1.5 / LAMBDA_0, np.array([0.3, 1.7, 2.0]) / LAMBDA_0
  values, u = np.linalg.eigh(A)
  star = -np.linalg.solve(A, B)
  rate = np.log((1 - h * values).astype(complex)) / h  # numpy's principal branch: +iπ for a negative real
  expected = star + (np.exp(rate * t[:, None]) * ((THETA_0 - star) @ u)) @ u.T
  np.testing.assert_allclose(st.quadratic_pf_solution(A, B, THETA_0, h, t), expected, rtol=1e-12, atol=1e-13)


def test_erratum_5_figure_3_7_at_h_one_half_reaches_the_minimum_along_u_0_in_one_step():
  """E = θᵀAθ with A = diag(1, 0.01) (no ½, so H = 2A) at h = 0.5: hλ_0 = 1, the u_0 component is 0 for t > 0."""
  a, b, theta_0, h = 2 * np.diag([1.0, 0.01]), np.zeros(2), np.array([1.0, 1.0]), 0.5
  path = st.quadratic_pf_solution(a, b, theta_0, h, np.array([0.0, 0.1, 0.5, 1.0, 1.5]))
  assert np.all(np.isfinite(path))
  np.testing.assert_allclose(path[0], theta_0)
  np.testing.assert_allclose(path[1:, 0], 0.0, atol=1e-300)
  np.testing.assert_allclose(path[1:, 1], (1 - 0.01) ** (np.array([0.1, 0.5, 1.0, 1.5]) / h), rtol=1e-12)


def test_a_singular_hessian_moves_linearly_along_its_null_direction():
  """λ = 0: the PF coefficient is −1, so θᵀu(t) = θ_0ᵀu − t bᵀu (no A⁻¹ needed)."""
  a, b, theta_0, h = np.diag([1.0, 0.0]), np.array([0.5, 0.25]), np.array([1.0, 2.0]), 0.4
  t = np.array([0.0, 0.4, 1.0, 1.3])
  path = st.quadratic_pf_solution(a, b, theta_0, h, t)
  np.testing.assert_allclose(path[:, 1], 2.0 - 0.25 * t, rtol=1e-14)
  iterates = it.gd(lambda p: 0.5 * p @ jnp.asarray(a) @ p + jnp.asarray(b) @ p, jnp.asarray(theta_0), h, 3)
  np.testing.assert_allclose(path[:2], iterates[:2], rtol=1e-13)


def test_the_closed_form_refuses_a_bad_quadratic():
  with pytest.raises(ValueError, match='symmetric'):
    st.quadratic_pf_solution(np.array([[1.0, 2.0], [0.0, 1.0]]), np.zeros(2), np.ones(2), 0.1, 1.0)
  with pytest.raises(ValueError, match=r'\(n, n\)'):
    st.quadratic_pf_solution(np.eye(2), np.zeros(3), np.ones(2), 0.1, 1.0)


def test_the_integrated_principal_flow_is_the_closed_form_in_every_regime():
  """Diffrax on the complex PF field of the quadratic at t on and off the GD grid, hλ_0 = 0.6, 1.5 and 2.3."""
  hs = np.array([REGIMES['real'], REGIMES['oscillating'], REGIMES['divergent']]) / LAMBDA_0
  paths = np.asarray(_pf_paths(hs, A, B, THETA_0))
  for h, path in zip(hs, paths):
    closed = st.quadratic_pf_solution(A, B, THETA_0, h, h * FRACTIONS)
    np.testing.assert_allclose(path, closed, rtol=1e-8, atol=1e-9)


def test_half_z_squared_follows_one_minus_h_to_the_t_over_h():
  """Figure 3.6: E = ½z², z(t) = (1 − h)^{t/h}z(0) on the principal branch: real (h = 0.8), oscillating (1.5),
  divergent (2.1), at t/h off the integers. Three copies of ½z² with z(0) = 1, 2, −1 (E = ½Σz_i², the PF's A = I)
  share the compiled solve of the test above."""
  hs = np.array([0.8, 1.5, 2.1])
  z_0 = np.array([1.0, 2.0, -1.0])
  paths = np.asarray(_pf_paths(hs, np.eye(3), np.zeros(3), z_0))
  for h, path in zip(hs, paths):
    expected = complex(1 - h) ** FRACTIONS[:, None] * z_0  # Python's principal power
    np.testing.assert_allclose(path, expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(st.predict_projection(z_0, 1.0, h, 'pf', t=h * FRACTIONS[:, None]), expected, rtol=1e-12)
  # The oscillating branch leaves the reals off the grid; the divergent one grows: |z(2.75h)| = 1.1^{2.75}|z(0)|.
  assert abs(paths[1, 2, 0].imag) > 0.1 and abs(paths[1, 1, 0].imag) < 1e-8
  assert abs(paths[2, -1, 0]) > 1.2
