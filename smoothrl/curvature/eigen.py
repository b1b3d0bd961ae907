"""Eigenpairs (λ_i, u_i) of the Hessian H = ∇²E of a loss over a parameter pytree.

Two routes to the same `Eigenpairs`:

- `dense_eigenpairs`: the dense Hessian (`jax.hessian` of the flattened parameters) and `eigh`; n HVPs' worth of
  work and O(n²) memory, for models of up to a few thousand parameters and for reference values in tests.
- `top_eigenpairs`: Lanczos on Hessian-vector products with full re-orthogonalisation (thesis Appendix A.3:
  'We use the Lanczos algorithm to compute λ_i and u_i'), `krylov_depth` HVPs and O(n · depth) memory. A Krylov
  space of dimension m from a start vector v gives T = QᵀHQ (m × m, tridiagonal); the Ritz pairs (θ_j, Q y_j) of
  T approximate the extreme eigenpairs of H, with residual ‖H Q y_j − θ_j Q y_j‖ = |β_m e_mᵀ y_j|.

Notation as in the thesis (Chapter 3): λ_0 ≥ λ_1 ≥ … are the eigenvalues of H, u_i its unit eigenvectors, signed
so that Re[gᵀu_i] ≥ 0 with g = ∇E (`align_signs`), the convention under which the stability coefficients
sc_i = α(hλ_i) gᵀu_i of Definition 3.3.4 are read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from matfree import decomp

from smoothrl.curvature.products import hvp

Params = Any
Loss = Callable[..., jax.Array]
Which = Literal['largest', 'magnitude']
WHICH: tuple[str, ...] = ('largest', 'magnitude')
_HIGHEST = jax.lax.Precision.HIGHEST  # no reduced-precision (e.g. TF32) products in the basis algebra


class Eigenpairs(NamedTuple):
  """k eigenpairs of a Hessian.

  Attributes:
    values: (k,) eigenvalues in descending order: algebraically for which='largest', by |λ| for 'magnitude'. NaN
      for a pair the Krylov space could not provide (it became invariant, of dimension < k, before reaching k).
    vectors: a pytree like params with a leading axis k; unit vector i is `jax.tree.map(lambda x: x[i], vectors)`
      (NaN where the value is NaN).
    residuals: (k,) ‖Hu_i − λ_i u_i‖, exact for the dense route, the Lanczos estimate |β_m e_mᵀ y_i| otherwise.
    num_matvecs: the number of Hessian-vector products spent (n for the dense route, the depth for Lanczos).
  """

  values: jax.Array
  vectors: Params
  residuals: jax.Array
  num_matvecs: jax.Array


class Krylov(NamedTuple):
  """A Lanczos decomposition H Q_mᵀ = Q_mᵀ T_m + β_m q e_mᵀ on the first m = sum(valid) steps.

  Attributes:
    basis: (depth, n) orthonormal rows q_0, …, q_{m−1}; rows past the valid steps are zero.
    tridiagonal: (depth, depth) T, symmetric tridiagonal. Its leading m × m block is QᵀHQ; the trailing block is
      diagonal, decoupled, and placed below every eigenvalue of the leading block (so `ritz` can tell them apart).
    residual_norm: β_m, the norm of the part of Hq_{m−1} outside the Krylov space (0 when the space is invariant).
    valid: (depth,) bool, True for the steps kept.
  """

  basis: jax.Array
  tridiagonal: jax.Array
  residual_norm: jax.Array
  valid: jax.Array


def _flatten(params: Params, name: str = 'params') -> tuple[jax.Array, Callable[[jax.Array], Params]]:
  flat, unravel = ravel_pytree(params)
  if flat.shape[0] == 0:
    raise ValueError(f'{name} must hold at least one parameter.')
  if not jnp.issubdtype(flat.dtype, jnp.floating):
    raise ValueError(f'{name} must be real floating point, got dtype {flat.dtype}.')
  return flat, unravel


def _check_k(k: int, n: int) -> None:
  if not isinstance(k, int) or not 1 <= k <= n:
    raise ValueError(f'k must be an int in [1, n = {n}] (the number of parameters), got {k!r}.')


def _check_which(which: str) -> None:
  if which not in WHICH:
    raise ValueError(f'which must be one of {WHICH}, got {which!r}.')


def hessian_matrix(fun: Loss, params: Params, *args: Any) -> jax.Array:
  """The dense Hessian ∇²E of the flattened parameters, (n, n), in the order of `ravel_pytree(params)`."""
  flat, unravel = _flatten(params)
  return jax.hessian(lambda f: fun(unravel(f), *args))(flat)


def align_signs(vectors: Params, g: Params) -> Params:
  """Flips each vector u_i (leading axis of `vectors`) so that Re[gᵀu_i] ≥ 0 (gᵀu, not the conjugate product).

  `g` is a pytree like one vector (e.g. ∇E); a vector orthogonal to g is left as it is.
  """
  g_leaves, g_def = jax.tree.flatten(g)
  v_leaves, v_def = jax.tree.flatten(vectors)
  if g_def != v_def:
    raise ValueError(f'g and vectors must have one tree structure, got {g_def} and {v_def}.')
  for gl, vl in zip(g_leaves, v_leaves):
    if jnp.ndim(vl) != jnp.ndim(gl) + 1 or jnp.shape(vl)[1:] != jnp.shape(gl):
      raise ValueError(
        f'each leaf of vectors must be the matching leaf of g with a leading axis k, got {jnp.shape(vl)} for a leaf '
        f'of g of shape {jnp.shape(gl)}.'
      )
  projections = sum(
    jnp.sum((vl * gl[None]).reshape(vl.shape[0], -1), axis=1) for gl, vl in zip(g_leaves, v_leaves)
  )  # (k,): gᵀu_i
  signs = jnp.where(jnp.real(projections) < 0, -1, 1)
  return jax.tree.map(lambda v: v * signs.reshape((-1,) + (1,) * (v.ndim - 1)).astype(v.dtype), vectors)


def _select(values: jax.Array, k: int, which: str) -> jax.Array:
  """Indices of the k wanted values, in the order `Eigenpairs` documents (descending; NaNs last)."""
  key = values if which == 'largest' else jnp.abs(values)
  key = jnp.where(jnp.isnan(key), -jnp.inf, key)
  return jnp.argsort(-key, stable=True)[:k]


def dense_eigenpairs(
  fun: Loss,
  params: Params,
  *args: Any,
  k: int | None = None,
  g: Params | None = None,
  which: Which = 'largest',
) -> Eigenpairs:
  """The top k eigenpairs of the dense Hessian by `jnp.linalg.eigh` (all n when k is None).

  With `g` (e.g. ∇E at params) the vectors follow the sign convention Re[gᵀu_i] ≥ 0 (`align_signs`).
  """
  _check_which(which)
  flat, unravel = _flatten(params)
  n = flat.shape[0]
  k = n if k is None else k
  _check_k(k, n)
  h = hessian_matrix(fun, params, *args)
  h = 0.5 * (h + h.T)
  values, vectors = jnp.linalg.eigh(h)
  idx = _select(values, k, which)
  values, vectors = values[idx], vectors[:, idx]
  residuals = jnp.linalg.norm(jnp.matmul(h, vectors, precision=_HIGHEST) - vectors * values[None], axis=0)
  tree = jax.vmap(unravel)(vectors.T)
  if g is not None:
    tree = align_signs(tree, g)
  return Eigenpairs(values, tree, residuals, jnp.asarray(n, jnp.int32))


def default_krylov_depth(k: int, n: int) -> int:
  """The Krylov depth `top_eigenpairs` uses when none is given: min(n, max(3k, k + 30))."""
  return min(n, max(3 * k, k + 30))


def lanczos(matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, depth: int) -> Krylov:
  """`depth` Lanczos steps with full re-orthogonalisation from v0 (any nonzero norm), by matfree's Arnoldi iteration.

  `matfree.decomp.tridiag_sym(depth, reortho='full')` runs `matfree.decomp.hessenberg(depth, reortho='full')` and
  keeps the tridiagonal part of (A + Aᵀ)/2, A its Hessenberg matrix; A is taken here directly so that the
  subdiagonal β_j (the norm of each new vector before it is normalised) is kept for the Ritz residuals. matfree
  divides by β_j, so when the Krylov space closes (β_j = 0: H = cI, or a start vector in a small invariant
  subspace) every later step is NaN, and when it nearly closes twice in a row the new vector can lose
  orthogonality, after which a Ritz value can be wrong (even above λ_max) with a tiny residual estimate. Steps from
  the first non-finite vector, or the first with |q_iᵀq_j| > √eps for some j < i, on are therefore dropped; the
  steps before them are semi-orthogonal, a Lanczos decomposition of H on the subspace they span whose Ritz values
  are accurate to working precision (Simon 1984). Between near-breakdowns the iteration restarts in a direction
  the rounding errors pick, which can reveal further copies of a repeated eigenvalue; single-vector Lanczos in
  exact arithmetic sees each distinct eigenvalue once.
  """
  if v0.ndim != 1:
    raise ValueError(f'v0 must be a flat vector, got shape {v0.shape}.')
  n = v0.shape[0]
  if not isinstance(depth, int) or not 1 <= depth <= n:
    raise ValueError(f'the Krylov depth must be an int in [1, n = {n}], got {depth!r}.')
  arnoldi = decomp.hessenberg(depth, reortho='full', custom_vjp=False)
  basis, h, residual, _ = arnoldi(matvec, v0)
  gram = jnp.tril(jnp.matmul(basis, basis.T, precision=_HIGHEST), -1)  # q_iᵀq_j, j < i
  tol = jnp.sqrt(jnp.finfo(basis.dtype).eps)  # semi-orthogonality
  orthogonal = jnp.all(jnp.abs(gram) <= tol, axis=1)  # False for a row with a NaN
  valid = jnp.cumprod(orthogonal & jnp.isfinite(jnp.diagonal(h))).astype(bool)
  num_valid = jnp.sum(valid)
  betas = jnp.concatenate([jnp.diagonal(h, -1), jnp.linalg.norm(residual)[None]])
  residual_norm = jnp.where(num_valid > 0, jnp.abs(betas[jnp.maximum(num_valid - 1, 0)]), jnp.nan)
  band = jnp.abs(jnp.arange(depth)[:, None] - jnp.arange(depth)[None, :]) <= 1
  t = jnp.where(band & valid[:, None] & valid[None, :], 0.5 * (h + h.T), 0)
  # Park the dropped steps on the diagonal, below the Gershgorin interval [−b, b] of the valid block and a gap of
  # 2b from it: `ritz` then lists them first, and no `eigh` (divide and conquer, Jacobi) can mix them with a valid
  # Ritz vector of the same value.
  bound = jnp.max(jnp.where(valid, jnp.sum(jnp.abs(t), axis=1), 0))
  park = jnp.where(bound > 0, -3 * bound, -1)
  t = t + jnp.diag(jnp.where(valid, 0, park).astype(t.dtype))
  basis = jnp.where(valid[:, None], basis, 0)
  return Krylov(basis, t, residual_norm, valid)


def ritz(krylov: Krylov) -> tuple[jax.Array, jax.Array]:
  """(θ, Y): the eigenpairs of T restricted to its valid block, θ ascending with NaN for the dropped steps first.

  Column j of Y (depth × depth) is y_j with zeros on the dropped steps; the Ritz vector is `krylov.basis.T @ y_j`.
  """
  theta, y = jnp.linalg.eigh(krylov.tridiagonal)
  valid = krylov.valid
  # An eigenvector of the block-diagonal T lives on the valid block or on the parked steps, never both.
  on_valid = jnp.sum(jnp.abs(y) ** 2 * valid[:, None], axis=0) > 0.5
  y = jnp.where(valid[:, None] & on_valid[None, :], y, 0)
  return jnp.where(on_valid, theta, jnp.nan), y


def _start_vector(flat: jax.Array, init: Params | None, key: jax.Array | None, params: Params) -> jax.Array:
  if init is not None:
    if jax.tree.structure(init) != jax.tree.structure(params):
      raise ValueError(
        f'init must have the tree structure of params, got {jax.tree.structure(init)} and {jax.tree.structure(params)}.'
      )
    v0, _ = _flatten(init, 'init')
    if v0.shape != flat.shape:
      raise ValueError(f'init must flatten to {flat.shape[0]} values like params, got {v0.shape[0]}.')
    return v0.astype(flat.dtype)
  if key is not None:
    return jax.random.normal(key, flat.shape, flat.dtype)
  raise ValueError('top_eigenpairs needs a start vector: pass `init` (a pytree like params) or a PRNG `key`.')


def top_eigenpairs(
  fun: Loss,
  params: Params,
  *args: Any,
  k: int = 5,
  krylov_depth: int | None = None,
  key: jax.Array | None = None,
  init: Params | None = None,
  which: Which = 'largest',
  g: Params | None = None,
) -> Eigenpairs:
  """The top k eigenpairs of H by Lanczos on HVPs with full re-orthogonalisation (thesis Appendix A.3).

  Costs `krylov_depth` HVPs (default `default_krylov_depth(k, n)`) and stores depth vectors of size n. The start
  vector is `init` when given (a warm start, e.g. last step's u_0, so tracking λ_0 during training takes a few
  HVPs per step), otherwise a standard normal draw from `key`. which='largest' gives λ_0 ≥ λ_1 ≥ … (algebraic, the
  λ_0 of the thesis); 'magnitude' the k largest |λ|, which also finds large negative eigenvalues. With `g` the
  vectors follow Re[gᵀu_i] ≥ 0. k, krylov_depth and which are static: the function runs under `jit` and `vmap`.
  A zero `init` gives NaN.
  """
  _check_which(which)
  flat, unravel = _flatten(params)
  n = flat.shape[0]
  _check_k(k, n)
  depth = default_krylov_depth(k, n) if krylov_depth is None else krylov_depth
  if not isinstance(depth, int) or not k <= depth <= n:
    raise ValueError(f'krylov_depth must be an int in [k = {k}, n = {n}], got {depth!r}.')
  v0 = _start_vector(flat, init, key, params)

  matvec = lambda v: ravel_pytree(hvp(fun, params, unravel(v), *args))[0].astype(flat.dtype)
  krylov = lanczos(matvec, v0, depth)
  theta, y = ritz(krylov)
  idx = _select(theta, k, which)
  theta, y = theta[idx], y[:, idx]
  vectors = jnp.matmul(krylov.basis.T, y, precision=_HIGHEST)
  vectors = vectors / jnp.linalg.norm(vectors, axis=0, keepdims=True)
  vectors = jnp.where(jnp.isnan(theta)[None], jnp.nan, vectors)
  last = y[jnp.maximum(jnp.sum(krylov.valid) - 1, 0)]
  residuals = jnp.where(jnp.isnan(theta), jnp.nan, jnp.abs(krylov.residual_norm * last))
  tree = jax.vmap(unravel)(vectors.T)
  if g is not None:
    tree = align_signs(tree, g)
  return Eigenpairs(theta, tree, residuals, jnp.asarray(depth, jnp.int32))
