"""The coefficient functions α(z), z = hλ, of the flows of thesis Table 3.1, and the BEA coefficients.

Every flow of Chapter 3 has the form θ̇ = Σ_i α(hλ_i)(gᵀu_i)u_i (Table 3.1) with (λ_i, u_i) the eigenpairs of the
Hessian H and g = ∇E; on a quadratic the flows differ only in α:

- NGF (Eq 3.2): α_NGF(z) = −1;
- IGR flow (Eq 3.3): α_IGR(z) = −(1 + z/2);
- third-order flow (Eq 3.4, its principal part, T[g, g] = 0 on quadratics): α_3(z) = −(1 + z/2 + z²/3);
- principal flow (Eq 3.9): α_PF(z) = log(1 − z)/z = −Σ_{n≥0} zⁿ/(n + 1), whose truncations are the three above.

α_PF is real for z < 1, −∞ at z = 1 (the PF of a quadratic reaches the minimum along u_i at once: at t = h the
GD factor 1 − z is 0; erratum 5, Figures 3.2 and 3.7 at h = 0.5) and complex for z > 1 on the principal branch,
(log(z − 1) + iπ)/z (Section 3.3). A real z > 1 gives NaN, as `jnp.sqrt` does for a negative real; pass a complex
z for the complex branch. Near z = 0 the series is used, so α_PF(0) = −1 exactly.

The BEA coefficients c_n of Lemma A.1.5 solve the recurrence of Eq A.83; their generating function is log(1+x)/x,
so c_n = (−1)ⁿ/(n + 1).
"""

from __future__ import annotations

import fractions
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Coefficient = Callable[[jax.Array], jax.Array]

# Below |z| = SERIES_RADIUS α_PF uses five terms of its series; the first term left out, z⁵/6, is below 1e-16 there.
SERIES_RADIUS = 1e-3


def alpha_ngf(z: jax.Array) -> jax.Array:
  """α_NGF(z) = −1 (Table 3.1)."""
  z = jnp.asarray(z)
  return -jnp.ones_like(z, dtype=jnp.result_type(z, float))


def alpha_igr(z: jax.Array) -> jax.Array:
  """α_IGR(z) = −(1 + z/2) (Table 3.1)."""
  return -(1 + jnp.asarray(z) / 2)


def alpha_third(z: jax.Array) -> jax.Array:
  """α_3(z) = −(1 + z/2 + z²/3): the third-order flow of Eq 3.4 on a quadratic (its T[g, g] term vanishes)."""
  z = jnp.asarray(z)
  return -(1 + z / 2 + z**2 / 3)


def alpha_pf(z: jax.Array) -> jax.Array:
  """α_PF(z) = log(1 − z)/z (Eq 3.9): real for z < 1, −∞ at z = 1, the principal branch for complex z.

  For complex z on the real axis beyond 1 (imaginary part ±0) the result is (log(z − 1) + iπ)/z, whatever the
  sign of the zero. A real z > 1 gives NaN.
  """
  z = jnp.asarray(z)
  z = z.astype(jnp.result_type(z, float))
  minus_z = -z  # log(1 − z) as log1p(−z): no cancellation for small |z|
  if jnp.iscomplexobj(z):
    # The branch cut of log lies along 1 − z < 0; take its upper side (+iπ) for a zero imaginary part of either sign.
    minus_z = jax.lax.complex(jnp.real(minus_z), jnp.where(jnp.imag(z) == 0, 0.0, jnp.imag(minus_z)))
  small = jnp.abs(z) < SERIES_RADIUS
  safe = jnp.where(small, jnp.ones_like(z) / 2, z)
  exact = jnp.log1p(jnp.where(small, jnp.zeros_like(minus_z), minus_z)) / safe
  exact = jnp.where(minus_z == -1, -jnp.inf, exact)  # not (−∞ + 0i)/1, which complex division makes −∞ + NaN·i
  series = -(1 + z / 2 + z**2 / 3 + z**3 / 4 + z**4 / 5)
  return jnp.where(small, series, exact)


COEFFICIENTS: dict[str, Coefficient] = {'ngf': alpha_ngf, 'igr': alpha_igr, 'third': alpha_third, 'pf': alpha_pf}


def gd_factor(z: jax.Array) -> jax.Array:
  """1 − z: one GD step multiplies gᵀu_i (and (θ − θ*)ᵀu_i) of a quadratic by it; e^{α_PF(z) z} = 1 − z."""
  return 1 - jnp.asarray(z)


def bea_coefficients(n: int) -> tuple[fractions.Fraction, ...]:
  """c_0, …, c_{n−1} by the recurrence of Eq A.83 (c_0 = 1), in exact arithmetic.

  c_m = −Σ_{k=2}^{m+1} (1/k!) Σ_{l_1+…+l_k = m−k+1} c_{l_1}⋯c_{l_k}; the inner sum is the coefficient of x^{m−k+1}
  in c(x)^k, which is known once c_0, …, c_{m−1} are.
  """
  if not isinstance(n, int) or n < 1:
    raise ValueError(f'n must be a positive int, got {n!r}')
  c = [fractions.Fraction(1)]
  for m in range(1, n):
    total = fractions.Fraction(0)
    power = list(c)  # c(x)^1, truncated to degree m − 1
    for k in range(2, m + 2):
      power = [sum((power[i] * c[j - i] for i in range(j + 1)), fractions.Fraction(0)) for j in range(m)]
      total += power[m - k + 1] / math.factorial(k)
    c.append(-total)
  return tuple(c)
