"""Tests for `smoothrl.envs`."""

from __future__ import annotations

import dataclasses

import dm_env
import minatar as minatar_pkg
import numpy as np
import pytest
from dm_env import specs

from smoothrl import envs
from smoothrl.envs import ChainEnv, MinAtarEnv
from smoothrl.envs import minatar as minatar_lib

EXPECTED_CHANNELS = {
  'asterix': 4,
  'breakout': 4,
  'freeway': 7,
  'seaquest': 10,
  'space_invaders': 6,
}


def _rollout(env: dm_env.Environment, actions) -> list[dm_env.TimeStep]:
  timesteps = [env.reset()]
  for a in actions:
    timesteps.append(env.step(a))
  return timesteps


# MinAtar.


def test_games_list_is_the_five_official_games():
  assert set(minatar_lib.GAMES) == set(EXPECTED_CHANNELS)
  assert len(minatar_lib.GAMES) == 5


@pytest.mark.parametrize('game', minatar_lib.GAMES)
def test_minatar_specs(game):
  env = MinAtarEnv(game)
  ref = minatar_pkg.Environment(game)
  c = EXPECTED_CHANNELS[game]
  assert tuple(ref.state_shape()) == (10, 10, c)
  assert ref.num_actions() == 6

  obs_spec = env.observation_spec()
  assert isinstance(obs_spec, specs.BoundedArray)
  assert obs_spec.shape == (10, 10, c)
  assert obs_spec.dtype == np.uint8
  assert obs_spec.minimum == 0 and obs_spec.maximum == 1
  action_spec = env.action_spec()
  assert isinstance(action_spec, specs.DiscreteArray)
  assert action_spec.num_values == 6
  assert env.reward_spec().dtype == np.float32
  assert env.reward_spec().shape == ()
  assert env.discount_spec().dtype == np.float32
  assert env.discount_spec().minimum == 0 and env.discount_spec().maximum == 1
  assert env.num_channels == c

  ts = env.reset()
  assert ts.first()
  obs_spec.validate(ts.observation)
  ts = env.step(np.int32(1))
  obs_spec.validate(ts.observation)
  env.reward_spec().validate(ts.reward)
  env.discount_spec().validate(ts.discount)


@pytest.mark.parametrize('game', minatar_lib.GAMES)
def test_minatar_matches_official_package(game):
  seed, num_steps = 7, 300
  env = MinAtarEnv(game, seed=seed)
  ref = minatar_pkg.Environment(game)
  ref.seed(seed)
  ref.reset()
  rng = np.random.default_rng(123)

  ts = env.reset()
  np.testing.assert_array_equal(ts.observation, ref.state().astype(np.uint8))
  ref_needs_reset = False
  num_episodes = 1
  for _ in range(num_steps):
    a = int(rng.integers(6))
    ts = env.step(a)
    if ref_needs_reset:
      ref.reset()
      ref_needs_reset = False
      num_episodes += 1
      assert ts.first()
    else:
      reward, terminal = ref.act(a)
      assert ts.reward == reward
      assert ts.last() == terminal
      if terminal:
        assert ts.discount == 0.0
        ref_needs_reset = True
      else:
        assert ts.mid() and ts.discount == 1.0
    assert ts.observation.dtype == np.uint8
    np.testing.assert_array_equal(ts.observation, ref.state().astype(np.uint8))
  if game == 'breakout':
    # Random play loses the ball quickly, so resets were compared too.
    assert num_episodes > 1


def test_minatar_official_defaults():
  env = MinAtarEnv('seaquest')
  assert env.sticky_action_prob == 0.1
  assert env.difficulty_ramping is True
  assert env.max_episode_steps is None
  assert env.raw_env.sticky_action_prob == 0.1
  assert env.raw_env.num_actions() == 6
  assert env.raw_env.game_name() == 'seaquest'
  for game in ('asterix', 'seaquest', 'space_invaders'):
    assert MinAtarEnv(game).raw_env.env.ramping is True
    assert MinAtarEnv(game, difficulty_ramping=False).raw_env.env.ramping is (False)
  env = MinAtarEnv('breakout', sticky_action_prob=0.0)
  assert env.raw_env.sticky_action_prob == 0.0


def test_minatar_sticky_actions_repeat_previous_action():
  # With sticky probability 1 every action is replaced by the initial action
  # (0, no-op), so the trajectory is that of always playing 0.
  rng = np.random.default_rng(0)
  actions = [int(a) for a in rng.integers(1, 6, size=100)]
  sticky = _rollout(MinAtarEnv('asterix', seed=3, sticky_action_prob=1.0), actions)
  noop = _rollout(MinAtarEnv('asterix', seed=3, sticky_action_prob=1.0), [0] * 100)
  for a, b in zip(sticky, noop):
    np.testing.assert_array_equal(a.observation, b.observation)


