"""Tests for smoothrl.curvature.eigen: the dense Hessian, dense eigenpairs and Lanczos against numpy's eigh.

Exact references are numpy float64 eigendecompositions of Hessians known in closed form (E = ½θᵀAθ + (c/4)Σθ⁴ has
H = A + 3c·diag(θ²)) or, for the MLP, of `jax.hessian`. The Lanczos checks run in float32, the dtype of the models:
with full re-orthogonalisation, 40 steps give the top 5 eigenvalues of the 1,761-parameter MLP Hessian to about
6e-7 relative, well inside the 1e-5 asked of them, so no float64 is needed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from smoothrl.curvature import eigen


def _flat_rows(tree) -> np.ndarray:
  """(k, n) float64 rows from a pytree with a leading axis k."""
  return np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(tree), np.float64)


def _rotation(seed: int, n: int) -> np.ndarray:
  q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
  return q


def _quadratic(a: np.ndarray):
  """E(θ) = ½ θᵀAθ over a flat parameter vector: H = A everywhere."""
  a = jnp.asarray(a, jnp.float32)
  return lambda theta: 0.5 * theta @ a @ theta


def _saddle_loss(params, a: jax.Array, c: float) -> jax.Array:
  """E = ½θᵀAθ + (c/4)Σθ⁴ over a pytree, θ = ravel_pytree(params)."""
  theta = ravel_pytree(params)[0]
  return 0.5 * theta @ a @ theta + 0.25 * c * jnp.sum(theta**4)


def _saddle_derivatives(params, a: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray]:
  """(g, H) of `_saddle_loss` in closed form: g = Aθ + cθ³, H = A + 3c·diag(θ²)."""
  theta = np.asarray(ravel_pytree(params)[0], np.float64)
  return a @ theta + c * theta**3, a + np.diag(3 * c * theta**2)


def _spectrum_matrix(seed: int, top: list[float], n: int, low: float, high: float) -> np.ndarray:
  rng = np.random.default_rng(seed)
  spectrum = np.concatenate([top, rng.uniform(low, high, n - len(top))])
  q = _rotation(seed + 1, n)
  return (q * spectrum) @ q.T


def _pytree_params(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]], scale: float):
  return {k: jnp.asarray(scale * rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}


def test_dense_route_on_a_small_model():
  """hessian_matrix in `ravel_pytree` order and dense_eigenpairs (both orders, the sign convention) on a pytree."""
  a = _spectrum_matrix(0, [-5.0], 12, -2.0, 3.0)
  c = 0.3
  params = _pytree_params(np.random.default_rng(1), {'w': (3, 2), 'b': (6,)}, 0.7)
  g_exact, h_exact = _saddle_derivatives(params, a, c)
  g_tree = ravel_pytree(params)[1](jnp.asarray(g_exact, jnp.float32))

  @jax.jit
  def run(params, a, g):
    return (
      eigen.hessian_matrix(_saddle_loss, params, a, c),
      eigen.dense_eigenpairs(_saddle_loss, params, a, c, g=g),
      eigen.dense_eigenpairs(_saddle_loss, params, a, c, k=3, which='magnitude'),
    )

  h, dense, magnitude = run(params, jnp.asarray(a, jnp.float32), g_tree)
  np.testing.assert_allclose(np.asarray(h), h_exact, atol=1e-5)
  values, vectors = np.linalg.eigh(h_exact)
  np.testing.assert_allclose(np.asarray(dense.values), values[::-1], atol=1e-5)
  u = _flat_rows(dense.vectors)
  assert dense.vectors['w'].shape == (12, 3, 2)
  np.testing.assert_allclose(np.abs(np.sum(u * vectors[:, ::-1].T, axis=1)), 1, atol=1e-4)
  assert np.all(u @ g_exact >= 0)
  np.testing.assert_allclose(np.asarray(dense.residuals), 0, atol=1e-5)
  assert int(dense.num_matvecs) == 12
  by_magnitude = values[np.argsort(-np.abs(values))]
  assert by_magnitude[0] < -4
  np.testing.assert_allclose(np.asarray(magnitude.values), by_magnitude[:3], atol=1e-5)


def test_lanczos_matches_eigh_under_jit_and_vmap():
  """Three parameter sets of a 300-parameter saddle, one key each (legacy uint32 keys, as the benchmarks pass),
  vmapped: the top 5 algebraically and the top 2 by magnitude, against each member's eigh."""
  n, c = 300, 0.05
  a = _spectrum_matrix(2, [-9.0, 6.0, 5.5, 5.0, 4.6, 4.3], n, -3.0, 3.0)
  rng = np.random.default_rng(3)
  members = [_pytree_params(rng, {'u': (100,), 'w': (20, 10)}, 0.5) for _ in range(3)]
  batch = jax.tree.map(lambda *m: jnp.stack(m), *members)
  gs = jax.tree.map(
    lambda *m: jnp.stack(m),
    *[ravel_pytree(m)[1](jnp.asarray(_saddle_derivatives(m, a, c)[0], jnp.float32)) for m in members],
  )
  keys = jax.random.split(jax.random.PRNGKey(4), 3)

  @jax.jit
  @jax.vmap
  def run(params, g, key):
    args = (params, jnp.asarray(a, jnp.float32), c)
    largest = eigen.top_eigenpairs(_saddle_loss, *args, k=5, krylov_depth=40, key=key, g=g)
    magnitude = eigen.top_eigenpairs(_saddle_loss, *args, k=2, krylov_depth=40, key=key, which='magnitude')
    return largest, magnitude

  largest, magnitude = run(batch, gs, keys)
  assert largest.values.shape == (3, 5) and largest.vectors['w'].shape == (3, 5, 20, 10)
  for i, member in enumerate(members):
    g, h = _saddle_derivatives(member, a, c)
    values, vectors = np.linalg.eigh(h)
    np.testing.assert_allclose(np.asarray(largest.values[i]), values[::-1][:5], rtol=1e-5)
    u = _flat_rows(jax.tree.map(lambda leaf, i=i: leaf[i], largest.vectors))
    np.testing.assert_allclose(np.abs(np.sum(u * vectors[:, ::-1][:, :5].T, axis=1)), 1, atol=1e-4)
    assert np.all(u @ g > 0)  # the sign convention
    true_residuals = np.linalg.norm(u @ h - np.asarray(largest.values[i])[:, None] * u, axis=1)
    assert np.all(true_residuals < 1e-3) and np.all(np.asarray(largest.residuals[i]) < 1e-3)
    by_magnitude = values[np.argsort(-np.abs(values))]
    assert by_magnitude[0] < -8  # the large negative eigenvalue 'largest' does not report
    np.testing.assert_allclose(np.asarray(magnitude.values[i]), by_magnitude[:2], rtol=1e-5)


