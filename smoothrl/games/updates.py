"""Discrete updates of a two-player game: simultaneous and alternating steps with any optax optimiser per
player, and Runge–Kutta 4 (thesis Sections 4.2, B.3).

With learning rates v_φh and v_θh and d_φ, d_θ the directions each player's optimiser makes of its gradient
(`Game.gradients`; plain gradient descent: d = −∇),

  simultaneous (Eqs 4.13–4.14):  φ_t = φ_{t−1} + v_φh d_φ(φ_{t−1}, θ_{t−1}),  θ_t = θ_{t−1} + v_θh d_θ(φ_{t−1}, θ_{t−1});
  alternating (Eqs 4.17–4.18):   m steps φ_i = φ_{i−1} + (v_φh/m) d_φ(φ_{i−1}, θ_{t−1}), then k steps
                                 θ_j = θ_{j−1} + (v_θh/k) d_θ(φ_m, θ_{j−1}): each player's rate is divided by its
                                 number of steps, as in Theorem 4.2.2.

An optimiser is an optax `GradientTransformation` at unit learning rate: its updates are scaled by the player's
rate (v h, or v h/m) and added to the parameters. The default, `optax.sgd(1.0)`, makes d = −∇ (gradient descent);
`optax.adam(1.0, b1=0.5)` is Adam at rate v h, `optax.sgd(1.0, momentum=0.9)` heavy ball.

RK4 (Eqs B.131–B.142) steps the fields (f, g) themselves, each player with its own rate:

  k₁ = u(ψ),  k₂ = u(ψ + (h/2) V k₁),  k₃ = u(ψ + (h/2) V k₂),  k₄ = u(ψ + h V k₃),
  ψ_t = ψ + h V (k₁ + 2k₂ + 2k₃ + k₄)/6,   u = (f, g), V = diag(v_φ, v_θ).

Eqs B.137–B.138 print the fourth stage at a half step; RK4's fourth stage takes the full step, as written here
(with the half step the method is not fourth order).

Every step is a pure function of a `GameState`, so it runs under `jax.jit`, inside `jax.lax.scan` (`rollout`), and
under `jax.vmap` over seeds (a batch of states).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from smoothrl.games.game import Game, Params

SCHEMES: tuple[str, ...] = ('simultaneous', 'alternating', 'rk4')
Scheme = Literal['simultaneous', 'alternating', 'rk4']


class GameState(NamedTuple):
  """The players' parameters and optimiser states after `count` updates (an alternating update counts once)."""

  phi: Params
  theta: Params
  opt_phi: optax.OptState
  opt_theta: optax.OptState
  count: chex.Array


class GameUpdate(NamedTuple):
  """A game's update rule: `init(phi, theta) -> GameState` and `step(state, *args) -> GameState`.

  `*args` go to both players' losses at every inner step (e.g. a batch)."""

  init: Callable[[Params, Params], GameState]
  step: Callable[..., GameState]


class Trajectory(NamedTuple):
  """Iterates of a rollout: `phi` and `theta` with a leading axis of steps + 1 (the start first), the last state."""

  phi: Params
  theta: Params
  state: GameState


def _check(condition: Callable[[Any], Any], name: str, value: Any, requirement: str) -> None:
  """Raises a ValueError unless `condition(value)`; a traced value (a vmapped rate) is not checked."""
  try:
    ok = bool(condition(value))
  except jax.errors.ConcretizationTypeError:
    return
  if not ok:
    raise ValueError(f'games.updates needs {name} {requirement}, got {value!r}')


def _check_steps(name: str, value: Any) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f'games.updates needs {name} a positive int (a number of steps), got {value!r}')


def _axpy(a: Any, x: Params, y: Params) -> Params:
  return jax.tree.map(lambda xi, yi: yi + a * xi, x, y)


