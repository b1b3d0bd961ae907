"""JAX-native environments: the functional interface the compiled runner scans, and a dm_env view of it.

`smoothrl.envs.make_jax(name)` gives the JAX-native version of a config's environment (`minatar/<game>`,
`jax-minatar/<game>`, `chain/<n>`). `DmEnv` presents one to the host runner, drawing its randomness the way the compiled runner does
(`smoothrl.keys`), so that a host run on `jax-minatar/<game>` and a compiled run of the same seed take the same
learner updates.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import dm_env
import jax
import jax.numpy as jnp
import numpy as np
from dm_env import specs

from smoothrl import keys


class JaxEnv(Protocol):
  """A pure-functional environment (gymnax style)."""

  num_actions: int
  obs_shape: tuple[int, ...]

  def reset(self, key: jax.Array) -> tuple[jax.Array, Any]: ...

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
  environments (see `envs.make_jax`) share one compiled reset and step. `get_state` and `set_state` save and
  restore the view (checkpoints).
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

  def _key_words(self) -> list[int]:
    key = self._key
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
      key = jax.random.key_data(key)
    return np.asarray(key).ravel().tolist()

  def get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The view's state as (arrays, JSON-able metadata), for `set_state`: the environment state's leaves (and those
    of the episode an autoreset started), the step and reset counters, and the key, to check that a state goes back
    to the same stream."""
    arrays: dict[str, np.ndarray] = {}
    for name, tree in (('state', self._state), ('next.state', None if self._next is None else self._next[1])):
      arrays.update({f'{name}.{i}': np.array(x) for i, x in enumerate(jax.tree.leaves(tree))})
    if self._next is not None:
      arrays['next.obs'] = np.array(self._next[0])
    meta = {
      'key': self._key_words(),
      'steps': self._steps,
      'abandoned': self._abandoned,
      'started': self._state is not None,
      'next': self._next is not None,
    }
    return arrays, meta

  def set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Restores a state of `get_state` into a view of an equal environment with the same key.

    Raises:
      ValueError: the state is of another key (another seed or stream), or its arrays do not fit this environment's.
    """
    if meta['key'] != self._key_words():
      raise ValueError(
        f'a saved state of the key {meta["key"]} cannot be restored into a DmEnv of the key {self._key_words()}'
      )
    obs, template = jax.eval_shape(self._env.reset, self._key)

    def tree(name: str) -> Any:
      wanted = jax.tree.leaves(template)
      leaves = [arrays.get(f'{name}.{i}') for i in range(len(wanted))]
      for i, (x, y) in enumerate(zip(leaves, wanted)):
        if x is None or (x.shape, x.dtype) != (y.shape, y.dtype):
          got = 'nothing' if x is None else f'{x.dtype}{list(x.shape)}'
          raise ValueError(f'saved {name}.{i} is {got}, this environment needs {y.dtype}{list(y.shape)}')
      if f'{name}.{len(wanted)}' in arrays:
        raise ValueError(f"the saved {name} has more leaves than this environment's {len(wanted)}")
      return jax.tree.unflatten(jax.tree.structure(template), [jnp.asarray(x) for x in leaves])

    self._state = tree('state') if meta['started'] else None
    self._next = None
    if meta['next']:
      next_obs = arrays['next.obs']
      if (next_obs.shape, next_obs.dtype) != (obs.shape, obs.dtype):
        raise ValueError(
          f'saved next.obs is {next_obs.dtype}{list(next_obs.shape)}, this environment needs '
          f'{obs.dtype}{list(obs.shape)}'
        )
      self._next = (jnp.asarray(next_obs), tree('next.state'))
    self._steps, self._abandoned = int(meta['steps']), int(meta['abandoned'])

  def observation_spec(self) -> specs.Array:
    return self._obs_spec

  def action_spec(self) -> specs.DiscreteArray:
    return specs.DiscreteArray(self._env.num_actions, name='action')