def test_lanczos_survives_a_double_near_breakdown():
  """H = diag(1, 1, 0.01, 3, 3) at full depth: the Krylov space nearly closes twice, and without the orthogonality
  check matfree's last vector is far from orthogonal and a Ritz value lands above λ_max = 3 (3.0000446 for the
  second start vector below)."""
  a = np.diag([1.0, 1.0, 0.01, 3.0, 3.0])
  exact = np.array([0.01, 1.0, 3.0])
  loss = _quadratic(a)
  keys = jnp.concatenate([jax.random.split(jax.random.key(1), 3), jax.random.split(jax.random.key(2), 13)])
  top = jax.jit(jax.vmap(lambda key: eigen.top_eigenpairs(loss, jnp.ones(5), k=3, krylov_depth=5, key=key)))(keys)
  values = np.asarray(top.values)
  assert np.all(values[:, 0] <= 3 * (1 + 2e-6)), values[:, 0]
  finite = values[np.isfinite(values)]
  assert np.all(np.min(np.abs(finite[:, None] - exact[None]), axis=1) < 3e-6), values
  np.testing.assert_allclose(values[:, 0], 3, rtol=2e-6)


def test_lanczos_on_an_exactly_invariant_start_drops_the_later_steps():
  """H = 3I: the Krylov space is invariant from the start. From a coordinate vector the first residual is exactly 0,
  matfree divides by it and every later step is NaN; from a random vector the residual is rounding noise, and any
  step kept from it is still an eigenvector of 3I."""
  loss = lambda p: 1.5 * sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
  params = {'a': jnp.ones(3), 'b': jnp.ones((2, 2))}

  @jax.jit
  def run(params, v):
    krylov = eigen.lanczos(lambda u: 3 * u, v, 5)
    return (
      eigen.top_eigenpairs(loss, params, k=3, krylov_depth=5, key=jax.random.key(0)),
      eigen.top_eigenpairs(loss, params, k=3, krylov_depth=5, init=jax.tree.map(jnp.zeros_like, params)),
      krylov,
      eigen.ritz(krylov),
    )

  top, from_zero, krylov, (theta, _) = run(params, jnp.eye(7)[2])
  values = np.asarray(top.values)
  assert values[0] == 3.0 and float(top.residuals[0]) == 0.0
  np.testing.assert_allclose(values[np.isfinite(values)], 3.0, rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(_flat_rows(top.vectors)[0]), 1, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(krylov.valid), [True, False, False, False, False])
  assert float(krylov.residual_norm) == 0.0
  assert np.all(np.isfinite(np.asarray(krylov.tridiagonal)))
  assert float(theta[-1]) == 3.0 and np.all(np.isnan(np.asarray(theta[:-1])))
  assert np.all(np.isnan(np.asarray(from_zero.values)))  # a zero start vector gives NaN, as documented


