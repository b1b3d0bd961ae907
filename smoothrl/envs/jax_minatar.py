"""MinAtar in JAX (gymnax), configured as the official `minatar` package.

Pure functions of `(key, state, action)` that run inside `jax.jit`,
`jax.vmap` and `jax.lax.scan`, for fully compiled training. Each game wraps
gymnax's implementation and keeps the official protocol of
`minatar.Environment` (the package the thesis used, see `envs.minatar`):

* **Actions**: all 6 actions in every game, 0..5 = no-op, left, up, right,
  down, fire (the official `action_map` `['n','l','u','r','d','f']`). gymnax
  defaults to each game's minimal action set; here it is built with
  `use_minimal_action_set=False`, whose action set is the identity on 0..5.
* **Sticky actions**, probability 0.1: with that probability the previous
  action is applied instead of the chosen one. gymnax has none; the previous
  action lives in `EnvState.last_action`, starts at 0, and carries over
  episode boundaries in `step_autoreset`, as in the official package.
* **Difficulty ramping** on (asterix, seaquest, space_invaders; breakout and
  freeway do not ramp). gymnax ramps by default too.
* **No time limit.** gymnax's `Environment.step` truncates episodes at
  `EnvParams.max_steps_in_episode` (1000; 2500 for freeway) and auto-resets;
  this module calls gymnax's `step_env`/`reset_env` directly, so that limit is
  never applied (the params also carry `max_steps_in_episode=2**31 - 1`).
  Freeway's own end of game is kept: the official game terminates after
  2501 steps (its timer starts at 2500 and ends the game when it goes below
  0), which gymnax expresses only as a 2500-step truncation; here it is a
  termination at step 2501.
* **Observations**: (10, 10, C) `uint8` 0/1 arrays in the official channel
  order, which gymnax already uses for all five games (asterix: player, enemy,
  trail, gold; breakout: paddle, ball, trail, brick; freeway: chicken, car,
  speed1..speed5; seaquest: sub_front, sub_back, friendly_bullet, trail,
  enemy_bullet, enemy_fish, enemy_sub, oxygen_guage, diver_guage, diver;
  space_invaders: cannon, alien, alien_left, alien_right, friendly_bullet,
  enemy_bullet). gymnax returns float32; they are cast here.

gymnax 1.0.1 (as installed) implements all five games, Seaquest included.
Fixed here, where gymnax departs from the official dynamics:

* asterix: gymnax's spawn never considers the first slot of its random
  permutation of the 8 rows, so with one free row it fails to spawn 1 time in
  8, and when no row is free it overwrites an occupied row with an empty
  entity (deleting a live enemy or treasure). Here a spawn picks a uniformly
  random free row and does nothing when none is free, as in the official game.
* freeway: the 2501-step termination above.
* seaquest: in the official game an enemy sub destroyed by moving onto a
  friendly bullet still fires if its shot timer is due on that frame; gymnax
  drops that shot. Here it is fired. And surfacing with no rescued divers
  ends the official game with the oxygen left as it was; gymnax refills the
  oxygen (visible in the terminal observation's oxygen gauge), sets the diver
  count to -1 and ramps the difficulty. Here the oxygen, divers and difficulty
  are left as they were.

What remains different (none of it changes a game's rules):

* Randomness comes from JAX keys instead of one `numpy` random state, so
  trajectories match in distribution, not sample by sample.
* A fresh `reset` starts the sticky-action memory at 0, as a new official
  environment does; the official package keeps it across its episodes, which
  `step_autoreset` (or `reset(key, last_action)`) reproduces.
* seaquest keeps entities in fixed buffers of `SEAQUEST_ENTITY_CAPACITY`
  (48) rows per kind instead of gymnax's 100: the official lists are
  unbounded, but its rules keep each at or below 31 (the bound is argued at
  the constant and tested). When two entities of one kind share a cell,
  which one a bullet meets first may differ from the official list order.
* After a terminal step the official game ignores actions; gymnax keeps
  simulating. Use `step_autoreset`, or reset after `done`.

Checked against the official games by `tests/envs/test_jax_minatar.py` (official
states copied in, one step compared, spawns replayed) and
`tests/envs/test_jax_minatar_fidelity_slow.py` (distributions of episode return
and length under random policies).

Cost on CPU: compiling a game's step takes seconds (about 5-15 s on two
cores). One `step_autoreset` in a scan takes there about 5 (breakout), 8
(space_invaders) and 13-15 (asterix, freeway) microseconds, seaquest about
40 (1.6-1.8 times that with gymnax's 100-row entity buffers).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from gymnax.environments.minatar import asterix, breakout, freeway, seaquest, seaquest_helpers, space_invaders

from smoothrl.envs import jax_env

GAMES = ('asterix', 'breakout', 'freeway', 'seaquest', 'space_invaders')
NUM_ACTIONS = 6
OBS_SIZE = 10
STICKY_ACTION_PROB = 0.1
# The official freeway terminates on this step (its timer starts at 2500 and
# the game ends when the timer goes below zero).
FREEWAY_EPISODE_STEPS = 2501
# No time limit: gymnax's own limit, if anything reads it, is never reached.
_NO_TIME_LIMIT = 2**31 - 1
# Rows of each Seaquest entity buffer (gymnax: 100; a step's cost grows with
# them). The official rules keep every list at or below 31: at most one
# enemy spawns per step and one lives at most 30 steps (10 moves, one every
# `move_speed + 1 >= 3` steps), so at most 30 enemies are alive; a sub fires
# at most every 11 steps, the first time 10 steps after it spawns, and its
# bullet leaves within 10 steps, so the enemy bullets in flight number at
# most the subs alive 10 steps earlier; divers spawn every 31 steps and live
# at most 60; the player's cool-down of 5 allows 2 bullets in flight.
# `tests/envs/test_jax_minatar.py` fills the board at the highest difficulty and
# checks the counts, and that the game equals itself with 100 rows.
SEAQUEST_ENTITY_CAPACITY = 48


class EnvState(NamedTuple):
  """State of one game.

  Attributes:
    game: gymnax's state of the game.
    last_action: the action applied on the previous step (0 before the first
      step), repeated by sticky actions.
  """

  game: Any
  last_action: jax.Array


class AutoResetStep(NamedTuple):
  """What `JaxMinAtar.step_autoreset` returns.

  Attributes:
    next_obs: the observation the action led to; on a terminal step, the
      terminal observation (what a replay buffer stores as next observation).
    obs: the observation to act on next: `next_obs`, or the first observation
      of the next episode after a terminal step.
    state: the state to step next (the new episode's after a terminal step).
    reward: float32 reward of the step.
    done: whether the step ended the episode (always a game termination: the
      games have no time limit).
  """

  next_obs: jax.Array
  obs: jax.Array
  state: EnvState
  reward: jax.Array
  done: jax.Array


class _Asterix(asterix.MinAsterix):
  """gymnax's Asterix with the official spawning of enemies and treasure."""

  def step_env(self, key, state, action, params):
    spawn_now = state.spawn_timer == 0
    state = state.replace(
      entities=jnp.where(spawn_now, _asterix_spawn(key, state.entities), state.entities),
      spawn_timer=jnp.where(spawn_now, state.spawn_speed, state.spawn_timer),
    )
    state = asterix.step_agent(state, self.action_set[action])
    state, reward, done = asterix.step_entities(state)
    state = asterix.step_timers(state, params)
    state = state.replace(time=state.time + 1, terminal=done)
    info = {'discount': self.discount(state, params)}
    return (self.get_obs(state), state, reward.astype(jnp.float32), done, info)


def _asterix_spawn(key: jax.Array, entities: jax.Array) -> jax.Array:
  """Spawns an entity in a uniformly random free row; none if all are taken.

  Rows of `entities` are gymnax's `[x, y, moves_right, is_gold, present]`.
  """
  key_lr, key_gold, key_slot = jax.random.split(key, 3)
  moves_right = jax.random.bernoulli(key_lr, 0.5)
  is_gold = jax.random.bernoulli(key_gold, 1.0 / 3.0)
  free = entities[:, 4] == 0
  scores = jax.random.uniform(key_slot, free.shape)
  slot = jnp.argmax(jnp.where(free, scores, -1.0))
  entity = jnp.stack(
    [jnp.where(moves_right, 0, OBS_SIZE - 1), slot + 1, moves_right, is_gold, jnp.ones_like(slot)]
  ).astype(entities.dtype)
  return jnp.where(jnp.any(free), entities.at[slot].set(entity), entities)


class _Freeway(freeway.MinFreeway):
  """gymnax's Freeway, ending on the official game's final step."""

  def is_terminated(self, state, params):
    return jnp.asarray(state.time >= FREEWAY_EPISODE_STEPS)


_CAPACITY_LOCK = threading.RLock()


@contextlib.contextmanager
def _entity_capacity(capacity: int) -> Iterator[None]:
  """gymnax's Seaquest sizes its entity buffers by the module constant
  `MAX_ENTITIES`, read when its functions are traced: this sets it for the
  duration of a call and restores it after. The constant is process-wide:
  a lock keeps our Seaquests traced in other threads out meanwhile (a plain
  gymnax Seaquest traced in another thread would still see it)."""
  with _CAPACITY_LOCK:
    saved = seaquest.MAX_ENTITIES, seaquest_helpers.MAX_ENTITIES
    seaquest.MAX_ENTITIES = seaquest_helpers.MAX_ENTITIES = capacity
    try:
      yield
    finally:
      seaquest.MAX_ENTITIES, seaquest_helpers.MAX_ENTITIES = saved


class _Seaquest(seaquest.MinSeaquest):
  """gymnax's Seaquest with the official enemy shots and failed surfacing,
  traced with entity buffers of `capacity` rows (see
  `SEAQUEST_ENTITY_CAPACITY`)."""

  def __init__(self, use_minimal_action_set: bool = True, capacity: int = SEAQUEST_ENTITY_CAPACITY):
    super().__init__(use_minimal_action_set=use_minimal_action_set)
    self.capacity = capacity

  def step_env(self, key, state, action, params):
    with _entity_capacity(self.capacity):
      return super().step_env(key, state, action, params)

  def reset_env(self, key, params):
    with _entity_capacity(self.capacity):
      return super().reset_env(key, params)

  def get_obs(self, state, params=None, key=None):
    with _entity_capacity(self.capacity):
      return super().get_obs(state, params, key)

  def _step_enemy_subs(self, state, params):
    hits_sub = seaquest._hits_sub  # pylint: disable=protected-access
    terminal_before = hits_sub(state.e_subs, state.e_subs_count, state)
    subs, sub_count = seaquest_helpers.move_entities(state.e_subs, state.e_subs_count, state.move_speed)
    terminal_after = hits_sub(subs, sub_count, state)
    # Subs fire before bullets are checked: the official game lets a sub that
    # moves onto a bullet fire on its way out.
    shoots = seaquest_helpers.active_mask(sub_count) & (subs[:, 4] == 0)
    subs = subs.at[:, 4].set(jnp.where(shoots, params.enemy_shot_interval, jnp.maximum(subs[:, 4] - 1, 0)))
    e_bullets, e_bullet_count = seaquest_helpers.append_many(state.e_bullets, state.e_bullet_count, subs[:, :3], shoots)
    f_bullets, f_bullet_count, subs, sub_count, reward = seaquest_helpers.collide_bullets(
      state.f_bullets, state.f_bullet_count, subs, sub_count
    )
    state = state.replace(
      f_bullets=f_bullets,
      f_bullet_count=f_bullet_count,
      e_subs=subs,
      e_subs_count=sub_count,
      e_bullets=e_bullets,
      e_bullet_count=e_bullet_count,
    )
    return state, reward, terminal_before | terminal_after

  def _step_timers(self, state, params):
    next_state, reward, terminal = super()._step_timers(state, params)
    # Surfacing without divers ends the official game as it stands: no new
    # oxygen (the terminal observation shows the gauge), no ramping.
    failed = (state.sub_y == 0) & ~state.surface & (state.diver_count == 0)
    kept = {
      name: jnp.where(failed, getattr(state, name), getattr(next_state, name))
      for name in ('oxygen', 'diver_count', 'surface', 'e_spawn_speed', 'move_speed', 'ramp_index')
    }
    return next_state.replace(**kept), reward, terminal


_GYMNAX_GAMES = {
  'asterix': _Asterix,
  'breakout': breakout.MinBreakout,
  'freeway': _Freeway,
  'seaquest': _Seaquest,
  'space_invaders': space_invaders.MinSpaceInvaders,
}


def check_game(game: str) -> None:
  """Raises `ValueError` naming the supported games if `game` is not one."""
  if game not in GAMES:
    raise ValueError(f'unknown or unsupported JAX MinAtar game {game!r}; supported: {", ".join(GAMES)}')


class JaxMinAtar(jax_env.EqualBySettings):
  """One MinAtar game as pure, jittable and vmappable functions.

  `reset(key) -> (obs, state)` and `step(key, state, action) -> (obs, state,
  reward, done)` follow gymnax's style without its params argument (the
  params are fixed at construction). `step` does not reset; `step_autoreset`
  does, and also returns the terminal observation. Actions are int32 scalars
  in [0, 6), not checked (a jitted function cannot raise on a value).

  Games built with the same settings are equal (`jax_env.EqualBySettings`).
  """

  def __init__(
    self,
    game: str,
    sticky_action_prob: float = STICKY_ACTION_PROB,
    difficulty_ramping: bool = True,
  ):
    """Builds the game.

    Args:
      game: one of `GAMES`.
      sticky_action_prob: probability that the previous action is applied
        instead of the chosen one.
      difficulty_ramping: whether asterix, seaquest and space_invaders speed up
        over an episode (breakout and freeway do not ramp).
    """
    check_game(game)
    if not 0.0 <= sticky_action_prob <= 1.0:
      raise ValueError(f'sticky_action_prob must be in [0, 1], got {sticky_action_prob}')
    self._game = game
    self._sticky_action_prob = float(sticky_action_prob)
    self._difficulty_ramping = bool(difficulty_ramping)
    self._env = _GYMNAX_GAMES[game](use_minimal_action_set=False)
    params = self._env.default_params.replace(max_steps_in_episode=_NO_TIME_LIMIT)
    if hasattr(params, 'ramping'):
      params = params.replace(ramping=self._difficulty_ramping)
    self._params = params
    self._obs_shape = tuple(self._env.obs_shape)
    # Dtypes of the game state's leaves: every state returned is cast to them,
    # so states have one fixed type (as `lax.scan` carries require).
    self._state_template = jax.eval_shape(lambda: _canonical(self._env.reset_env(jax.random.key(0), params)[1]))
    # One function object for `step_autoreset`'s reset branch, so that
    # `lax.cond` outside `jit` reuses its trace instead of tracing each call.
    self._reset_branch = self._reset_after

  def _settings(self) -> tuple[str, float, bool]:
    return self._game, self._sticky_action_prob, self._difficulty_ramping

  @property
  def game(self) -> str:
    return self._game

  @property
  def sticky_action_prob(self) -> float:
    return self._sticky_action_prob

  @property
  def difficulty_ramping(self) -> bool:
    return self._difficulty_ramping

  @property
  def num_actions(self) -> int:
    return NUM_ACTIONS

  @property
  def obs_shape(self) -> tuple[int, int, int]:
    return self._obs_shape  # type: ignore[return-value]

  @property
  def num_channels(self) -> int:
    return self._obs_shape[2]

  @property
  def gymnax_env(self) -> Any:
    """The wrapped gymnax environment (with the fixes of this module)."""
    return self._env

  @property
  def gymnax_params(self) -> Any:
    """The gymnax `EnvParams` in use (no time limit, ramping as set)."""
    return self._params

  def observe(self, state: EnvState) -> jax.Array:
    """The (10, 10, C) uint8 observation of `state`."""
    obs = self._env.get_obs(state.game, self._params)
    return obs.astype(jnp.uint8)

  def _fix_types(self, game_state: Any) -> Any:
    return jax.tree.map(lambda x, t: jax.lax.convert_element_type(x, t.dtype), game_state, self._state_template)

  def reset(
    self,
    key: jax.Array,
    last_action: jax.Array | int = 0,
  ) -> tuple[jax.Array, EnvState]:
    """Starts an episode.

    Args:
      key: PRNG key.
      last_action: the previous action for sticky actions; 0 for a fresh
        environment, the previous episode's last action to continue a stream
        of episodes as the official package does.

    Returns:
      The first observation and the state.
    """
    obs, game_state = self._env.reset_env(key, self._params)
    if self._game == 'space_invaders':
      # Space Invaders keeps its ramping switch in the state, not the params.
      game_state = game_state.replace(ramping=self._difficulty_ramping)
    state = EnvState(game=self._fix_types(game_state), last_action=jnp.asarray(last_action, jnp.int32))
    return obs.astype(jnp.uint8), state

  def step(
    self,
    key: jax.Array,
    state: EnvState,
    action: jax.Array | int,
  ) -> tuple[jax.Array, EnvState, jax.Array, jax.Array]:
    """Applies `action` (or, with sticky actions, the previous one).

    Args:
      key: PRNG key.
      state: the current state, not terminal.
      action: int scalar in [0, 6).

    Returns:
      `(obs, state, reward, done)`: the next observation and state, the
      float32 reward and whether the game ended. There is no reset.
    """
    key_sticky, key_game = jax.random.split(key)
    action = jnp.asarray(action, jnp.int32)
    sticky = jax.random.uniform(key_sticky) < self._sticky_action_prob
    action = jnp.where(sticky, state.last_action, action)
    obs, game_state, reward, done, _ = self._env.step_env(key_game, state.game, action, self._params)
    next_state = EnvState(game=self._fix_types(game_state), last_action=action)
    return (obs.astype(jnp.uint8), next_state, jnp.asarray(reward, jnp.float32), jnp.asarray(done, jnp.bool_))

  def step_autoreset(
    self,
    key: jax.Array,
    state: EnvState,
    action: jax.Array | int,
  ) -> AutoResetStep:
    """`step`, then a reset if the episode ended (see `AutoResetStep`).

    The applied action carries over into the new episode for sticky actions.
    The reset is a `lax.cond` branch, computed only when the episode ended
    (under `vmap` it becomes a select of both).
    """
    key_step, key_reset = jax.random.split(key)
    next_obs, next_state, reward, done = self.step(key_step, state, action)
    obs, state = jax.lax.cond(done, self._reset_branch, _kept, (key_reset, next_obs, next_state))
    return AutoResetStep(next_obs, obs, state, reward, done)

  def _reset_after(self, operands):
    key, _, state = operands
    return self.reset(key, state.last_action)

  def __repr__(self) -> str:
    return (
      f'JaxMinAtar(game={self._game!r}, '
      f'sticky_action_prob={self._sticky_action_prob}, '
      f'difficulty_ramping={self._difficulty_ramping})'
    )


def _kept(operands):
  _, obs, state = operands
  return obs, state


def _canonical(tree: Any) -> Any:
  """Leaves as arrays with their default (not weak) dtypes."""

  def fix(x):
    x = jnp.asarray(x)
    return jax.lax.convert_element_type(x, x.dtype)

  return jax.tree.map(fix, tree)


def make(
  game: str,
  sticky_action_prob: float = STICKY_ACTION_PROB,
  difficulty_ramping: bool = True,
) -> JaxMinAtar:
  """Builds `game` with the official settings unless told otherwise."""
  return JaxMinAtar(game, sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping)


__all__ = [
  'AutoResetStep',
  'EnvState',
  'FREEWAY_EPISODE_STEPS',
  'GAMES',
  'JaxMinAtar',
  'NUM_ACTIONS',
  'STICKY_ACTION_PROB',
  'check_game',
  'make',
]
