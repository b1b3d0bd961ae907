"""Adam with an explicit placement of ε and an optional ρ-scaled ε.

Adam (Kingma & Ba, 2015; thesis Eq 2.22) keeps exponential moving averages of
the gradient and of its element-wise square,

  m_t = β₁ m_{t-1} + (1 - β₁) g_t,    v_t = β₂ v_{t-1} + (1 - β₂) g_t²,

bias-corrects them, m̂_t = m_t / (1 - β₁ᵗ) and v̂_t = v_t / (1 - β₂ᵗ), and
returns a direction built from m̂_t / √v̂_t. Where ε enters that ratio differs
between references and the difference matters once ε is rescaled (MULEPS,
thesis Eq 7.31):

* ``'outside'``: m̂_t / (√v̂_t + ε). PyTorch's and optax's ``eps``; the
  reference experiments of the thesis used this placement.
* ``'inside'``: m̂_t / √(v̂_t + ε). The thesis' Eq 2.22; optax's ``eps_root``
  with ``eps=0``.

`scale_by_adam` accepts the optax extra argument ``rho`` (ρ, the product of
spectral norms of a chosen set of layers, thesis Section 7.3; ``rho_name``
picks another argument name). With ``eps_scale_power = p`` the ε used at step
t is ε·ρ_tᵖ (MULEPS); with p = 0 (the default) ρ is ignored and the result is
plain Adam. `adam` is plain Adam and ignores ``rho``.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

EpsPlacement = Literal['outside', 'inside']
EPS_PLACEMENTS: tuple[str, ...] = ('outside', 'inside')


def check_eps_placement(eps_placement: str) -> None:
  """Raises a ValueError unless `eps_placement` is 'outside' or 'inside'."""
  if eps_placement not in EPS_PLACEMENTS:
    raise ValueError(f'eps_placement must be one of {EPS_PLACEMENTS}, got {eps_placement!r}.')


class AdamState(NamedTuple):
  """State of `scale_by_adam`.

  Attributes:
    count: number of updates applied so far, t (int32 scalar).
    mu: first moment m_t, the EMA of the gradients.
    nu: second moment v_t, the EMA of the squared gradients.
  """

  count: chex.Array
  mu: optax.Updates
  nu: optax.Updates


def scale_by_adam(
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_placement: EpsPlacement = 'outside',
  eps_scale_power: float = 0.0,
  rho_name: str = 'rho',
) -> optax.GradientTransformationExtraArgs:
  r"""Rescales updates by Adam's bias-corrected moment ratio (thesis Eq 2.22).

  At step t, with ε_t = ε·ρ_tᵖ (p = `eps_scale_power`), the output is

    m̂_t / (√v̂_t + ε_t)   for eps_placement='outside',
    m̂_t / √(v̂_t + ε_t)   for eps_placement='inside'.

  No learning rate and no sign flip are applied; chain with
  `optax.scale_by_learning_rate` for a descent step.

  Args:
    b1: decay rate β₁ of the first-moment EMA.
    b2: decay rate β₂ of the second-moment EMA.
    eps: ε₀, the base value of ε.
    eps_placement: 'outside' or 'inside' the square root (see module doc).
    eps_scale_power: p; ε_t = ε₀·ρ_tᵖ. With p = 0 the extra argument `rho` is
      optional and ignored; otherwise `update` requires it.
    rho_name: the name of the extra argument read as ρ, so that a chain can
      give each transform its own ρ (e.g. `rho_scaled_adam`).

  Returns:
    A `GradientTransformationExtraArgs` whose `update` takes an optional
    keyword argument `rho_name` (a positive scalar) and ignores other extra
    args.
  """
  check_eps_placement(eps_placement)
  scales_eps = eps_scale_power != 0

  def init_fn(params: optax.Params) -> AdamState:
    return AdamState(
      count=jnp.zeros([], jnp.int32),
      mu=optax.tree.zeros_like(params),
      nu=optax.tree.zeros_like(params),
    )

  def update_fn(
    updates: optax.Updates,
    state: AdamState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, AdamState]:
    del params
    rho = extra_args.get(rho_name)
    if scales_eps:
      if rho is None:
        raise ValueError(
          'scale_by_adam(eps_scale_power='
          f'{eps_scale_power}) needs the extra argument `{rho_name}`: call '
          f'`update(updates, state, params, {rho_name}=rho)`.'
        )
      eps_t = eps * jnp.power(jnp.asarray(rho), eps_scale_power)
    else:
      eps_t = eps

    mu = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g, updates, state.mu)
    nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
    count = optax.safe_increment(state.count)
    # Bias corrections 1 - βᵗ, computed in float32 before casting to the leaf.
    c1 = 1 - b1 ** count.astype(jnp.float32)
    c2 = 1 - b2 ** count.astype(jnp.float32)

    def direction(m: chex.Array, v: chex.Array) -> chex.Array:
      m_hat = m / c1.astype(m.dtype)
      v_hat = v / c2.astype(v.dtype)
      if eps_placement == 'outside':
        return m_hat / (jnp.sqrt(v_hat) + eps_t)
      return m_hat / jnp.sqrt(v_hat + eps_t)

    new_updates = jax.tree.map(direction, mu, nu)
    return new_updates, AdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adam(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_placement: EpsPlacement = 'outside',
) -> optax.GradientTransformationExtraArgs:
  """Adam (thesis Eq 2.22) with an explicit ε placement.

  `eps_placement='outside'` equals `optax.adam(learning_rate, b1, b2, eps)`;
  `eps_placement='inside'` equals
  `optax.adam(learning_rate, b1, b2, eps=0, eps_root=eps)`. Any extra argument,
  `rho` included, is accepted and ignored, so this optimiser can stand in for
  the ρ-dependent ones of `smoothrl.optimizers.spectral_scaling`.

  Args:
    learning_rate: a float or an optax schedule (step -> learning rate).
    b1: decay rate β₁ of the first-moment EMA.
    b2: decay rate β₂ of the second-moment EMA.
    eps: ε.
    eps_placement: 'outside' or 'inside' the square root.

  Returns:
    A `GradientTransformationExtraArgs` producing descent updates.
  """
  return optax.chain(
    scale_by_adam(b1=b1, b2=b2, eps=eps, eps_placement=eps_placement),
    optax.scale_by_learning_rate(learning_rate),
  )
