"""JAX-native environments: the functional interface the compiled runner scans, and a dm_env view of it.

`make(name)` gives the JAX-native version of a config's environment (`minatar/<game>`, `jax-minatar/<game>`,
`chain/<n>`). `DmEnv` presents one to the host runner, drawing its randomness the way the compiled runner does
(`smoothrl.keys`), so that a host run on `jax-minatar/<game>` and a compiled run of the same seed take the same
learner updates.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import dm_env
from dm_env import specs
import jax
import jax.numpy as jnp
import numpy as np

from smoothrl import keys

# The environment families `make` knows.
FAMILIES = ('minatar', 'jax-minatar', 'chain')


class JaxEnv(Protocol):
  """A pure-functional environment (gymnax style)."""
  num_actions: int
  obs_shape: tuple[int, ...]

  def reset(self, key: jax.Array) -> tuple[jax.Array, Any]:
    ...

  def step_autoreset(self, key: jax.Array, state: Any, action: jax.Array):
    """-> (next_obs, obs_after_reset, state, reward, terminal, truncated).

    `next_obs` is the true successor (for replay); `obs_after_reset` is where acting continues, the first
    observation of a new episode when the step terminated or truncated one.
    """
    ...


class EqualBySettings:
  """Equality and hash from `_settings()`: environments built alike are equal, so a jitted function that takes
  one as a static argument compiles once for all of them."""

  def _settings(self) -> tuple[Any, ...]:
    raise NotImplementedError

  def __eq__(self, other: object) -> bool:
    return type(other) is type(self) and other._settings() == self._settings()  # type: ignore[attr-defined]

  def __hash__(self) -> int:
    return hash((type(self), self._settings()))


class NoTruncation(EqualBySettings):
  """Presents an environment whose episodes only terminate (MinAtar has no time limit) as a `JaxEnv`."""

  def __init__(self, env: Any):
    self.env, self.num_actions, self.obs_shape = env, env.num_actions, env.obs_shape

  def _settings(self) -> tuple[Any, ...]:
    return (self.env,)

  def reset(self, key: jax.Array):
    return self.env.reset(key)

  def step_autoreset(self, key: jax.Array, state: Any, action: jax.Array):
    next_obs, obs, state, reward, done = self.env.step_autoreset(key, state, action)
    return next_obs, obs, state, reward, done, jnp.zeros_like(done)


def make(name: str) -> JaxEnv:
  """The JAX-native environment of a config's `env` name; `ValueError` for names without one.

  The same name gives equal environments, which jitted functions may take as a static argument.
  """
  family, _, rest = name.partition('/')
  if family == 'chain':
    from smoothrl.envs.jax_chain import JaxChain  # pylint: disable=g-import-not-at-top
    return JaxChain(int(rest))
  if family in ('minatar', 'jax-minatar'):
    from smoothrl.envs import jax_minatar  # pylint: disable=g-import-not-at-top
    return NoTruncation(jax_minatar.make(rest))
  raise ValueError(f'{name!r} has no JAX-native version; there is one for ' +
                   ', '.join(f'{f}/<{"n" if f == "chain" else "game"}>' for f in FAMILIES))


# An environment is a static argument: equal environments (same game and settings) share one compiled program.
@functools.partial(jax.jit, static_argnums=0)
def _reset(env: JaxEnv, key: jax.Array):
  return env.reset(key)


@functools.partial(jax.jit, static_argnums=0)
def _step(env: JaxEnv, key: jax.Array, state: Any, action: jax.Array):
  return env.step_autoreset(key, state, action)


class DmEnv(dm_env.Environment):
  """A `JaxEnv` behind the dm_env interface, its randomness drawn from `key` as the compiled runner draws it.

  The first episode starts with `keys.at(key, 0)` and the environment's step t (counting every step of every
  episode) uses `keys.at(key, t + 1)`; an episode that follows a finished one is the reset that `step_autoreset`
  made at the end of it. A `reset()` that abandons an unfinished episode starts the next one with
  `keys.at(keys.at(key, 0), n)`, n counting such resets. Observations are numpy arrays. Instances of equal
  environments (see `make`) share one compiled reset and step.
  """

  def __init__(self, env: JaxEnv, key: jax.Array):
    self._env, self._key = env, key
    self._steps, self._abandoned = 0, 0
    self._state: Any = None
    self._next: tuple[jax.Array, Any] | None = None  # the episode an autoreset started, for the next reset()
    obs = jax.eval_shape(env.reset, key)[0]
    self._obs_spec = specs.Array(obs.shape, obs.dtype, 'observation')

  def reset(self) -> dm_env.TimeStep:
    if self._next is not None:
      obs, self._state = self._next
      self._next = None
    else:
      if self._state is None:
        key = keys.at(self._key, 0)
      else:
        self._abandoned += 1
        key = keys.at(keys.at(self._key, 0), self._abandoned)
      obs, self._state = _reset(self._env, key)
    return dm_env.restart(np.asarray(obs))

  def step(self, action: int) -> dm_env.TimeStep:
    if self._state is None or self._next is not None:
      return self.reset()
    key = keys.at(self._key, self._steps + 1)
    self._steps += 1
    next_obs, obs, state, reward, terminal, truncated = _step(self._env, key, self._state, jnp.int32(action))
    next_obs, reward, terminal, truncated = jax.device_get((next_obs, reward, terminal, truncated))
    if terminal or truncated:
      self._next, self._state = (obs, state), state
      if terminal:
        return dm_env.termination(float(reward), next_obs)
      return dm_env.truncation(float(reward), next_obs)
    self._state = state
    return dm_env.transition(float(reward), next_obs)

  def observation_spec(self) -> specs.Array:
    return self._obs_spec

  def action_spec(self) -> specs.DiscreteArray:
    return specs.DiscreteArray(self._env.num_actions, name='action')
