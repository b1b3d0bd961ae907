"""Tests of smoothrl.optimizers.schedules: ε schedules and Adam with a scheduled ε (thesis Section 7.4.3)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from smoothrl import optimizers as opt

_G = np.array([1e-3, 0.02, -0.5, 2.0], np.float32)


def _values(schedule: optax.Schedule, steps: range) -> np.ndarray:
  return np.array([float(schedule(t)) for t in steps])


# ----------------------------------------------------------------------------
# The schedules.
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('eps_init, eps_final', [(1e-8, 1e-2), (0.3, 1e-4), (0.0, 0.5)])
def test_linear_schedule(eps_init, eps_final):
  n, begin = 8, 3
  schedule = opt.linear_eps_schedule(eps_init, eps_final, n, transition_begin=begin)
  t = np.arange(20)
  expected = eps_init + (eps_final - eps_init) * np.clip((t - begin) / n, 0, 1)
  np.testing.assert_allclose(_values(schedule, range(20)), expected, rtol=1e-6, atol=1e-12)
  assert float(schedule(0)) == np.float32(eps_init) and float(schedule(begin + n)) == np.float32(eps_final)


@pytest.mark.parametrize('eps_init, eps_final', [(1e-8, 1e-2), (0.1, 1e-6)])
def test_exponential_schedule(eps_init, eps_final):
  n = 6
  schedule = opt.exponential_eps_schedule(eps_init, eps_final, n)
  values = _values(schedule, range(12))
  expected = eps_init * (eps_final / eps_init) ** np.clip(np.arange(12) / n, 0, 1)
  np.testing.assert_allclose(values, expected, rtol=1e-5)
  # Geometric: a constant ratio per step, the geometric mean half-way, the end points exactly.
  np.testing.assert_allclose(values[1 : n + 1] / values[:n], (eps_final / eps_init) ** (1 / n), rtol=1e-5)
  np.testing.assert_allclose(values[n // 2], np.sqrt(eps_init * eps_final), rtol=1e-5)
  assert values[0] == np.float32(eps_init) and values[n] == np.float32(eps_final) == values[-1]


def test_exponential_schedule_begin_and_jit():
  schedule = opt.exponential_eps_schedule(1e-6, 1e-2, 4, transition_begin=10)
  jitted = jax.jit(schedule)
  for t in (0, 10, 12, 14, 100):
    expected = 1e-6 * 1e4 ** np.clip((t - 10) / 4, 0, 1)
    np.testing.assert_allclose(float(jitted(jnp.int32(t))), expected, rtol=1e-5)


@pytest.mark.parametrize(
  'make, match',
  [
    (lambda: opt.linear_eps_schedule(1e-8, 1e-2, 0), 'transition_steps'),
    (lambda: opt.linear_eps_schedule(1e-8, 1e-2, 2.5), 'transition_steps'),
    (lambda: opt.linear_eps_schedule(1e-8, 1e-2, 5, transition_begin=-1), 'transition_begin'),
    (lambda: opt.linear_eps_schedule(-1e-8, 1e-2, 5), 'eps_init'),
    (lambda: opt.exponential_eps_schedule(0.0, 1e-2, 5), 'eps_init'),
    (lambda: opt.exponential_eps_schedule(1e-8, -1.0, 5), 'eps_final'),
    (lambda: opt.exponential_eps_schedule(1e-8, 1e-2, -3), 'transition_steps'),
    (lambda: opt.scheduled_eps_adam(1e-3, 1e-8, eps_placement='under'), 'eps_placement'),
  ],
)
def test_bad_arguments(make, match):
  with pytest.raises(ValueError, match=match):
    make()


# ----------------------------------------------------------------------------
# Adam with a scheduled ε.
# ----------------------------------------------------------------------------


def _constant_gradient_steps(tx: optax.GradientTransformation, num_steps: int) -> tuple[list[np.ndarray], Any]:
  params = jnp.zeros_like(jnp.asarray(_G))
  state = tx.init(params)
  steps = []
  for _ in range(num_steps):
    updates, state = tx.update(jnp.asarray(_G), state, params)
    steps.append(np.asarray(updates, np.float64))
    params = optax.apply_updates(params, updates)
  return steps, state


@pytest.mark.parametrize('eps_placement', ['inside', 'outside'])
@pytest.mark.parametrize('b1, b2, rtol', [(0.5, 0.75, 1e-6), (0.9, 0.999, 3e-5)])
def test_constant_gradient_step_uses_the_scheduled_eps(eps_placement, b1, b2, rtol):
  # With a constant gradient m̂ = g and v̂ = g², so the step at update t is exactly
  # −h·g/√(g² + ε_t) (inside) or −h·g/(|g| + ε_t) (outside), with ε_t = schedule(t) (Eq 7.35).
  # b1, b2 = 0.5, 0.75 make every moment and bias correction exact in float32.
  h, n = 0.1, 5
  schedule = opt.exponential_eps_schedule(1e-8, 1e-2, n)
  tx = opt.scheduled_eps_adam(h, schedule, b1=b1, b2=b2, eps_placement=eps_placement)
  steps, state = _constant_gradient_steps(tx, n + 2)
  g = _G.astype(np.float64)
  for t, step in enumerate(steps):
    eps_t = float(schedule(t))
    expected = -h * g / (np.sqrt(g**2 + eps_t) if eps_placement == 'inside' else np.abs(g) + eps_t)
    np.testing.assert_allclose(step, expected, rtol=rtol, err_msg=f'step {t}')
  np.testing.assert_allclose(state[0].hyperparams['eps'], 1e-2, rtol=1e-6)  # the ε of the last update
  # ε matters here: the small-gradient coordinate's step shrinks by orders of magnitude.
  assert abs(steps[-1][0]) < 0.2 * abs(steps[0][0])


def _numpy_adam(grads: list[np.ndarray], epsilons: list[float], lr: float, inside: bool) -> list[np.ndarray]:
  """Adam (Eq 2.22) in float64 with ε_t at update t."""
  b1, b2 = 0.9, 0.999
  m = np.zeros_like(grads[0])
  v = np.zeros_like(grads[0])
  out = []
  for t, (g, eps_t) in enumerate(zip(grads, epsilons), start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g**2
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    out.append(-lr * m_hat / (np.sqrt(v_hat + eps_t) if inside else np.sqrt(v_hat) + eps_t))
  return out


@pytest.mark.parametrize('eps_placement', ['inside', 'outside'])
def test_scheduled_eps_adam_matches_reference_on_varying_gradients(eps_placement):
  rng = np.random.default_rng(0)
  grads = [rng.normal(scale=0.05, size=6).astype(np.float32) for _ in range(8)]
  schedule = opt.linear_eps_schedule(1e-6, 1e-2, 6)
  tx = opt.scheduled_eps_adam(1e-2, schedule, eps_placement=eps_placement)
  update = jax.jit(tx.update)
  params = jnp.zeros(6)
  state = tx.init(params)
  ref = _numpy_adam(
    [g.astype(np.float64) for g in grads], [float(schedule(t)) for t in range(8)], 1e-2, eps_placement == 'inside'
  )
  for g, r in zip(grads, ref):
    updates, state = update(jnp.asarray(g), state, params)
    np.testing.assert_allclose(updates, r, rtol=1e-4)


@pytest.mark.parametrize('eps_placement', ['inside', 'outside'])
def test_constant_eps_equals_repo_adam(eps_placement):
  rng = np.random.default_rng(1)
  grads = [jnp.asarray(rng.normal(size=(3, 2)), jnp.float32) for _ in range(4)]
  ours = opt.scheduled_eps_adam(1e-2, 1e-3, eps_placement=eps_placement)
  ref = opt.adam(1e-2, eps=1e-3, eps_placement=eps_placement)
  params = jnp.zeros((3, 2))
  s1, s2 = ours.init(params), ref.init(params)
  for g in grads:
    u1, s1 = ours.update(g, s1, params, rho=jnp.float32(3.0))  # extra arguments are ignored
    u2, s2 = ref.update(g, s2, params)
    np.testing.assert_allclose(u1, u2, rtol=1e-6)