@pytest.mark.parametrize('game', ['asterix', 'breakout', 'space_invaders'])
def test_minatar_seeding(game):
  rng = np.random.default_rng(0)
  actions = [int(a) for a in rng.integers(6, size=200)]

  def obs(seed):
    return np.stack([ts.observation for ts in _rollout(MinAtarEnv(game, seed=seed), actions)])

  def rewards(seed):
    return [ts.reward for ts in _rollout(MinAtarEnv(game, seed=seed), actions)]

  np.testing.assert_array_equal(obs(1), obs(1))
  assert rewards(1) == rewards(1)
  assert not np.array_equal(obs(1), obs(2))


def test_minatar_episode_end_and_auto_reset():
  env = MinAtarEnv('breakout', seed=0)
  # Before any reset, step behaves as reset.
  ts = env.step(0)
  assert ts.first() and ts.reward is None and ts.discount is None
  ts = env.step(0)
  assert ts.mid()
  for _ in range(1000):
    ts = env.step(0)
    if ts.last():
      break
  assert ts.last()
  assert ts.discount == 0.0
  assert ts.discount.dtype == np.float32
  # The action given after the last step is ignored and a new episode starts.
  ts = env.step(3)
  assert ts.first()
  ts = env.step(0)
  assert ts.mid()


def test_minatar_max_episode_steps_truncates():
  # Freeway only ends at its own (long) time limit.
  env = MinAtarEnv('freeway', seed=0, max_episode_steps=5)
  assert env.reset().first()
  for _ in range(4):
    ts = env.step(2)
    assert ts.mid()
  ts = env.step(2)
  assert ts.last()
  assert ts.discount == 1.0
  assert env.step(2).first()
  for _ in range(4):
    assert env.step(2).mid()
  assert env.step(2).last()


def test_minatar_invalid_arguments():
  with pytest.raises(ValueError) as e:
    MinAtarEnv('pong')
  for game in minatar_lib.GAMES:
    assert game in str(e.value)
  with pytest.raises(ValueError):
    MinAtarEnv('breakout', max_episode_steps=0)
  with pytest.raises(ValueError):
    MinAtarEnv('breakout', sticky_action_prob=1.5)


@pytest.mark.parametrize('action', [6, -1, 1.0, True, np.array([1]), '1'])
def test_minatar_rejects_invalid_actions(action):
  env = MinAtarEnv('breakout')
  env.reset()
  with pytest.raises(ValueError):
    env.step(action)


def test_minatar_accepts_integer_scalars():
  env = MinAtarEnv('breakout')
  env.reset()
  for a in (0, np.int32(5), np.int64(3), np.uint8(1), np.array(2)):
    assert env.step(a).mid()


# Chain.


@pytest.mark.parametrize('n', [1, 3, 5])
@pytest.mark.parametrize('image', [False, True])
def test_chain_optimal_policy(n, image):
  env = ChainEnv(n, image=image)
  ts = env.reset()
  assert ts.first()
  ret, steps = 0.0, 0
  while True:
    ts = env.step(1)
    ret += ts.reward
    steps += 1
    if ts.last():
      break
    assert ts.reward == 0.0 and ts.discount == 1.0
  assert ret == 1.0
  assert steps == n
  assert ts.discount == 0.0
  assert env.optimal_return(1.0) == 1.0
  assert env.optimal_return(0.9) == pytest.approx(0.9 ** (n - 1))
  assert env.step(1).first()


def test_chain_always_left_is_truncated():
  env = ChainEnv(5)
  assert env.max_episode_steps == 20
  env.reset()
  for _ in range(19):
    ts = env.step(0)
    assert ts.mid() and ts.reward == 0.0 and env.state == 0
  ts = env.step(0)
  assert ts.last()
  assert ts.discount == 1.0
  assert ts.reward == 0.0
  assert env.step(0).first()


def test_chain_transitions_and_observations():
  env = ChainEnv(4, max_episode_steps=100)
  ts = env.reset()
  np.testing.assert_array_equal(ts.observation, [1, 0, 0, 0])
  assert ts.observation.dtype == np.float32
  env.step(1)
  env.step(1)
  ts = env.step(0)
  assert env.state == 1
  np.testing.assert_array_equal(ts.observation, [0, 1, 0, 0])

  img = ChainEnv(4, image=True)
  ts = img.reset()
  assert ts.observation.shape == (1, 4, 1)
  ts = img.step(1)
  np.testing.assert_array_equal(ts.observation[0, :, 0], [0, 1, 0, 0])