def test_lanczos_parks_the_dropped_steps_below_a_zero_eigenvalue():
  """M = [[1, 1], [1, 1]] ⊕ 0 from e_0: two exact steps (q = e_0, e_1), then β = 0 exactly. The valid block has the
  eigenvalues 0 and 2; the dropped steps must not sit at 0 with it, and `ritz` lists them first, as NaN."""
  m = jnp.zeros((4, 4)).at[:2, :2].set(1.0)

  @jax.jit
  def run(v):
    krylov = eigen.lanczos(lambda u: m @ u, v, 4)
    return krylov, eigen.ritz(krylov)

  krylov, (theta, y) = run(jnp.eye(4)[0])
  np.testing.assert_array_equal(np.asarray(krylov.valid), [True, True, False, False])
  assert float(krylov.residual_norm) == 0.0
  assert np.all(np.diag(np.asarray(krylov.tridiagonal))[2:] < -2)  # parked below the block's Gershgorin interval
  theta = np.asarray(theta)
  assert np.all(np.isnan(theta[:2]))
  np.testing.assert_allclose(theta[2:], [0.0, 2.0], atol=1e-6)
  np.testing.assert_allclose(np.abs(np.asarray(y)[:2, 2:]), np.sqrt(0.5), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(y)[2:], 0)


def test_warm_start_from_the_top_eigenvector_converges_sooner():
  n = 120
  spectrum = np.concatenate([[4.0, 3.9, 3.7], np.linspace(-1.0, 3.0, n - 3)])
  q = _rotation(1, n)
  a = (q * spectrum) @ q.T
  loss = _quadratic(a)
  u0 = q[:, 0]
  noise = np.random.default_rng(2).standard_normal(n)
  inits = jnp.asarray(
    np.stack([noise, u0 + 1e-3 * noise / np.linalg.norm(noise), u0]), jnp.float32
  )  # random, near u_0, exactly u_0

  run = jax.jit(jax.vmap(lambda v: eigen.top_eigenpairs(loss, jnp.zeros(n), k=1, krylov_depth=4, init=v)))
  top = run(inits)
  errors = np.abs(np.asarray(top.values[:, 0]) - 4.0)
  residuals = np.asarray(top.residuals[:, 0])
  assert errors[0] > 1e-2 and residuals[0] > 1e-1  # four steps from a random start are far from converged
  assert errors[1] < 1e-5 and residuals[1] < 1e-2  # the same four steps from near u_0
  assert errors[2] < 1e-5 and residuals[2] < 1e-5  # exactly u_0: converged in one step
  assert residuals[2] < residuals[1] < residuals[0]


