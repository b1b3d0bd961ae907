"""A small deterministic chain MDP with a known optimal return, for tests."""

from __future__ import annotations

from typing import Any

import dm_env
import numpy as np
from dm_env import specs

LEFT = 0
RIGHT = 1
NUM_ACTIONS = 2

_ZERO = np.float32(0.0)
_ONE = np.float32(1.0)


def _to_action(action: Any) -> int:
  arr = np.asarray(action)
  if arr.ndim != 0 or arr.dtype.kind not in 'iu':
    raise ValueError(f'action must be an integer scalar, got {action!r}')
  a = int(arr)
  if not 0 <= a < NUM_ACTIONS:
    raise ValueError(f'action must be in [0, {NUM_ACTIONS}), got {a}')
  return a


class ChainEnv(dm_env.Environment):
  """A chain of `n` states 0..n-1 with actions 0 (left) and 1 (right).

  Episodes start in state 0. Moving left from state 0 stays there. Moving
  right from state n-1 ends the episode with reward 1 (discount 0); every
  other step has reward 0. Episodes reaching `max_episode_steps` steps end
  with `dm_env.truncation` (discount 1).

  The optimal policy (always right) gets return 1 in `n` steps, so the
  discounted value of the start state is `gamma ** (n - 1)`.

  The observation is a one-hot float32 vector of the state, of shape (n,), or
  with `image=True` a one-hot float32 image of shape (1, n, 1) for conv
  networks.

  `get_state()` and `set_state()` save and restore the position and counters
  (checkpoints).
  """

  def __init__(
    self,
    n: int = 5,
    max_episode_steps: int | None = None,
    image: bool = False,
  ):
    """Builds the chain.

    Args:
      n: number of states, at least 1.
      max_episode_steps: truncation limit; `None` means `4 * n`.
      image: whether observations are (1, n, 1) images instead of (n,)
        vectors.
    """
    if n < 1:
      raise ValueError(f'n must be at least 1, got {n}')
    if max_episode_steps is None:
      max_episode_steps = 4 * n
    if max_episode_steps < 1:
      raise ValueError(f'max_episode_steps must be positive, got {max_episode_steps}')
    self._n = n
    self._max_episode_steps = max_episode_steps
    self._image = image
    self._obs_shape = (1, n, 1) if image else (n,)
    self._state = 0
    self._episode_steps = 0
    self._needs_reset = True

  @property
  def n(self) -> int:
    return self._n

  @property
  def max_episode_steps(self) -> int:
    return self._max_episode_steps

  @property
  def state(self) -> int:
    """The current position on the chain."""
    return self._state

  def optimal_return(self, gamma: float = 1.0) -> float:
    """Discounted return of the optimal policy from the start state."""
    return float(gamma ** (self._n - 1))

  def _observation(self) -> np.ndarray:
    obs = np.zeros((self._n,), np.float32)
    obs[self._state] = 1.0
    return obs.reshape(self._obs_shape)

  def reset(self) -> dm_env.TimeStep:
    self._state = 0
    self._episode_steps = 0
    self._needs_reset = False
    return dm_env.restart(self._observation())

  def step(self, action: Any) -> dm_env.TimeStep:
    if self._needs_reset:
      return self.reset()
    a = _to_action(action)
    self._episode_steps += 1
    if a == RIGHT and self._state == self._n - 1:
      self._needs_reset = True
      # `dm_env.termination` with the discount typed as in `discount_spec`.
      return dm_env.TimeStep(dm_env.StepType.LAST, _ONE, _ZERO, self._observation())
    if a == RIGHT:
      self._state += 1
    else:
      self._state = max(self._state - 1, 0)
    obs = self._observation()
    if self._episode_steps >= self._max_episode_steps:
      self._needs_reset = True
      return dm_env.truncation(_ZERO, obs, discount=_ONE)
    return dm_env.transition(_ZERO, obs, discount=_ONE)

  def _settings(self) -> dict[str, Any]:
    return {'n': self._n, 'max_episode_steps': self._max_episode_steps, 'image': self._image}

  def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The environment's state as (arrays, JSON-able metadata): no arrays;
    the position, the episode's steps and whether a reset is due."""
    return {}, {
      'settings': self._settings(),
      'state': self._state,
      'episode_steps': self._episode_steps,
      'needs_reset': self._needs_reset,
    }

  def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Restores a state of `get_state` into a chain of the same settings.

    Raises:
      ValueError: the state is of a chain with other settings.
    """
    del arrays  # none
    if meta['settings'] != self._settings():
      raise ValueError(f'a saved state of ChainEnv({meta["settings"]}) cannot be restored into {self!r}')
    self._state = int(meta['state'])
    self._episode_steps = int(meta['episode_steps'])
    self._needs_reset = bool(meta['needs_reset'])

  def observation_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray(shape=self._obs_shape, dtype=np.float32, minimum=0.0, maximum=1.0, name='observation')

  def action_spec(self) -> specs.DiscreteArray:
    return specs.DiscreteArray(num_values=NUM_ACTIONS, dtype=np.int32, name='action')

  def reward_spec(self) -> specs.Array:
    return specs.Array(shape=(), dtype=np.float32, name='reward')

  def discount_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray(shape=(), dtype=np.float32, minimum=0.0, maximum=1.0, name='discount')

  def __repr__(self) -> str:
    return f'ChainEnv(n={self._n}, max_episode_steps={self._max_episode_steps}, image={self._image})'
