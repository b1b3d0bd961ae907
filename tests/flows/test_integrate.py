"""The integrators (diffrax, small-step Euler), gradient descent and the errors of a flow against it, checked on
linear fields with matrix-exponential solutions; complex states and the holomorphy check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from smoothrl.flows import fields, holomorphic
from smoothrl.flows import integrate as it

A = np.array([[2.0, 0.5], [0.5, 1.0]])
B = np.array([0.3, -0.4])
STAR = -np.linalg.solve(A, B)
THETA_0 = np.array([1.0, -1.5])
H = 0.3


@pytest.fixture(autouse=True, scope='module')
def _x64():
  with jax.enable_x64(True):
    yield


def _quadratic(p):
  return 0.5 * p @ jnp.asarray(A) @ p + jnp.asarray(B) @ p


def _ngf_quadratic(p):
  return -(jnp.asarray(A) @ p + jnp.asarray(B))


def _ngf_solution(theta_0, t):
  """θ(t) = θ* + e^{−At}(θ_0 − θ*) of θ̇ = −(Aθ + b)."""
  return STAR + scipy.linalg.expm(-A * t) @ (theta_0 - STAR)


def _linear_tree(p):
  """θ̇ = −Mθ on a pytree {'w': (2,), 'b': ()}: the flattened state (w_0, w_1, b) with M below."""
  w, b = p['w'], p['b']
  return {'w': -jnp.array([w[0] + 0.5 * b, 2.0 * w[1]]), 'b': -(0.5 * w[0] + 0.25 * b)}


M_TREE = np.array([[1.0, 0.0, 0.5], [0.0, 2.0, 0.0], [0.5, 0.0, 0.25]])


TREE_START = {'w': np.array([1.0, -2.0]), 'b': np.array(0.5)}
TREE_TIMES = np.array([0.0, 0.25, 0.7, 1.3])


@pytest.fixture(scope='module')
def tree_flow():
  """The diffrax solve of the linear pytree field at TREE_TIMES, and its matrix-exponential solution (T, 3)."""
  traj = it.integrate(_linear_tree, TREE_START, 1.3, saveat=TREE_TIMES, rtol=1e-10, atol=1e-12)
  flat = np.array([1.0, -2.0, 0.5])
  return traj, np.stack([scipy.linalg.expm(-M_TREE * t) @ flat for t in TREE_TIMES])


def test_integrate_solves_a_linear_pytree_field_at_the_save_times(tree_flow):
  traj, expected = tree_flow
  np.testing.assert_allclose(traj.ts, TREE_TIMES)
  np.testing.assert_allclose(traj.ys['w'], expected[:, :2], rtol=1e-8, atol=1e-10)
  np.testing.assert_allclose(traj.ys['b'], expected[:, 2], rtol=1e-8, atol=1e-10)
  assert traj.ys['b'].shape == (4,) and int(traj.num_steps) > 3


def test_euler_converges_to_the_diffrax_solution_at_first_order(tree_flow):
  """The error of Euler against diffrax halves with dt; the thesis' dt = 5e-5 is far below the coarser ones."""
  traj, _ = tree_flow
  dts = jnp.array([0.02, 0.01, 0.005, 0.0025, it.EULER_DT])
  ends = jax.vmap(lambda dt: it.euler(_linear_tree, TREE_START, 1.3, dt=dt, saveat=TREE_TIMES).ys)(dts)
  gap = lambda key: np.abs(np.asarray(ends[key]) - np.asarray(traj.ys[key])[None]).reshape(len(dts), -1)
  errors = np.max(np.concatenate([gap('w'), gap('b')], axis=1), axis=1)
  slope = np.polyfit(np.log(dts[:4]), np.log(errors[:4]), 1)[0]
  assert abs(slope - 1) < 0.05, (slope, errors)
  assert errors[-1] < errors[3] / 30
  # Default save times: the end time only.
  final = it.euler(_linear_tree, TREE_START, 1.3, dt=0.0025)
  assert final.ts.shape == (1,) and final.ys['b'].shape == (1,)
  np.testing.assert_allclose(final.ys['w'][0], ends['w'][3, -1], rtol=1e-12)


