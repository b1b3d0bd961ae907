"""A uniform, circular replay buffer for frame-stacked observations (Atari).

It stores each 84x84 frame once and rebuilds the stacks of `stack_size` frames
when sampling, as Dopamine's replay buffer does, instead of storing each
(84, 84, 4) stack (4x the memory) or each (s, s') pair (8x).

Slot i holds the newest frame of observation s_i, its position in its episode
and, once the step from it is taken, (a_i, r_i, discount_i); s_i's stack is
the frames of slots i - stack_size + 1, ..., i, with the frames from before
the episode's first observation replaced by zeros -- the zero padding of
`smoothrl.envs.atari` at an episode start. Its successor s_i' is the stack
ending at slot i + 1. As in `smoothrl.agents.replay.ReplayBuffer`, an episode's
last observation occupies a slot with no transition and the next episode starts
in the slot after it, so no stack or transition straddles two episodes.

Memory: `memory_bytes(capacity)` bytes, i.e. for 1M transitions 7,056,000,000
bytes of frames (1M x 84 x 84) plus 14,000,000 bytes of per-slot arrays
(action, reward, discount, position, validity): 7.07 GB (6.58 GiB). numpy
commits the pages as they are first written.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smoothrl.agents.replay import Transitions

FRAME_SHAPE = (84, 84)
STACK_SIZE = 4

# action (int32), reward (float32), discount (float32), position (uint8),
# validity (bool).
_SLOT_BYTES = 4 + 4 + 4 + 1 + 1

# The arrays `get_state` saves.
_STATE_ARRAYS = ('frames', 'action', 'reward', 'discount', 'history', 'valid')


def memory_bytes(capacity: int, frame_shape: tuple[int, ...] = FRAME_SHAPE) -> int:
  """The bytes a `FrameReplayBuffer(capacity, frame_shape)` allocates."""
  return capacity * (int(np.prod(frame_shape)) + _SLOT_BYTES)


class FrameReplayBuffer:
  """Uniform replay over the last `capacity` observations of frame stacks.

  Usage, as `ReplayBuffer`: `start_episode(obs)` with an episode's first
  observation (a (84, 84, stack_size) stack whose older frames are zeros), then
  `add(action, reward, discount, next_obs)` after each step, and
  `sample(rng, batch_size)` with a `numpy.random.Generator`; sampled `obs` and
  `next_obs` are (batch_size, 84, 84, stack_size) stacks.

  A discount of 0 on a step that does not end the episode (a lost life with
  `terminal_on_life_loss`) stops bootstrapping but keeps the stack going, as
  the environment does.

  With `check_stacks=True`, every added stack is compared with the one the
  buffer would rebuild (for tests and debugging; it costs a copy per step).

  `get_state` and `set_state` save and restore the buffer (checkpoints).
  """

  def __init__(
    self,
    capacity: int,
    frame_shape: tuple[int, ...] = FRAME_SHAPE,
    stack_size: int = STACK_SIZE,
    check_stacks: bool = False,
  ):
    if capacity < stack_size + 1:
      raise ValueError(f'replay capacity must be at least stack_size + 1 = {stack_size + 1}, got {capacity}')
    if not 1 <= stack_size <= 255:
      raise ValueError(f'stack_size must be in [1, 255], got {stack_size}')
    self.capacity = capacity
    self.frame_shape = tuple(frame_shape)
    self.stack_size = stack_size
    self.check_stacks = check_stacks
    self.frames = np.zeros((capacity, *frame_shape), np.uint8)
    self.action = np.zeros(capacity, np.int32)
    self.reward = np.zeros(capacity, np.float32)
    self.discount = np.zeros(capacity, np.float32)
    # Position of the slot's observation in its episode, capped at
    # stack_size - 1: how many earlier slots its stack reads.
    self.history = np.zeros(capacity, np.uint8)
    # Slot i holds a complete transition s_i -> s_{i+1}.
    self.valid = np.zeros(capacity, bool)
    self.head = -1  # slot of the newest observation
    self.written = 0  # slots ever written, capped at capacity
    self.num_valid = 0

  @property
  def obs_shape(self) -> tuple[int, ...]:
    return (*self.frame_shape, self.stack_size)

  def _check_shape(self, obs: np.ndarray) -> None:
    if obs.shape != self.obs_shape:
      raise ValueError(f'expected an observation of shape {self.obs_shape}, got {obs.shape}')

  def _write(self, obs: np.ndarray, history: int) -> None:
    self.head = (self.head + 1) % self.capacity
    if self.valid[self.head]:
      self.valid[self.head] = False
      self.num_valid -= 1
    self.frames[self.head] = obs[..., -1]
    self.history[self.head] = history
    self.written = min(self.written + 1, self.capacity)
    if self.check_stacks:
      rebuilt = self._stacks(np.array([self.head]))[0]
      if not np.array_equal(rebuilt, obs):
        raise ValueError(
          'the added stack differs from the one rebuilt from the stored '
          'frames: stacks must shift by one frame per step and be '
          'zero-padded at an episode start'
        )

  def start_episode(self, obs: np.ndarray) -> None:
    """Writes an episode's first observation in a fresh slot."""
    obs = np.asarray(obs)
    self._check_shape(obs)
    if obs[..., :-1].any():
      raise ValueError(
        'the first observation of an episode must be zero-padded: its frames before the newest must be zeros'
      )
    self._write(obs, 0)

  def add(self, action: int, reward: float, discount: float, next_obs: np.ndarray) -> None:
    """Completes the transition from the newest observation and writes s'."""
    if self.head < 0:
      raise RuntimeError('call start_episode before add')
    next_obs = np.asarray(next_obs)
    self._check_shape(next_obs)
    slot = self.head
    self.action[slot] = action
    self.reward[slot] = reward
    self.discount[slot] = discount
    self._write(next_obs, min(int(self.history[slot]) + 1, self.stack_size - 1))
    # The successor's write may have wrapped onto the oldest slot; `slot`
    # itself is now complete.
    self.valid[slot] = True
    self.num_valid += 1

  def _sampleable(self, indices: np.ndarray) -> np.ndarray:
    """Valid transitions whose stack's earlier slots are not overwritten."""
    # Rank from the oldest slot: slot i's stack reads slots i - history[i]..i,
    # which are intact iff none of them wrapped past the oldest slot.
    age = (indices - self.head - 1) % self.capacity
    return self.valid[indices] & (self.history[indices] <= age)

  def __len__(self) -> int:
    """The number of transitions that can be sampled."""
    if self.written < self.capacity:
      return self.num_valid
    oldest = (self.head + 1 + np.arange(self.stack_size - 1)) % self.capacity
    broken = self.valid[oldest] & ~self._sampleable(oldest)
    return self.num_valid - int(broken.sum())

  def _stacks(self, indices: np.ndarray, extra: int = 0) -> np.ndarray:
    """The stacks ending at `indices` + `extra`, zero before the episode start.

    With `extra` = 1 the result has stack_size + 1 frames, ending at the slots
    after `indices`: [..., :-1] are the stacks of `indices` and [..., 1:] their
    successors', which share all but one frame.
    """
    size = self.stack_size + extra
    out = np.empty((len(indices), *self.frame_shape, size), np.uint8)
    history = self.history[indices]
    for k in range(size):
      back = size - 1 - k - extra  # frame k is slot indices - back
      src = (indices - back) % self.capacity
      keep = history >= back
      if keep.all():
        out[..., k] = self.frames[src]
      else:
        out[..., k] = 0
        out[keep, ..., k] = self.frames[src[keep]]
    return out

  def sample_indices(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
    """Draws `batch_size` sampleable slots uniformly, with replacement."""
    if len(self) == 0:
      raise RuntimeError('cannot sample from a replay buffer with no complete transition')
    indices = rng.integers(0, self.written, batch_size)
    bad = ~self._sampleable(indices)
    while bad.any():
      indices[bad] = rng.integers(0, self.written, int(bad.sum()))
      bad = ~self._sampleable(indices)
    return indices

  def gather(self, indices: np.ndarray) -> Transitions:
    """The transitions from the observations in slots `indices`.

    `obs` and `next_obs` are views of one (B, 84, 84, stack_size + 1) array.
    """
    indices = np.asarray(indices)
    frames = self._stacks(indices, extra=1)
    return Transitions(
      frames[..., :-1], self.action[indices], self.reward[indices], self.discount[indices], frames[..., 1:]
    )

  def sample(self, rng: np.random.Generator, batch_size: int) -> Transitions:
    """Draws `batch_size` transitions uniformly, with replacement."""
    return self.gather(self.sample_indices(rng, batch_size))

  def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The buffer as (arrays, JSON-able metadata), for `set_state`.

    The arrays are the buffer's own, not copies (the frames of 1M
    transitions are 7 GB): save them before the buffer next changes.
    """
    arrays = {name: getattr(self, name) for name in _STATE_ARRAYS}
    meta = {
      'capacity': self.capacity,
      'frame_shape': list(self.frame_shape),
      'stack_size': self.stack_size,
      'head': self.head,
      'written': self.written,
      'num_valid': self.num_valid,
    }
    return arrays, meta

  def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Restores a state of `get_state` into a buffer of the same capacity,
    frame shape and stack size, copying its arrays into the buffer's.

    Raises:
      ValueError: the state is of a buffer of other settings, or its arrays
        do not fit.
    """
    settings = (self.capacity, list(self.frame_shape), self.stack_size)
    saved = (meta['capacity'], list(meta['frame_shape']), meta['stack_size'])
    if saved != settings:
      raise ValueError(
        f'a saved replay of (capacity, frame shape, stack size) {saved} cannot be restored into one of {settings}'
      )
    for name in _STATE_ARRAYS:
      x, y = arrays.get(name), getattr(self, name)
      if x is None or (x.shape, x.dtype) != (y.shape, y.dtype):
        got = 'missing' if x is None else f'{x.dtype}{list(x.shape)}'
        raise ValueError(f"the saved replay's {name} is {got}, this buffer holds {y.dtype}{list(y.shape)}")
    for name in _STATE_ARRAYS:
      np.copyto(getattr(self, name), arrays[name])
    self.head = int(meta['head'])
    self.written = int(meta['written'])
    self.num_valid = int(meta['num_valid'])
