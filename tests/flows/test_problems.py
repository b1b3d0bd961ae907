"""The toy losses of the flow figures against hand-computed values and dense derivatives, and the quadratics' closed
forms against matrix exponentials and gradient descent."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.linalg import expm

from smoothrl.flows import coefficients, holomorphic, problems


@pytest.fixture(scope='module', autouse=True)
def x64():
  with jax.enable_x64(True):
    yield


def test_quadratic_has_no_half_so_its_hessian_is_twice_a():
  a = jnp.array([[1.0, 0.3], [0.3, 0.01]])
  b = jnp.array([0.5, -1.0])
  theta = jnp.array([2.0, -1.0])
  # θᵀAθ = 4 − 1.2 + 0.01 = 2.81; bᵀθ = 1 + 1 = 2.
  assert float(problems.quadratic(theta, a, b)) == pytest.approx(4.81)
  assert float(problems.quadratic(theta, a)) == pytest.approx(2.81)
  np.testing.assert_allclose(jax.hessian(problems.quadratic)(theta, a, b), 2 * a, atol=1e-12)
  # Figure 3.7 at h = 0.5: hλ_0 = 1 exactly (erratum 5).
  toy = problems.toy('quadratic')
  lam = np.linalg.eigvalsh(np.asarray(jax.hessian(toy.loss)(jnp.asarray(toy.start), *toy.args)))
  np.testing.assert_allclose(0.5 * lam.max(), 1.0)


def test_squares_and_their_figures():
  assert float(problems.square(jnp.array([1.0, 3.0]), 0.6)) == pytest.approx(0.5 * (0.16 + 5.76))
  np.testing.assert_allclose(jax.grad(problems.square)(jnp.array([1.0]), 0.6), [0.4])
  assert problems.toy('shifted_square').args == (0.6,) and problems.toy('square').args == (0.0,)
  assert problems.toy('square').rates == (0.8, 1.5, 2.1) and problems.toy('shifted_square').rates == (1.2,)


def test_rosenbrock_at_its_minimum_and_at_its_start():
  assert float(problems.rosenbrock(jnp.array([1.0, 1.0]))) == 0.0
  start = jnp.asarray(problems.ROSENBROCK_START)
  assert float(problems.rosenbrock(start)) == pytest.approx(2.2**2 + 100 * 0.44**2)
  # H = [[2 − 400(y − 3x²), −400x], [−400x, 200]] = [[1330, 480], [480, 200]] at (−1.2, 1).
  hessian = jax.hessian(problems.rosenbrock)(start)
  np.testing.assert_allclose(hessian, [[1330.0, 480.0], [480.0, 200.0]], atol=1e-9)
  lam_0 = (1530 + math.sqrt(1130**2 + 4 * 480**2)) / 2
  assert float(jnp.linalg.eigvalsh(hessian)[-1]) == pytest.approx(lam_0)
  # The caption's regimes: λ_0 < 1/h, λ_0 just above 2/h, λ_0 ≫ 2/h.
  np.testing.assert_allclose([h * lam_0 for h in problems.toy('rosenbrock').rates], [0.904, 2.561, 7.532], atol=1e-3)


def test_cos_valley_is_continuous_but_kinked_at_zero_and_never_increases():
  grad = jax.jit(jax.vmap(lambda t: jax.grad(problems.cos_valley)(t[None])[0]))
  values = jax.jit(jax.vmap(lambda t: problems.cos_valley(t[None])))
  curvature = jax.jit(jax.vmap(lambda t: jax.hessian(problems.cos_valley)(t[None])[0, 0]))
  np.testing.assert_allclose(values(jnp.array([-1e-9, 1e-9, 3.0])), [1.0, 1.0, 2 + 1 + 1], rtol=1e-8)
  stationary = -1.5 * math.pi  # E' = 1 − sin θ = 0 and E'' = −cos θ = 0
  grid = jnp.concatenate([jnp.array([-1e-9, 1e-9, stationary]), jnp.linspace(-20.0, 5.0, 2001)])
  slopes = grad(grid)
  np.testing.assert_allclose(slopes[:2], [1.0, 1 / 3], rtol=1e-8)  # the kink at 0
  assert abs(float(slopes[2])) < 1e-12 and abs(float(curvature(grid[2:3])[0])) < 1e-12
  assert float(jnp.min(slopes)) >= -1e-12  # E never increases: no strict local minimum


def test_holomorphy_of_the_toys_is_as_declared():
  for name, toy in problems.TOYS.items():
    start = jnp.asarray(toy.start)
    if toy.holomorphic:
      holomorphic.check_holomorphic(toy.loss, start, *toy.args)
    else:
      with pytest.raises(holomorphic.NotHolomorphicError):
        holomorphic.check_holomorphic(toy.loss, start, *toy.args)
    assert name == toy.name


def test_toy_overrides_and_their_errors():
  t = problems.toy('quadratic', matrix=[[2.0, 0.0], [0.0, 1.0]], linear=[1.0, 0.0], start=[0.5, 0.5])
  assert float(t.loss(jnp.asarray(t.start), *t.args)) == pytest.approx(0.5 + 0.25 + 0.5)
  assert problems.toy('rosenbrock', a=2.0, b=10.0).args == (2.0, 10.0)
  assert problems.toy('square', centre=1.5).args == (1.5,)
  for call, message in (
    (lambda: problems.toy('banana'), 'unknown toy'),
    (lambda: problems.toy('quadratic', matrix=[[1.0, 2.0], [0.0, 1.0]]), 'symmetric'),
    (lambda: problems.toy('quadratic', linear=[1.0]), 'linear must have 2'),
    (lambda: problems.toy('rosenbrock', start=[1.0]), 'start of .rosenbrock. must have 2'),
    (lambda: problems.toy('square', start=[math.nan]), 'finite'),
  ):
    with pytest.raises(ValueError, match=message):
      call()


HESSIAN = np.array([[1.6, 0.4, 0.0], [0.4, 1.0, 0.2], [0.0, 0.2, 0.3]])
LINEAR = np.array([0.3, -0.2, 0.5])
THETA_0 = np.array([1.0, -0.5, 2.0])


@pytest.mark.parametrize('flow', ['ngf', 'igr', 'third'])
def test_the_real_flows_closed_form_is_the_matrix_exponential(flow):
  h, t = 0.7, 1.3
  values, u = np.linalg.eigh(HESSIAN)
  m = u @ np.diag(np.asarray(coefficients.COEFFICIENTS[flow](h * values)) * values) @ u.T  # α(hH)H
  star = -np.linalg.solve(HESSIAN, LINEAR)
  expected = star + np.asarray(expm(jnp.asarray(m * t))) @ (THETA_0 - star)
  got = problems.quadratic_solution(flow, HESSIAN, LINEAR, THETA_0, h, t)
  np.testing.assert_allclose(np.real(got), expected, rtol=1e-10, atol=1e-12)
  assert np.all(np.imag(got) == 0)
  # θ̇ = α(hH)(Hθ + b) at t = 0, by a central difference of the closed form.
  eps = 1e-6
  plus = problems.quadratic_solution(flow, HESSIAN, LINEAR, THETA_0, h, eps)
  minus = problems.quadratic_solution(flow, HESSIAN, LINEAR, THETA_0, h, 0.0)
  np.testing.assert_allclose(np.real(plus - minus) / eps, m @ THETA_0 + m @ np.linalg.solve(HESSIAN, LINEAR), rtol=1e-4)


@pytest.mark.parametrize('h', [0.5, 1.2, 3.0])
def test_the_pf_closed_form_is_gd_at_every_iterate_and_the_others_are_not(h):
  # λ = 2, 0.02 (Figure 3.7's E = θᵀAθ) plus a linear term; h = 0.5 puts hλ_0 at 1 exactly.
  hessian, linear, theta = np.diag([2.0, 0.02]), np.array([0.1, -0.3]), np.array([1.0, 1.0])
  iterates = [theta]
  for _ in range(4):
    iterates.append(iterates[-1] - h * (hessian @ iterates[-1] + linear))
  ts = h * np.arange(5)
  pf = problems.quadratic_solution('pf', hessian, linear, theta, h, ts)
  np.testing.assert_allclose(pf, np.array(iterates), atol=1e-12)
  np.testing.assert_allclose(problems.quadratic_solution('pf+third', hessian, linear, theta, h, ts), pf)
  ngf = problems.quadratic_solution('ngf', hessian, linear, theta, h, ts)
  assert np.max(np.abs(ngf - np.array(iterates))) > 0.1


def test_the_closed_form_refuses_an_unknown_flow():
  with pytest.raises(ValueError, match='unknown flow'):
    problems.quadratic_solution('adam', HESSIAN, LINEAR, THETA_0, 0.1, 1.0)
