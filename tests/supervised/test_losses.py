"""Tests for smoothrl.supervised.losses against hand-computed values."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl.supervised import losses


def test_cross_entropy_hand_computed():
  # Logits (0, ln 3): softmax (1/4, 3/4). Label 0 costs ln 4, label 1 costs ln(4/3); equal logits cost ln 2.
  logits = jnp.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)], [5.0, 5.0]])
  labels = jnp.array([0, 1, 1])
  expected = (math.log(4.0) + math.log(4.0 / 3.0) + math.log(2.0)) / 3
  np.testing.assert_allclose(losses.cross_entropy(logits, labels), expected, rtol=1e-6)
  # Invariant to adding a constant to an example's logits.
  np.testing.assert_allclose(losses.cross_entropy(logits + 100.0, labels), expected, rtol=1e-5)


def test_squared_error_is_the_mean_of_half_the_squared_norm():
  pred = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  y = jnp.array([[0.0, 0.0], [3.0, 2.0]])
  # Example 1: (1 + 4) / 2 = 2.5; example 2: (0 + 4) / 2 = 2; the mean is 2.25.
  np.testing.assert_allclose(losses.squared_error(pred, y), 2.25, rtol=1e-6)
  np.testing.assert_allclose(losses.squared_error(jnp.array([[1.0], [-1.0], [0.0]]), jnp.zeros((3, 1))), 1 / 3)
  # The gradient in the prediction is the residual over the batch size.
  grad = jax.grad(losses.squared_error)(pred, y)
  np.testing.assert_allclose(grad, (pred - y) / 2, rtol=1e-6)
  with pytest.raises(ValueError, match='same shape'):
    losses.squared_error(jnp.zeros((3, 1)), jnp.zeros((3,)))


def test_accuracy_hand_computed():
  # Largest logits at 1, 0, 2, 0: three of the four labels.
  logits = jnp.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0], [0.0, -1.0, 2.0], [0.5, 0.4, 0.1]])
  labels = jnp.array([1, 1, 2, 0])
  np.testing.assert_allclose(losses.accuracy(logits, labels), 0.75)
  assert losses.accuracy(logits, labels).dtype == jnp.float32


def test_loss_for_and_bad_inputs():
  assert losses.loss_for('classification') is losses.cross_entropy
  assert losses.loss_for('regression') is losses.squared_error
  with pytest.raises(ValueError, match='unknown task.*classification, regression'):
    losses.loss_for('ranking')
  with pytest.raises(ValueError, match='integer'):
    losses.cross_entropy(jnp.zeros((2, 3)), jnp.zeros((2,)))
  with pytest.raises(ValueError, match=r'labels must have shape \(batch,\)'):
    losses.accuracy(jnp.zeros((2, 3)), jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError, match='batch, classes'):
    losses.cross_entropy(jnp.zeros((3,)), jnp.zeros((3,), jnp.int32))


def test_losses_jit_and_vmap():
  logits = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4, 3)), jnp.float32)
  labels = jnp.array([[0, 1, 2, 0], [2, 2, 1, 0]])
  batched = jax.jit(jax.vmap(losses.cross_entropy))(logits, labels)
  for i in range(2):
    log_p = jax.nn.log_softmax(logits[i])
    np.testing.assert_allclose(batched[i], -jnp.mean(log_p[jnp.arange(4), labels[i]]), rtol=1e-5)
