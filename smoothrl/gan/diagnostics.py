"""What a GAN step logs about its players (thesis Section 7.4): binned output entropies and Adam's low-curvature regime.

Entropy of the discriminator's output (Section 7.4.1, Figures 7.8-7.10): the probabilities D(x_i) ∈ [0, 1] of a
batch are put in B equal bins, bin p = [p/B, (p+1)/B) (the last bin closed, so D = 1 falls in it; B = 10 in the
thesis), and the entropy −Σ_p q_p log q_p (nats, 0 log 0 = 0) of the bins' frequencies q_p is reported: 0 when
every output falls in one bin, log B when they spread evenly.

Low-curvature regime (Section 7.4.3, Eq 7.36): at iteration t, with Adam's moments m_t and v_t built from the
gradients before θ_t and g_t = ∇E(θ_t) the gradient Adam is about to receive, a parameter l is in the low-curvature
regime when

  |g_t[l] − m_t[l]/(1 − β₁ᵗ)| < τ   and   |g_t[l]² − v_t[l]/(1 − β₂ᵗ)| < τ,   τ = 1e-5,

both differences vanishing when the gradient has stayed constant (Eqs 7.33-7.34). Before the first update (t = 0)
the moments are undefined and no parameter counts. The test is absolute: in float32 the moments carry a relative
rounding of about 1e-5 (β₂ = 0.999 is not a float32 number), so a parameter whose gradient is of order one can fail
it on rounding alone; GAN gradients per parameter are far smaller.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

LOW_CURVATURE_THRESHOLD = 1e-5
ENTROPY_BINS = 10


def binned_entropy(probabilities: jax.Array, num_bins: int = ENTROPY_BINS) -> jax.Array:
  """The entropy (nats) of the histogram of `probabilities` ∈ [0, 1] in `num_bins` equal bins (Section 7.4.1)."""
  if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
    raise ValueError(f'num_bins must be an int >= 1, got {num_bins!r}')
  p = jnp.ravel(jnp.asarray(probabilities))
  if p.shape[0] == 0:
    raise ValueError('binned_entropy needs at least one probability')
  bins = jnp.clip(jnp.floor(p * num_bins), 0, num_bins - 1).astype(jnp.int32)
  q = jnp.sum(jax.nn.one_hot(bins, num_bins, dtype=jnp.float32), axis=0) / p.shape[0]
  return -jnp.sum(jnp.where(q > 0, q * jnp.log(jnp.where(q > 0, q, 1.0)), 0.0))


def find_adam_state(opt_state: Any) -> Any | None:
  """The one Adam state (an object with `count`, `mu` and `nu`) inside an optax state, or None if there is none.

  It finds `smoothrl.optimizers.AdamState` and `optax.ScaleByAdamState` inside chains and `inject_hyperparams`.

  Raises:
    ValueError: more than one Adam state (the regime would be ambiguous).
  """
  found = []

  def visit(node: Any) -> None:
    if all(hasattr(node, f) for f in ('count', 'mu', 'nu')):
      found.append(node)
    elif isinstance(node, (tuple, list)):
      for child in node:
        visit(child)
    elif isinstance(node, dict):
      for child in node.values():
        visit(child)
    elif hasattr(node, 'inner_state'):
      visit(node.inner_state)

  visit(opt_state)
  if len(found) > 1:
    raise ValueError(f'the optimiser state holds {len(found)} Adam states; the low-curvature measure needs one')
  return found[0] if found else None


def _bias_correction(beta: float, t: jax.Array) -> jax.Array:
  """1 − βᵗ as −expm1(t log β), log β in double precision: no cancellation in float32 when β is near 1."""
  if not 0 <= beta < 1:
    raise ValueError(f'Adam betas must be in [0, 1), got {beta!r}')
  if beta == 0:
    return jnp.ones_like(t)
  return -jnp.expm1(t * jnp.float32(math.log(beta)))


def low_curvature_mask(
  grads: Any,
  mu: Any,
  nu: Any,
  count: jax.Array,
  b1: float,
  b2: float,
  threshold: float = LOW_CURVATURE_THRESHOLD,
) -> Any:
  """Per parameter, whether it is in the low-curvature regime of Eq 7.36 (a tree of bools like `grads`).

  Args:
    grads: g_t, the gradient at θ_t as Adam will receive it.
    mu, nu: Adam's m_t and v_t (before the update with g_t).
    count: t, the number of updates that built m_t and v_t; at t = 0 nothing is in the regime.
    b1, b2: Adam's β₁ and β₂.
    threshold: τ.
  """
  t = jnp.asarray(count, jnp.float32)
  c1, c2 = _bias_correction(b1, t), _bias_correction(b2, t)
  started = t > 0
  c1, c2 = jnp.where(started, c1, 1.0), jnp.where(started, c2, 1.0)

  def leaf(g, m, v):
    first = jnp.abs(g - m / c1.astype(m.dtype)) < threshold
    second = jnp.abs(g * g - v / c2.astype(v.dtype)) < threshold
    return first & second & started

  return jax.tree.map(leaf, grads, mu, nu)


def low_curvature_fraction(
  grads: Any, adam_state: Any, b1: float, b2: float, threshold: float = LOW_CURVATURE_THRESHOLD
) -> jax.Array:
  """The fraction of a player's parameters in the low-curvature regime (Eq 7.36), from its Adam state."""
  mask = low_curvature_mask(grads, adam_state.mu, adam_state.nu, adam_state.count, b1, b2, threshold)
  leaves = jax.tree.leaves(mask)
  total = sum(leaf.size for leaf in leaves)
  if total == 0:
    raise ValueError('low_curvature_fraction needs at least one parameter')
  return sum(jnp.sum(leaf) for leaf in leaves).astype(jnp.float32) / total
