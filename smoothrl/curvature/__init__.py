"""Curvature of a loss E(θ) over a parameter pytree: Hessian-vector products, eigenpairs and spectral estimates.

- `products`: Hv, (g, Hg) from one linearisation, the finite-difference Hg of thesis Appendix A.3 and the
  third-order contraction T[g, g] (Chapter 3), plus pytree helpers.
- `eigen`: the dense Hessian and its eigenpairs, and the top eigenpairs by Lanczos on HVPs (Appendix A.3), signed
  so that Re[gᵀu_i] ≥ 0.
- `density`: Hutchinson's trace and the spectral density by stochastic Lanczos quadrature.

Everything is a pure function of `fun(params, *args) -> scalar` and runs under `jax.jit` and `jax.vmap`. This
package depends on jax and matfree only.
"""

from __future__ import annotations

from smoothrl.curvature.density import (
  Spectrum,
  TraceEstimate,
  gaussian_density,
  hutchinson_trace,
  spectral_density,
  trace_of_function,
)
from smoothrl.curvature.eigen import (
  WHICH,
  Eigenpairs,
  Krylov,
  Which,
  align_signs,
  default_krylov_depth,
  dense_eigenpairs,
  hessian_matrix,
  lanczos,
  ritz,
  top_eigenpairs,
)
from smoothrl.curvature.products import (
  FD_SCALE,
  fd_grad_and_hvp,
  fd_hvp,
  grad_and_hvp,
  hvp,
  third_order,
  tree_norm,
  tree_scale,
  tree_vdot,
  value_grad_and_hvp,
)

__all__ = (
  'FD_SCALE',
  'WHICH',
  'Eigenpairs',
  'Krylov',
  'Spectrum',
  'TraceEstimate',
  'Which',
  'align_signs',
  'default_krylov_depth',
  'dense_eigenpairs',
  'fd_grad_and_hvp',
  'fd_hvp',
  'gaussian_density',
  'grad_and_hvp',
  'hessian_matrix',
  'hutchinson_trace',
  'hvp',
  'lanczos',
  'ritz',
  'spectral_density',
  'third_order',
  'top_eigenpairs',
  'trace_of_function',
  'tree_norm',
  'tree_scale',
  'tree_vdot',
  'value_grad_and_hvp',
)
