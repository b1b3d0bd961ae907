"""Tests of smoothrl.optimizers.dal: DAL (Eq 3.20), DAL-p (Eq 3.21) and momentum DAL (Eqs 3.22-3.23).

References are closed forms on quadratics and cubics, and dense Hessians (`jax.hessian`, `eigh`) elsewhere.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from smoothrl import optimizers as opt
from smoothrl.curvature.products import grad_and_hvp

_X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
_Y = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)


def _params(seed: int = 2) -> dict[str, Any]:
  rng = np.random.default_rng(seed)
  return {
    'w': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
    'b': jnp.asarray(0.5 * rng.normal(size=(2,)), jnp.float32),
  }


def _loss(params: dict[str, Any]) -> jax.Array:
  """A non-quadratic loss: a tanh layer's squared error plus a quartic term."""
  out = jnp.tanh(_X @ params['w'] + params['b'])
  return 2.0 * jnp.mean((out - _Y) ** 2) + 0.1 * jnp.sum(params['w'] ** 4)


def _dense(loss: Any, params: Any) -> tuple[np.ndarray, np.ndarray]:
  """(g, H) of `loss` at `params` as a float64 vector and dense matrix."""
  flat, unravel = ravel_pytree(params)
  fun = lambda x: loss(unravel(x))  # noqa: E731
  g, h = jax.jit(lambda x: (jax.grad(fun)(x), jax.hessian(fun)(x)))(flat)
  h = np.asarray(h, np.float64)
  return np.asarray(g, np.float64), (h + h.T) / 2


def _reference(g: np.ndarray, h: np.ndarray, p: float = 1.0, c: float = 2.0, cap: float = 5.0) -> dict[str, float]:
  """DAL's quantities from g and the dense Hessian, with ‖Hĝ‖ from the eigendecomposition (erratum 4)."""
  lam, u = np.linalg.eigh(h)
  g_hat = g / np.linalg.norm(g)
  proj = u.T @ g_hat
  hg_norm = np.sqrt(np.sum(lam**2 * proj**2))  # ‖Hĝ‖ = (Σ λᵢ²(ĝᵀuᵢ)²)^½
  np.testing.assert_allclose(hg_norm, np.linalg.norm(h @ g_hat), rtol=1e-10)
  rate = min(c / hg_norm**p, cap)
  curv = np.sum(lam * proj**2)  # ĝᵀHĝ
  return {
    'rate': rate,
    'hg_norm': hg_norm,
    'drift': 0.5 * rate**2 * np.linalg.norm(h @ g),
    'taylor_rate': 1 / curv if curv > 0 else np.inf,
    'grad_norm': np.linalg.norm(g),
  }


def _step(tx: optax.GradientTransformationExtraArgs, params: Any, loss: Any = _loss, **kwargs: Any) -> tuple[Any, Any]:
  grads = jax.grad(loss)(params)
  return tx.update(grads, tx.init(params), params, obj_fn=loss, **kwargs)


def _assert_state(state: Any, ref: dict[str, float], rtol: float = 1e-5) -> None:
  for name, value in ref.items():
    np.testing.assert_allclose(float(getattr(state, name)), value, rtol=rtol, err_msg=name)


# ----------------------------------------------------------------------------
# DAL on quadratics: θ_{t+1} = −θ_t.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('lam', [0.5, 3.0, 10.0])
def test_dal_oscillates_on_1d_quadratic(lam):
  loss = lambda t: lam * t**2 / 2  # noqa: E731
  tx = opt.dal()
  theta, state = jnp.float32(0.7), tx.init(jnp.float32(0.7))
  for _ in range(4):
    updates, state = tx.update(jax.grad(loss)(theta), state, theta, obj_fn=loss)
    new_theta = optax.apply_updates(theta, updates)
    np.testing.assert_allclose(new_theta, -theta, rtol=1e-6)
    theta = new_theta
  np.testing.assert_allclose(state.rate, 2 / lam, rtol=1e-6)
  np.testing.assert_allclose(state.hg_norm, lam, rtol=1e-6)
  assert int(state.count) == 4


def test_dal_oscillates_on_isotropic_pytree_quadratic():
  lam = 1.7
  loss = lambda p: lam * sum(jnp.sum(x**2) for x in jax.tree.leaves(p)) / 2  # noqa: E731
  params = _params()
  updates, _ = _step(opt.dal(), params, loss)
  new = optax.apply_updates(params, updates)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)):
    np.testing.assert_allclose(a, -b, rtol=1e-6)