def make_update(
  game: Game,
  h: float,
  *,
  scheme: Scheme = 'simultaneous',
  v_phi: float = 1.0,
  v_theta: float = 1.0,
  m: int = 1,
  k: int = 1,
  optimizer_phi: optax.GradientTransformation | None = None,
  optimizer_theta: optax.GradientTransformation | None = None,
) -> GameUpdate:
  """The update rule of `game` at base learning rate h (module docstring).

  Args:
    game: the game; its regulariser, if any, is part of the gradients each player follows.
    h: the base learning rate; the players' rates are v_φh and v_θh.
    scheme: 'simultaneous' (Eqs 4.13–4.14), 'alternating' (Eqs 4.17–4.18: m steps of φ, then k of θ) or 'rk4'
      (Eqs B.131–B.142 with the full-step fourth stage).
    v_phi, v_theta: the per-player learning-rate factors.
    m, k: the alternating scheme's numbers of steps of φ and of θ per update (each at rate v h/m, v h/k).
    optimizer_phi, optimizer_theta: optax transformations at unit learning rate (default `optax.sgd(1.0)`,
      gradient descent); RK4 takes none.

  Raises:
    ValueError: an unknown scheme, a non-positive rate, a bad step count, or an optimiser given to RK4.
  """
  if not isinstance(game, Game):
    raise ValueError(f'make_update needs a games.Game, got {game!r}')
  if scheme not in SCHEMES:
    raise ValueError(f'unknown update scheme {scheme!r}; valid: {", ".join(SCHEMES)}')
  _check(lambda x: x > 0, 'h', h, '> 0')
  _check(lambda x: x > 0, 'v_phi', v_phi, '> 0')
  _check(lambda x: x > 0, 'v_theta', v_theta, '> 0')
  _check_steps('m', m)
  _check_steps('k', k)
  if scheme != 'alternating' and (m != 1 or k != 1):
    raise ValueError(f"m and k count the alternating scheme's inner steps; scheme {scheme!r} takes m = k = 1")
  if scheme == 'rk4' and (optimizer_phi is not None or optimizer_theta is not None):
    raise ValueError("scheme rk4 steps the players' fields directly and takes no optimiser")
  opt_phi = optax.sgd(1.0) if optimizer_phi is None else optimizer_phi
  opt_theta = optax.sgd(1.0) if optimizer_theta is None else optimizer_theta
  rate_phi, rate_theta = v_phi * h, v_theta * h

  def init(phi: Params, theta: Params) -> GameState:
    return GameState(phi, theta, opt_phi.init(phi), opt_theta.init(theta), jnp.zeros((), jnp.int32))

  def move_phi(phi, theta, opt_state, rate, args):
    grad_phi = game.gradients(phi, theta, *args)[0]
    updates, opt_state = opt_phi.update(grad_phi, opt_state, phi)
    return _axpy(rate, updates, phi), opt_state

  def move_theta(phi, theta, opt_state, rate, args):
    grad_theta = game.gradients(phi, theta, *args)[1]
    updates, opt_state = opt_theta.update(grad_theta, opt_state, theta)
    return _axpy(rate, updates, theta), opt_state

  def simultaneous(state: GameState, *args: Any) -> GameState:
    grad_phi, grad_theta = game.gradients(state.phi, state.theta, *args)
    up_phi, o_phi = opt_phi.update(grad_phi, state.opt_phi, state.phi)
    up_theta, o_theta = opt_theta.update(grad_theta, state.opt_theta, state.theta)
    return GameState(
      _axpy(rate_phi, up_phi, state.phi), _axpy(rate_theta, up_theta, state.theta), o_phi, o_theta, state.count + 1
    )

  def alternating(state: GameState, *args: Any) -> GameState:
    theta0 = state.theta

    def phi_step(_, carry):
      return move_phi(carry[0], theta0, carry[1], rate_phi / m, args)

    phi, o_phi = jax.lax.fori_loop(0, m, phi_step, (state.phi, state.opt_phi))

    def theta_step(_, carry):
      return move_theta(phi, carry[0], carry[1], rate_theta / k, args)

    theta, o_theta = jax.lax.fori_loop(0, k, theta_step, (theta0, state.opt_theta))
    return GameState(phi, theta, o_phi, o_theta, state.count + 1)

  def rk4(state: GameState, *args: Any) -> GameState:
    def u(phi, theta):
      return game.fields(phi, theta, *args)

    def shift(c, ks):
      return _axpy(c * rate_phi, ks[0], state.phi), _axpy(c * rate_theta, ks[1], state.theta)

    k1 = u(state.phi, state.theta)
    k2 = u(*shift(0.5, k1))
    k3 = u(*shift(0.5, k2))
    k4 = u(*shift(1.0, k3))  # the full step (B.137–B.138 print h/2)
    direction = tuple(
      jax.tree.map(lambda a, b, c, d: (a + 2 * b + 2 * c + d) / 6, k1[i], k2[i], k3[i], k4[i]) for i in range(2)
    )
    phi, theta = shift(1.0, direction)
    return GameState(phi, theta, state.opt_phi, state.opt_theta, state.count + 1)

  step = {'simultaneous': simultaneous, 'alternating': alternating, 'rk4': rk4}[scheme]
  return GameUpdate(init, step)


def rollout(update: GameUpdate, state: GameState, steps: int, *args: Any) -> Trajectory:
  """`steps` updates from `state` in one `jax.lax.scan`, keeping every iterate (the start included)."""
  _check_steps('steps', steps)

  def body(s, _):
    s = update.step(s, *args)
    return s, (s.phi, s.theta)

  final, (phis, thetas) = jax.lax.scan(body, state, None, length=steps)
  prepend = lambda x0, xs: jnp.concatenate([jnp.asarray(x0)[None], xs])
  return Trajectory(jax.tree.map(prepend, state.phi, phis), jax.tree.map(prepend, state.theta, thetas), final)
