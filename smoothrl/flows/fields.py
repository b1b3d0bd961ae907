"""The vector fields θ̇ = f(θ) of the continuous-time models of gradient descent θ_t = θ_{t−1} − h∇E (thesis Ch. 3).

A `VectorField` is `field(params, *args) -> θ̇`, a pytree like params; each constructor takes the loss
`fun(params, *args) -> scalar` and the learning rate h. Notation: g = ∇E, H = ∇²E, (λ_i, u_i) its eigenpairs
with λ_0 ≥ λ_1 ≥ …, T[g, g]_k = Σ_ij g_i ∂³E/∂θ_i∂θ_k∂θ_j g_j (the JVP of θ ↦ H(θ)g along g, g held fixed).

- `ngf`: θ̇ = −g (Eq 3.2).
- `igr`: θ̇ = −g − (h/2)Hg (Eq 3.3), by one HVP.
- `third_order`: θ̇ = −g − (h/2)Hg − h²[(1/3)H²g + (1/12)T[g, g]] (Eq 3.4): two HVPs and T[g, g].
- `principal`: θ̇ = Σ_i α_PF(hλ_i)(gᵀu_i)u_i = φ(hH)g, φ(z) = log(1 − z)/z (Eq 3.9).
- `principal_third`: the PF − (h²/12)T[g, g] (Eq 3.11).
- `spectral`: θ̇ = Σ_i α_i(gᵀu_i)u_i with the caller's α(z) of z_i = hλ_i in descending order (e.g. the flow of
  Figure 3.17, NGF in every direction but u_0, whose sign is flipped); `spectral_topk` does it matrix-free for
  large models: a base flow in every direction and other coefficients on the top-k eigenpairs.

Two ways to φ(hH)g (`method`):

- 'dense': the dense Hessian of the flattened parameters (D HVPs, from one linearisation of ∇E) and its
  eigendecomposition; for models of up to a few thousand parameters and for reference values.
- 'lanczos': matrix-free, `krylov_depth` = m HVPs. Lanczos with full re-orthogonalisation from g gives
  H Q ≈ Q T with T = QᵀHQ tridiagonal, and φ(hH)g ≈ ‖g‖ Q φ(hT) e_1 with φ(hT) = S diag(α(hθ_j)) Sᵀ from the
  Ritz pairs (θ_j, S_j) of T (the matrix-function product of `matfree.funm.funm_lanczos_sym`). This is the
  polynomial of degree m − 1 that interpolates φ at the Ritz values, so it is exact when the Krylov space of g is
  invariant (m = D at most) and otherwise most accurate in the directions of the extreme eigenvalues, which
  Lanczos resolves first. φ(z) = log(1 − z)/z is singular at z = 1: with hλ_i close to 1 more depth is needed.
  The iteration (`_arnoldi`: the three-term recurrence and one Gram–Schmidt pass against the whole basis, the
  basis stored by rows; steps past an invariant Krylov space dropped as in `curvature.eigen.lanczos`) is written
  here because matfree 0.6.3's `decomp.hessenberg` (columns, Gram–Schmidt twice) made the field about twice as
  costly at D ≈ 100k (benchmarks/principal_flow_cost.py).

Real and complex parameters. At real θ the derivatives are real (one real linearisation of ∇E, `eigh`,
symmetric Lanczos), and the principal flows return a complex θ̇ (complex64 for float32 parameters): α_PF(hλ) is
complex beyond hλ = 1 (Section 3.3, the branch log(hλ − 1) + iπ), and its imaginary part is exactly zero when
every hλ_i < 1. The other fields return the parameters' dtype (`spectral`: the result type of the parameters and
α(z)). At complex θ (every leaf complex, `holomorphic.complexify`) the loss must be holomorphic and return a
complex scalar: g = `jax.grad(fun, holomorphic=True)`, HVPs are its JVPs, and H is complex symmetric (Hᵀ = H),
not Hermitian, so 'dense' uses the general eigendecomposition H = V Λ V⁻¹ (`jnp.linalg.eig`) and θ̇ =
V α(hΛ) V⁻¹g, which needs no orthogonality of the eigenvectors, and 'lanczos' uses the Arnoldi iteration
(Hermitian inner product, robust where the complex-symmetric Lanczos recurrence can break down) with φ of the
small Hessenberg matrix by its eigendecomposition. Complex eigenvalues are ordered by descending real part.
α_PF takes the principal branch of log at complex z, so where hλ_i crosses the real axis beyond 1 its coefficient
jumps by 2πi/z, from one branch to the next; the thesis follows complex flows over short horizons (Remark 3.4.1).
`jnp.linalg.eig`, which the complex path needs, was tested on CPU; its support on accelerators depends on the JAX
build.

Every field is a pure function: `jax.jit(field)` compiles it, and it runs under `jax.vmap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from smoothrl.curvature import eigen
from smoothrl.flows import coefficients, holomorphic

Params = Any
Loss = Callable[..., jax.Array]
VectorField = Callable[..., Params]
Coefficient = Callable[[jax.Array], jax.Array]
Method = Literal['dense', 'lanczos']
METHODS: tuple[str, ...] = ('dense', 'lanczos')
BASES: tuple[str, ...] = ('ngf', 'pf')
DEFAULT_KRYLOV_DEPTH = 30  # 'lanczos' uses min(D, this) HVPs when no depth is given
_HIGHEST = jax.lax.Precision.HIGHEST


class Spectrum(NamedTuple):
  """The eigendecomposition of the dense Hessian at θ, in the order of `ravel_pytree(params)`.

  Attributes:
    values: (D,) eigenvalues λ_i, descending (by real part at complex θ).
    vectors: (D, D) eigenvectors u_i as columns: orthonormal at real θ; at complex θ normalised in the bilinear
      form, u_iᵀu_i = 1 (no conjugation), so that H = Σ λ_i u_i u_iᵀ when the eigenvalues are distinct. Signs
      follow Re[gᵀu_i] ≥ 0.
    projections: (D,) gᵀu_i (bilinear).
  """

  values: jax.Array
  vectors: jax.Array
  projections: jax.Array


class _Local(NamedTuple):
  """g = ∇E(θ), v ↦ Hv linearised at θ, θ ↦ ∇E(θ), whether θ is complex, and θ."""

  g: Params
  hvp: Callable[[Params], Params]
  grad: Callable[[Params], Params]
  complex: bool
  params: Params

  def jvp(self, v: Params) -> Params:
    """Hv as the JVP of ∇E at θ: inside a loop as fast as the linearised `hvp` and faster once flattened."""
    return jax.jvp(self.grad, (self.params,), (v,))[1]


def _check_h(h: Any) -> None:
  if isinstance(h, jax.core.Tracer):
    return
  value = np.asarray(h)
  if value.shape != () or not np.isrealobj(value) or not np.isfinite(value) or not value > 0:
    raise ValueError(f'h (the learning rate) must be a finite positive real scalar, got {h!r}.')


def _check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f'method must be one of {METHODS}, got {method!r}.')


def _check_depth(krylov_depth: int | None) -> None:
  if krylov_depth is not None and (not isinstance(krylov_depth, int) or krylov_depth < 1):
    raise ValueError(f'krylov_depth must be a positive int or None, got {krylov_depth!r}.')


def _depth(krylov_depth: int | None, n: int) -> int:
  if krylov_depth is None:
    return min(n, DEFAULT_KRYLOV_DEPTH)
  if krylov_depth > n:
    raise ValueError(f'krylov_depth must be at most D = {n} (the number of parameters), got {krylov_depth}.')
  return krylov_depth


def _flatten(tree: Params) -> tuple[jax.Array, Callable[[jax.Array], Params]]:
  """One flat vector of the leaves, and its inverse, which keeps the dtype of the vector it is given."""
  leaves, treedef = jax.tree.flatten(tree)
  shapes = [jnp.shape(x) for x in leaves]
  sizes = [int(np.prod(s)) for s in shapes]
  flat = jnp.concatenate([jnp.ravel(x) for x in leaves])

  def unflatten(vector: jax.Array) -> Params:
    parts = jnp.split(vector, np.cumsum(sizes)[:-1]) if len(sizes) > 1 else [vector]
    return jax.tree.unflatten(treedef, [p.reshape(s) for p, s in zip(parts, shapes)])

  return flat, unflatten


def _check_loss(fun: Loss, params: Params, args: tuple[Any, ...]) -> bool:
  """Whether params are complex, after checking that the loss returns a scalar of the matching kind."""
  is_complex = holomorphic.is_complex(params)
  out = jax.eval_shape(lambda p: fun(p, *args), params)
  if not hasattr(out, 'shape') or out.shape != ():
    raise ValueError(f'fun must return a scalar, got {out}.')
  if is_complex and not jnp.issubdtype(out.dtype, jnp.complexfloating):
    raise holomorphic.NotHolomorphicError(
      f'fun returns a real value ({out.dtype}) at complex parameters; the complex flows need a holomorphic loss '
      'that returns a complex scalar there (no |·|, real parts or conjugates; see holomorphic.check_holomorphic).'
    )
  if not is_complex and not jnp.issubdtype(out.dtype, jnp.floating):
    raise ValueError(f'fun must return a real floating point scalar at real parameters, got {out.dtype}.')
  return is_complex


def _local(fun: Loss, params: Params, args: tuple[Any, ...]) -> _Local:
  """g and the HVP linearised at params (holomorphic derivatives at complex params)."""
  is_complex = _check_loss(fun, params, args)
  grad = jax.grad(lambda p: fun(p, *args), holomorphic=is_complex)
  g, hvp = jax.linearize(grad, params)
  return _Local(g, hvp, grad, is_complex, params)


def _third(local: _Local, params: Params) -> Params:
  """T[g, g]: the JVP of θ ↦ H(θ)g along g, with g held fixed."""
  g = jax.lax.stop_gradient(local.g)
  return jax.jvp(lambda p: jax.jvp(local.grad, (p,), (g,))[1], (params,), (g,))[1]


def _add(a: Params, b: Params, scale: Any = 1) -> Params:
  return jax.tree.map(lambda x, y: x + scale * y, a, b)


def _coefficients(alpha: Coefficient, z: jax.Array) -> jax.Array:
  c = jnp.asarray(alpha(z))
  if c.shape != z.shape:
    raise ValueError(f'alpha must return one coefficient per eigenvalue, shape {z.shape}, got {c.shape}.')
  return c


def _descending(values: jax.Array) -> jax.Array:
  """Indices that order `values` by descending real part, then imaginary part; NaNs last."""
  re, im = jnp.real(values), jnp.imag(values)
  re = jnp.where(jnp.isnan(re), -jnp.inf, re)
  return jnp.lexsort((-im, -re))


def _dense_hessian(local: _Local, params: Params) -> tuple[jax.Array, jax.Array, Callable[[jax.Array], Params]]:
  """(g, H, unflatten) with H (D, D) from D products of the linearised HVP with the unit vectors."""
  g, unflatten = _flatten(local.g)
  flat, _ = _flatten(params)
  eye = jnp.eye(flat.shape[0], dtype=flat.dtype)
  h = jax.vmap(lambda e: _flatten(local.hvp(unflatten(e)))[0])(eye).T
  return g, 0.5 * (h + h.T), unflatten  # Hᵀ = H, real or complex


def _spectral_dense(local: _Local, params: Params, h: Any, alpha: Coefficient) -> Params:
  """Σ_i α(hλ_i)(gᵀu_i)u_i from the dense Hessian (V α V⁻¹ g at complex θ)."""
  g, hess, unflatten = _dense_hessian(local, params)
  if local.complex:
    values, vectors = jnp.linalg.eig(hess)
    order = _descending(values)
    values, vectors = values[order], vectors[:, order]
    weights = jnp.linalg.solve(vectors, g)
  else:
    values, vectors = jnp.linalg.eigh(hess)
    values, vectors = values[::-1], vectors[:, ::-1]
    weights = jnp.matmul(vectors.T, g, precision=_HIGHEST)
  c = _coefficients(alpha, h * values)
  return unflatten(jnp.matmul(vectors, c * weights, precision=_HIGHEST))


def dense_spectrum(fun: Loss, params: Params, *args: Any) -> Spectrum:
  """The `Spectrum` of the dense Hessian at params: `eigh` at real θ, `eig` with the bilinear normalisation
  u_iᵀu_i = 1 at complex θ (where H is complex symmetric). Eigenvectors of a repeated eigenvalue at complex θ are
  not made bilinear-orthogonal within their eigenspace."""
  local = _local(fun, params, args)
  g, hess, _ = _dense_hessian(local, params)
  if local.complex:
    values, vectors = jnp.linalg.eig(hess)
    order = _descending(values)
    values, vectors = values[order], vectors[:, order]
    vectors = vectors / jnp.sqrt(jnp.sum(vectors * vectors, axis=0, keepdims=True))
  else:
    values, vectors = jnp.linalg.eigh(hess)
    values, vectors = values[::-1], vectors[:, ::-1]
  projections = jnp.matmul(g, vectors, precision=_HIGHEST)
  signs = jnp.where(jnp.real(projections) < 0, -1, 1).astype(vectors.dtype)
  return Spectrum(values, vectors * signs[None], projections * signs)


class _Arnoldi(NamedTuple):
  """m = `depth` Arnoldi steps A Qᵀ ≈ Qᵀ H_m: the rows q_i of `basis` (zero where dropped), H_m with the dropped
  steps decoupled and parked on its diagonal, and which steps are valid."""

  basis: jax.Array
  hessenberg: jax.Array
  valid: jax.Array


def _arnoldi(matvec: Callable[[jax.Array], jax.Array], v0: jax.Array, depth: int, symmetric: bool) -> _Arnoldi:
  """The Arnoldi iteration from v0 with full re-orthogonalisation, the basis stored by rows.

  symmetric (A real symmetric): Lanczos' three-term recurrence, then one Gram–Schmidt pass against the whole
  basis; H_m is the tridiagonal T up to rounding. Otherwise classical Gram–Schmidt twice in the Hermitian inner
  product. Steps from the first non-finite vector, or the first with |q_iᴴq_j| > √eps for some j < i, on are
  dropped, as in `curvature.eigen.lanczos` (the Krylov space became invariant, or nearly, and the next vector is
  noise); their block of H_m is decoupled and parked on the diagonal at −3b, b ≥ the spectral radius of the
  valid block, so that no eigensolver mixes it with the valid block and its eigenvectors can be told apart.
  """
  steps = jnp.arange(depth)

  def step(i, carry):
    basis, hm, v = carry
    q = v / jnp.sqrt(jnp.real(jnp.vdot(v, v))).astype(v.dtype)
    basis = basis.at[i].set(q)
    w = matvec(q)
    if symmetric:
      alpha = jnp.vdot(q, w)
      beta = jnp.where(i > 0, hm[i, jnp.maximum(i - 1, 0)], 0)
      w = w - alpha * q - beta * basis[jnp.maximum(i - 1, 0)]
      h1 = jnp.where(steps == i, alpha, jnp.where(steps == i - 1, beta, 0))
    else:
      h1 = jnp.matmul(jnp.conj(basis), w, precision=_HIGHEST)  # zero beyond step i
      w = w - jnp.matmul(h1, basis, precision=_HIGHEST)
    h2 = jnp.matmul(jnp.conj(basis), w, precision=_HIGHEST)
    w = w - jnp.matmul(h2, basis, precision=_HIGHEST)
    norm = jnp.sqrt(jnp.real(jnp.vdot(w, w))).astype(hm.dtype)
    hm = hm.at[:, i].set(jnp.where(steps == i + 1, norm, h1 + h2))
    return basis, hm, w

  init = (jnp.zeros((depth, v0.shape[0]), v0.dtype), jnp.zeros((depth, depth), v0.dtype), v0)
  basis, hm, _ = jax.lax.fori_loop(0, depth, step, init)
  finite = jnp.all(jnp.isfinite(basis), axis=1) & jnp.all(jnp.isfinite(hm), axis=0)
  gram = jnp.tril(jnp.matmul(jnp.conj(basis), basis.T, precision=_HIGHEST), -1)
  orthogonal = jnp.all(jnp.abs(gram) <= jnp.sqrt(jnp.finfo(basis.dtype).eps), axis=1)  # False where NaN
  valid = jnp.cumprod(finite & orthogonal).astype(bool)
  hm = jnp.where(valid[:, None] & valid[None, :], hm, 0)
  bound = jnp.max(jnp.sum(jnp.abs(hm), axis=1))
  park = jnp.where(bound > 0, -3 * bound, -1)
  hm = hm + jnp.diag(jnp.where(valid, 0, park).astype(hm.dtype))
  return _Arnoldi(jnp.where(valid[:, None], basis, 0), hm, valid)


def _tree_norm(v: Params) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.real(jnp.conj(x) * x)) for x in jax.tree.leaves(v)))


def _dots(vectors: Params, v: Params) -> jax.Array:
  """(k,) u_jᵀv (bilinear) for the k vectors u_j of `vectors` (a pytree like v with a leading axis k)."""
  return sum(jnp.tensordot(u, x, axes=x.ndim) for u, x in zip(jax.tree.leaves(vectors), jax.tree.leaves(v)))


def _combine(coefficients_: jax.Array, vectors: Params) -> Params:
  """Σ_j c_j u_j over the vectors of `vectors`."""
  return jax.tree.map(lambda u: jnp.tensordot(coefficients_, u, axes=1), vectors)


def _krylov(local: _Local, h: Any, alpha: Coefficient, krylov_depth: int | None) -> Params:
  """‖g‖ Q φ(hH_m) e_1 from `depth` Arnoldi steps from g, φ(hH_m) = W diag(α(hμ_j)) W⁻¹ for the eigenpairs
  (μ_j, W_j) of H_m: at real θ the Ritz pairs of the symmetric tridiagonal (`eigh`, W⁻¹ = Wᵀ), at complex θ those of
  the Hessenberg matrix (`eig`). alpha sees the values of the valid steps in descending order, NaN for the
  dropped ones, whose coefficients are not used. g = 0 starts from the ones vector, and θ̇ = 0·(finite) = 0."""
  g, unflatten = _flatten(local.g)
  depth = _depth(krylov_depth, g.shape[0])
  norm = jnp.linalg.norm(g)
  start = jnp.where(norm > 0, g, jnp.ones_like(g))
  matvec = lambda v: _flatten(local.jvp(unflatten(v)))[0]
  krylov = _arnoldi(matvec, start, depth, symmetric=not local.complex)
  if local.complex:
    values, w = jnp.linalg.eig(krylov.hessenberg)
    left = jnp.linalg.solve(w, jnp.eye(depth, dtype=w.dtype)[0])  # W⁻¹ e_1
  else:
    band = jnp.abs(jnp.arange(depth)[:, None] - jnp.arange(depth)[None, :]) <= 1
    values, w = jnp.linalg.eigh(jnp.where(band, 0.5 * (krylov.hessenberg + krylov.hessenberg.T), 0))
    left = w[0]
  on_valid = jnp.sum(jnp.abs(w) ** 2 * krylov.valid[:, None], axis=0) > 0.5  # an eigenvector of one block
  values = jnp.where(on_valid, values, jnp.nan)
  order = _descending(values)
  sorted_c = _coefficients(alpha, h * values[order])
  c = jnp.where(on_valid, jnp.zeros_like(sorted_c).at[order].set(sorted_c), 0)
  small = jnp.where(krylov.valid, jnp.matmul(w, c * left, precision=_HIGHEST), 0)  # φ(hH_m) e_1
  return unflatten(norm * jnp.matmul(small, krylov.basis, precision=_HIGHEST))


def _spectral(local: _Local, params: Params, h: Any, alpha: Coefficient, method: str, depth: int | None) -> Params:
  if method == 'dense':
    return _spectral_dense(local, params, h, alpha)
  return _krylov(local, h, alpha, depth)


def _alpha_pf_branch(z: jax.Array) -> jax.Array:
  """α_PF at z taken as complex, so that z > 1 on the real axis gives the branch (log(z − 1) + iπ)/z."""
  return coefficients.alpha_pf(z.astype(jnp.result_type(z.dtype, jnp.complex64)))


def ngf(fun: Loss, h: Any) -> VectorField:
  """The negative gradient flow θ̇ = −g (Eq 3.2); h is checked and otherwise unused."""
  _check_h(h)

  def field(params: Params, *args: Any) -> Params:
    g = jax.grad(lambda p: fun(p, *args), holomorphic=_check_loss(fun, params, args))(params)
    return jax.tree.map(jnp.negative, g)

  return field


def igr(fun: Loss, h: Any) -> VectorField:
  """The IGR flow θ̇ = −g − (h/2)Hg (Eq 3.3), Hg by one HVP of the linearised gradient."""
  _check_h(h)

  def field(params: Params, *args: Any) -> Params:
    local = _local(fun, params, args)
    return jax.tree.map(lambda g, hg: -g - (h / 2) * hg, local.g, local.hvp(local.g))

  return field


def third_order(fun: Loss, h: Any) -> VectorField:
  """The third-order flow θ̇ = −g − (h/2)Hg − h²[(1/3)H²g + (1/12)T[g, g]] (Eq 3.4): two HVPs and T[g, g]."""
  _check_h(h)

  def field(params: Params, *args: Any) -> Params:
    local = _local(fun, params, args)
    hg = local.hvp(local.g)
    h2g = local.hvp(hg)
    t = _third(local, params)
    return jax.tree.map(lambda g, a, b, c: -g - (h / 2) * a - h**2 * (b / 3 + c / 12), local.g, hg, h2g, t)

  return field


def spectral(
  fun: Loss, h: Any, alpha: Coefficient, *, method: Method = 'dense', krylov_depth: int | None = None
) -> VectorField:
  """θ̇ = Σ_i α_i (gᵀu_i)u_i with α_i = alpha(z)_i, z the (D,) values hλ_i in descending order (Table 3.1's form).

  `alpha` maps an array of z to one coefficient each, e.g. `coefficients.alpha_igr`, or by position the flow of
  Figure 3.17, θ̇ = (gᵀu_0)u_0 − Σ_{i≥1}(gᵀu_i)u_i: `lambda z: jnp.where(jnp.arange(z.size) == 0, 1.0, -1.0)`.
  z is real at real θ, so `coefficients.alpha_pf` gives NaN beyond z = 1 there; `principal` takes the complex
  branch. With method='lanczos' alpha receives the `krylov_depth` Ritz values (times h) of the Krylov space of g,
  descending, NaN for steps dropped when the space became invariant (their coefficients are not used), and the
  field is ‖g‖ Q α(hT) e_1 (see the module docstring).
  """
  _check_h(h)
  _check_method(method)
  _check_depth(krylov_depth)
  if not callable(alpha):
    raise ValueError(f'alpha must be a function of z = hλ, got {alpha!r}.')

  def field(params: Params, *args: Any) -> Params:
    return _spectral(_local(fun, params, args), params, h, alpha, method, krylov_depth)

  return field


def principal(fun: Loss, h: Any, *, method: Method = 'dense', krylov_depth: int | None = None) -> VectorField:
  """The principal flow θ̇ = Σ_i α_PF(hλ_i)(gᵀu_i)u_i = φ(hH)g, φ(z) = log(1 − z)/z (Eq 3.9); complex θ̇.

  method='dense' diagonalises the dense Hessian; 'lanczos' is matrix-free, `krylov_depth` HVPs (default
  min(D, 30)), exact when it reaches the dimension of the Krylov space of g (D at most).
  """
  return spectral(fun, h, _alpha_pf_branch, method=method, krylov_depth=krylov_depth)


def principal_third(fun: Loss, h: Any, *, method: Method = 'dense', krylov_depth: int | None = None) -> VectorField:
  """The principal flow with the third-order non-principal term, φ(hH)g − (h²/12)T[g, g] (Eq 3.11)."""
  _check_h(h)
  _check_method(method)
  _check_depth(krylov_depth)

  def field(params: Params, *args: Any) -> Params:
    local = _local(fun, params, args)
    pf = _spectral(local, params, h, _alpha_pf_branch, method, krylov_depth)
    return _add(pf, _third(local, params), -(h**2) / 12)

  return field


_BASE_ALPHA: dict[str, Coefficient] = {
  'ngf': coefficients.alpha_ngf,
  'pf': _alpha_pf_branch,
}


def spectral_topk(
  fun: Loss,
  h: Any,
  top_alpha: Coefficient,
  *,
  k: int = 1,
  base: str = 'ngf',
  krylov_depth: int | None = None,
  base_depth: int | None = None,
  key: jax.Array | None = None,
) -> VectorField:
  """A base flow in every direction and coefficients `top_alpha` on the top-k eigendirections, matrix-free.

  θ̇ = f_base + Σ_{i<k} [top_alpha(z)_i − α_base(z_i)](gᵀu_i)u_i, z = (hλ_0, …, hλ_{k−1}) descending, with
  f_base = −g (base='ngf') or the principal flow φ(hH)g by Lanczos from g of depth `base_depth` ('pf', complex
  θ̇; the correction assumes its coefficient on u_i is α_PF(hλ_i), which holds once Lanczos resolves λ_i), and
  (λ_i, u_i) from `curvature.eigen.top_eigenpairs` (`krylov_depth` HVPs, its default when None) started from g,
  or from a normal draw from `key` when given (then eigendirections almost orthogonal to g are found too). The
  flow of Figure 3.17 is `spectral_topk(fun, h, jnp.ones_like)`: coefficient +1 on u_0, −1 elsewhere. Real
  parameters only (use `spectral(..., method='lanczos')` at complex θ). Eigenpairs Lanczos could not provide
  (NaN) add nothing.
  """
  _check_h(h)
  _check_depth(krylov_depth)
  _check_depth(base_depth)
  if base not in BASES:
    raise ValueError(f'base must be one of {BASES}, got {base!r}.')
  if not isinstance(k, int) or k < 1:
    raise ValueError(f'k must be a positive int, got {k!r}.')
  if not callable(top_alpha):
    raise ValueError(f'top_alpha must be a function of z = hλ, got {top_alpha!r}.')

  def field(params: Params, *args: Any) -> Params:
    local = _local(fun, params, args)
    if local.complex:
      raise ValueError('spectral_topk takes real parameters; at complex θ use spectral(..., method="lanczos").')
    if base == 'ngf':
      out = jax.tree.map(jnp.negative, local.g)
    else:
      out = _krylov(local, h, _alpha_pf_branch, base_depth)
    norm = _tree_norm(local.g)
    start = jax.tree.map(lambda x: jnp.where(norm > 0, x, jnp.ones_like(x)), local.g)
    pairs = eigen.top_eigenpairs(
      fun, params, *args, k=k, krylov_depth=krylov_depth, key=key, init=None if key is not None else start
    )
    found = ~jnp.isnan(pairs.values)
    vectors = jax.tree.map(lambda u: jnp.where(found.reshape((-1,) + (1,) * (u.ndim - 1)), u, 0), pairs.vectors)
    z = h * pairs.values
    c = jnp.where(found, _coefficients(top_alpha, z) - _BASE_ALPHA[base](z), 0)
    return _add(out, _combine(c * _dots(vectors, local.g), vectors))  # real vectors: uᵀg

  return field


FLOWS: dict[str, Callable[..., VectorField]] = {
  'ngf': ngf,
  'igr': igr,
  'third': third_order,
  'pf': principal,
  'pf+third': principal_third,
}


def make(name: str, fun: Loss, h: Any, **options: Any) -> VectorField:
  """The field `FLOWS[name](fun, h, **options)`, e.g. `make('pf', loss, 0.1, method='lanczos', krylov_depth=20)`."""
  if name not in FLOWS:
    raise ValueError(f'unknown flow {name!r}; the flows are {tuple(FLOWS)}.')
  return FLOWS[name](fun, h, **options)