def test_dal_on_diagonal_quadratic():
  lam = np.array([4.0, 1.0, 0.25], np.float32)
  loss = lambda t: 0.5 * jnp.sum(lam * t**2)  # noqa: E731
  tx = opt.dal(max_rate=100.0)
  # Along one eigendirection: h = 2/λᵢ and θ_{t+1} = −θ_t.
  for i in range(3):
    theta = jnp.zeros(3).at[i].set(0.9)
    updates, state = _step(tx, theta, loss)
    np.testing.assert_allclose(optax.apply_updates(theta, updates), -theta, rtol=1e-6)
    np.testing.assert_allclose(state.rate, 2 / lam[i], rtol=1e-6)
  # In general h = 2‖Λθ‖/‖Λ²θ‖ and θ_{t+1} = θ − hΛθ.
  theta = jnp.asarray([0.3, -1.2, 2.0], jnp.float32)
  t = np.asarray(theta, np.float64)
  h = 2 * np.linalg.norm(lam * t) / np.linalg.norm(lam**2 * t)
  updates, state = _step(tx, theta, loss)
  np.testing.assert_allclose(state.rate, h, rtol=1e-6)
  np.testing.assert_allclose(optax.apply_updates(theta, updates), t - h * lam * t, rtol=1e-5)


# ----------------------------------------------------------------------------
# The rate and the logged quantities against the explicit Hessian.
# ----------------------------------------------------------------------------


