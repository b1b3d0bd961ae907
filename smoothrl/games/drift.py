"""Discretisation drift in two-player games: the modified flows of BEA, the modified losses of zero-sum and
common-payoff games, and a fine integrator to compare flows with the discrete updates (thesis Sections 4.2–4.5,
4.7, B.1–B.3).

Every modified flow of the chapter has the form

  φ̇ = a_φ f − h (s_φ f_φ f + i_φ f_θ g),    θ̇ = a_θ g − h (i_θ g_φ f + s_θ g_θ g),

with the drift terms of `game.drift_terms` (two JVPs) and coefficients (`drift_coefficients`):

| scheme, clock | a_φ, a_θ | s_φ | i_φ | i_θ | s_θ |
|---|---|---|---|---|---|
| simultaneous, player (Thm 4.2.1) | 1, 1 | v_φ/2 | v_φ/2 | v_θ/2 | v_θ/2 |
| alternating, player (Thm 4.2.2) | 1, 1 | v_φ/2m | v_φ/2 | (v_θ/2)(1 − 2v_φ/v_θ) | v_θ/2k |
| simultaneous, shared (Thm 4.7.1) | v_φ, v_θ | v_φ²/2 | v_φv_θ/2 | v_φv_θ/2 | v_θ²/2 |
| alternating, shared (Thm 4.7.2) | v_φ, v_θ | v_φ²/2m | v_φv_θ/2 | −v_φv_θ/2 | v_θ²/2k |
| rk4, player (Eqs B.164–B.165) | 1, 1 | 0 | (v_φ − v_θ)/2 | (v_θ − v_φ)/2 | 0 |
| rk4, shared | v_φ, v_θ | 0 | 0 | 0 | 0 |

Clocks (Section 4.7): on the 'player' clock one update advances φ by time v_φh and θ by time v_θh along the flow
(the flow of Eqs 4.45–4.46); on the 'shared' clock ('the same physical time between players') both advance by h
along the flow of (v_φ f, v_θ g) (Eqs 4.47–4.48). The two agree for equal rates; with unequal rates the shared
clock is the one whose stability analysis matches the alternating Dirac-GAN (`smoothrl.games.dirac`). RK4 with
equal rates has no drift up to O(h⁵) on either clock (the rows above are its O(h²) drift).

The modified losses of a game with one loss E follow from the table with the identities B.95–B.98:

  zero-sum:       Ẽ_φ = −a_φE + (h s_φ/2)‖∇_φE‖² − (h i_φ/2)‖∇_θE‖²,  Ẽ_θ = a_θE − (h i_θ/2)‖∇_φE‖² + (h s_θ/2)‖∇_θE‖²;
  common payoff:  Ẽ_φ = a_φE + (h s_φ/2)‖∇_φE‖² + (h i_φ/2)‖∇_θE‖²,  Ẽ_θ = a_θE + (h i_θ/2)‖∇_φE‖² + (h s_θ/2)‖∇_θE‖²,

which are Corollaries 4.5.1, 4.5.2, 4.7.1, 4.7.2 (zero-sum) and 4.4.1 (common payoff, alternating).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from smoothrl.curvature.products import tree_norm
from smoothrl.games.game import Field, Game, Loss, Params, drift_terms

CLOCKS: tuple[str, ...] = ('player', 'shared')
Clock = Literal['player', 'shared']
DRIFT_SCHEMES: tuple[str, ...] = ('simultaneous', 'alternating', 'rk4')
GAME_KINDS: tuple[str, ...] = ('zero_sum', 'common_payoff')


class DriftCoefficients(NamedTuple):
  """a_φ, a_θ (the fields' factors) and s_φ, i_φ, i_θ, s_θ (the drift terms' factors) of the module table."""

  phi_rate: Any
  theta_rate: Any
  phi_self: Any
  phi_interaction: Any
  theta_interaction: Any
  theta_self: Any


class OneStep(NamedTuple):
  """A flow's prediction of one update: φ at its time on the clock and θ at its time."""

  phi: Params
  theta: Params


def _check_clock(clock: str) -> None:
  if clock not in CLOCKS:
    raise ValueError(f'unknown clock {clock!r}; valid: {", ".join(CLOCKS)}')


