"""Stability analysis of gradient descent through the flows of Chapter 3, in terms of the Hessian's eigenpairs.

Every flow here has the form θ̇ = Σ_i α(hλ_i)(gᵀu_i)u_i (Table 3.1), g = ∇E, (λ_i, u_i) the eigenpairs of
H = ∇²E; α is named ('ngf', 'igr', 'third', 'pf', see `coefficients.COEFFICIENTS`) or any callable of z = hλ.
With λ_i, u_i held fixed, the projection x_i = gᵀu_i then evolves as ẋ_i = r_i x_i with the rate
r_i = λ_i α(hλ_i) (Corollaries 3.2–3.4): log(1 − hλ_i)/h for the PF, −λ_i for the NGF, −(λ_i + (h/2)λ_i²) for the
IGR flow, and the same numbers are the eigenvalues of each flow's Jacobian at a critical point (Eq 3.13).

- `projections`: x_i = gᵀu_i (bilinear: no conjugation, also for complex g);
- `stability_coefficients`: sc_i = α_PF(hλ_i)x_i (Definition 3.3.4), complex beyond hλ_i = 1;
- `energy_rate`: dE/dt = Σ_i α(hλ_i)x_i² (Eq 3.12);
- `growth_rates`, `predict_projection`: r_i and the one-step prediction x_i(h) (Remarks 3.4.2–3.4.4);
- `critical_jacobian`: Σ_i r_i u_iu_iᵀ at a critical point (Eq 3.13; the IGR's per erratum 2, not A.141's h²);
- `gd_energy_change`: E(θ − hg) − E(θ) ≈ −hΣ_i(1 − hλ_i/2)x_i² (Eq A.165 as corrected, erratum 3);
- `gd_diverges`, `heavy_ball_diverges`: the thresholds hλ_0 > 2 and hλ_0 > 2(1 + β) on quadratics;
- `quadratic_pf_solution`: the PF of E = ½θᵀAθ + bᵀθ in closed form (Remark 3.3.1 / Eq A.121 as corrected,
  erratum 1), equal to gradient descent at t = nh.

The principal branch throughout: for real hλ > 1, log(1 − hλ) = log(hλ − 1) + iπ and (1 − hλ)^{t/h} =
(hλ − 1)^{t/h}e^{iπt/h} (Figure 3.6); at hλ = 1 the PF reaches the minimum along u_i at t = h (erratum 5), so the
rate is −∞ and (1 − hλ)^{t/h} = 0 for t > 0. Results that can leave the reals (PF coefficients, rates, Jacobians
and the closed form) are complex whatever the values, so that their dtype does not depend on the data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from smoothrl.flows import coefficients

Params = Any
Flow = str | Callable[[jax.Array], jax.Array]


def _coefficient(flow: Flow) -> Callable[[jax.Array], jax.Array]:
  if callable(flow):
    return flow
  if flow not in coefficients.COEFFICIENTS:
    raise ValueError(f'flow must be one of {tuple(coefficients.COEFFICIENTS)} or a callable α(z), got {flow!r}.')
  return coefficients.COEFFICIENTS[flow]


def _is_pf(flow: Flow) -> bool:
  return flow == 'pf' or flow is coefficients.alpha_pf


def _real(x: Any, name: str) -> jax.Array:
  x = jnp.asarray(x)
  if jnp.iscomplexobj(x):
    raise ValueError(f'{name} must be real (Hessian eigenvalues of a real loss), got dtype {x.dtype}.')
  return x.astype(jnp.result_type(x, float))


def _complex_dtype(x: jax.Array) -> Any:
  return jnp.result_type(x, jnp.complex64)


def _log_one_minus(z: jax.Array) -> jax.Array:
  """log(1 − z) for real z on the principal branch: log|1 − z| + iπ for z > 1, −∞ at z = 1; complex."""
  magnitude = jnp.log(jnp.abs(1 - z))
  return jax.lax.complex(magnitude, jnp.where(z > 1, jnp.pi, 0.0).astype(magnitude.dtype))


def _pf_power(z: jax.Array, s: jax.Array) -> jax.Array:
  """(1 − z)^s for real z and s ≥ 0 on the principal branch: |1 − z|^s e^{iπs} for z > 1; 0^s = 0 (s > 0), 1 (s = 0)."""
  modulus = jnp.power(jnp.abs(1 - z), s)
  phase = jnp.where(z > 1, jnp.pi * s, 0.0)
  return jax.lax.complex(modulus * jnp.cos(phase), modulus * jnp.sin(phase))


def _flat_vectors(vectors: Params) -> jax.Array:
  """(k, n): the vectors (a pytree with a leading axis k, e.g. `Eigenpairs.vectors`, or a (k, n) array) flattened."""
  leaves = jax.tree.leaves(vectors)
  if not leaves or any(jnp.ndim(x) < 1 for x in leaves):
    raise ValueError('vectors must be a pytree whose leaves share a leading axis k (one row per eigenvector).')
  k = {jnp.shape(x)[0] for x in leaves}
  if len(k) != 1:
    raise ValueError(f'the leaves of vectors must share one leading axis k, got sizes {k}.')
  return jax.vmap(lambda v: ravel_pytree(v)[0])(vectors)


@jax.jit
def projections(g: Params, vectors: Params) -> jax.Array:
  """x_i = gᵀu_i, (k,): the bilinear product (no conjugation) of g with each vector (leading axis k of `vectors`).

  `g` is a pytree like one vector (e.g. ∇E, real or complex); `vectors` as `Eigenpairs.vectors`.
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
  precision = jax.lax.Precision.HIGHEST
  return sum(
    jnp.matmul(jnp.reshape(vl, (vl.shape[0], -1)), jnp.reshape(gl, (-1,)), precision=precision)
    for gl, vl in zip(g_leaves, v_leaves)
  )


