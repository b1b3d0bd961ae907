"""Drift-adjusted learning rates: DAL, DAL-p and momentum DAL (thesis Section 3.7).

One gradient-descent step θ_t = θ_{t-1} − h g leaves the negative gradient flow by (h²/2) H g up to higher-order
terms (Theorem 3.7.1), with g = ∇E and H = ∇²E at θ_{t-1}. DAL picks the learning rate from the curvature along
the gradient, ‖Hĝ‖ with ĝ = g/‖g‖:

  DAL   (Eq 3.20): h = 2 / ‖Hĝ‖,
  DAL-p (Eq 3.21): h = 2 / ‖Hĝ‖ᵖ,

capped at `max_rate` (5 in the thesis, Appendix A.3). Since ‖Hĝ‖ ≤ |λ|_max, h_DAL ≥ 2/|λ|_max: DAL runs at or
beyond the edge of stability by construction (on E = λθ²/2 it gives θ_{t+1} = −θ_t).

Momentum DAL (Eqs 3.22-3.23) puts the same rate on the gradient term of heavy-ball momentum,

  v_t = β v_{t-1} − [c / ‖Hĝ‖ᵖ] g,   θ_t = θ_{t-1} + v_t,

where Eq 3.23 prints c = 1/2 (1/(2‖Hĝ‖)) while Eq 3.20 uses c = 2; both are exposed as `constant`.

Hg is taken along the incoming updates g. It comes from the extra argument `hvp` when the caller already has it
(e.g. from `smoothrl.curvature.products.grad_and_hvp`), else from the extra argument `obj_fn` (params -> scalar
loss): an exact Hessian-vector product (the JVP of ∇obj_fn in direction g) or the forward difference
[∇E(θ + εg) − ∇E(θ)]/ε with ε = fd_scale/‖g‖ (Appendix A.3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from smoothrl.curvature.products import FD_SCALE, fd_hvp, tree_norm, tree_vdot
from smoothrl.curvature.products import hvp as exact_hvp

Curvature = Literal['exact', 'fd']
CURVATURES: tuple[str, ...] = ('exact', 'fd')


class DALState(NamedTuple):
  """State of `dal` / `dal_p`: the last step's rate and the quantities it was computed from.

  Every field is a scalar array (zeros before the first update), so the state is a pytree that vmaps and
  checkpoints like any other. Float fields have the dtype of the parameters.

  Attributes:
    rate: h, the learning rate used by the last update, min(c/‖Hĝ‖ᵖ, max_rate); max_rate when Hg = 0 or g = 0.
    hg_norm: ‖Hĝ‖ = ‖Hg‖/‖g‖; 0 when g = 0.
    drift: the per-iteration drift estimate (h²/2)‖Hg‖ (Theorem 3.7.1).
    taylor_rate: 1/(ĝᵀHĝ), the rate that minimises the second-order Taylor model of E along −g (Eq A.171);
      +inf when ĝᵀHĝ ≤ 0 (the model has no minimum along −g) and when g = 0.
    grad_norm: ‖g‖ of the incoming updates.
    count: number of updates applied so far (int32).
  """

  rate: chex.Array
  hg_norm: chex.Array
  drift: chex.Array
  taylor_rate: chex.Array
  grad_norm: chex.Array
  count: chex.Array


class MomentumDALState(NamedTuple):
  """State of `momentum_dal`: the fields of `DALState` (for the gradient term's rate) and the velocity.

  Attributes:
    rate: h = min(c/‖Hĝ‖ᵖ, max_rate), the coefficient of −g in the last velocity update.
    hg_norm: ‖Hĝ‖; 0 when g = 0.
    drift: (h²/2)‖Hg‖.
    taylor_rate: 1/(ĝᵀHĝ); +inf when ĝᵀHĝ ≤ 0 or g = 0.
    grad_norm: ‖g‖.
    count: number of updates applied so far (int32).
    velocity: v_t, a pytree like the parameters (Eq 3.23).
  """

  rate: chex.Array
  hg_norm: chex.Array
  drift: chex.Array
  taylor_rate: chex.Array
  grad_norm: chex.Array
  count: chex.Array
  velocity: optax.Updates


def _check(condition: Callable[[Any], Any], name: str, value: Any, requirement: str, caller: str) -> None:
  """Raises a ValueError unless `condition(value)`; a traced value (a vmapped hyperparameter) is not checked."""
  try:
    ok = bool(condition(value))
  except jax.errors.ConcretizationTypeError:
    return
  if not ok:
    raise ValueError(f'{caller} needs {name} {requirement}, got {value!r}.')


def _check_args(caller: str, p: Any, max_rate: Any, constant: Any, curvature: str, fd_scale: Any) -> None:
  _check(lambda x: x > 0, 'p', p, '> 0', caller)
  _check(lambda x: x > 0, 'max_rate', max_rate, '> 0', caller)
  _check(lambda x: x > 0, 'constant', constant, '> 0', caller)
  _check(lambda x: x > 0, 'fd_scale', fd_scale, '> 0', caller)
  if curvature not in CURVATURES:
    raise ValueError(f'{caller} needs curvature in {CURVATURES}, got {curvature!r}.')


def _state_dtype(params: optax.Params) -> jnp.dtype:
  dtype = optax.tree.dtype(params, 'highest')
  return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.dtype(jnp.float32)


def _curvature_along(
  g: optax.Updates,
  params: optax.Params | None,
  obj_fn: Callable[[optax.Params], jax.Array] | None,
  hvp: optax.Updates | None,
  curvature: str,
  fd_scale: float,
  caller: str,
) -> optax.Updates:
  """Hg: the given `hvp`, else from `obj_fn` by the exact or the finite-difference product."""
  if hvp is not None:
    if jax.tree.structure(hvp) != jax.tree.structure(g):
      raise ValueError(
        f'{caller}: `hvp` must have the structure of the updates, got {jax.tree.structure(hvp)} '
        f'for updates {jax.tree.structure(g)}.'
      )
    return hvp
  if obj_fn is None:
    raise ValueError(
      f'{caller} needs the curvature along the gradient: call `update(grads, state, params, '
      'obj_fn=lambda p: loss(p, batch))`, or pass a precomputed Hessian-vector product as `hvp=`.'
    )
  if params is None:
    raise ValueError(f'{caller} computes Hg from `obj_fn` at the parameters: call `update(grads, state, params, ...)`.')
  if curvature == 'exact':
    return exact_hvp(obj_fn, params, g)
  norm = tree_norm(g)
  eps = fd_scale / jnp.maximum(norm, jnp.finfo(norm.dtype).tiny)
  return fd_hvp(obj_fn, params, g, eps)


def _dal_quantities(
  g: optax.Updates, hg: optax.Updates, p: Any, constant: Any, max_rate: Any, dtype: jnp.dtype
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
  """(rate, ‖Hĝ‖, drift, taylor_rate, ‖g‖) for gradient g and curvature product hg (Eqs 3.20-3.21, A.171)."""
  grad_norm = tree_norm(g).astype(dtype)
  hg_abs = tree_norm(hg).astype(dtype)
  g_hg = tree_vdot(g, hg).astype(dtype)
  no_grad = grad_norm == 0
  safe_grad_norm = jnp.where(no_grad, 1, grad_norm)
  hg_norm = jnp.where(no_grad, 0, hg_abs / safe_grad_norm)
  flat = hg_norm == 0  # Hg = 0 or g = 0: no curvature to adjust to, take the cap.
  raw = constant / jnp.power(jnp.where(flat, 1, hg_norm), p)
  rate = jnp.where(flat, max_rate, jnp.minimum(raw, max_rate)).astype(dtype)
  drift = 0.5 * rate**2 * hg_abs
  curv = jnp.where(no_grad, 0, g_hg / safe_grad_norm**2)  # ĝᵀHĝ
  taylor_rate = jnp.where(curv <= 0, jnp.inf, 1 / jnp.where(curv <= 0, 1, curv)).astype(dtype)
  return rate, hg_norm, drift.astype(dtype), taylor_rate, grad_norm


def dal(
  p: float = 1.0,
  max_rate: float = 5.0,
  constant: float = 2.0,
  curvature: Curvature = 'exact',
  fd_scale: float = FD_SCALE,
) -> optax.GradientTransformationExtraArgs:
  """Gradient descent with the drift-adjusted learning rate h = min(c/‖Hĝ‖ᵖ, max_rate) (thesis Eqs 3.20-3.21).

  The output is the whole descent step −h·g (no learning rate to chain after it); it can follow other transforms
  in `optax.chain`, e.g. `optax.chain(optax.clip_by_global_norm(1.0), dal())`, and then takes g to be their
  output. ‖Hĝ‖ does not change when g is rescaled, so clipping by norm changes the step, not the rate.

  `update(updates, state, params=None, *, obj_fn=None, hvp=None, **extra_args)`:

  * `hvp`: H·g for g = `updates`, precomputed by the caller (e.g. `grad_and_hvp`); when given, `obj_fn` is not
    called and `params` is not needed. If an earlier transform in the chain rescales the gradient, rescale
    `hvp` the same way.
  * `obj_fn`: params -> scalar loss (the batch loss); Hg is then computed at `params` along `updates`, exactly
    (`curvature='exact'`) or by the forward difference with ε = fd_scale/‖g‖ (`curvature='fd'`, two gradient
    evaluations).

  When Hg = 0 or g = 0 the rate is `max_rate` (no division by zero; with g = 0 the step is 0).

  Args:
    p: the power p of DAL-p; p = 1 is DAL.
    max_rate: the cap on h (5 in the thesis).
    constant: c; 2 as in Eqs 3.20-3.21.
    curvature: 'exact' (Hessian-vector product) or 'fd' (finite difference), used with `obj_fn`.
    fd_scale: the ε = fd_scale/‖g‖ of the finite difference (0.01 in the thesis).

  Returns:
    A `GradientTransformationExtraArgs` with state `DALState`.
  """
  _check_args('dal', p, max_rate, constant, curvature, fd_scale)

  def init_fn(params: optax.Params) -> DALState:
    zero = jnp.zeros([], _state_dtype(params))
    return DALState(
      rate=zero, hg_norm=zero, drift=zero, taylor_rate=zero, grad_norm=zero, count=jnp.zeros([], jnp.int32)
    )

  def update_fn(
    updates: optax.Updates,
    state: DALState,
    params: optax.Params | None = None,
    *,
    obj_fn: Callable[[optax.Params], jax.Array] | None = None,
    hvp: optax.Updates | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, DALState]:
    del extra_args
    hg = _curvature_along(updates, params, obj_fn, hvp, curvature, fd_scale, 'dal')
    rate, hg_norm, drift, taylor_rate, grad_norm = _dal_quantities(updates, hg, p, constant, max_rate, state.rate.dtype)
    new_updates = jax.tree.map(lambda x: -rate.astype(x.dtype) * x, updates)
    return new_updates, DALState(
      rate=rate,
      hg_norm=hg_norm,
      drift=drift,
      taylor_rate=taylor_rate,
      grad_norm=grad_norm,
      count=optax.safe_increment(state.count),
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def dal_p(p: float = 0.5, **kwargs: Any) -> optax.GradientTransformationExtraArgs:
  """DAL-p (thesis Eq 3.21), h = min(2/‖Hĝ‖ᵖ, max_rate), with the thesis' recommended p = 0.5.

  Smaller p gives larger steps where ‖Hĝ‖ > 1, hence more drift. `kwargs` are those of `dal`.
  """
  return dal(p=p, **kwargs)


def momentum_dal(
  beta: float = 0.9,
  constant: float = 0.5,
  p: float = 1.0,
  max_rate: float = 5.0,
  curvature: Curvature = 'exact',
  fd_scale: float = FD_SCALE,
) -> optax.GradientTransformationExtraArgs:
  """Heavy-ball momentum whose gradient term has the drift-adjusted rate (thesis Eqs 3.22-3.23).

  v_t = β v_{t-1} − h g with h = min(c/‖Hĝ‖ᵖ, max_rate); the output is v_t, so θ_t = θ_{t-1} + v_t. The default
  c = 0.5 is Eq 3.23 as printed (1/(2‖Hĝ‖)); `constant=2.0` gives DAL's constant. `update` takes `obj_fn` or
  `hvp` as `dal` does; the curvature is that along the current (incoming) gradient, not along the velocity.

  Args:
    beta: the momentum decay β, in [0, 1) (0.9 in the thesis).
    constant: c.
    p: the power p on ‖Hĝ‖.
    max_rate: the cap on h.
    curvature: 'exact' or 'fd', used with `obj_fn`.
    fd_scale: the ε = fd_scale/‖g‖ of the finite difference.

  Returns:
    A `GradientTransformationExtraArgs` with state `MomentumDALState`.
  """
  _check_args('momentum_dal', p, max_rate, constant, curvature, fd_scale)
  _check(lambda x: 0 <= x < 1, 'beta', beta, 'in [0, 1)', 'momentum_dal')

  def init_fn(params: optax.Params) -> MomentumDALState:
    zero = jnp.zeros([], _state_dtype(params))
    return MomentumDALState(
      rate=zero,
      hg_norm=zero,
      drift=zero,
      taylor_rate=zero,
      grad_norm=zero,
      count=jnp.zeros([], jnp.int32),
      velocity=optax.tree.zeros_like(params),
    )

  def update_fn(
    updates: optax.Updates,
    state: MomentumDALState,
    params: optax.Params | None = None,
    *,
    obj_fn: Callable[[optax.Params], jax.Array] | None = None,
    hvp: optax.Updates | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, MomentumDALState]:
    del extra_args
    hg = _curvature_along(updates, params, obj_fn, hvp, curvature, fd_scale, 'momentum_dal')
    rate, hg_norm, drift, taylor_rate, grad_norm = _dal_quantities(updates, hg, p, constant, max_rate, state.rate.dtype)
    velocity = jax.tree.map(lambda v, x: (beta * v - rate.astype(x.dtype) * x).astype(v.dtype), state.velocity, updates)
    return velocity, MomentumDALState(
      rate=rate,
      hg_norm=hg_norm,
      drift=drift,
      taylor_rate=taylor_rate,
      grad_norm=grad_norm,
      count=optax.safe_increment(state.count),
      velocity=velocity,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