def _check_steps(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f'{name} must be a positive int, got {value!r}')


def drift_coefficients(
  scheme: str = 'simultaneous',
  *,
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
  m: int = 1,
  k: int = 1,
  clock: Clock = 'player',
) -> DriftCoefficients:
  """The coefficients of the modified flow of `scheme` on `clock` (the module table)."""
  if scheme not in DRIFT_SCHEMES:
    raise ValueError(f'unknown update scheme {scheme!r}; valid: {", ".join(DRIFT_SCHEMES)}')
  _check_clock(clock)
  _check_steps('m', m)
  _check_steps('k', k)
  if scheme != 'alternating' and (m != 1 or k != 1):
    raise ValueError(f"m and k count the alternating scheme's inner steps; scheme {scheme!r} takes m = k = 1")
  if clock == 'player':
    if scheme == 'simultaneous':  # Theorem 4.2.1
      return DriftCoefficients(1.0, 1.0, v_phi / 2, v_phi / 2, v_theta / 2, v_theta / 2)
    if scheme == 'alternating':  # Theorem 4.2.2
      return DriftCoefficients(1.0, 1.0, v_phi / (2 * m), v_phi / 2, (v_theta / 2) * (1 - 2 * v_phi / v_theta),
                               v_theta / (2 * k))  # fmt: skip
    return DriftCoefficients(1.0, 1.0, 0.0, (v_phi - v_theta) / 2, (v_theta - v_phi) / 2, 0.0)  # Eqs B.164–B.165
  if scheme == 'simultaneous':  # Theorem 4.7.1
    return DriftCoefficients(v_phi, v_theta, v_phi**2 / 2, v_phi * v_theta / 2, v_phi * v_theta / 2, v_theta**2 / 2)
  if scheme == 'alternating':  # Theorem 4.7.2
    return DriftCoefficients(
      v_phi, v_theta, v_phi**2 / (2 * m), v_phi * v_theta / 2, -v_phi * v_theta / 2, v_theta**2 / (2 * k)
    )
  return DriftCoefficients(v_phi, v_theta, 0.0, 0.0, 0.0, 0.0)  # RK4 with one rate h for both: O(h⁵)


def flow_field(game: Game, *, v_phi: Any = 1.0, v_theta: Any = 1.0, clock: Clock = 'player') -> Field:
  """The game's own flow: (f, g) on the player clock (Eqs 4.45–4.46), (v_φ f, v_θ g) on the shared clock (Eqs
  4.47–4.48)."""
  _check_clock(clock)
  a_phi, a_theta = (1.0, 1.0) if clock == 'player' else (v_phi, v_theta)

  def field(phi: Params, theta: Params, *args: Any) -> tuple[Params, Params]:
    f, g = game.fields(phi, theta, *args)
    return _scale(a_phi, f), _scale(a_theta, g)

  return field


def modified_field(
  game: Game,
  h: Any,
  *,
  scheme: str = 'simultaneous',
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
  m: int = 1,
  k: int = 1,
  clock: Clock = 'player',
  coefficients: DriftCoefficients | None = None,
) -> Field:
  """The modified flow of BEA for `scheme` at base rate h (Theorems 4.2.1, 4.2.2, 4.7.1, 4.7.2; Eqs B.164–B.165),
  `field(phi, theta, *args) -> (phi_dot, theta_dot)`, from the game's fields (its regulariser included) by two
  JVPs. It follows one update with an error O(h³) (`one_step`). Given `coefficients` (possibly traced), those
  are used in place of the scheme's."""
  if coefficients is None:
    c = drift_coefficients(scheme, v_phi=v_phi, v_theta=v_theta, m=m, k=k, clock=clock)
  elif isinstance(coefficients, DriftCoefficients):
    c = coefficients
  else:
    raise ValueError(f'coefficients must be games.DriftCoefficients, got {coefficients!r}')

  def field(phi: Params, theta: Params, *args: Any) -> tuple[Params, Params]:
    d = drift_terms(game.fields, phi, theta, *args)
    phi_dot = jax.tree.map(
      lambda f, ff, fg: c.phi_rate * f - h * (c.phi_self * ff + c.phi_interaction * fg), d.f, d.f_phi_f, d.f_theta_g
    )
    theta_dot = jax.tree.map(
      lambda g, gf, gg: c.theta_rate * g - h * (c.theta_interaction * gf + c.theta_self * gg),
      d.g,
      d.g_phi_f,
      d.g_theta_g,
    )
    return phi_dot, theta_dot

  return field


