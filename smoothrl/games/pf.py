"""The principal flow of a two-player game and its stability test (thesis Section 4.8, Appendix B.7).

With ψ = (φ, θ), u(ψ) = (f, g) and H = −du/dψ = −[[f_φ, f_θ], [g_φ, g_θ]] (Eq 4.60), simultaneous Euler steps
ψ_t = ψ_{t−1} + h u(ψ_{t−1}) near a critical point follow ψ_t − ψ* = (I − hH)(ψ_{t−1} − ψ*) (Eq B.227), which
the flow

  ψ̇ = (1/h) log(I − hH) H⁻¹ (−u) = −α_PF(hH) u,   α_PF(z) = log(1 − z)/z          (Eqs 4.67, B.238)

follows exactly for a linear u. α_PF is the coefficient of the single-objective principal flow
(`smoothrl.flows.coefficients.alpha_pf`, Eq 3.9), α_PF(z) = −Σ_p zᵖ/(p + 1), so ψ̇ = Σ_p (hH)ᵖ u/(p + 1): Eq 4.61's
BEA series without its higher-derivative terms.

JAX has no matrix logarithm. `pf_matrix` evaluates α_PF(hH) through the eigendecomposition H = V Λ V⁻¹
(`jnp.linalg.eig`, LAPACK's geev on CPU; on GPU it needs a jaxlib with cuSOLVER's geev), so H must be
diagonalisable: a defective H (a nontrivial Jordan block, which Definition 4.8.1 allows) gives an ill-conditioned
V, reported as `PFMatrix.condition`. With 'series', `principal_field` instead sums Σ_{p<terms} (hH)ᵖ u/(p + 1)
with Jacobian-vector products (no matrix), which converges when every |hλ| < 1. The tests compare `pf_matrix` with
scipy's `logm` on the host.

Stability (Section 4.8.1): the PF's Jacobian at a critical point, (1/h) log(I − hH), has eigenvalues
log(1 − hλ)/h, whose real parts log|1 − hλ|/h (Eq 4.73) are negative iff |1 − hλ| < 1 for every eigenvalue λ of
H; for λ = x + iy with x > 0 that is h < 2x/(x² + y²) (Eq 4.74, Mescheder et al.'s Lemma 4). With per-player rates,
u = (v_φ f, v_θ g) and one step is h for both (the shared clock of Section 4.7).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from smoothrl.flows.coefficients import alpha_pf
from smoothrl.games.drift import flow_field, jacobian
from smoothrl.games.game import Field, Game, Params

METHODS: tuple[str, ...] = ('eig', 'series')
Method = Literal['eig', 'series']


class PFMatrix(NamedTuple):
  """α_PF(hH) = (1/h) log(I − hH) H⁻¹ (complex) and the 2-norm condition number of H's eigenvector matrix."""

  matrix: jax.Array
  condition: jax.Array


class PFStability(NamedTuple):
  """The stability test of Section 4.8.1 at a point.

  Attributes:
    eigenvalues: λ of H = −du/dψ (complex, in `jnp.linalg.eig`'s order).
    gd_factors: |1 − hλ|, how much one Euler step scales each eigendirection.
    rates: log|1 − hλ|/h, the real parts of the PF Jacobian's eigenvalues (Eq 4.73).
    max_learning_rates: 2x/(x² + y²) for λ = x + iy with x > 0 (Eq 4.74), 0 where x ≤ 0 (no h is stable).
    stable: every |1 − hλ| < 1.
  """

  eigenvalues: jax.Array
  gd_factors: jax.Array
  rates: jax.Array
  max_learning_rates: jax.Array
  stable: jax.Array


def negative_jacobian(
  game: Game, phi: Params, theta: Params, *args: Any, v_phi: Any = 1.0, v_theta: Any = 1.0
) -> jax.Array:
  """H = −du/dψ (Eq 4.60) of u = (v_φ f, v_θ g), dense, φ's entries first."""
  return -jacobian(flow_field(game, v_phi=v_phi, v_theta=v_theta, clock='shared'), phi, theta, *args)


def pf_matrix(hessian: jax.Array, h: Any) -> PFMatrix:
  """α_PF(hH) = V diag(log(1 − hλ)/(hλ)) V⁻¹ for a diagonalisable H (complex; real up to rounding when no hλ
  is real and ≥ 1)."""
  hessian = jnp.asarray(hessian)
  if hessian.ndim != 2 or hessian.shape[0] != hessian.shape[1]:
    raise ValueError(f'pf_matrix needs a square matrix H, got shape {hessian.shape}')
  values, vectors = jnp.linalg.eig(hessian)
  coefficients = alpha_pf(h * values)
  matrix = (vectors * coefficients[None, :]) @ jnp.linalg.inv(vectors)
  return PFMatrix(matrix, jnp.linalg.cond(vectors))


def principal_field(
  game: Game,
  h: Any,
  *,
  method: Method = 'eig',
  terms: int = 30,
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
) -> Field:
  """The game PF ψ̇ = −α_PF(hH) u (Eq 4.67), `field(phi, theta, *args) -> (phi_dot, theta_dot)`, real.

  'eig' forms H densely at each point and takes the real part of the result (exact while log(I − hH) is real,
  i.e. while no hλ is real and ≥ 1); 'series' sums `terms` terms of Σ (hH)ᵖ u/(p + 1) by JVPs (|hλ| < 1)."""
  if method not in METHODS:
    raise ValueError(f'unknown PF method {method!r}; valid: {", ".join(METHODS)}')
  if isinstance(terms, bool) or not isinstance(terms, int) or terms < 1:
    raise ValueError(f'terms must be a positive int, got {terms!r}')
  u_field = flow_field(game, v_phi=v_phi, v_theta=v_theta, clock='shared')

  def eig_field(phi: Params, theta: Params, *args: Any) -> tuple[Params, Params]:
    u, unravel = ravel_pytree(u_field(phi, theta, *args))
    hessian = negative_jacobian(game, phi, theta, *args, v_phi=v_phi, v_theta=v_theta)
    matrix = pf_matrix(hessian, h).matrix
    return unravel(-jnp.real(matrix @ u.astype(matrix.dtype)).astype(u.dtype))

  def series_field(phi: Params, theta: Params, *args: Any) -> tuple[Params, Params]:
    u, jvp = jax.linearize(lambda p, t: u_field(p, t, *args), phi, theta)

    def body(p, carry):
      term, total = carry  # term = (hH)ᵖ u
      term = jax.tree.map(lambda x: -h * x, jvp(*term))  # hH v = −h (du/dψ) v
      total = jax.tree.map(lambda s, x: s + x / (p + 2), total, term)
      return term, total

    _, total = jax.lax.fori_loop(0, terms - 1, body, (u, u))
    return total

  return eig_field if method == 'eig' else series_field


def pf_stability(hessian: jax.Array, h: Any) -> PFStability:
  """The stability of the game PF (and of simultaneous Euler steps) at a critical point with H = `hessian`."""
  hessian = jnp.asarray(hessian)
  if hessian.ndim != 2 or hessian.shape[0] != hessian.shape[1]:
    raise ValueError(f'pf_stability needs a square matrix H, got shape {hessian.shape}')
  values = jnp.linalg.eigvals(hessian)
  factors = jnp.abs(1 - h * values)
  x, y = jnp.real(values), jnp.imag(values)
  safe = jnp.where(x > 0, x**2 + y**2, 1.0)
  max_rates = jnp.where(x > 0, 2 * x / safe, 0.0)
  return PFStability(values, factors, jnp.log(factors) / h, max_rates, jnp.all(factors < 1))
