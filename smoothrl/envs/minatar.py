"""A `dm_env` wrapper around the official MinAtar package.

The wrapper keeps the official protocol settings by default: sticky actions
with probability 0.1, difficulty ramping on, and the full set of 6 actions for
every game (not the per-game minimal action set).
"""

from __future__ import annotations

import importlib
from typing import Any

import dm_env
from dm_env import specs
import numpy as np

GAMES = ('asterix', 'breakout', 'freeway', 'seaquest', 'space_invaders')
NUM_ACTIONS = 6
OBS_SIZE = 10

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


def _import_minatar() -> Any:
  # Imported on first use: the package loads matplotlib and seaborn at import
  # time, which costs seconds and is not needed to parse environment names.
  return importlib.import_module('minatar')


def check_game(game: str) -> None:
  """Raises `ValueError` listing the valid games if `game` is not one."""
  if game not in GAMES:
    raise ValueError(
        f'unknown MinAtar game {game!r}; valid: {", ".join(GAMES)}')


def validate_action(action: Any, num_actions: int) -> int:
  """Returns `action` as a Python int, or raises if it is not in [0, n)."""
  arr = np.asarray(action)
  if arr.ndim != 0 or arr.dtype.kind not in 'iu':
    raise ValueError(
        f'action must be an integer scalar, got {action!r} '
        f'(dtype {arr.dtype}, shape {arr.shape})')
  a = int(arr)
  if not 0 <= a < num_actions:
    raise ValueError(f'action must be in [0, {num_actions}), got {a}')
  return a


class MinAtarEnv(dm_env.Environment):
  """One MinAtar game as a `dm_env.Environment`.

  Observations are (10, 10, C) `uint8` arrays holding 0/1: the official state
  is a `bool` array, converted so that replay buffers store one byte per cell
  and networks can cast it to float directly. Channel counts are asterix 4,
  breakout 4, freeway 7, seaquest 10, space_invaders 6.

  MinAtar games have no time limit; with `max_episode_steps` set, an episode
  reaching that many steps ends with `dm_env.truncation` (discount 1). A game
  termination on the same step takes precedence (discount 0).

  As in the official package, one `numpy` random state (seeded once here)
  drives both the game and the sticky actions, and the last action used for
  sticky actions carries over episode boundaries.
  """

  def __init__(
      self,
      game: str,
      seed: int = 0,
      sticky_action_prob: float = 0.1,
      difficulty_ramping: bool = True,
      max_episode_steps: int | None = None,
  ):
    """Builds and seeds the game.

    Args:
      game: one of `GAMES`.
      seed: seed of the game's random state (game dynamics and sticky actions).
      sticky_action_prob: probability that the previous action is repeated
        instead of the chosen one.
      difficulty_ramping: whether the game speeds up over an episode (no
        effect on breakout and freeway, which do not ramp).
      max_episode_steps: if given, episodes are truncated after this many
        steps.
    """
    check_game(game)
    if not 0.0 <= sticky_action_prob <= 1.0:
      raise ValueError(
          f'sticky_action_prob must be in [0, 1], got {sticky_action_prob}')
    if max_episode_steps is not None and max_episode_steps < 1:
      raise ValueError(
          f'max_episode_steps must be positive, got {max_episode_steps}')
    self._game = game
    self._seed = seed
    self._sticky_action_prob = sticky_action_prob
    self._difficulty_ramping = difficulty_ramping
    self._max_episode_steps = max_episode_steps
    self._env = _import_minatar().Environment(
        game,
        sticky_action_prob=sticky_action_prob,
        difficulty_ramping=difficulty_ramping)
    self._env.seed(seed)
    self._obs_shape = tuple(self._env.state_shape())
    self._episode_steps = 0
    self._needs_reset = True

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
  def max_episode_steps(self) -> int | None:
    return self._max_episode_steps

  @property
  def num_channels(self) -> int:
    return self._obs_shape[2]

  @property
  def raw_env(self) -> Any:
    """The wrapped `minatar.Environment`."""
    return self._env

  def minimal_action_set(self) -> list[int]:
    """The game's minimal action set, as indices into the 6 actions."""
    return list(self._env.minimal_action_set())

  def _observation(self) -> np.ndarray:
    return self._env.state().astype(np.uint8)

  def reset(self) -> dm_env.TimeStep:
    self._env.reset()
    self._episode_steps = 0
    self._needs_reset = False
    return dm_env.restart(self._observation())

  def step(self, action: Any) -> dm_env.TimeStep:
    if self._needs_reset:
      return self.reset()
    a = validate_action(action, NUM_ACTIONS)
    reward, terminal = self._env.act(a)
    self._episode_steps += 1
    obs = self._observation()
    reward = np.float32(reward)
    if terminal:
      self._needs_reset = True
      # `dm_env.termination` with the discount typed as in `discount_spec`.
      return dm_env.TimeStep(dm_env.StepType.LAST, reward, _ZERO, obs)
    if (self._max_episode_steps is not None
        and self._episode_steps >= self._max_episode_steps):
      self._needs_reset = True
      return dm_env.truncation(reward, obs, discount=_ONE)
    return dm_env.transition(reward, obs, discount=_ONE)

  def observation_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray(
        shape=self._obs_shape, dtype=np.uint8, minimum=0, maximum=1,
        name='observation')

  def action_spec(self) -> specs.DiscreteArray:
    return specs.DiscreteArray(
        num_values=NUM_ACTIONS, dtype=np.int32, name='action')

  def reward_spec(self) -> specs.Array:
    return specs.Array(shape=(), dtype=np.float32, name='reward')

  def discount_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray(
        shape=(), dtype=np.float32, minimum=0.0, maximum=1.0,
        name='discount')

  def __repr__(self) -> str:
    return (f'MinAtarEnv(game={self._game!r}, seed={self._seed}, '
            f'sticky_action_prob={self._sticky_action_prob}, '
            f'difficulty_ramping={self._difficulty_ramping}, '
            f'max_episode_steps={self._max_episode_steps})')