def modified_loss_coefficients(
  kind: str = 'zero_sum',
  scheme: str = 'simultaneous',
  *,
  h: Any = 1.0,
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
  m: int = 1,
  k: int = 1,
  clock: Clock = 'player',
) -> tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]:
  """The coefficients of (E, ‖∇_φE‖², ‖∇_θE‖²) in Ẽ_φ and in Ẽ_θ (module docstring): for 'zero_sum'
  ((−a_φ, hs_φ/2, −hi_φ/2), (a_θ, −hi_θ/2, hs_θ/2)), for 'common_payoff' ((a_φ, hs_φ/2, hi_φ/2),
  (a_θ, hi_θ/2, hs_θ/2))."""
  if kind not in GAME_KINDS:
    raise ValueError(f'unknown game kind {kind!r}; valid: {", ".join(GAME_KINDS)}')
  c = drift_coefficients(scheme, v_phi=v_phi, v_theta=v_theta, m=m, k=k, clock=clock)
  sign = -1.0 if kind == 'zero_sum' else 1.0  # E_φ = sign·E
  return (
    (sign * c.phi_rate, h * c.phi_self / 2, sign * h * c.phi_interaction / 2),
    (c.theta_rate, sign * h * c.theta_interaction / 2, h * c.theta_self / 2),
  )


def modified_losses(
  loss: Loss,
  h: Any,
  *,
  kind: str = 'zero_sum',
  scheme: str = 'simultaneous',
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
  m: int = 1,
  k: int = 1,
  clock: Clock = 'player',
) -> tuple[Loss, Loss]:
  """(Ẽ_φ, Ẽ_θ) whose negative gradients are the modified flow of the game of one loss E (module docstring):
  `kind` 'zero_sum' (E_φ = −E, E_θ = E; Corollaries 4.5.1, 4.5.2, 4.7.1, 4.7.2) or 'common_payoff' (E_φ = E_θ = E;
  Corollary 4.4.1), with the coefficients of `modified_loss_coefficients`."""
  c_phi, c_theta = modified_loss_coefficients(kind, scheme, h=h, v_phi=v_phi, v_theta=v_theta, m=m, k=k, clock=clock)

  def combination(c):
    def modified(phi, theta, *args):
      g_phi, g_theta = jax.grad(loss, (0, 1))(phi, theta, *args)
      return c[0] * loss(phi, theta, *args) + c[1] * tree_norm(g_phi) ** 2 + c[2] * tree_norm(g_theta) ** 2

    return modified

  return combination(c_phi), combination(c_theta)


