"""Tests for smoothrl.curvature.products against dense derivatives (jax.hessian, jax.jacfwd) and closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from smoothrl.curvature import products


def _mlp_params(seed: int, dtype=jnp.float32) -> dict[str, jax.Array]:
  rng = np.random.default_rng(seed)
  shapes = {'w1': (3, 4), 'b1': (4,), 'w2': (4, 2), 'b2': (2,)}
  return {k: jnp.asarray(rng.standard_normal(s) * 0.8, dtype) for k, s in shapes.items()}


def _mlp_loss(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
  """A small tanh MLP with squared error: smooth, with nonzero third derivatives."""
  h = jnp.tanh(x @ params['w1'] + params['b1'])
  return 0.5 * jnp.mean(jnp.sum((h @ params['w2'] + params['b2'] - y) ** 2, axis=-1))


def _data(dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  rng = np.random.default_rng(100)
  return jnp.asarray(rng.standard_normal((5, 3)), dtype), jnp.asarray(rng.standard_normal((5, 2)), dtype)


def _flat(tree) -> np.ndarray:
  return np.asarray(ravel_pytree(tree)[0], np.float64)


@jax.jit
def _dense_jit(params, x, y) -> tuple[jax.Array, ...]:
  flat, unravel = ravel_pytree(params)
  e = lambda f: _mlp_loss(unravel(f), x, y)
  return e(flat), jax.grad(e)(flat), jax.hessian(e)(flat), jax.jacfwd(jax.hessian(e))(flat)


def _dense(params, x, y) -> tuple[np.ndarray, ...]:
  """(E, g, H, T) of the flattened loss: value, gradient, Hessian and third derivatives T_ikj = ∂³E/∂θ_i∂θ_k∂θ_j."""
  return tuple(np.asarray(a, np.float64) for a in _dense_jit(params, x, y))


def _with_aux(params, x, y):
  value = _mlp_loss(params, x, y)
  return value, {'twice': 2 * value, 'x': x}


FD_EPS = 1e-2  # the ε given to fd_hvp
THESIS_FD_SCALE = 0.01  # ε = 0.01/‖g‖ (thesis Appendix A.3), written out here rather than read from the module


def _all_products(params, v, x, y) -> dict[str, object]:
  """Every function of `products` at params (and along v), for one compiled program."""
  value, g_v, hg_v = products.value_grad_and_hvp(_mlp_loss, params, x, y)
  (value_a, aux), g_a, hg_a = products.value_grad_and_hvp(_with_aux, params, x, y, has_aux=True)
  g, hg = products.grad_and_hvp(_mlp_loss, params, x, y)
  g_fd, hg_fd = products.fd_grad_and_hvp(_mlp_loss, params, x, y)
  return {
    'hv': products.hvp(_mlp_loss, params, v, x, y),
    'g': g,
    'hg': hg,
    'value_v': value,
    'g_v': g_v,
    'hg_v': hg_v,
    'value_a': value_a,
    'aux': aux,
    'g_a': g_a,
    'hg_a': hg_a,
    'g_fd': g_fd,
    'hg_fd': hg_fd,
    'fd_v': products.fd_hvp(_mlp_loss, params, v, FD_EPS, x, y),
    'tgg': products.third_order(_mlp_loss, params, None, x, y),
    'tvv': products.third_order(_mlp_loss, params, v, x, y),
  }


@pytest.fixture(scope='module')
def batch():
  """Every product for three parameter sets in one program, `jit` of `vmap`; member 0 is the main model."""
  x, y = _data()
  members = [_mlp_params(seed) for seed in (0, 10, 11)]
  v = _mlp_params(3)
  stacked = jax.tree.map(lambda *p: jnp.stack(p), *members)
  out = jax.jit(jax.vmap(_all_products, in_axes=(0, None, None, None)))(stacked, v, x, y)
  return members, v, x, y, out


def _member(tree, i: int):
  return jax.tree.map(lambda leaf: leaf[i], tree)


@pytest.fixture(scope='module')
def model(batch):
  members, v, x, _, out = batch
  value, g, h, t = _dense(members[0], *_data())
  return {'params': members[0], 'v': _flat(v), 'x': x, 'value': value, 'g': g, 'h': h, 't': t, 'out': _member(out, 0)}


def test_tree_helpers_match_the_flattened_vectors():
  a, b = _mlp_params(1), _mlp_params(2)
  np.testing.assert_allclose(float(products.tree_vdot(a, b)), _flat(a) @ _flat(b), rtol=1e-5)
  np.testing.assert_allclose(float(products.tree_norm(a)), np.linalg.norm(_flat(a)), rtol=1e-6)
  np.testing.assert_allclose(_flat(products.tree_scale(-2.5, a)), -2.5 * _flat(a), rtol=1e-6)


def test_hvp_is_the_dense_hessian_times_v(model):
  np.testing.assert_allclose(_flat(model['out']['hv']), model['h'] @ model['v'], rtol=1e-4, atol=1e-5)


def test_grad_and_hvp_is_grad_then_hvp_along_it(model):
  out, g, h = model['out'], model['g'], model['h']
  np.testing.assert_allclose(_flat(out['g']), g, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(_flat(out['hg']), h @ g, rtol=1e-4, atol=1e-5)
  assert jax.tree.structure(out['hg']) == jax.tree.structure(model['params'])


def test_value_grad_and_hvp_with_and_without_aux(model):
  out, g, h = model['out'], model['g'], model['h']
  value = float(model['value'])
  for suffix in ('v', 'a'):
    np.testing.assert_allclose(float(out[f'value_{suffix}']), value, rtol=1e-6)
    np.testing.assert_allclose(_flat(out[f'g_{suffix}']), g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_flat(out[f'hg_{suffix}']), h @ g, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(float(out['aux']['twice']), 2 * value, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(out['aux']['x']), np.asarray(model['x']))


def test_third_order_is_the_third_derivative_tensor_contracted_twice(model):
  out, g, t, v = model['out'], model['g'], model['t'], model['v']
  np.testing.assert_allclose(_flat(out['tgg']), np.einsum('ikj,i,j->k', t, g, g), rtol=1e-4, atol=1e-5)
  # T[v, v] for a direction v other than the gradient; T is symmetric, so the slot order does not matter.
  np.testing.assert_allclose(_flat(out['tvv']), np.einsum('ikj,i,j->k', t, v, v), rtol=1e-4, atol=1e-4)


def test_fd_hvp_with_a_given_eps_is_the_forward_difference(model):
  h, t, v = model['h'], model['t'], model['v']
  got = _flat(model['out']['fd_v'])
  # [∇E(θ + εv) − ∇E(θ)]/ε = Hv + (ε/2) T[v, v] + O(ε²).
  taylor = h @ v + 0.5 * FD_EPS * np.einsum('ikj,i,j->k', t, v, v)
  assert np.linalg.norm(got - h @ v) > 10 * np.linalg.norm(got - taylor)
  np.testing.assert_allclose(got, taylor, rtol=0, atol=2e-3 * np.linalg.norm(h @ v))


def test_fd_hg_is_exact_hg_to_first_order_in_eps(model):
  """On the smooth MLP, FD Hg − Hg = (ε/2) T[g, g] + O(ε²) with ε = 0.01/‖g‖ (0.005 or 0.02 would be 25-50% off)."""
  g, h, t = model['g'], model['h'], model['t']
  np.testing.assert_allclose(_flat(model['out']['g_fd']), g, rtol=1e-5, atol=1e-6)
  eps = THESIS_FD_SCALE / np.linalg.norm(g)
  error = _flat(model['out']['hg_fd']) - h @ g
  first_order = 0.5 * eps * np.einsum('ikj,i,j->k', t, g, g)
  assert np.linalg.norm(error) < 0.05 * np.linalg.norm(h @ g)  # close, to O(ε)
  np.testing.assert_allclose(error, first_order, rtol=0, atol=0.03 * np.linalg.norm(first_order))


def test_fd_grad_and_hvp_on_a_cubic_recovers_eps_exactly():
  """E = Σ a_i θ_i³/3: ∇E = a θ², Hg = 2aθ g and the forward difference is exactly Hg + ε a g², ε = 0.01/‖g‖.

  In float64, so that each coordinate measures ε to about 1e-8; ε = 0.02/‖g‖ or 0.01 would be off by far more.
  """
  with jax.enable_x64(True):
    a = np.asarray([1.0, -2.0, 0.5, 3.0, -1.5])
    theta = {'u': jnp.asarray([0.7, -1.1, 1.3]), 'v': jnp.asarray([[0.4, -0.9]])}
    flat_theta = _flat(theta)
    cubic = lambda p: jnp.sum(a * ravel_pytree(p)[0] ** 3) / 3
    g_exact = a * flat_theta**2
    both = jax.jit(lambda p: (products.fd_grad_and_hvp(cubic, p), products.fd_grad_and_hvp(cubic, p, scale=0.1)))
    for scale, (g, hg) in zip((THESIS_FD_SCALE, 0.1), both(theta)):
      np.testing.assert_allclose(_flat(g), g_exact, rtol=1e-12)
      eps = (_flat(hg) - 2 * a * flat_theta * g_exact) / (a * g_exact**2)  # each coordinate measures ε
      np.testing.assert_allclose(eps, scale / np.linalg.norm(g_exact), rtol=1e-6)


def test_products_under_jit_and_vmap_over_parameter_sets(batch):
  """The other members of the vmapped batch (member 0 is checked above, function by function)."""
  members, v, x, y, out = batch
  for i, params in enumerate(members):
    member = lambda key, i=i: _flat(_member(out[key], i))
    value, g, h, t = _dense(params, x, y)
    np.testing.assert_allclose(member('hv'), h @ _flat(v), rtol=1e-4, atol=1e-5)
    for key in ('g', 'g_v', 'g_a', 'g_fd'):
      np.testing.assert_allclose(member(key), g, rtol=1e-5, atol=1e-6)
    for key in ('hg', 'hg_v', 'hg_a'):
      np.testing.assert_allclose(member(key), h @ g, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(member('hg_fd'), h @ g, rtol=0, atol=0.05 * np.linalg.norm(h @ g))
    np.testing.assert_allclose(member('tgg'), np.einsum('ikj,i,j->k', t, g, g), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(float(out['value_v'][i]), float(value), rtol=1e-6)
  assert out['hg']['w1'].shape == (3, 3, 4)