# ----------------------------------------------------------------------------
# The MLP of the main comparison: tanh 4→32→32→16→1 (1,761 parameters), squared error on 16 random points.
# ----------------------------------------------------------------------------

SIZES = (4, 32, 32, 16, 1)


def _mlp_init(seed: int) -> dict[str, dict[str, jax.Array]]:
  rng = np.random.default_rng(seed)
  return {
    f'l{i}': {
      'w': jnp.asarray(rng.standard_normal((a, b)) / np.sqrt(a), jnp.float32),
      'b': jnp.asarray(0.1 * rng.standard_normal(b), jnp.float32),
    }
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:]))
  }


def _mlp_loss(params, x, y) -> jax.Array:
  h = x
  for i in range(len(SIZES) - 1):
    h = h @ params[f'l{i}']['w'] + params[f'l{i}']['b']
    if i < len(SIZES) - 2:
      h = jnp.tanh(h)
  return 0.5 * jnp.mean(jnp.sum((h - y) ** 2, axis=-1))


@pytest.fixture(scope='module')
def mlp():
  """The dense Hessian (`jax.hessian`) and 40 Lanczos steps in one compiled program; eigh in numpy float64."""
  rng = np.random.default_rng(7)
  params = _mlp_init(0)
  x = jnp.asarray(rng.standard_normal((16, 4)), jnp.float32)
  y = jnp.asarray(rng.standard_normal((16, 1)), jnp.float32)

  @jax.jit
  def run(params, x, y, key):
    g = jax.grad(_mlp_loss)(params, x, y)
    h = eigen.hessian_matrix(_mlp_loss, params, x, y)
    return g, h, eigen.top_eigenpairs(_mlp_loss, params, x, y, k=5, krylov_depth=40, key=key, g=g)

  g, h, top = run(params, x, y, jax.random.key(3))
  h = np.asarray(h, np.float64)
  values, vectors = np.linalg.eigh(0.5 * (h + h.T))
  return {
    'g': np.asarray(ravel_pytree(g)[0], np.float64),
    'h': h,
    'values': values[::-1],
    'vectors': vectors[:, ::-1].T,
    'top': top,
  }


@pytest.mark.slow
def test_mlp_lanczos_top5_matches_dense_eigh(mlp):
  top, h = mlp['top'], mlp['h']
  assert h.shape == (1761, 1761)
  assert top.values.shape == (5,) and int(top.num_matvecs) == 40
  values = np.asarray(top.values, np.float64)
  np.testing.assert_allclose(values, mlp['values'][:5], rtol=1e-5)
  assert np.all(np.diff(values) < 0)
  u = _flat_rows(top.vectors)
  np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1, atol=1e-5)
  np.testing.assert_allclose(np.abs(np.sum(u * mlp['vectors'][:5], axis=1)), 1, atol=1e-4)  # up to sign
  true_residuals = np.linalg.norm(u @ h - values[:, None] * u, axis=1)
  assert np.all(true_residuals < 1e-3 * values[0])
  assert np.all(np.asarray(top.residuals) < 1e-3 * values[0])  # the Lanczos estimates agree: small