@jax.jit
def stability_coefficients(values: jax.Array, projections: jax.Array, h: float | jax.Array) -> jax.Array:
  """sc_i = α_PF(hλ_i)(gᵀu_i) (Definition 3.3.4), complex: Re sc_i > 0 iff hλ_i > 2 (for gᵀu_i > 0).

  `values` λ_i (real), `projections` gᵀu_i (real or complex), broadcast together.
  """
  z = h * _real(values, 'values')
  return coefficients.alpha_pf(z.astype(_complex_dtype(z))) * projections


@functools.partial(jax.jit, static_argnames='alpha')
def energy_rate(values: jax.Array, projections: jax.Array, h: float | jax.Array, alpha: Flow) -> jax.Array:
  """dE/dt = Σ_i α(hλ_i)(gᵀu_i)² along the flow given by α (Eq 3.12), summed over the last axis.

  `alpha` a flow name or a callable α(z). For the PF, α_PF is taken on its complex branch (a complex result,
  whose real part is dRe[E]/dt for real gᵀu_i); other named flows give a real rate for real inputs.
  """
  z = h * _real(values, 'values')
  if _is_pf(alpha):
    z = z.astype(_complex_dtype(z))
  x = jnp.asarray(projections)
  return jnp.sum(_coefficient(alpha)(z) * x * x, axis=-1)


@functools.partial(jax.jit, static_argnames='flow')
def growth_rates(values: jax.Array, h: float | jax.Array, flow: Flow) -> jax.Array:
  """r_i = λ_iα(hλ_i): ẋ_i = r_i x_i for x_i = gᵀu_i with λ_i, u_i fixed (Corollaries 3.2–3.4, Remarks 3.4.2–3.4.4).

  PF: log(1 − hλ_i)/h on the principal branch (complex, −∞ at hλ_i = 1); NGF: −λ_i; IGR: −(λ_i + (h/2)λ_i²);
  'third': −(λ_i + (h/2)λ_i² + (h²/3)λ_i³); a callable α: λ_iα(hλ_i).
  """
  values = _real(values, 'values')
  if _is_pf(flow):
    log = _log_one_minus(h * values)
    h = jnp.asarray(h, values.dtype)
    return jax.lax.complex(jnp.real(log) / h, jnp.imag(log) / h)  # not complex division: −∞/h keeps a zero phase
  return values * _coefficient(flow)(h * values)


