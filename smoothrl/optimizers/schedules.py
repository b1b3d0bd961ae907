"""Schedules for Adam's ε (thesis Section 7.4.3).

In the low-curvature regime, where a parameter's gradient g stays constant, Adam's step is

  h g / √(g² + ε)   (Eq 7.35, ε inside the square root),

so with a small ε every such parameter moves by ≈ h whatever the size of g. Spectral Normalisation acts on Adam as a
growing ε (Eq 7.31); annealing ε upwards during training (from 1e-8 to as high as 1e-2 in Figure 7.15) makes the
steps of those parameters depend on their gradients again, and keeps GAN training from leaving regions of high
performance; a large ε from the start of training stalls it. The schedules here move ε from `eps_init` to
`eps_final` over `transition_steps` steps, upwards (the thesis' use) or downwards, and hold `eps_final` after.

`scheduled_eps_adam` is `smoothrl.optimizers.adam.adam` with ε read from such a schedule at every step.
"""

from __future__ import annotations

import math
import numbers

import chex
import jax.numpy as jnp
import optax

from smoothrl.optimizers.adam import EpsPlacement, check_eps_placement, scale_by_adam


def _is_int(value: object) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_schedule_args(caller: str, transition_steps: int, transition_begin: int) -> None:
  if not _is_int(transition_steps) or transition_steps <= 0:
    raise ValueError(f'{caller} needs an integer transition_steps > 0, got {transition_steps!r}.')
  if not _is_int(transition_begin) or transition_begin < 0:
    raise ValueError(f'{caller} needs an integer transition_begin >= 0, got {transition_begin!r}.')


def _fraction(count: chex.Numeric, transition_steps: int, transition_begin: int) -> chex.Array:
  """min(max(t − begin, 0)/steps, 1): how far step t is through the transition."""
  t = jnp.asarray(count, jnp.float32) - transition_begin
  return jnp.clip(t / transition_steps, 0.0, 1.0)


def linear_eps_schedule(
  eps_init: float, eps_final: float, transition_steps: int, transition_begin: int = 0
) -> optax.Schedule:
  """ε_t = ε₀ + (ε₁ − ε₀)·s with s = clip((t − begin)/N, 0, 1): linear from ε₀ to ε₁ over N steps.

  Args:
    eps_init: ε₀ (≥ 0), used up to step `transition_begin`.
    eps_final: ε₁ (≥ 0), reached at step `transition_begin + transition_steps` and held after.
    transition_steps: N > 0.
    transition_begin: the step at which the transition starts.

  Returns:
    An `optax.Schedule`: step count -> ε_t.
  """
  _check_schedule_args('linear_eps_schedule', transition_steps, transition_begin)
  if not (eps_init >= 0 and eps_final >= 0):
    raise ValueError(f'linear_eps_schedule needs eps_init, eps_final >= 0, got {eps_init!r}, {eps_final!r}.')

  def schedule(count: chex.Numeric) -> chex.Array:
    s = _fraction(count, transition_steps, transition_begin)
    return jnp.where(s >= 1, eps_final, eps_init + (eps_final - eps_init) * s)

  return schedule


def exponential_eps_schedule(
  eps_init: float, eps_final: float, transition_steps: int, transition_begin: int = 0
) -> optax.Schedule:
  """ε_t = ε₀·(ε₁/ε₀)ˢ with s = clip((t − begin)/N, 0, 1): geometric from ε₀ to ε₁ over N steps.

  log ε moves linearly, so every order of magnitude between ε₀ and ε₁ (e.g. 1e-8 -> 1e-2) takes the same number of
  steps. It is a growth when ε₁ > ε₀ and a decay when ε₁ < ε₀.

  Args:
    eps_init: ε₀ > 0, used up to step `transition_begin`.
    eps_final: ε₁ > 0, reached at step `transition_begin + transition_steps` and held after.
    transition_steps: N > 0.
    transition_begin: the step at which the transition starts.

  Returns:
    An `optax.Schedule`: step count -> ε_t.
  """
  _check_schedule_args('exponential_eps_schedule', transition_steps, transition_begin)
  if not (eps_init > 0 and eps_final > 0):
    raise ValueError(f'exponential_eps_schedule needs eps_init, eps_final > 0, got {eps_init!r}, {eps_final!r}.')
  log_init, log_ratio = math.log(eps_init), math.log(eps_final / eps_init)

  def schedule(count: chex.Numeric) -> chex.Array:
    s = _fraction(count, transition_steps, transition_begin)
    value = jnp.where(s <= 0, eps_init, jnp.exp(log_init + log_ratio * s))
    return jnp.where(s >= 1, eps_final, value)

  return schedule


def scheduled_eps_adam(
  learning_rate: optax.ScalarOrSchedule,
  eps_schedule: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps_placement: EpsPlacement = 'outside',
) -> optax.GradientTransformationExtraArgs:
  """Adam (thesis Eq 2.22) whose ε at update t (t = 0, 1, ...) is `eps_schedule(t)` (Section 7.4.3).

  The step at update t is −h_t·m̂/(√v̂ + ε_t) for `eps_placement='outside'` and −h_t·m̂/√(v̂ + ε_t) for 'inside'
  (see `smoothrl.optimizers.adam`); with a constant gradient g it is −h_t·g/(|g| + ε_t), respectively
  −h_t·g/√(g² + ε_t) (Eq 7.35). The state is `(InjectStatefulHyperparamsState, learning-rate state)`; the ε used by
  the last update is `state[0].hyperparams['eps']`. Extra arguments (e.g. `rho`) are accepted and ignored.

  Args:
    learning_rate: h, a float or an optax schedule.
    eps_schedule: an optax schedule (step -> ε), e.g. `linear_eps_schedule` or `exponential_eps_schedule`; a
      float gives a constant ε.
    b1: decay rate β₁ of the first-moment EMA.
    b2: decay rate β₂ of the second-moment EMA.
    eps_placement: 'outside' or 'inside' the square root.

  Returns:
    A `GradientTransformationExtraArgs` producing descent updates.
  """
  check_eps_placement(eps_placement)

  def adam_with_eps(eps: chex.Numeric) -> optax.GradientTransformationExtraArgs:
    return scale_by_adam(b1=b1, b2=b2, eps=eps, eps_placement=eps_placement)

  return optax.chain(
    optax.inject_hyperparams(adam_with_eps)(eps=eps_schedule),
    optax.scale_by_learning_rate(learning_rate),
  )