@pytest.mark.parametrize('image', [False, True])
def test_chain_specs(image):
  env = ChainEnv(6, image=image)
  shape = (1, 6, 1) if image else (6,)
  obs_spec = env.observation_spec()
  assert isinstance(obs_spec, specs.BoundedArray)
  assert obs_spec.shape == shape and obs_spec.dtype == np.float32
  assert obs_spec.minimum == 0 and obs_spec.maximum == 1
  assert isinstance(env.action_spec(), specs.DiscreteArray)
  assert env.action_spec().num_values == 2
  assert env.reward_spec().dtype == np.float32
  assert env.discount_spec().dtype == np.float32
  ts = env.reset()
  obs_spec.validate(ts.observation)
  for _ in range(6):
    ts = env.step(1)
    obs_spec.validate(ts.observation)
    env.reward_spec().validate(ts.reward)
    env.discount_spec().validate(ts.discount)
  assert ts.last()


def test_chain_invalid():
  with pytest.raises(ValueError):
    ChainEnv(0)
  env = ChainEnv(3)
  env.reset()
  for action in (2, -1, 0.5):
    with pytest.raises(ValueError):
      env.step(action)


# Registry.


def test_list_envs():
  names = envs.list_envs()
  for game in minatar_lib.GAMES:
    assert f'minatar/{game}' in names
  assert 'chain/<n>' in names
  assert set(envs.ENV_FAMILIES) >= {'minatar', 'chain'}


def test_make_minatar():
  env = envs.make('minatar/space_invaders', seed=3, max_episode_steps=10)
  assert isinstance(env, MinAtarEnv)
  assert env.game == 'space_invaders'
  assert env.max_episode_steps == 10
  a = _rollout(env, [1] * 20)
  b = _rollout(MinAtarEnv('space_invaders', seed=3, max_episode_steps=10), [1] * 20)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x.observation, y.observation)


def test_make_chain():
  env = envs.make('chain/7', seed=0, image=True)
  assert isinstance(env, ChainEnv)
  assert env.n == 7
  assert env.observation_spec().shape == (1, 7, 1)


@pytest.mark.parametrize(
  'name', ['minatar/pong', 'atari/NotAGame', 'breakout', 'minatar', 'minatar/', 'chain/0', 'chain/x', 'chain/-3', '']
)
def test_unknown_names_list_valid_names(name):
  for fn in (envs.validate_name, lambda n: envs.make(n, seed=0)):
    with pytest.raises(ValueError) as e:
      fn(name)
    msg = str(e.value)
    assert f'unknown environment {name!r}' in msg
    family = name.partition('/')[0]
    if '/' in name and family in envs.ENV_FAMILIES:  # the valid names of that family
      expected = [n for n in envs.list_envs() if n.startswith(family + '/')]
    else:  # the families, and the MinAtar games
      expected = ['minatar/<game>', 'atari/<game>', 'chain/<n>', 'breakout', 'space_invaders']
    for valid in expected:
      assert valid in msg


def test_validate_name_builds_nothing(monkeypatch):
  def fail(*args, **kwargs):
    raise AssertionError('built an environment')

  for family in ('minatar', 'chain'):
    monkeypatch.setitem(envs.ENV_FAMILIES, family, dataclasses.replace(envs.ENV_FAMILIES[family], factory=fail))
  for game in minatar_lib.GAMES:
    assert envs.validate_name(f'minatar/{game}') is None
  assert envs.validate_name('chain/5') is None
  with pytest.raises(AssertionError):
    envs.make('chain/5', seed=0)


def test_register_family(monkeypatch):
  monkeypatch.setattr(envs, 'ENV_FAMILIES', dict(envs.ENV_FAMILIES))
  family = envs.EnvFamily(
    names=('Dummy',), is_valid=lambda rest: rest == 'Dummy', factory=lambda rest, seed, **kw: ChainEnv(2)
  )
  envs.register_family('fake', family)
  assert 'fake/Dummy' in envs.list_envs()
  envs.validate_name('fake/Dummy')
  assert isinstance(envs.make('fake/Dummy', seed=0), ChainEnv)
  with pytest.raises(ValueError, match='fake/Dummy'):
    envs.validate_name('fake/Other')
  with pytest.raises(ValueError):
    envs.register_family('fake', family)
