"""Optimisation-only counterparts of Spectral Normalisation (thesis Sec. 7.3).

Let ρ = ∏_{s∈S} σ_s be the product of the spectral norms of a chosen set S of
layers (of the unnormalised weights). Under the bias-scaling assumption,
normalising those layers divides every parameter's gradient by ρ (thesis
Eqs 7.20-7.27). Two variants keep the model unchanged and only alter the
optimiser:

* DIVGRAD (Eq 7.28): every gradient is divided by ρ before the optimiser sees
  it; here followed by Adam.
* MULEPS (Eqs 7.29-7.31): Adam whose ε is multiplied by ρ at every step.

Adam applied to g/ρ has moments m/ρ and v/ρ², so while ρ stays constant

  outside: (m̂/ρ) / (√v̂/ρ + ε) = m̂ / (√v̂ + ε·ρ),
  inside:  (m̂/ρ) / √(v̂/ρ² + ε) = m̂ / √(v̂ + ε·ρ²).

DIVGRAD+Adam therefore equals MULEPS with ε·ρ when ε sits outside the square
root (PyTorch's and optax's placement, used by the reference experiments) and
with ε·ρ² when it sits inside (the placement of Eq 2.22). Eq 7.31 writes σε
inside the root; `muleps` matches DIVGRAD by default and takes `rho_power` to
reproduce that formula literally.

ρ is passed to these transforms as the optax extra argument `rho`
(`update(updates, state, params, rho=rho)`), so they compose with
`optax.chain`; `inject_rho` wraps a transform so that ρ is computed from the
parameters by an estimator instead. `rho_scaled_adam` reads two such
arguments, one per place ρ can enter, so the method itself can be data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import chex
import jax
import jax.numpy as jnp
import optax

from smoothrl.optimizers.adam import EpsPlacement, adam, check_eps_placement, scale_by_adam


def _missing_rho_error(name: str, rho_name: str = 'rho') -> ValueError:
  """The error raised when a transform that needs ρ is updated without it."""
  return ValueError(
    f'{name} needs the extra argument `{rho_name}` (the product of spectral '
    f'norms): call `update(updates, state, params, {rho_name}=rho)`, or wrap '
    'the optimiser with `inject_rho(tx, estimator)`.'
  )


def scale_by_inverse_rho(
  power: float = 1.0,
  rho_name: str = 'rho',
) -> optax.GradientTransformationExtraArgs:
  """Divides every update by ρᵖ: DIVGRAD's gradient scaling (thesis Eq 7.28).

  Args:
    power: p; each leaf g becomes g / ρᵖ. The thesis uses p = 1.
    rho_name: the name of the extra argument read as ρ, so that a chain can
      give each transform its own ρ (e.g. `rho_scaled_adam`).

  Returns:
    A stateless `GradientTransformationExtraArgs` whose `update` requires the
    keyword argument `rho_name` (a positive scalar) and ignores other extra
    args.
  """

  def update_fn(
    updates: optax.Updates,
    state: optax.EmptyState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, optax.EmptyState]:
    del params
    rho = extra_args.get(rho_name)
    if rho is None:
      raise _missing_rho_error('scale_by_inverse_rho', rho_name)
    inv = 1.0 / jnp.power(jnp.asarray(rho), power)
    updates = jax.tree.map(lambda g: g * inv.astype(g.dtype), updates)
    return updates, state

  return optax.GradientTransformationExtraArgs(optax.init_empty_state, update_fn)


def divgrad(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_placement: EpsPlacement = 'outside',
) -> optax.GradientTransformationExtraArgs:
  """DIVGRAD (thesis Eq 7.28) followed by Adam (Eq 2.22).

  Gradients are divided by ρ, then rescaled by Adam with an unscaled ε, then
  by the learning rate. The state is the tuple
  `(EmptyState, AdamState, learning-rate state)`.

  Args:
    learning_rate: a float or an optax schedule.
    b1: Adam's β₁.
    b2: Adam's β₂.
    eps: Adam's ε.
    eps_placement: 'outside' or 'inside' the square root.

  Returns:
    A `GradientTransformationExtraArgs` whose `update` requires `rho`.
  """
  return optax.chain(
    scale_by_inverse_rho(1.0),
    scale_by_adam(b1=b1, b2=b2, eps=eps, eps_placement=eps_placement),
    optax.scale_by_learning_rate(learning_rate),
  )


def default_rho_power(eps_placement: EpsPlacement) -> float:
  """The ρ exponent for which MULEPS matches DIVGRAD+Adam at constant ρ.

  1 for ε outside the square root, 2 for ε inside (see the module doc).
  """
  check_eps_placement(eps_placement)
  return 1.0 if eps_placement == 'outside' else 2.0


def _rho_power(eps_placement: EpsPlacement, rho_power: float | None, caller: str) -> float:
  """`rho_power`, or `default_rho_power(eps_placement)` for None; 0 (plain Adam) is refused."""
  if rho_power is None:
    rho_power = default_rho_power(eps_placement)
  if rho_power == 0:
    raise ValueError(f'{caller} needs rho_power != 0; use adam for plain Adam.')
  return rho_power


def muleps(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_placement: EpsPlacement = 'outside',
  rho_power: float | None = None,
) -> optax.GradientTransformationExtraArgs:
  """MULEPS (thesis Eqs 7.29-7.31): Adam with ε_t = ε·ρ_tᵏ at every step.

  Args:
    learning_rate: a float or an optax schedule.
    b1: Adam's β₁.
    b2: Adam's β₂.
    eps: ε₀, the unscaled ε.
    eps_placement: 'outside' or 'inside' the square root.
    rho_power: k. None (the default) picks the exponent that makes MULEPS equal
      to DIVGRAD+Adam while ρ is constant: 1 for 'outside' (the reference
      experiments' setting) and 2 for 'inside'. Eq 7.31 as printed uses
      'inside' with k = 1; pass `rho_power=1` to reproduce it.

  Returns:
    A `GradientTransformationExtraArgs` whose `update` requires `rho`.
  """
  rho_power = _rho_power(eps_placement, rho_power, 'muleps')
  return optax.chain(
    scale_by_adam(
      b1=b1,
      b2=b2,
      eps=eps,
      eps_placement=eps_placement,
      eps_scale_power=rho_power,
    ),
    optax.scale_by_learning_rate(learning_rate),
  )


def rho_scaled_adam(
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_placement: EpsPlacement = 'outside',
  rho_power: float | None = None,
  grad_rho_name: str = 'grad_rho',
  eps_rho_name: str = 'eps_rho',
) -> optax.GradientTransformationExtraArgs:
  """Adam on g / ρ_g with ε_t = ε·ρ_εᵏ: DIVGRAD, MULEPS and Adam in one chain.

  Two extra arguments, ρ_g (`grad_rho_name`) and ρ_ε (`eps_rho_name`), pick the
  method at every step without changing the chain or its state:
  ρ_g = ρ, ρ_ε = 1 is DIVGRAD+Adam (Eq 7.28); ρ_g = 1, ρ_ε = ρ is MULEPS
  (Eq 7.31); ρ_g = ρ_ε = 1 is plain Adam. Multiplying by an exact 1 changes no
  bit, so each choice equals `divgrad`, `muleps` or `adam` exactly; the methods
  can therefore be traced values, e.g. one per member under `jax.vmap`. The
  state is that of `divgrad`.

  Args:
    learning_rate: a float or an optax schedule.
    b1: Adam's β₁.
    b2: Adam's β₂.
    eps: ε₀, the unscaled ε.
    eps_placement: 'outside' or 'inside' the square root.
    rho_power: k; None picks `default_rho_power(eps_placement)`, as `muleps`.
    grad_rho_name: the extra argument that divides the gradients.
    eps_rho_name: the extra argument whose k-th power multiplies ε.

  Returns:
    A `GradientTransformationExtraArgs` whose `update` requires both extra
    arguments.
  """
  rho_power = _rho_power(eps_placement, rho_power, 'rho_scaled_adam')
  if grad_rho_name == eps_rho_name:
    raise ValueError(f'rho_scaled_adam needs two different extra arguments, got {grad_rho_name!r} twice.')
  return optax.chain(
    scale_by_inverse_rho(1.0, rho_name=grad_rho_name),
    scale_by_adam(
      b1=b1,
      b2=b2,
      eps=eps,
      eps_placement=eps_placement,
      eps_scale_power=rho_power,
      rho_name=eps_rho_name,
    ),
    optax.scale_by_learning_rate(learning_rate),
  )


class RhoEstimatorLike(Protocol):
  """What `inject_rho` needs from an estimator of ρ.

  `smoothrl.networks.spectral.RhoEstimator` has this shape: `init(params)`
  returns the estimator's state (e.g. power-iteration vectors) and
  `update(params, state)` returns `(rho, new_state)`.
  """

  init: Callable[[optax.Params], Any]
  update: Callable[[optax.Params, Any], tuple[chex.Numeric, Any]]


class InjectRhoState(NamedTuple):
  """State of `inject_rho`.

  Attributes:
    estimator_state: the state of the ρ estimator.
    inner_state: the state of the wrapped transformation.
  """

  estimator_state: Any
  inner_state: optax.OptState


def inject_rho(
  tx: optax.GradientTransformation,
  estimator: RhoEstimatorLike,
) -> optax.GradientTransformationExtraArgs:
  """Feeds ρ, estimated from the current parameters, to `tx` at every step.

  `update(updates, state, params)` computes
  `rho, est_state = estimator.update(params, est_state)` and returns
  `tx.update(updates, tx_state, params, rho=rho)`. ρ is therefore that of the
  parameters at which the gradients were taken. Other extra arguments are
  forwarded to `tx`.

  Args:
    tx: a transformation taking the extra argument `rho`, e.g. `divgrad(...)`
      or `muleps(...)`.
    estimator: an object with `init(params) -> state` and
      `update(params, state) -> (rho, state)`, e.g. the result of
      `smoothrl.networks.spectral.rho_estimator`.

  Returns:
    A `GradientTransformationExtraArgs` whose `update` requires `params` and
    must not be given `rho`.
  """
  tx = optax.with_extra_args_support(tx)

  def init_fn(params: optax.Params) -> InjectRhoState:
    return InjectRhoState(estimator_state=estimator.init(params), inner_state=tx.init(params))

  def update_fn(
    updates: optax.Updates,
    state: InjectRhoState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, InjectRhoState]:
    if params is None:
      raise ValueError(
        'inject_rho estimates rho from the parameters: call `update(updates, state, params)` with params.'
      )
    if 'rho' in extra_args:
      raise ValueError('inject_rho computes rho itself; do not pass `rho` to its update.')
    rho, estimator_state = estimator.update(params, state.estimator_state)
    updates, inner_state = tx.update(updates, state.inner_state, params, rho=rho, **extra_args)
    return updates, InjectRhoState(estimator_state, inner_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# The methods of thesis Section 7.3, the baseline first: the one list of their names (critics, configs, tables).
METHODS: tuple[str, ...] = ('none', 'sn', 'divout', 'divgrad', 'muleps')


def make_optimizer(
  method: str,
  learning_rate: optax.ScalarOrSchedule,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_placement: EpsPlacement = 'outside',
) -> optax.GradientTransformationExtraArgs:
  """The optimiser for one of the Section 7.3 methods.

  'none', 'sn' and 'divout' change the model or nothing, so they get plain
  `adam`, which accepts and ignores `rho`. 'divgrad' gets `divgrad` (Eq 7.28)
  and 'muleps' gets `muleps` (Eq 7.31, with the default `rho_power`); both
  require `rho`.

  Args:
    method: one of `METHODS`.
    learning_rate: a float or an optax schedule.
    b1: Adam's β₁.
    b2: Adam's β₂.
    eps: Adam's ε (ε₀ for MULEPS).
    eps_placement: 'outside' or 'inside' the square root.

  Returns:
    A `GradientTransformationExtraArgs`.

  Raises:
    ValueError: for a method not in `METHODS`.
  """
  kwargs = dict(
    learning_rate=learning_rate,
    b1=b1,
    b2=b2,
    eps=eps,
    eps_placement=eps_placement,
  )
  if method in ('none', 'sn', 'divout'):
    return adam(**kwargs)
  if method == 'divgrad':
    return divgrad(**kwargs)
  if method == 'muleps':
    return muleps(**kwargs)
  raise ValueError(f'Unknown method {method!r}; valid methods: {METHODS}.')
