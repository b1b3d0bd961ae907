"""Continuous-time flows of gradient descent (thesis Chapter 3; the principal-flow paper).

- `coefficients`: α(hλ) of Table 3.1 (NGF, IGR, third-order, principal flow) and the BEA coefficients.
- `fields`: the vector fields θ̇ of the NGF, IGR, third-order flow (Eq 3.4), principal flow (Eq 3.9, dense or
  matrix-free by Lanczos on HVPs), PF + third-order term (Eq 3.11), and flows with a caller-chosen α per direction.
- `holomorphic`: complex parameters, and the check that a loss is holomorphic before a flow goes complex.
- `integrate`: diffrax and small-step Euler integration, GD iterates, per-iteration and global errors.
- `stability`: stability coefficients (Def 3.3.4), dE/dt (Eq 3.12), one-step predictions, the Jacobian at a
  critical point (Eq 3.13), divergence thresholds and the PF's closed form on quadratics.

Docs: docs/flows.md. This package depends on jax, diffrax and `smoothrl.curvature` only.
"""

from __future__ import annotations

from smoothrl.flows import coefficients, fields, holomorphic, integrate, stability

__all__ = ('coefficients', 'fields', 'holomorphic', 'integrate', 'stability')
