"""Stochastic estimates of the Hessian's spectrum: Hutchinson's trace and stochastic Lanczos quadrature (SLQ).

For a loss E over a parameter pytree with n parameters and Hessian H = ∇²E = Σ_i λ_i u_i u_iᵀ:

- `hutchinson_trace`: tr H = E_v[vᵀHv] for Rademacher probes v (entries ±1), one HVP per probe. The variance of
  one probe is 2 Σ_{i≠j} H_ij², so the estimate is exact when H is diagonal.
- `spectral_density`: SLQ (Ubaru, Chen & Saad 2017; Ghorbani, Krishnan & Xiao 2019, the Hessian densities the
  thesis cites in Section 3.9). For each probe v, m Lanczos steps from v give a tridiagonal T with eigenpairs
  (θ_j, y_j); the Gauss quadrature nodes θ_j and weights τ_j = (e_1ᵀy_j)² satisfy vᵀf(H)v/‖v‖² ≈ Σ_j τ_j f(θ_j),
  exactly for polynomials f of degree ≤ 2m − 1. Averaged over probes this estimates the spectral measure
  (1/n) Σ_i δ(t − λ_i); smoothed by a Gaussian of width σ it is the density
  φ(t) = mean_probes Σ_j τ_j N(t; θ_j, σ²), which integrates to 1. `trace_of_function` gives
  tr f(H) ≈ n · mean_probes Σ_j τ_j f(θ_j) (‖v‖² = n for Rademacher probes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from matfree import stochtrace

from smoothrl.curvature.eigen import _flatten, lanczos, ritz
from smoothrl.curvature.products import hvp

Params = Any
Loss = Callable[..., jax.Array]


class TraceEstimate(NamedTuple):
  """A Monte Carlo estimate of tr H.

  Attributes:
    value: the mean of vᵀHv over the probes.
    stderr: its standard error, the sample standard deviation of vᵀHv (ddof = 1) over √num_probes; NaN for one probe.
    num_matvecs: the number of Hessian-vector products spent (one per probe).
  """

  value: jax.Array
  stderr: jax.Array
  num_matvecs: jax.Array


class Spectrum(NamedTuple):
  """The SLQ estimate of the spectral measure of H, and its Gaussian-smoothed density on a grid.

  Attributes:
    grid: (g,) the points t of `density`.
    density: (g,) φ(t) = mean_probes Σ_j τ_j N(t; θ_j, width²).
    nodes: (num_probes, depth) the Ritz values θ_j of each probe's Lanczos tridiagonal; NaN for steps dropped after
      the Krylov space became invariant (they carry weight 0).
    weights: (num_probes, depth) τ_j = (e_1ᵀy_j)²; each row sums to 1.
    num_params: n, the number of parameters (the scale of `trace_of_function`).
    num_matvecs: the number of Hessian-vector products spent (num_probes · depth).
  """

  grid: jax.Array
  density: jax.Array
  nodes: jax.Array
  weights: jax.Array
  num_params: jax.Array
  num_matvecs: jax.Array


def _check_key(key: Any) -> None:
  if key is None:
    raise ValueError('a PRNG `key` is needed to draw the probes.')


def _check_probes(num_probes: Any) -> None:
  if not isinstance(num_probes, int) or num_probes < 1:
    raise ValueError(f'num_probes must be a positive int, got {num_probes!r}.')


def hutchinson_trace(fun: Loss, params: Params, *args: Any, key: jax.Array, num_probes: int) -> TraceEstimate:
  """Hutchinson's estimate of tr ∇²E with `num_probes` Rademacher probes (matfree's sampler and integrand).

  Costs `num_probes` HVPs, evaluated together under `vmap`. E[vᵀHv] = tr H; Var[vᵀHv] = 2 Σ_{i≠j} H_ij².
  """
  _check_key(key)
  _check_probes(num_probes)
  flat, unravel = _flatten(params)
  matvec = lambda v: ravel_pytree(hvp(fun, params, unravel(v), *args))[0].astype(flat.dtype)
  probes = stochtrace.sampler_signs(flat, num=num_probes)(key)  # (num_probes, n), entries ±1
  quadratic_forms = jax.vmap(lambda v: stochtrace.monte_carlo_trace()(matvec, v))(probes)  # vᵀHv
  value = jnp.mean(quadratic_forms)
  if num_probes > 1:
    stderr = jnp.std(quadratic_forms, ddof=1) / jnp.sqrt(num_probes)
  else:
    stderr = jnp.full((), jnp.nan, value.dtype)
  return TraceEstimate(value, stderr, jnp.asarray(num_probes, jnp.int32))


def gaussian_density(nodes: jax.Array, weights: jax.Array, grid: jax.Array, width: float | jax.Array) -> jax.Array:
  """φ(t) = mean over the leading axis of Σ_j τ_j N(t; θ_j, width²) at each t of `grid` (NaN nodes ignored)."""
  grid = jnp.asarray(grid)
  z = (grid[None, None, :] - nodes[..., None]) / width
  kernel = jnp.exp(-0.5 * z**2) / (width * jnp.sqrt(2 * jnp.pi))
  used = (weights > 0)[..., None]
  return jnp.mean(jnp.sum(jnp.where(used, weights[..., None] * kernel, 0), axis=1), axis=0)


def spectral_density(
  fun: Loss,
  params: Params,
  *args: Any,
  key: jax.Array,
  num_probes: int,
  krylov_depth: int,
  grid: jax.Array,
  width: float | jax.Array,
) -> Spectrum:
  """The Hessian's spectral density by stochastic Lanczos quadrature (Ubaru et al. 2017; Ghorbani et al. 2019).

  Per Rademacher probe, `krylov_depth` Lanczos steps with full re-orthogonalisation (`eigen.lanczos`) give the
  nodes θ_j and weights τ_j = (e_1ᵀy_j)²; the density is φ(t) = mean_probes Σ_j τ_j N(t; θ_j, width²) on `grid`.
  Costs num_probes · krylov_depth HVPs; the probes run together under `vmap`. The moments Σ_j τ_j θ_j^p average to
  tr(H^p)/n, exactly per probe for p ≤ 2 · krylov_depth − 1 when H is diagonal. num_probes and krylov_depth are
  static.
  """
  _check_key(key)
  _check_probes(num_probes)
  flat, unravel = _flatten(params)
  n = flat.shape[0]
  if not isinstance(krylov_depth, int) or not 1 <= krylov_depth <= n:
    raise ValueError(f'krylov_depth must be an int in [1, n = {n}], got {krylov_depth!r}.')
  grid = jnp.asarray(grid)
  if grid.ndim != 1 or grid.shape[0] == 0:
    raise ValueError(f'grid must be a non-empty 1-D array of points, got shape {grid.shape}.')
  if isinstance(width, int | float) and not width > 0:
    raise ValueError(f'width must be positive, got {width!r}.')

  matvec = lambda v: ravel_pytree(hvp(fun, params, unravel(v), *args))[0].astype(flat.dtype)
  probes = stochtrace.sampler_signs(flat, num=num_probes)(key)

  def quadrature(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    theta, y = ritz(lanczos(matvec, v, krylov_depth))
    tau = jnp.where(jnp.isnan(theta), 0, jnp.abs(y[0]) ** 2)
    return theta, tau

  nodes, weights = jax.vmap(quadrature)(probes)
  density = gaussian_density(nodes, weights, grid.astype(nodes.dtype), width)
  return Spectrum(
    grid,
    density,
    nodes,
    weights,
    jnp.asarray(n, jnp.int32),
    jnp.asarray(num_probes * krylov_depth, jnp.int32),
  )


def trace_of_function(spectrum: Spectrum, f: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """The SLQ estimate tr f(H) ≈ n · mean_probes Σ_j τ_j f(θ_j) from the nodes and weights of `spectral_density`.

  E.g. f = lambda t: t gives the trace, f = lambda t: t**2 the squared Frobenius norm, f = jnp.log the log
  determinant of a positive definite H. Dropped nodes (NaN, weight 0) do not contribute.
  """
  used = spectrum.weights > 0
  values = f(jnp.where(used, spectrum.nodes, 0))
  per_probe = jnp.sum(jnp.where(used, spectrum.weights * values, 0), axis=-1)
  return spectrum.num_params * jnp.mean(per_probe)
