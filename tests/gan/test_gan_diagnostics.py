"""Tests for smoothrl.gan.diagnostics: binned output entropy (Section 7.4.1) and the low-curvature regime (Eq 7.36)."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from smoothrl import optimizers
from smoothrl.gan import diagnostics


def test_binned_entropy_against_hand_values():
  # Bins [0.1p, 0.1(p+1)), the last one closed: 0.0 -> 0, 0.1 and 0.15 -> 1, 0.999 and 1.0 -> 9.
  h = float(diagnostics.binned_entropy(jnp.asarray([0.0, 0.1, 0.15, 0.999, 1.0])))
  assert h == pytest.approx(-(0.2 * math.log(0.2) + 2 * 0.4 * math.log(0.4)), rel=1e-6)
  assert float(diagnostics.binned_entropy(jnp.asarray([0.31, 0.32, 0.39]))) == pytest.approx(0.0, abs=1e-7)
  spread = jnp.asarray([0.05 + 0.1 * p for p in range(10)])
  assert float(diagnostics.binned_entropy(spread)) == pytest.approx(math.log(10), rel=1e-6)
  # Two bins on [0, 1]: [0, 0.5) and [0.5, 1].
  assert float(diagnostics.binned_entropy(jnp.asarray([0.2, 0.5, 0.9, 1.0]), 2)) == pytest.approx(
    -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), rel=1e-6
  )
  with pytest.raises(ValueError, match='num_bins'):
    diagnostics.binned_entropy(spread, 0)


def test_low_curvature_mask_against_hand_values():
  # t = 2, β₁ = 0.5, β₂ = 0.9: 1 - β₁ᵗ = 0.75, 1 - β₂ᵗ = 0.19.
  g = jnp.asarray([1.0, 1.0, 0.0, 2.0, 1.0, 1.0])
  m = 0.75 * jnp.asarray([1.0, 1.0 + 3e-5, 0.0, 2.0, 1.0 + 5e-6, 1.0 - 2e-5])
  v = 0.19 * jnp.asarray([1.0, 1.0, 0.0, 4.0 + 5e-5, 1.0 + 5e-6, 1.0])
  # In: a constant gradient; out: m̂ off by 3e-5; in: a zero gradient; out: v̂ off by 5e-5; in: both off by 5e-6;
  # out: m̂ below g by 2e-5.
  expected = [True, False, True, False, True, False]
  mask = diagnostics.low_curvature_mask({'w': g}, {'w': m}, {'w': v}, jnp.asarray(2), 0.5, 0.9)
  assert np.asarray(mask['w']).tolist() == expected
  state = optimizers.AdamState(count=jnp.asarray(2), mu={'w': m}, nu={'w': v})
  assert float(diagnostics.low_curvature_fraction({'w': g}, state, 0.5, 0.9)) == pytest.approx(0.5)
  # Before the first update nothing counts, even with zero moments and gradients.
  zero = diagnostics.low_curvature_mask({'w': jnp.zeros(3)}, {'w': jnp.zeros(3)}, {'w': jnp.zeros(3)}, 0, 0.5, 0.9)
  assert not np.any(mask_values(zero))
  # A looser threshold lets the 3e-5 and 2e-5 differences in (the 5e-5 one of v̂ still out).
  loose = diagnostics.low_curvature_mask({'w': g}, {'w': m}, {'w': v}, jnp.asarray(2), 0.5, 0.9, threshold=4e-5)
  assert np.asarray(loose['w']).tolist() == [True, True, True, False, True, True]


def mask_values(mask):
  return np.concatenate([np.ravel(np.asarray(x)) for x in mask.values()])


def test_a_constant_gradient_under_adam_is_in_the_regime_and_a_changed_one_is_not():
  b1, b2 = 0.5, 0.999
  params = {'a': jnp.zeros(3), 'b': jnp.zeros(2)}
  grads = {'a': jnp.asarray([0.3, -0.12, 0.004]), 'b': jnp.asarray([0.2, 0.0])}
  for tx in (
    optimizers.adam(1e-3, b1, b2),
    optax.adam(1e-3, b1, b2),
    optimizers.scheduled_eps_adam(1e-3, optimizers.exponential_eps_schedule(1e-8, 1e-2, 10), b1, b2),
    optimizers.divgrad(1e-3, b1, b2),
  ):
    state = tx.init(params)
    for _ in range(4):
      _, state = tx.update(grads, state, params, rho=1.0) if 'rho' in _extra(tx) else tx.update(grads, state, params)
    adam_state = diagnostics.find_adam_state(state)
    assert int(adam_state.count) == 4
    assert float(diagnostics.low_curvature_fraction(grads, adam_state, b1, b2)) == pytest.approx(1.0)
    changed = {'a': grads['a'].at[0].add(0.01), 'b': grads['b']}
    assert float(diagnostics.low_curvature_fraction(changed, adam_state, b1, b2)) == pytest.approx(4 / 5)


def _extra(tx):
  return ('rho',) if isinstance(tx, optax.GradientTransformationExtraArgs) else ()


def test_find_adam_state_finds_one_or_none_and_refuses_two():
  params = {'w': jnp.zeros(2)}
  assert diagnostics.find_adam_state(optax.sgd(0.1).init(params)) is None
  assert diagnostics.find_adam_state(optax.sgd(0.1, momentum=0.9).init(params)) is None
  with pytest.raises(ValueError, match='2 Adam states'):
    diagnostics.find_adam_state(optax.chain(optax.adam(0.1), optax.adam(0.1)).init(params))