def test_integrate_refuses_bad_inputs():
  p = jnp.ones(2)
  with pytest.raises(ValueError, match='solver must be one of'):
    it.integrate(_ngf_quadratic, p, 1.0, solver='rk4')
  with pytest.raises(ValueError, match='rtol and atol must be positive'):
    it.integrate(_ngf_quadratic, p, 1.0, rtol=0.0)
  with pytest.raises(ValueError, match=r'saveat must be non-decreasing times in \[0, t1'):
    it.integrate(_ngf_quadratic, p, 1.0, saveat=[0.5, 0.2])
  with pytest.raises(ValueError, match=r'saveat must be non-decreasing times in \[0, t1'):
    it.euler(_ngf_quadratic, p, 1.0, saveat=[0.5, 1.5])
  with pytest.raises(ValueError, match='t1 must be a finite time'):
    it.integrate(_ngf_quadratic, p, -1.0)
  with pytest.raises(ValueError, match='dt must be positive'):
    it.euler(_ngf_quadratic, p, 1.0, dt=0.0)
  with pytest.raises(ValueError, match='pytree like params'):
    it.integrate(lambda q: (q, q), p, 1.0)
  with pytest.raises(ValueError, match='real or complex floating point'):
    it.integrate(_ngf_quadratic, jnp.ones(2, jnp.int32), 1.0)
  with pytest.raises(ValueError, match="do not apply to method='euler'"):
    it.flow_iterates(_ngf_quadratic, p, 0.1, 2, method='euler', rtol=1e-3)
  with pytest.raises(ValueError, match='method must be one of'):
    it.flow_iterates(_ngf_quadratic, p, 0.1, 2, method='rk4')


def _square(z, h):
  """½Σz², taking the field's argument h as a loss takes the field's args (a batch, say)."""
  return 0.5 * jnp.sum(z**2)


def _pf_square(z, h):
  """The PF of ½Σz²: ż = α_PF(h)z, complex whatever z (hλ = h > 1 here)."""
  return jnp.log(1 - h + 0j) / h * z


def test_a_complex_state_needs_a_holomorphic_loss():
  z = jnp.array([1.0, 0.5])
  with pytest.raises(ValueError, match='pass loss='):  # real params, but the field leaves the reals
    it.integrate(_pf_square, z, 1.0, 1.5)
  with pytest.raises(ValueError, match='pass loss='):
    it.euler(_ngf_quadratic, z.astype(jnp.complex128), 1.0)
  not_holomorphic = lambda z, h: 0.5 * jnp.sum(z * jnp.conj(z))  # |z|², complex-valued but not holomorphic
  with pytest.raises(holomorphic.NotHolomorphicError, match='conj'):
    it.integrate(_pf_square, z, 1.0, 1.5, loss=not_holomorphic)
  with pytest.raises(holomorphic.NotHolomorphicError):
    it.per_iteration_error(_pf_square, jnp.stack([z, -0.5 * z]), 1.5, 1.5, loss=not_holomorphic)
  with pytest.raises(ValueError, match='traced'):
    jax.jit(lambda q: it.integrate(_pf_square, q, 1.0, 1.5, loss=_square).ys)(z)


def test_euler_reaches_every_save_time_exactly_with_a_shortened_last_step():
  """θ̇ = c: Euler is exact, so a save time off the dt grid shows whether the last step was cut to fit."""
  c = jnp.array([1.0, -2.0])
  traj = it.euler(lambda p: c, jnp.zeros(2), 0.123, dt=0.05, saveat=[0.03, 0.123])
  np.testing.assert_allclose(traj.ys, np.outer([0.03, 0.123], c), rtol=1e-14)
  assert int(traj.num_steps) == 3  # 0.03: one step of 0.03; 0.093: 0.05 + 0.043
  on_grid = it.euler(lambda p: c, jnp.zeros(2), 0.1, dt=0.05)
  np.testing.assert_allclose(on_grid.ys[0], 0.1 * c, rtol=1e-14)


def test_gd_iterates_with_pytree_params():
  params = {'w': jnp.array([1.0, -1.0]), 'b': jnp.array(2.0)}
  loss = lambda p, s: s * (jnp.sum(p['w'] ** 2) + p['w'][0] * p['b'] + p['b'] ** 2)
  iterates = it.gd(loss, params, 0.1, 3, 0.5)
  assert iterates['w'].shape == (4, 2) and iterates['b'].shape == (4,)
  w, b = np.array([1.0, -1.0]), 2.0
  for n in range(1, 4):  # ∇ = s(2w + (b, 0), w_0 + 2b) by hand
    w, b = w - 0.1 * 0.5 * (2 * w + np.array([b, 0.0])), b - 0.1 * 0.5 * (w[0] + 2 * b)
    np.testing.assert_allclose(iterates['w'][n], w, rtol=1e-14)
    np.testing.assert_allclose(iterates['b'][n], b, rtol=1e-14)
  assert it.gd(loss, params, 0.1, 0, 0.5)['b'].shape == (1,)
  with pytest.raises(ValueError, match='steps must be an int'):
    it.gd(loss, params, 0.1, -1, 0.5)
  with pytest.raises(ValueError, match='real params'):
    it.gd(_quadratic, jnp.ones(2, jnp.complex128), 0.1, 2)