def test_dal_rate_drift_and_taylor_rate_match_explicit_hessian():
  params = _params()
  g, h = _dense(_loss, params)
  ref = _reference(g, h)
  assert ref['rate'] < 5.0  # the cap does not bind
  updates, state = _step(opt.dal(), params)
  _assert_state(state, ref)
  flat_updates, _ = ravel_pytree(updates)
  np.testing.assert_allclose(flat_updates, -ref['rate'] * g, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('p, c', [(0.5, 2.0), (0.25, 2.0), (2.0, 1.0)])
def test_dal_p_rate_is_constant_over_power_of_hg_norm(p, c):
  params = _params()
  g, h = _dense(_loss, params)
  ref = _reference(g, h, p=p, c=c, cap=1e6)
  np.testing.assert_allclose(ref['rate'], c / ref['hg_norm'] ** p)
  _, state = _step(opt.dal(p=p, constant=c, max_rate=1e6), params)
  _assert_state(state, ref)


def test_dal_p_names():
  params = _params()
  u1, s1 = _step(opt.dal_p(p=1.0), params)
  u2, s2 = _step(opt.dal(), params)
  for a, b in zip(jax.tree.leaves((u1, s1)), jax.tree.leaves((u2, s2))):
    np.testing.assert_array_equal(a, b)
  _, s_half = _step(opt.dal_p(), params)
  np.testing.assert_allclose(s_half.rate, 2 / np.sqrt(float(s2.hg_norm)), rtol=1e-6)


def test_taylor_rate_is_inf_without_positive_curvature():
  loss = lambda t: -0.5 * jnp.sum(t**2) + 0.1 * jnp.sum(t**3)  # noqa: E731
  theta = jnp.asarray([0.5, -0.3], jnp.float32)
  g, h = _dense(loss, theta)
  ref = _reference(g, h)
  assert ref['taylor_rate'] == np.inf
  _, state = _step(opt.dal(), theta, loss)
  _assert_state(state, ref)


def test_cap_binds_on_flat_and_nearly_flat_losses():
  theta = jnp.asarray([0.4, -2.0], jnp.float32)
  # Linear loss: Hg = 0, so h = max_rate.
  linear = lambda t: jnp.dot(jnp.asarray([1.5, -0.5]), t)  # noqa: E731
  updates, state = _step(opt.dal(max_rate=3.0), theta, linear)
  np.testing.assert_allclose(updates, -3.0 * np.array([1.5, -0.5]), rtol=1e-6)
  assert float(state.rate) == 3.0 and float(state.hg_norm) == 0.0 and float(state.drift) == 0.0
  assert float(state.taylor_rate) == np.inf
  # λ = 0.1: 2/λ = 20 > 5 is capped, and reached with a higher cap.
  shallow = lambda t: 0.05 * jnp.sum(t**2)  # noqa: E731
  _, state = _step(opt.dal(), theta, shallow)
  np.testing.assert_allclose(state.rate, 5.0)
  _, state = _step(opt.dal(max_rate=50.0), theta, shallow)
  np.testing.assert_allclose(state.rate, 20.0, rtol=1e-6)


def test_zero_gradient_gives_zero_step_without_nan():
  loss = lambda t: jnp.sum(t**2)  # noqa: E731
  theta = jnp.zeros(3)
  for tx in (opt.dal(), opt.dal(curvature='fd'), opt.momentum_dal()):
    updates, state = _step(tx, theta, loss)
    np.testing.assert_array_equal(updates, np.zeros(3))
    assert float(state.rate) == 5.0 and float(state.hg_norm) == 0.0 and float(state.grad_norm) == 0.0
    assert float(state.taylor_rate) == np.inf


# ----------------------------------------------------------------------------
# Finite-difference curvature (Appendix A.3).
# ----------------------------------------------------------------------------


def test_fd_curvature_matches_exact_within_fd_error():
  params = _params()
  _, exact = _step(opt.dal(), params)
  _, fd = _step(opt.dal(curvature='fd'), params)
  rel = abs(float(fd.hg_norm) - float(exact.hg_norm)) / float(exact.hg_norm)
  assert rel < 2e-2
  _, finer = _step(opt.dal(curvature='fd', fd_scale=1e-3), params)
  assert abs(float(finer.hg_norm) - float(exact.hg_norm)) / float(exact.hg_norm) < rel / 3  # O(ε) error


@pytest.mark.parametrize('fd_scale', [0.01, 0.2])
def test_fd_curvature_uses_eps_fd_scale_over_grad_norm(fd_scale):
  # E = Σ aᵢθᵢ³/6 + bᵢθᵢ²/2 has a quadratic gradient, so the forward difference is exactly
  # Hg + (ε/2)·a·g² (element-wise), with g = bθ + aθ²/2 and Hg = (b + aθ)g.
  a = np.array([3.0, -2.0, 1.0])
  b = np.array([1.0, 2.0, 0.5])
  loss = lambda t: jnp.sum(a * t**3) / 6 + jnp.sum(b * t**2) / 2  # noqa: E731
  theta = np.array([0.8, -0.6, 1.5])
  g = b * theta + a * theta**2 / 2
  hg = (b + a * theta) * g

  def expected_hg_norm(eps: float) -> float:
    return np.linalg.norm(hg + 0.5 * eps * a * g**2) / np.linalg.norm(g)

  eps = fd_scale / np.linalg.norm(g)
  _, state = _step(opt.dal(curvature='fd', fd_scale=fd_scale), jnp.asarray(theta, jnp.float32), loss)
  np.testing.assert_allclose(state.hg_norm, expected_hg_norm(eps), rtol=1e-4)
  for wrong in (fd_scale, 2 * eps, 0.5 * eps):  # the test tells these apart
    assert abs(expected_hg_norm(wrong) / expected_hg_norm(eps) - 1) > 1e-3


# ----------------------------------------------------------------------------
# A precomputed Hg.
# ----------------------------------------------------------------------------


def test_hvp_argument_gives_the_same_step_and_calls_no_obj_fn():
  params = _params()
  grads, hg = grad_and_hvp(_loss, params)
  tx = opt.dal_p()
  ref_updates, ref_state = tx.update(grads, tx.init(params), params, obj_fn=_loss)

  def forbidden(p: Any) -> jax.Array:
    raise AssertionError('obj_fn was called')

  for kwargs in ({'obj_fn': forbidden}, {}):
    updates, state = tx.update(grads, tx.init(params), params, hvp=hg, **kwargs)
    for a, b in zip(jax.tree.leaves((updates, state)), jax.tree.leaves((ref_updates, ref_state))):
      np.testing.assert_allclose(a, b, rtol=1e-6)
  updates, _ = tx.update(grads, tx.init(params), None, hvp=hg)  # params are not needed
  for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(ref_updates)):
    np.testing.assert_allclose(a, b, rtol=1e-6)


# ----------------------------------------------------------------------------
# Momentum DAL (Eqs 3.22-3.23).
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('beta, c, p', [(0.9, 0.5, 1.0), (0.6, 2.0, 0.5)])
def test_momentum_dal_matches_hand_written_recurrence(beta, c, p):
  params = _params()
  tx = opt.momentum_dal(beta=beta, constant=c, p=p)
  state = tx.init(params)
  theta = params
  theta_ref = np.asarray(ravel_pytree(params)[0], np.float64)
  v_ref = np.zeros_like(theta_ref)
  for _ in range(2):
    g, h = _dense(_loss, theta)
    ref = _reference(g, h, p=p, c=c)
    v_ref = beta * v_ref - ref['rate'] * g  # v_t = βv_{t−1} − [c/‖Hĝ‖ᵖ] g
    theta_ref = theta_ref + v_ref  # θ_t = θ_{t−1} + v_t
    updates, state = tx.update(jax.grad(_loss)(theta), state, theta, obj_fn=_loss)
    theta = optax.apply_updates(theta, updates)
    _assert_state(state, ref)
    np.testing.assert_allclose(ravel_pytree(updates)[0], v_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ravel_pytree(state.velocity)[0], v_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ravel_pytree(theta)[0], theta_ref, rtol=1e-5, atol=1e-6)
  assert int(state.count) == 2


