"""A `dm_env` wrapper around the official MinAtar package.

The wrapper keeps the official protocol settings by default: sticky actions
with probability 0.1, difficulty ramping on, and the full set of 6 actions for
every game (not the per-game minimal action set).
"""

from __future__ import annotations

import importlib
from typing import Any

import dm_env
import numpy as np
from dm_env import specs

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
    raise ValueError(f'unknown MinAtar game {game!r}; valid: {", ".join(GAMES)}')


def validate_action(action: Any, num_actions: int) -> int:
  """Returns `action` as a Python int, or raises if it is not in [0, n)."""
  arr = np.asarray(action)
  if arr.ndim != 0 or arr.dtype.kind not in 'iu':
    raise ValueError(f'action must be an integer scalar, got {action!r} (dtype {arr.dtype}, shape {arr.shape})')
  a = int(arr)
  if not 0 <= a < num_actions:
    raise ValueError(f'action must be in [0, {num_actions}), got {a}')
  return a


# A saved game value is JSON: None, bools, ints, floats, strings and lists as
# themselves; tuples, dicts, numpy scalars and arrays as one-key objects.


def _encode(value: Any, name: str, arrays: dict[str, np.ndarray], seen: dict[int, str]) -> Any:
  """`value` as JSON, its numpy arrays copied into `arrays` under names from `name`.

  Raises:
    TypeError: `value` holds a type that this cannot save exactly, or a list, dict or array that `seen` (id ->
      name of the mutable values saved so far) already holds: one object in two places would come back as two.
  """
  if isinstance(value, np.generic):  # before the builtins: np.float64 is a float, and would lose its type
    if value.dtype.kind not in 'biuf' or value.dtype.itemsize > 8:
      raise TypeError(f'cannot save the MinAtar game: {name} is a numpy {value.dtype} scalar')
    return {'scalar': [value.dtype.str, value.item()]}
  if value is None or type(value) in (bool, int, float, str):
    return value
  if type(value) in (list, dict, np.ndarray):
    if id(value) in seen:
      raise TypeError(
        f'cannot save the MinAtar game: {name} and {seen[id(value)]} are one object, which would come back as two'
      )
    seen[id(value)] = name
  if type(value) is list:
    return [_encode(v, f'{name}.{i}', arrays, seen) for i, v in enumerate(value)]
  if type(value) is tuple:
    return {'tuple': [_encode(v, f'{name}.{i}', arrays, seen) for i, v in enumerate(value)]}
  if type(value) is dict and all(isinstance(k, str) for k in value):
    return {'dict': {k: _encode(v, f'{name}.{k}', arrays, seen) for k, v in value.items()}}
  if type(value) is np.ndarray and not value.dtype.hasobject:
    arrays[name] = value.copy()
    return {'array': name}
  raise TypeError(
    f'cannot save the MinAtar game: {name} is a {type(value).__module__}.{type(value).__qualname__}, '
    'which get_state does not know how to save exactly'
  )


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
  """The value that `_encode` saved as `value`."""
  if isinstance(value, list):
    return [_decode(v, arrays) for v in value]
  if not isinstance(value, dict):
    return value
  if len(value) != 1:
    raise ValueError(f'not a saved MinAtar value: {value!r}')
  kind, inner = next(iter(value.items()))
  if kind == 'tuple':
    return tuple(_decode(v, arrays) for v in inner)
  if kind == 'dict':
    return {k: _decode(v, arrays) for k, v in inner.items()}
  if kind == 'array':
    return np.array(arrays[inner])
  if kind == 'scalar':
    dtype, item = inner
    return np.dtype(dtype).type(item)
  raise ValueError(f'not a saved MinAtar value: {value!r}')


def _random_state(random: np.random.RandomState, name: str, arrays: dict[str, np.ndarray]) -> list[Any]:
  """A `RandomState`'s state: its key into `arrays[name]`, the rest (generator, position, Gaussian cache) as JSON."""
  generator, key, pos, has_gauss, cached_gaussian = random.get_state()
  arrays[name] = np.array(key)
  return [generator, int(pos), int(has_gauss), float(cached_gaussian)]


def _set_random_state(random: np.random.RandomState, saved: list[Any], key: np.ndarray) -> None:
  generator, pos, has_gauss, cached_gaussian = saved
  random.set_state((generator, np.asarray(key, np.uint32), pos, has_gauss, cached_gaussian))


