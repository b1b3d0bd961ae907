"""The dm_env view of JAX-native environments: keyed draws, episode hand-over, pickling."""

import pickle

import jax
import numpy as np
import pytest

from smoothrl import envs, keys
from smoothrl.envs import jax_env


def _play(env, actions):
  """(observation, reward, discount, step type) of every timestep, resetting after each episode."""
  out, timestep = [], env.reset()
  for action in actions:
    out.append((timestep.observation.copy(), timestep.reward, timestep.discount, timestep.step_type))
    timestep = env.reset() if timestep.last() else env.step(action)
  return out


def test_dm_env_draws_the_compiled_runners_keys():
  """Step t of the dm_env view equals `step_autoreset` with `keys.at(env_key, t + 1)`, across episodes."""
  game = envs.make_jax('jax-minatar/breakout')
  stream = keys.streams(jax.random.PRNGKey(7)).env
  env = envs.make('jax-minatar/breakout', seed=7)
  actions = np.random.default_rng(0).integers(0, 6, 300)
  obs, state = game.reset(keys.at(stream, 0))
  timestep, ends = env.reset(), 0
  for t, action in enumerate(actions):
    np.testing.assert_array_equal(timestep.observation, obs)
    next_obs, obs, state, reward, terminal, _ = game.step_autoreset(keys.at(stream, t + 1), state, action)
    timestep = env.step(action)
    np.testing.assert_array_equal(timestep.observation, next_obs)
    assert timestep.reward == float(reward) and timestep.last() == bool(terminal)
    if timestep.last():
      ends += 1
      assert timestep.discount == 0.0
      timestep = env.reset()  # the episode the autoreset started
  assert ends >= 3


def test_dm_env_continues_identically_after_pickling():
  env = envs.make('jax-minatar/asterix', seed=1)
  actions = np.random.default_rng(1).integers(0, 6, 120)
  _play(env, actions[:60])
  copy = pickle.loads(pickle.dumps(env))
  for a, b in zip(_play(env, actions[60:]), _play(copy, actions[60:])):
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]


def test_abandoned_episodes_restart_from_fresh_keys():
  env = envs.make('jax-minatar/freeway', seed=0)  # Freeway's cars start at random
  starts = [env.reset().observation]
  env.step(1)
  starts += [env.reset().observation for _ in range(3)]
  assert len({s.tobytes() for s in starts}) == 4
  assert env.step(0).mid()


def test_specs_and_refusals():
  env = envs.make('jax-minatar/seaquest', seed=0)
  assert env.observation_spec().shape == (10, 10, 10) and env.observation_spec().dtype == np.uint8
  assert env.action_spec().num_values == 6
  with pytest.raises(ValueError, match='no JAX-native version'):
    envs.make_jax('atari/Pong')
  with pytest.raises(ValueError, match='jax-minatar/breakout'):
    envs.make('jax-minatar/pong', seed=0)


def test_environments_with_the_same_settings_share_one_compiled_step():
  """A host run on a JAX-native game compiles its step once per process, not once per environment built."""
  assert envs.make_jax('minatar/breakout') == envs.make_jax('jax-minatar/breakout')
  assert hash(envs.make_jax('chain/4')) == hash(envs.make_jax('chain/4'))
  assert envs.make_jax('minatar/breakout') != envs.make_jax('minatar/asterix')
  assert envs.make_jax('chain/4') != envs.make_jax('chain/5')
  unsticky = envs.make('jax-minatar/breakout', seed=0, sticky_action_prob=0.0)
  assert unsticky._env != envs.make_jax('minatar/breakout')  # pylint: disable=protected-access
  compiled = jax_env._step._cache_size()  # pylint: disable=protected-access
  for seed in range(3):  # settings no other test uses, so the first of these compiles
    env = envs.make('jax-minatar/space_invaders', seed=seed, sticky_action_prob=0.25)
    env.reset()
    env.step(0)
  assert jax_env._step._cache_size() == compiled + 1  # pylint: disable=protected-access
