"""The chain MDP of `chain.py` as a pure-functional JAX environment, for testing compiled training loops."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from smoothrl.envs import jax_env


class ChainState(NamedTuple):
  position: jax.Array
  time: jax.Array


class JaxChain(jax_env.EqualBySettings):
  """n states, actions 0 (left) and 1 (right); stepping right from the last state ends the episode with reward 1.

  Episodes are truncated after `max_episode_steps` (default 4 n) steps; a truncation is reported as `done` with
  the episode's true successor observation. Observations are one-hot float32 vectors. Chains of the same
  length and limit are equal (`jax_env.EqualBySettings`).
  """

  num_actions = 2

  def __init__(self, n: int = 5, max_episode_steps: int | None = None):
    if n < 1:
      raise ValueError(f'a chain needs at least one state, got n={n}')
    self.n = n
    self.max_episode_steps = max_episode_steps or 4 * n
    self.obs_shape = (n,)

  def _settings(self) -> tuple[int, int]:
    return self.n, self.max_episode_steps

  def _obs(self, position: jax.Array) -> jax.Array:
    return jax.nn.one_hot(position, self.n, dtype=jnp.float32)

  def reset(self, key: jax.Array) -> tuple[jax.Array, ChainState]:
    del key  # the chain always starts at state 0
    state = ChainState(jnp.int32(0), jnp.int32(0))
    return self._obs(state.position), state

  def step(self, key: jax.Array, state: ChainState, action: jax.Array):
    """-> (obs, state, reward, terminal, truncated)."""
    del key
    goal = (state.position == self.n - 1) & (action == 1)
    position = jnp.clip(state.position + jnp.where(action == 1, 1, -1), 0, self.n - 1)
    time = state.time + 1
    truncated = (time >= self.max_episode_steps) & ~goal
    return self._obs(position), ChainState(position, time), goal.astype(jnp.float32), goal, truncated

  def step_autoreset(self, key: jax.Array, state: ChainState, action: jax.Array):
    """-> (next_obs, obs_after_reset, state, reward, terminal, truncated); either one starts a new episode."""
    next_obs, state, reward, terminal, truncated = self.step(key, state, action)
    reset_obs, reset_state = self.reset(key)
    end = terminal | truncated
    state = jax.tree.map(lambda r, s: jnp.where(end, r, s), reset_state, state)
    return next_obs, jnp.where(end, reset_obs, next_obs), state, reward, terminal, truncated