def test_momentum_dal_with_zero_beta_and_dal_constant_is_dal():
  params = _params()
  u1, s1 = _step(opt.momentum_dal(beta=0.0, constant=2.0), params)
  u2, s2 = _step(opt.dal(), params)
  for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  np.testing.assert_allclose(s1.rate, s2.rate)


# ----------------------------------------------------------------------------
# Composition, jit, vmap, state.
# ----------------------------------------------------------------------------


def test_dal_composes_after_clipping_in_chain():
  params = _params()
  grads = jax.grad(_loss)(params)
  norm = float(optax.tree.norm(grads))
  tx = optax.chain(optax.clip_by_global_norm(0.25 * norm), opt.dal())
  updates, (_, dal_state) = tx.update(grads, tx.init(params), params, obj_fn=_loss)
  _, plain = _step(opt.dal(), params)
  np.testing.assert_allclose(dal_state.rate, plain.rate, rtol=1e-5)  # ‖Hĝ‖ does not see the clipping
  np.testing.assert_allclose(dal_state.grad_norm, 0.25 * norm, rtol=1e-5)
  for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
    np.testing.assert_allclose(u, -float(plain.rate) * 0.25 * np.asarray(g), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('make', [opt.dal, lambda: opt.momentum_dal(beta=0.5)])
def test_jit_and_vmap_over_a_batch_of_params(make):
  tx = make()
  batch = jax.tree.map(lambda *xs: jnp.stack(xs), *[_params(seed) for seed in range(3)])

  def step(params: Any, state: Any) -> tuple[Any, Any]:
    return tx.update(jax.grad(_loss)(params), state, params, obj_fn=_loss)

  states = jax.vmap(tx.init)(batch)
  updates, states = jax.jit(jax.vmap(step))(batch, states)
  assert states.rate.shape == (3,)
  for i in range(3):
    member = jax.tree.map(lambda x, i=i: x[i], batch)
    u, s = _step(tx, member)
    for a, b in zip(jax.tree.leaves((u, s)), jax.tree.leaves(jax.tree.map(lambda x, i=i: x[i], (updates, states)))):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)


def test_vmap_over_hyperparameters():
  params = _params()
  powers = jnp.asarray([0.5, 1.0, 2.0])
  rates = jax.vmap(lambda q: _step(opt.dal(p=q, max_rate=1e3), params)[1].rate)(powers)
  for q, rate in zip([0.5, 1.0, 2.0], rates):
    np.testing.assert_allclose(rate, _step(opt.dal(p=q, max_rate=1e3), params)[1].rate, rtol=1e-6)


def test_state_is_a_pytree_of_arrays():
  params = _params()
  for tx, cls in ((opt.dal(), opt.DALState), (opt.momentum_dal(), opt.MomentumDALState)):
    state = tx.init(params)
    assert isinstance(state, cls)
    _, state = tx.update(jax.grad(_loss)(params), state, params, obj_fn=_loss)
    leaves = jax.tree.leaves(state)
    assert all(isinstance(x, jax.Array) for x in leaves)
    assert state.count.dtype == jnp.int32 and state.rate.dtype == jnp.float32 and state.rate.shape == ()


# ----------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
  'kwargs, match',
  [
    ({'p': 0.0}, 'p'),
    ({'p': -1.0}, 'p'),
    ({'p': float('nan')}, 'p'),
    ({'max_rate': 0.0}, 'max_rate'),
    ({'max_rate': -2.0}, 'max_rate'),
    ({'constant': 0.0}, 'constant'),
    ({'fd_scale': 0.0}, 'fd_scale'),
    ({'curvature': 'lanczos'}, 'curvature'),
  ],
)
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    opt.dal(**kwargs)
  with pytest.raises(ValueError, match=match):
    opt.momentum_dal(**kwargs)


@pytest.mark.parametrize('beta', [-0.1, 1.0, 1.5])
def test_bad_beta(beta):
  with pytest.raises(ValueError, match='beta'):
    opt.momentum_dal(beta=beta)


def test_missing_curvature_inputs():
  params = _params()
  grads = jax.grad(_loss)(params)
  for tx in (opt.dal(), opt.momentum_dal()):
    state = tx.init(params)
    with pytest.raises(ValueError, match='obj_fn'):
      tx.update(grads, state, params)
    with pytest.raises(ValueError, match='params'):
      tx.update(grads, state, None, obj_fn=_loss)
    with pytest.raises(ValueError, match='hvp'):
      tx.update(grads, state, params, hvp=grads['w'])