def integrate(
  field: Field, phi: Params, theta: Params, t: Any, *args: Any, steps: int = 100, saves: int = 1
) -> tuple[Params, Params]:
  """The flow of `field` from (φ, θ) to time t by `steps` classical RK4 steps of t/steps, returning the states at
  t·j/saves for j = 1..saves (a leading axis of `saves`). For comparing flows with the discrete updates: with
  float64 and steps ≥ 20 per update its error is far below the O(h³) the modified flows are checked at."""
  _check_steps('steps', steps)
  _check_steps('saves', saves)
  if steps % saves:
    raise ValueError(f'steps ({steps}) must be a multiple of saves ({saves})')
  dt = t / steps

  def rk4(state, _):
    return _rk4_step(field, state, dt, args), None

  def chunk(state, _):
    state, _ = jax.lax.scan(rk4, state, None, length=steps // saves)
    return state, state

  _, saved = jax.lax.scan(chunk, (phi, theta), None, length=saves)
  return saved


def one_step(
  field: Field,
  phi: Params,
  theta: Params,
  h: Any,
  *args: Any,
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
  clock: Clock = 'player',
  steps: int = 50,
) -> OneStep:
  """The flow's prediction of one update from (φ, θ): φ(v_φh) and θ(v_θh) on the player clock (the times of
  Eqs B.28–B.29), φ(h) and θ(h) on the shared clock.

  One trajectory by classical RK4: `steps` steps to the earlier of the two times, then `steps` more to the later
  (none when they are equal, as on the shared clock)."""
  _check_clock(clock)
  _check_steps('steps', steps)
  if clock == 'shared':
    end = integrate(field, phi, theta, h, *args, steps=steps)
    return OneStep(*jax.tree.map(lambda x: x[-1], end))
  t_phi, t_theta = v_phi * h, v_theta * h
  t_early = jnp.minimum(t_phi, t_theta)
  dts = jnp.concatenate(
    [jnp.full((steps,), t_early / steps), jnp.full((steps,), (t_phi + t_theta - 2 * t_early) / steps)]
  )

  def body(state, dt):
    new = _rk4_step(field, state, dt, args)
    return new, new

  _, path = jax.lax.scan(body, (phi, theta), dts)
  at = lambda t: jnp.where(t == t_early, steps - 1, 2 * steps - 1)
  phi_end = jax.tree.map(lambda x: x[at(t_phi)], path[0])
  theta_end = jax.tree.map(lambda x: x[at(t_theta)], path[1])
  return OneStep(phi_end, theta_end)


def one_step_error(
  field: Field,
  update: Callable[..., tuple[Params, Params]],
  phi: Params,
  theta: Params,
  h: Any,
  *args: Any,
  v_phi: Any = 1.0,
  v_theta: Any = 1.0,
  clock: Clock = 'player',
  steps: int = 50,
) -> jax.Array:
  """‖(φ_flow, θ_flow) − (φ_1, θ_1)‖ after one update, `update(phi, theta, *args) -> (phi_1, theta_1)`."""
  flow = one_step(field, phi, theta, h, *args, v_phi=v_phi, v_theta=v_theta, clock=clock, steps=steps)
  phi1, theta1 = update(phi, theta, *args)
  diff = jax.tree.map(jnp.subtract, (flow.phi, flow.theta), (phi1, theta1))
  return tree_norm(diff)


def jacobian(field: Field, phi: Params, theta: Params, *args: Any) -> jax.Array:
  """The dense Jacobian of (φ̇, θ̇) in (φ, θ), φ's entries first (ravelled as `ravel_pytree`):
  for the stability analysis of small games (Section 4.3, Eq 4.24)."""
  flat, unravel = ravel_pytree((phi, theta))

  def flat_field(x):
    p, t = unravel(x)
    return ravel_pytree(field(p, t, *args))[0]

  return jax.jacfwd(flat_field)(flat)


_RK4_NODES = (0.0, 0.5, 0.5, 1.0)
_RK4_WEIGHTS = (1 / 6, 1 / 3, 1 / 3, 1 / 6)


def _rk4_step(field: Field, state: tuple[Params, Params], dt: Any, args: tuple[Any, ...]) -> tuple[Params, Params]:
  """One classical RK4 step of (φ̇, θ̇) = field(φ, θ, *args): the four stages in a `lax.scan`, so the field is
  traced once."""
  nodes = jnp.asarray(_RK4_NODES, dtype=jnp.result_type(float))
  weights = jnp.asarray(_RK4_WEIGHTS, dtype=jnp.result_type(float))

  def stage(carry, coefficients):
    k_prev, total = carry
    node, weight = coefficients
    k = field(*jax.tree.map(lambda x, d: x + node * dt * d, state, k_prev), *args)
    k = jax.tree.map(lambda x, ref: x.astype(ref.dtype), k, k_prev)
    return (k, jax.tree.map(lambda s, d: s + weight * d, total, k)), None

  zeros = jax.tree.map(jnp.zeros_like, state)
  (_, total), _ = jax.lax.scan(stage, (zeros, zeros), (nodes, weights))
  return jax.tree.map(lambda x, d: x + dt * d, state, total)


def _scale(c: Any, tree: Params) -> Params:
  return jax.tree.map(lambda x: c * x, tree)
