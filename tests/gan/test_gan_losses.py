"""Tests for smoothrl.gan.losses against hand-computed values (Eqs 4.4 and 4.44)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.gan import losses


def _logit(p):
  p = np.asarray(p, np.float64)
  return jnp.asarray(np.log(p / (1 - p)), jnp.float32)


# D(x) = 0.8 on the one data point; D(G(z)) = 0.3 and 0.6 on the two samples.
REAL, FAKE = _logit([0.8]), _logit([0.3, 0.6])
E = 0.5 * math.log(0.8) + 0.5 * (math.log(0.7) + math.log(0.4)) / 2  # -0.42981319...


def test_zero_sum_value_and_both_players_losses_against_hand_values():
  assert E == pytest.approx(-0.4298131946, abs=1e-9)
  assert float(losses.zero_sum_value(REAL, FAKE)) == pytest.approx(E, rel=1e-6)
  assert float(losses.discriminator_loss(REAL, FAKE)) == pytest.approx(-E, rel=1e-6)
  assert float(losses.generator_loss(FAKE, REAL, 'saturating')) == pytest.approx(E, rel=1e-6)
  # Eq 4.44: -mean log D(G(z)) = -(log 0.3 + log 0.6) / 2 = 0.85739...
  assert float(losses.generator_loss(FAKE, REAL, 'non_saturating')) == pytest.approx(0.8573992, rel=1e-6)
  assert float(losses.generator_loss(FAKE, None, 'non_saturating')) == pytest.approx(0.8573992, rel=1e-6)


def test_generator_gradients_saturate_only_for_the_saturating_loss():
  # d/dl [E] = -½ ς(l) / N on each fake logit; d/dl [-log ς(l)] / N = -(1 - ς(l)) / N.
  sat = jax.grad(lambda f: losses.generator_loss(f, REAL, 'saturating'))(FAKE)
  ns = jax.grad(lambda f: losses.generator_loss(f, REAL, 'non_saturating'))(FAKE)
  np.testing.assert_allclose(sat, [-0.5 * 0.3 / 2, -0.5 * 0.6 / 2], rtol=1e-5)
  np.testing.assert_allclose(ns, [-0.7 / 2, -0.4 / 2], rtol=1e-5)
  # A discriminator sure that the samples are fake (D = ς(-12)): the saturating gradient vanishes, the other does not.
  confident = jnp.full((2,), -12.0)
  assert abs(float(jax.grad(lambda f: losses.generator_loss(f, REAL, 'saturating'))(confident)[0])) < 1e-5
  assert float(jax.grad(lambda f: losses.generator_loss(f, REAL, 'non_saturating'))(confident)[0]) == pytest.approx(
    -0.5, rel=1e-4
  )
  # The discriminator's gradient on data logits: -½(1 - ς(l)) / N.
  d_real = jax.grad(lambda r: losses.discriminator_loss(r, FAKE))(REAL)
  np.testing.assert_allclose(d_real, [-0.5 * 0.2], rtol=1e-5)


def test_losses_stay_finite_where_the_sigmoid_saturates():
  extreme = jnp.asarray([-200.0, 200.0])
  values = [
    losses.discriminator_loss(extreme, extreme),
    losses.generator_loss(extreme, extreme, 'saturating'),
    losses.generator_loss(extreme, extreme, 'non_saturating'),
  ]
  assert all(np.isfinite(float(v)) for v in values)
  assert float(losses.discriminator_loss(extreme, extreme)) == pytest.approx(100.0, rel=1e-6)


def test_bad_inputs_are_refused():
  with pytest.raises(ValueError, match='unknown GAN loss'):
    losses.generator_loss(FAKE, REAL, 'wasserstein')
  with pytest.raises(ValueError, match='real_logits'):
    losses.discriminator_loss(jnp.zeros((2, 1)), FAKE)
  with pytest.raises(ValueError, match='fake_logits'):
    losses.generator_loss(jnp.zeros((0,)), None)