# The official `Environment`'s fields saved apart from the others: its game and
# its random state.
_SAVED_APART = ('env', 'random')


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

  `get_state()` and `set_state()` save and restore the game, its random state
  and the wrapper's counters as arrays and JSON, without pickle (checkpoints).
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
      raise ValueError(f'sticky_action_prob must be in [0, 1], got {sticky_action_prob}')
    if max_episode_steps is not None and max_episode_steps < 1:
      raise ValueError(f'max_episode_steps must be positive, got {max_episode_steps}')
    self._game = game
    self._seed = seed
    self._sticky_action_prob = sticky_action_prob
    self._difficulty_ramping = difficulty_ramping
    self._max_episode_steps = max_episode_steps
    self._env = _import_minatar().Environment(
      game, sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping
    )
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
    if self._max_episode_steps is not None and self._episode_steps >= self._max_episode_steps:
      self._needs_reset = True
      return dm_env.truncation(reward, obs, discount=_ONE)
    return dm_env.transition(reward, obs, discount=_ONE)

  def _settings(self) -> dict[str, Any]:
    return {
      'game': self._game,
      'seed': self._seed,
      'sticky_action_prob': self._sticky_action_prob,
      'difficulty_ramping': self._difficulty_ramping,
      'max_episode_steps': self._max_episode_steps,
    }

  def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The environment's state as (arrays, JSON-able metadata), for `set_state`.

    Saves the official game field by field (ints, bools, floats, strings, lists, tuples, dicts, numpy scalars and
    arrays), its `RandomState` (the key as an array), the official wrapper's fields (the last action of sticky
    actions) and this wrapper's counters.

    Raises:
      TypeError: a game field holds a type that cannot be saved exactly (another version of `minatar`).
    """
    outer, game = self._env, self._env.env
    arrays: dict[str, np.ndarray] = {}
    seen: dict[int, str] = {}
    meta: dict[str, Any] = {
      'settings': self._settings(),
      'episode_steps': self._episode_steps,
      'needs_reset': self._needs_reset,
      'random': _random_state(outer.random, 'random', arrays),
      # One random state drives the game and the sticky actions once seeded.
      'game_random': None if game.random is outer.random else _random_state(game.random, 'game.random', arrays),
      'environment': {
        k: _encode(v, f'environment.{k}', arrays, seen) for k, v in vars(outer).items() if k not in _SAVED_APART
      },
      'game': {k: _encode(v, f'game.{k}', arrays, seen) for k, v in vars(game).items() if k != 'random'},
    }
    return arrays, meta

  def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Restores a state of `get_state` into this environment, built with the same settings.

    Raises:
      ValueError: the state is of an environment with other settings, or of another version of `minatar` (its
        game has other fields).
    """
    if meta['settings'] != self._settings():
      raise ValueError(f'a saved state of MinAtarEnv({meta["settings"]}) cannot be restored into {self!r}')
    outer, game = self._env, self._env.env
    for what, obj, saved, apart in (
      ('Environment', outer, meta['environment'], _SAVED_APART),
      (type(game).__module__ + '.Env', game, meta['game'], ('random',)),
    ):
      fields = {k for k in vars(obj) if k not in apart}
      if set(saved) != fields:
        raise ValueError(
          f'the saved {what} has the fields {sorted(saved)}, this one {sorted(fields)}: a state '
          'saved with another version of minatar'
        )
    if (meta['game_random'] is None) != (game.random is outer.random):
      raise ValueError("the saved game and this one differ in whether the game shares the sticky actions' random state")
    _set_random_state(outer.random, meta['random'], arrays['random'])
    if meta['game_random'] is not None:
      _set_random_state(game.random, meta['game_random'], arrays['game.random'])
    for obj, saved in ((outer, meta['environment']), (game, meta['game'])):
      for k, v in saved.items():
        setattr(obj, k, _decode(v, arrays))
    self._episode_steps = meta['episode_steps']
    self._needs_reset = meta['needs_reset']

  def observation_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray(shape=self._obs_shape, dtype=np.uint8, minimum=0, maximum=1, name='observation')

  def action_spec(self) -> specs.DiscreteArray:
    return specs.DiscreteArray(num_values=NUM_ACTIONS, dtype=np.int32, name='action')

  def reward_spec(self) -> specs.Array:
    return specs.Array(shape=(), dtype=np.float32, name='reward')

  def discount_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray(shape=(), dtype=np.float32, minimum=0.0, maximum=1.0, name='discount')

  def __repr__(self) -> str:
    return (
      f'MinAtarEnv(game={self._game!r}, seed={self._seed}, '
      f'sticky_action_prob={self._sticky_action_prob}, '
      f'difficulty_ramping={self._difficulty_ramping}, '
      f'max_episode_steps={self._max_episode_steps})'
    )