@functools.partial(jax.jit, static_argnames='flow')
def predict_projection(
  x: jax.Array, values: jax.Array, h: float | jax.Array, flow: Flow, t: float | jax.Array | None = None
) -> jax.Array:
  """x_i(t) = x_i e^{r_i t} with λ_i, u_i held fixed (Remarks 3.4.2–3.4.4); t = h (one GD step) by default.

  PF: (1 − hλ_i)^{t/h}x_i, which is (1 − hλ_i)x_i at t = h, what one GD step does to gᵀu_i on a quadratic (exact
  there; the result is complex, real at t = nh); NGF: e^{−hλ_i}x_i; IGR: e^{−hλ_i − h²λ_i²/2}x_i at t = h.
  """
  values = _real(values, 'values')
  t = h if t is None else t
  if _is_pf(flow):
    return _pf_power(h * values, jnp.asarray(t, values.dtype) / h) * x
  return jnp.exp(growth_rates(values, h, flow) * t) * x


@functools.partial(jax.jit, static_argnames='flow')
def critical_jacobian(values: jax.Array, vectors: Params, h: float | jax.Array, flow: Flow) -> jax.Array:
  """The Jacobian Σ_i r_i u_iu_iᵀ of a flow at a critical point (g = 0), (n, n) in `ravel_pytree` order (Eq 3.13).

  r_i = `growth_rates(values, h, flow)`: PF log(1 − hλ_i)/h (complex), NGF −λ_i, IGR −(λ_i + (h/2)λ_i²)
  (erratum 2: A.135–A.141 print h²/2, but the IGR field is −g − (h/2)Hg, whose derivative at g = 0 is
  −H − (h/2)H²). The third-order term T[g, g] is quadratic in g, so it adds nothing at a critical point. With
  `vectors` all n eigenvectors (e.g. `dense_eigenpairs`) this is the full Jacobian; with k < n of them, its part on
  their span.
  """
  u = _flat_vectors(vectors)
  rates = growth_rates(values, h, flow)
  if rates.shape != (u.shape[0],):
    raise ValueError(f'values must hold one eigenvalue per vector, got {rates.shape} for {u.shape[0]} vectors.')
  u = u.astype(jnp.result_type(u, rates))
  return jnp.matmul(u.T * rates[None], u, precision=jax.lax.Precision.HIGHEST)


@jax.jit
def gd_energy_change(values: jax.Array, projections: jax.Array, h: float | jax.Array) -> jax.Array:
  """E(θ − hg) − E(θ) ≈ −hΣ_i(1 − hλ_i/2)(gᵀu_i)² (Eq A.165 as corrected by erratum 3; exact on quadratics).

  The second-order Taylor expansion −h gᵀg + (h²/2)gᵀHg (A.162) in the eigenbasis; the loss decreases when every
  hλ_i < 2. Summed over the last axis.
  """
  values = _real(values, 'values')
  x = jnp.asarray(projections)
  return -h * jnp.sum((1 - h * values / 2) * x * x, axis=-1)


def gd_diverges(h: float | jax.Array, lambda_0: float | jax.Array) -> jax.Array:
  """Whether GD on a quadratic with largest Hessian eigenvalue λ_0 ≥ 0 diverges: hλ_0 > 2 (Remark 3.3.4)."""
  return jnp.asarray(h) * jnp.asarray(lambda_0) > 2