@pytest.fixture(scope='module')
def gd_path():
  return it.gd(_quadratic, jnp.asarray(THETA_0), H, 4)


def test_flow_iterates_and_the_global_error_against_the_matrix_exponential(gd_path):
  expected = np.stack([_ngf_solution(THETA_0, n * H) for n in range(5)])
  flow = it.flow_iterates(_ngf_quadratic, jnp.asarray(THETA_0), H, 4, method='euler', dt=1e-4)
  np.testing.assert_allclose(flow.ts, H * np.arange(5), rtol=1e-15)
  np.testing.assert_allclose(flow.ys, expected, rtol=1e-3, atol=1e-4)
  error = it.global_error(_ngf_quadratic, gd_path, H, method='euler', dt=1e-4)
  np.testing.assert_allclose(error, np.linalg.norm(expected[1:] - np.asarray(gd_path)[1:], axis=1), rtol=1e-3)


def test_per_iteration_and_loss_errors_against_the_matrix_exponential(gd_path):
  """Both measures from the same one-step flows (Euler, dt = 1e-4: one compiled program for the two)."""
  path = np.asarray(gd_path)
  flows = np.stack([_ngf_solution(path[n - 1], H) for n in range(1, 5)])
  error = it.per_iteration_error(_ngf_quadratic, gd_path, H, method='euler', dt=1e-4)
  np.testing.assert_allclose(error, np.linalg.norm(flows - path[1:], axis=1), rtol=1e-3)
  # Theorem 3.7.1: the NGF's drift is about (h²/2)‖Hg‖ at θ_{n−1}.
  drift = np.linalg.norm((A @ (A @ path[:-1].T + B[:, None])).T, axis=1) * H**2 / 2
  np.testing.assert_allclose(error, drift, rtol=0.35)
  losses = it.loss_error(_quadratic, _ngf_quadratic, gd_path, H, method='euler', dt=1e-4)
  expected = [float(_quadratic(jnp.asarray(f)) - _quadratic(jnp.asarray(p))) for f, p in zip(flows, path[1:])]
  np.testing.assert_allclose(losses, expected, rtol=1e-3)
  assert np.all(np.asarray(losses) > 0)  # GD's loss falls faster than the NGF's: by ≈ (h²/2)gᵀHg


def test_one_step_flows_land_where_the_closed_forms_say_beyond_the_edge_of_stability():
  """hλ_0 = 2.2: from each GD iterate the NGF (matrix exponential) and the PF (fields.principal, complex, which
  lands on the next GD iterate exactly on a quadratic), as one state of two copies, so one diffrax solve
  (vmapped over the iterates) serves both; the complex state's loss is checked once, at θ_0."""
  h = 2.2 / float(np.linalg.eigvalsh(A)[-1])
  path = it.gd(_quadratic, jnp.asarray(THETA_0), h, 3)
  pf = fields.principal(_quadratic, h)
  both = lambda p: {'ngf': _ngf_quadratic(p['ngf']), 'pf': pf(p['pf'])}
  loss = lambda p: _quadratic(p['ngf']) + _quadratic(p['pf'])
  flows = it.one_step_flows(both, {'ngf': path, 'pf': path}, h, rtol=1e-10, atol=1e-12, loss=loss)
  assert flows['pf'].dtype == jnp.complex128 and flows['pf'].shape == (3, 2)
  path = np.asarray(path)
  expected = np.stack([_ngf_solution(path[n - 1], h) for n in range(1, 4)])
  np.testing.assert_allclose(flows['ngf'], expected, rtol=1e-7, atol=1e-9)
  np.testing.assert_allclose(flows['pf'], path[1:], rtol=1e-7, atol=1e-9)
  assert np.min(np.linalg.norm(expected - path[1:], axis=1)) > 0.1  # the NGF does not follow GD here
