"""Geometric Complexity, the product of spectral norms and the local Lipschitz grid (smoothrl.networks.smoothness)
against closed forms: deep linear networks (Eq 8.5), two-layer ReLU networks (Eqs 8.6, 8.7), the bounds of Remark
8.2.2 (Eq 8.4), numpy SVDs, and linear and piecewise-linear maps of known local Lipschitz constants."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.networks import smoothness, spectral
from smoothrl.networks.layers import LayerSpec


def _rng(seed: int) -> np.random.Generator:
  return np.random.default_rng(seed)


def _key(seed: int) -> jax.Array:
  """A PRNG key whose programs compile quickly on a CPU (XLA's bit generator; threefry's take seconds each)."""
  return jax.random.key(seed, impl='rbg')


def _measures(f, x):
  """GC, the per-example squared norms and the Jacobians of `f` on `x`, in one compiled program."""
  run = lambda z: (
    smoothness.geometric_complexity(f, z),
    smoothness.jacobian_sq_norms(f, z),
    smoothness.input_jacobians(f, z),
  )
  return [np.asarray(a, np.float64) for a in jax.jit(run)(jnp.asarray(x, jnp.float32))]


def _grids(key, *grids):
  """`local_lipschitz_grid` for each (f, low, high, cells_per_dim, pairs_per_cell[, kwargs]), compiled together."""
  run = lambda k: [smoothness.local_lipschitz_grid(*g[:5], k, **(g[5] if len(g) > 5 else {})) for g in grids]
  return [np.asarray(a) for a in jax.jit(run)(key)]


def _relu_net(rng, sizes, bias_scale=0.5):
  """A ReLU MLP with haiku-layout params {'l0': {'w': (in, out), 'b': (out,)}, ...} and its apply function."""
  params = {
    f'l{i}': {
      'w': rng.standard_normal((a, b)) / np.sqrt(a),
      'b': bias_scale * rng.standard_normal(b),
    }
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
  }
  specs = tuple(LayerSpec(f'l{i}', 'dense', (a,)) for i, a in enumerate(sizes[:-1]))
  n = len(sizes) - 1

  def apply(p, x):
    h = x
    for i in range(n):
      h = h @ p[f'l{i}']['w'] + p[f'l{i}']['b']
      if i < n - 1:
        h = jax.nn.relu(h)
    return h

  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params), specs, apply


# ----------------------------------------------------------------------------
# GC closed forms.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('sizes', [(5, 4, 6, 3), (3, 7, 6)])  # fewer outputs than inputs (jacrev), more (jacfwd)
def test_deep_linear_gc_is_the_squared_frobenius_norm_of_the_product_whatever_the_data(sizes):
  rng = _rng(0)
  ws = [rng.standard_normal((a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
  bias = rng.standard_normal(sizes[-1])

  def f(x):
    for w in ws:
      x = x @ jnp.asarray(w, jnp.float32)
    return x + jnp.asarray(bias, jnp.float32)

  product = ws[0]
  for w in ws[1:]:
    product = product @ w
  want = np.sum(product**2)  # ‖W_n…W_1‖²_F (Eq 8.5); the transpose of x @ W1 @ … has the same norm
  data_a = rng.standard_normal((7, sizes[0]))
  data_b = 10.0 * rng.uniform(size=(3, sizes[0])) - 4.0  # a different size, scale and distribution
  for data in (data_a, data_b):
    gc, per_example, _ = _measures(f, data)
    np.testing.assert_allclose(gc, want, rtol=1e-5)
    np.testing.assert_allclose(per_example, [want] * len(data), rtol=1e-5)


def test_two_layer_relu_gc_is_the_mean_of_the_masked_products_and_dead_units_do_not_count():
  rng = _rng(1)
  n_in, n_hidden, n_out = 4, 6, 3
  w1, b1 = rng.standard_normal((n_in, n_hidden)), 0.3 * rng.standard_normal(n_hidden)
  w2, b2 = rng.standard_normal((n_hidden, n_out)), rng.standard_normal(n_out)
  b1[0] = -100.0  # unit 0 is dead on every example
  w1[:, 0] *= 5.0  # ...and has large weights that a weight norm would count
  x = rng.standard_normal((40, n_in))
  f = lambda z: jax.nn.relu(z @ jnp.asarray(w1, jnp.float32) + jnp.asarray(b1, jnp.float32)) @ jnp.asarray(
    w2, jnp.float32
  ) + jnp.asarray(b2, jnp.float32)
  z = x @ w1 + b1
  active = (z > 0).astype(np.float64)
  assert active[:, 0].sum() == 0 and 0 < active[:, 1:].mean() < 1  # dead units, and patterns that vary
  jacobians = np.einsum('ho,nh,ih->noi', w2, active, w1)  # W₂ᵀ diag(a′(z)) W₁ᵀ per example (Eq 8.7)
  want = np.mean(np.sum(jacobians**2, axis=(1, 2)))
  got, _, got_jacobians = _measures(f, x)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  np.testing.assert_allclose(got_jacobians, jacobians, rtol=1e-5, atol=1e-5)
  # Eq 8.6: the same value grouped by linear piece, Σ_p (n_p/|D|)‖A_p‖²_F.
  patterns, counts = np.unique(active, axis=0, return_counts=True)
  pieces = [np.sum((w2.T @ np.diag(p) @ w1.T) ** 2) for p in patterns]
  assert len(patterns) > 3
  np.testing.assert_allclose(got, np.sum(counts / len(x) * np.array(pieces)), rtol=1e-5)
  # Counting the dead unit (no mask on it) would give a clearly different value.
  alive_everywhere = active.copy()
  alive_everywhere[:, 0] = 1.0
  wrong = np.mean(np.sum(np.einsum('ho,nh,ih->noi', w2, alive_everywhere, w1) ** 2, axis=(1, 2)))
  assert abs(wrong - want) > 0.1 * want


def test_gc_is_bounded_by_the_operator_norms_and_the_product_of_spectral_norms():
  for seed, sizes in enumerate([(6, 16, 16, 3), (3, 12, 8)]):  # fewer outputs than inputs, and more
    rng = _rng(10 + seed)
    params, specs, apply = _relu_net(rng, sizes)
    f = lambda x, params=params, apply=apply: apply(params, x)
    x = jnp.asarray(rng.standard_normal((32, sizes[0])), jnp.float32)
    gc, _, jac = _measures(f, x)  # jac: (batch, O, I)
    op_sq = np.array([np.linalg.svd(j, compute_uv=False)[0] ** 2 for j in jac])
    k = min(sizes[0], sizes[-1])
    rho = float(smoothness.spectral_norm_product(params, specs))
    assert gc > 0
    assert np.mean(op_sq) <= gc * (1 + 1e-5)  # the Frobenius norm bounds the operator norm
    assert gc <= k * np.mean(op_sq) * (1 + 1e-5)  # Eq 8.4, first inequality
    assert k * np.mean(op_sq) <= k * rho**2 * (1 + 1e-5)  # Eq 8.4, second: ‖J‖_op ≤ ∏σ_l for ReLU nets


# ----------------------------------------------------------------------------
# The projected estimator.
# ----------------------------------------------------------------------------


def _projection_variance(jac: np.ndarray, distribution: str) -> np.ndarray:
  """Var(vᵀ M v) per example, M = J Jᵀ, for one projection."""
  m = np.einsum('noi,npi->nop', jac, jac)
  if distribution == 'gaussian':
    return 2 * np.sum(m**2, axis=(1, 2))
  off = m - np.einsum('noo->no', m)[:, :, None] * np.eye(m.shape[1])
  return 2 * np.sum(off**2, axis=(1, 2))


@pytest.mark.parametrize('distribution', ['rademacher', 'gaussian'])
def test_projected_gc_matches_exact_gc_within_its_standard_error_and_is_unbiased(distribution):
  rng = _rng(3)
  params, _, apply = _relu_net(rng, (6, 24, 10))
  f = lambda x: apply(params, x)
  x = jnp.asarray(rng.standard_normal((16, 6)), jnp.float32)
  exact, _, jac = _measures(f, x)
  var = _projection_variance(jac, distribution)  # per example and projection
  batch = x.shape[0]
  p = 64

  @jax.jit
  def estimates(key, keys):
    one = smoothness.geometric_complexity_projected(f, x, key, p, distribution)
    many = jax.vmap(lambda k: smoothness.geometric_complexity_projected(f, x, k, 2, distribution))(keys)
    return one, many

  estimate, many = estimates(_key(0), jax.random.split(_key(1), 400))
  estimate, many = float(estimate), np.asarray(many, np.float64)

  # One estimate with many projections: within 5 standard errors.
  se = np.sqrt(np.sum(var) / p) / batch
  assert abs(estimate - exact) < 5 * se
  assert se < 0.1 * exact  # the tolerance is tight enough to mean something

  # Unbiased over keys: the mean of many two-projection estimates, and their variance, as predicted.
  var_one = np.sum(var) / 2 / batch**2  # the variance of one estimate
  assert abs(many.mean() - exact) < 5 * np.sqrt(var_one / len(many))
  assert 0.75 < many.var() / var_one < 1.3


# ----------------------------------------------------------------------------
# Product of spectral norms.
# ----------------------------------------------------------------------------


def test_spectral_norm_product_matches_numpy_svds_exactly_and_by_power_iteration():
  rng = _rng(4)
  params, specs, _ = _relu_net(rng, (5, 9, 7, 2))
  conv = LayerSpec('conv', 'conv', (5, 5, 2), stride=2, padding='SAME')
  params = dict(params, conv={'w': jnp.asarray(rng.standard_normal((3, 3, 2, 3)), jnp.float32)})
  specs = specs + (conv,)
  # The conv operator's matrix from jax.jacfwd of XLA's convolution, its top singular value from numpy.
  conv_op = lambda v: jax.lax.conv_general_dilated(
    v[None], params['conv']['w'], (2, 2), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )[0]
  conv_matrix = np.asarray(jax.jit(jax.jacfwd(conv_op))(jnp.zeros((5, 5, 2))), np.float64).reshape(-1, 50)
  want = {name: np.linalg.svd(np.asarray(params[name]['w'], np.float64), compute_uv=False)[0] for name in params}
  want['conv'] = np.linalg.svd(conv_matrix, compute_uv=False)[0]

  @jax.jit
  def run(p, key):
    return (
      smoothness.layer_spectral_norms(p, specs),
      smoothness.spectral_norm_product(p, specs),
      smoothness.layer_spectral_norms(p, specs[1:], exact=False, num_iterations=100, key=key),  # dense and conv
      jax.grad(lambda q: smoothness.spectral_norm_product(q, specs[1:2]))(p),
    )

  sigmas, product, approx, grad = run(params, _key(0))
  for name, value in want.items():
    np.testing.assert_allclose(float(sigmas[name]), value, rtol=1e-5)
  np.testing.assert_allclose(float(product), np.prod(list(want.values())), rtol=1e-5)
  assert float(smoothness.spectral_norm_product(params, ())) == 1.0
  assert set(approx) == {'l1', 'l2', 'conv'}
  for name, value in approx.items():
    assert float(value) <= want[name] * (1 + 1e-5)  # ‖Av‖ for a unit v never exceeds σ
    np.testing.assert_allclose(float(value), want[name], rtol=1e-3)
  # Differentiable in the weights: dσ/dW = u vᵀ for the top singular pair.
  u, _, vt = np.linalg.svd(np.asarray(params['l1']['w'], np.float64))
  np.testing.assert_allclose(np.asarray(grad['l1']['w']), np.outer(u[:, 0], vt[0]), atol=1e-4)


# ----------------------------------------------------------------------------
# Local Lipschitz constants on a grid (Appendix D.1).
# ----------------------------------------------------------------------------


def test_local_lipschitz_of_a_linear_map_is_its_operator_norm_in_every_cell():
  a = jnp.asarray(_rng(5).standard_normal((2, 3)), jnp.float32)
  sigma_max = float(np.linalg.svd(np.asarray(a, np.float64), compute_uv=False)[0])
  (grid,) = _grids(_key(0), (lambda x: x @ a, [-2.0, -1.0], [2.0, 3.0], 5, 400))
  assert grid.shape == (5, 5)
  grid = np.asarray(grid)
  assert np.all(grid <= sigma_max * (1 + 1e-4))  # every pair gives at most σ_max
  assert np.all(grid >= 0.99 * sigma_max)  # and the max over many pairs approaches it


def test_local_lipschitz_of_piecewise_linear_maps_has_the_right_shape_and_values():
  relu = lambda x: 2.0 * jax.nn.relu(x[:, 0:1])
  absolute, relu_grid, square = _grids(
    _key(1),
    (lambda x: jnp.abs(x[:, 0]), [-1.0, -1.0], [1.0, 1.0], 5, 300),
    (relu, [-1.0, -3.0], [1.0, 3.0], 4, 300),
    (lambda x: x[:, :1] ** 2, [0.0, 0.0], [2.0, 1.0], 4, 2000),
  )
  # |x_1|: slope 1 along x_1 everywhere (cells straddling 0 included), nothing along x_2.
  assert absolute.shape == (5, 5)
  assert np.all(absolute <= 1 + 1e-5) and np.all(absolute >= 0.98)
  # 2·relu(x_1): 0 on every cell left of x_1 = 0, 2 right of it; axis 0 of the grid is x_1, from low to high.
  assert relu_grid.shape == (4, 4)
  np.testing.assert_array_equal(relu_grid[:2], 0.0)
  assert np.all(relu_grid[2:] <= 2 * (1 + 1e-5)) and np.all(relu_grid[2:] >= 1.96)
  centres = np.asarray(smoothness.grid_cell_centres([-1.0, -3.0], [1.0, 3.0], 4))
  assert centres.shape == (4, 4, 2)
  np.testing.assert_allclose(centres[:, 0, 0], [-0.75, -0.25, 0.25, 0.75])
  np.testing.assert_allclose(centres[0, :, 1], [-2.25, -0.75, 0.75, 2.25])
  # x_1² on [0, 2] x [0, 1]: the cell [a, b] along x_1 has local constant 2b; pairs see between 2a and 2b.
  edges = np.linspace(0.0, 2.0, 5)
  assert np.all(square <= 2 * edges[1:, None] * (1 + 1e-5))
  assert np.all(square >= 2 * edges[:-1, None] * 0.95)
  assert np.all(np.diff(square, axis=0) > 0)


def test_local_lipschitz_grid_in_chunks_equals_all_at_once_and_other_dimensions():
  params, _, apply = _relu_net(_rng(6), (2, 16, 16, 1))
  f = lambda x: apply(params, x)
  whole, chunked, one_d, half_square, three_d = _grids(
    _key(2),
    (f, [-1.0, -1.0], [1.0, 1.0], 6, 50),
    (f, [-1.0, -1.0], [1.0, 1.0], 6, 50, {'cells_per_batch': 7}),
    (lambda x: 3.0 * x, [0.0], [1.0], 3, 10),
    (lambda x: x**2 / 2, [0.0], [1.0], 4, 1000),
    (lambda x: x, [0.0] * 3, [1.0] * 3, 2, 4),
  )
  np.testing.assert_allclose(whole, chunked, rtol=1e-4)  # the same pairs; float32 batching differs
  assert whole.min() >= 0
  np.testing.assert_allclose(one_d, [3.0, 3.0, 3.0], rtol=1e-4)  # float32 differences of close pairs
  # x²/2 in one dimension: a pair gives (x + y)/2, so the cell [a, b] gives just under b (cells of width 1/4).
  upper = np.array([0.25, 0.5, 0.75, 1.0])
  assert np.all(half_square <= upper * (1 + 1e-5)) and np.all(half_square >= upper - 0.025)
  assert three_d.shape == (2, 2, 2)
  np.testing.assert_allclose(three_d, 1.0, rtol=1e-4)


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------


def test_bad_input_is_refused_with_a_clear_error():
  f = lambda x: x[:, :2]
  x = jnp.ones((4, 3))
  with pytest.raises(ValueError, match='batch'):
    smoothness.geometric_complexity(lambda z: jnp.sum(z), x)
  with pytest.raises(ValueError, match='batch axis'):
    smoothness.geometric_complexity(f, jnp.ones((0, 3)))
  with pytest.raises(ValueError, match='num_projections'):
    smoothness.geometric_complexity_projected(f, x, _key(0), 0)
  with pytest.raises(ValueError, match='distribution'):
    smoothness.geometric_complexity_projected(f, x, _key(0), 2, 'uniform')
  with pytest.raises(ValueError, match='high must exceed low'):
    smoothness.local_lipschitz_grid(f, [0.0, 1.0], [1.0, 1.0], 2, 2, _key(0))
  with pytest.raises(ValueError, match='vectors of one length'):
    smoothness.local_lipschitz_grid(f, [0.0, 0.0], [1.0], 2, 2, _key(0))
  with pytest.raises(ValueError, match='cells_per_dim'):
    smoothness.local_lipschitz_grid(f, [0.0], [1.0], 0, 2, _key(0))
  with pytest.raises(ValueError, match='key'):
    smoothness.spectral_norm_product({'a': {'w': jnp.ones((2, 2))}}, (LayerSpec('a', 'dense', (2,)),), exact=False)
  with pytest.raises(ValueError, match='Duplicate'):
    spec = LayerSpec('a', 'dense', (2,))
    smoothness.spectral_norm_product({'a': {'w': jnp.ones((2, 2))}}, (spec, spec))
  assert spectral  # the one source of σ that these measures use