def heavy_ball_diverges(h: float | jax.Array, lambda_0: float | jax.Array, beta: float | jax.Array) -> jax.Array:
  """Whether heavy ball (Eq 2.16, 0 ≤ β < 1) on a quadratic with λ_0 ≥ 0 diverges: hλ_0 > 2(1 + β).

  x_{t+1} = (1 + β − hλ)x_t − βx_{t−1} along an eigenvector has roots r² − (1 + β − hλ)r + β = 0, both inside the
  unit circle iff 0 < hλ < 2(1 + β) for 0 ≤ β < 1.
  """
  beta = jnp.asarray(beta)
  return jnp.asarray(h) * jnp.asarray(lambda_0) > 2 * (1 + beta)


def quadratic_pf_solution(
  a: jax.Array, b: jax.Array, theta_0: jax.Array, h: float | jax.Array, t: float | jax.Array
) -> jax.Array:
  """The PF of E = ½θᵀAθ + bᵀθ from θ_0, in closed form (erratum 1's correction of Remark 3.3.1 / Eq A.121).

  θ(t) = θ* + Σ_i e^{a_it}((θ_0 − θ*)ᵀu_i)u_i with θ* = −A⁻¹b, a_i = log(1 − hλ_i)/h, (λ_i, u_i) the eigenpairs
  of A; e^{a_it} = (1 − hλ_i)^{t/h} on the principal branch (erratum 5: 0 for t > 0 at hλ_i = 1). At t = nh it is
  the GD iterate θ_n, for any h. Computed per eigendirection, c_i(t) = e^{a_it}θ_0ᵀu_i + (e^{a_it} − 1)bᵀu_i/λ_i
  (−t bᵀu_i at λ_i = 0, its limit), so a singular A is allowed.

  Args:
    a: (n, n) symmetric A.
    b: (n,) the linear term.
    theta_0: (n,) θ(0).
    h: the learning rate.
    t: the time(s), any shape, ≥ 0.

  Returns:
    θ(t), complex, of shape t.shape + (n,).
  """
  a, b, theta_0 = (_real(x, name) for x, name in ((a, 'A'), (b, 'b'), (theta_0, 'theta_0')))
  n = theta_0.shape[-1] if theta_0.ndim == 1 else None
  if n is None or a.shape != (n, n) or b.shape != (n,):
    raise ValueError(f'A must be (n, n), b and theta_0 (n,), got {a.shape}, {b.shape} and {theta_0.shape}.')
  if not isinstance(a, jax.core.Tracer) and not np.allclose(np.asarray(a), np.asarray(a).T, rtol=1e-6, atol=1e-12):
    raise ValueError('A must be symmetric (the Hessian of the quadratic).')
  return _pf_solution(a, b, theta_0, jnp.asarray(h, a.dtype), jnp.asarray(t, a.dtype))


@jax.jit
def _pf_solution(a: jax.Array, b: jax.Array, theta_0: jax.Array, h: jax.Array, t: jax.Array) -> jax.Array:
  values, u = jnp.linalg.eigh(a)
  s = (t / h)[..., None]  # (…, 1): the exponent t/h
  z = h * values  # (n,)
  power = _pf_power(z, s)  # (1 − hλ_i)^{t/h}, (…, n)
  # (1 − hλ)^{t/h} − 1 without cancellation for small hλ < 1, where it is expm1((t/h) log1p(−hλ)).
  below = z < 1
  log1p = jnp.log1p(-jnp.where(below, z, 0))
  minus_one = jnp.where(below, jnp.expm1(jnp.where(s > 0, s * log1p, 0)), power - 1)
  safe = jnp.where(values == 0, 1, values)
  shift = jnp.where(values == 0, -t[..., None], minus_one / safe)  # ((1 − hλ)^{t/h} − 1)/λ, its limit −t at λ = 0
  hi = jax.lax.Precision.HIGHEST
  coords = power * jnp.matmul(u.T, theta_0, precision=hi) + shift * jnp.matmul(u.T, b, precision=hi)  # c_i(t)
  return jnp.einsum('...i,ji->...j', coords, u.astype(coords.dtype), precision=hi)
