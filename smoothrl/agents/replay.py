"""A uniform, circular replay buffer that stores each observation once.

Slot i holds the observation s_i and, once the step from it is taken, (a_i, r_i, discount_i); its successor s_i'
is the observation in slot i + 1. An episode's last observation occupies a slot with no transition, and the next
episode starts in the slot after it, so no sampled transition straddles two episodes. Sampling draws uniformly
among the slots whose transition is complete.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Transitions(NamedTuple):
  obs: np.ndarray
  action: np.ndarray
  reward: np.ndarray
  discount: np.ndarray
  next_obs: np.ndarray


class ReplayBuffer:
  """Uniform replay over the last `capacity` observations (about `capacity` transitions).

  Usage: `start_episode(obs)` with an episode's first observation, then `add(action, reward, discount, next_obs)`
  after each step. Sampling needs a `numpy.random.Generator`.
  """

  def __init__(self, capacity: int, obs_shape: tuple[int, ...], obs_dtype=np.uint8):
    if capacity < 2:
      raise ValueError(f'replay capacity must be at least 2, got {capacity}')
    self.capacity = capacity
    self.obs = np.zeros((capacity, *obs_shape), obs_dtype)
    self.action = np.zeros(capacity, np.int32)
    self.reward = np.zeros(capacity, np.float32)
    self.discount = np.zeros(capacity, np.float32)
    self.valid = np.zeros(capacity, bool)  # slot i holds a complete transition s_i -> s_{i+1}
    self.head = -1  # slot of the newest observation
    self.written = 0  # slots ever written, capped at capacity
    self.num_valid = 0

  def __len__(self) -> int:
    """The number of transitions that can be sampled."""
    return self.num_valid

  def _write_obs(self, obs: np.ndarray) -> None:
    self.head = (self.head + 1) % self.capacity
    if self.valid[self.head]:
      self.valid[self.head] = False
      self.num_valid -= 1
    self.obs[self.head] = obs
    self.written = min(self.written + 1, self.capacity)

  def start_episode(self, obs: np.ndarray) -> None:
    """Writes an episode's first observation in a fresh slot."""
    self._write_obs(obs)

  def add(self, action: int, reward: float, discount: float, next_obs: np.ndarray) -> None:
    """Completes the transition from the newest observation and writes its successor."""
    if self.head < 0:
      raise RuntimeError('call start_episode before add')
    slot = self.head
    self.action[slot], self.reward[slot], self.discount[slot] = action, reward, discount
    self._write_obs(next_obs)
    # The successor's write may have wrapped onto the oldest slot; `slot` itself is now complete.
    self.valid[slot] = True
    self.num_valid += 1

  def sample(self, rng: np.random.Generator, batch_size: int) -> Transitions:
    """Draws `batch_size` complete transitions uniformly, with replacement."""
    if self.num_valid == 0:
      raise RuntimeError('cannot sample from a replay buffer with no complete transition')
    indices = rng.integers(0, self.written, batch_size)
    bad = ~self.valid[indices]
    while bad.any():
      indices[bad] = rng.integers(0, self.written, int(bad.sum()))
      bad = ~self.valid[indices]
    nxt = (indices + 1) % self.capacity
    return Transitions(
      self.obs[indices], self.action[indices], self.reward[indices], self.discount[indices], self.obs[nxt]
    )