@pytest.mark.slow
def test_mlp_sign_convention(mlp):
  projections = _flat_rows(mlp['top'].vectors) @ mlp['g']  # gᵀu_i
  assert np.all(projections > 0), projections  # strictly: no top eigenvector of this loss is orthogonal to g


def test_align_signs_flips_exactly_the_vectors_against_g():
  rng = np.random.default_rng(12)
  g = {'a': jnp.asarray(rng.standard_normal(3), jnp.float32), 'b': jnp.asarray(rng.standard_normal((2, 2)))}
  vectors = jax.tree.map(lambda leaf: jnp.asarray(rng.standard_normal((6, *leaf.shape)), jnp.float32), g)
  aligned = _flat_rows(jax.jit(eigen.align_signs)(vectors, g))
  before = _flat_rows(vectors)
  g_flat = np.asarray(ravel_pytree(g)[0], np.float64)
  signs = np.sign(before @ g_flat)
  assert 0 < np.sum(signs < 0) < 6  # some flips and some not, so the check below means something
  np.testing.assert_allclose(aligned, signs[:, None] * before, rtol=1e-6)
  assert np.all(aligned @ g_flat > 0)
  orthogonal = jnp.zeros((1, 7)).at[0, 0].set(g_flat[1]).at[0, 1].set(-g_flat[0])  # gᵀu = 0: left as it is
  np.testing.assert_array_equal(np.asarray(eigen.align_signs(orthogonal, jnp.asarray(g_flat, jnp.float32))), orthogonal)


def test_default_krylov_depth():
  assert eigen.default_krylov_depth(5, 10_000) == 35
  assert eigen.default_krylov_depth(20, 10_000) == 60
  assert eigen.default_krylov_depth(5, 12) == 12


@pytest.mark.parametrize(
  ('kwargs', 'message'),
  [
    ({'k': 0, 'key': jax.random.key(0)}, 'k must be'),
    ({'k': 9, 'key': jax.random.key(0)}, 'k must be'),
    ({'k': 3, 'krylov_depth': 2, 'key': jax.random.key(0)}, 'krylov_depth must be'),
    ({'k': 3, 'krylov_depth': 9, 'key': jax.random.key(0)}, 'krylov_depth must be'),
    ({'k': 1, 'key': jax.random.key(0), 'which': 'smallest'}, 'which must be'),
    ({'k': 1}, 'needs a start vector'),
    ({'k': 1, 'init': jnp.ones(8)}, 'tree structure'),
    ({'k': 1, 'init': {'a': jnp.ones(3), 'b': jnp.ones(4)}}, 'flatten to 8'),
  ],
)
def test_top_eigenpairs_rejects_bad_input(kwargs, message):
  params = {'a': jnp.ones(3), 'b': jnp.ones(5)}
  loss = lambda p: sum(jnp.sum(x**2) for x in jax.tree.leaves(p))
  with pytest.raises(ValueError, match=message):
    eigen.top_eigenpairs(loss, params, **kwargs)


def test_other_bad_input():
  loss = lambda p: jnp.sum(p**2)
  with pytest.raises(ValueError, match='real floating point'):
    eigen.dense_eigenpairs(loss, jnp.arange(3))
  with pytest.raises(ValueError, match='at least one parameter'):
    eigen.hessian_matrix(loss, {})
  with pytest.raises(ValueError, match='k must be'):
    eigen.dense_eigenpairs(loss, jnp.ones(3), k=4)
  with pytest.raises(ValueError, match='which must be'):
    eigen.dense_eigenpairs(loss, jnp.ones(3), which='algebraic')
  with pytest.raises(ValueError, match='one tree structure'):
    eigen.align_signs({'a': jnp.ones((2, 3))}, jnp.ones(3))
  with pytest.raises(ValueError, match='leading axis k'):
    eigen.align_signs(jnp.ones((2, 4)), jnp.ones(3))
  with pytest.raises(ValueError, match='Krylov depth'):
    eigen.lanczos(lambda v: v, jnp.ones(3), 4)
