"""Atari preprocessing: frame skip, max-pooling, resizing, stacks, protocols, limits, the vector form."""

import pickle
import subprocess
import sys

import dm_env
import numpy as np
import pytest

from smoothrl import envs
from smoothrl.envs import atari
from smoothrl.envs.atari import AtariEnv, AtariVector, area_resize

ale_py = pytest.importorskip('ale_py')


def _raw_ale(game_rom, seed, repeat_action_probability=0.0):
  ale = ale_py.ALEInterface()
  ale.setInt('random_seed', seed)
  ale.setFloat('repeat_action_probability', repeat_action_probability)
  ale.loadROM(str(ale_py.roms.get_rom_path(game_rom)))
  return ale


def _rollout(env, actions):
  out = [env.reset()]
  for a in actions:
    out.append(env.step(a))
  return out


# Names.


def test_game_names_are_camel_case_rom_ids():
  names = atari.games()
  for name in ('Pong', 'Breakout', 'MontezumaRevenge', 'SpaceInvaders', 'Pitfall2', 'TicTacToe3D'):
    assert name in names
  assert len(names) == len(ale_py.roms.get_all_rom_ids()) - 4  # four ROMs have no single-player mode
  assert atari.check_game('MontezumaRevenge') == 'montezuma_revenge'


def test_unknown_game_lists_the_games():
  with pytest.raises(ValueError, match='unknown Atari game') as e:
    AtariEnv('NotAGame')
  assert 'Pong' in str(e.value) and 'MontezumaRevenge' in str(e.value)
  with pytest.raises(ValueError) as e:
    envs.validate_name('atari/NotAGame')
  for name in ('atari/Pong', 'atari/Breakout', 'atari/MontezumaRevenge'):
    assert name in str(e.value)
  with pytest.raises(ValueError):
    envs.validate_name('atari/pong')  # names are CamelCase


def test_registry_builds_atari_and_validating_is_cheap():
  envs.validate_name('atari/Pong')
  assert 'atari/Breakout' in envs.list_envs()
  env = envs.make('atari/Pong', seed=0, protocol='sticky')
  assert isinstance(env, AtariEnv) and env.game == 'Pong' and env.protocol == 'sticky'
  code = (
    'import sys; from smoothrl import envs; envs.validate_name("atari/Pong"); '
    'assert "ale_py" not in sys.modules, "validate_name imported ale_py"'
  )
  subprocess.run([sys.executable, '-c', code], check=True, timeout=60)


# Preprocessing.


def test_area_resize_is_the_area_average():
  rng = np.random.default_rng(0)
  frame = rng.integers(0, 256, (10, 7)).astype(np.uint8)
  # Upsampling each axis by the output size makes every output cell an exact block of the input.
  up = np.repeat(np.repeat(frame.astype(np.float64), 4, axis=0), 3, axis=1)
  expected = up.reshape(4, 10, 3, 7).mean(axis=(1, 3))
  np.testing.assert_array_equal(area_resize(frame, (4, 3)), np.rint(expected).astype(np.uint8))
  # Integer factors: block means; constants stay constant.
  frame = rng.integers(0, 256, (8, 6)).astype(np.uint8)
  blocks = frame.astype(np.float64).reshape(4, 2, 3, 2).mean(axis=(1, 3))
  np.testing.assert_array_equal(area_resize(frame, (4, 3)), np.rint(blocks).astype(np.uint8))
  assert np.all(area_resize(np.full((210, 160), 87, np.uint8)) == 87)


def test_observations_are_uint8_stacks_zero_padded_at_episode_start():
  env = AtariEnv('Breakout', seed=0, max_episode_frames=40)
  spec = env.observation_spec()
  assert spec.shape == (84, 84, 4) and spec.dtype == np.uint8
  assert env.action_spec().num_values == 4  # Breakout's minimal action set
  timesteps = _rollout(env, [1, 2, 3, 0] * 5)
  for ts in timesteps:
    assert ts.observation.shape == (84, 84, 4) and ts.observation.dtype == np.uint8
    spec.validate(ts.observation)
  first = timesteps[0]
  assert first.first() and not first.observation[..., :3].any() and first.observation[..., 3].any()
  for prev, ts in zip(timesteps, timesteps[1:]):
    if not ts.first():  # the stack shifts by one frame per step
      np.testing.assert_array_equal(ts.observation[..., :3], prev.observation[..., 1:])
  assert timesteps[10].last()  # 40 frames = 10 steps
  assert timesteps[11].first() and not timesteps[11].observation[..., :3].any()


@pytest.mark.parametrize('game', ['SpaceInvaders', 'Breakout'])
def test_frame_skip_and_max_pool_match_raw_emulator(game):
  seed = 7
  env = AtariEnv(game, seed=seed)
  ts = env.reset()
  raw = _raw_ale(atari.check_game(game), seed)
  raw.reset_game()
  for _ in range(env.last_noops):
    raw.act(0)
  assert env.ale.getEpisodeFrameNumber() == raw.getEpisodeFrameNumber() == env.last_noops
  np.testing.assert_array_equal(ts.observation[..., -1], area_resize(raw.getScreenGrayscale()))
  action_set = raw.getMinimalActionSet()
  rng = np.random.default_rng(0)
  pooled_differs_from_last = 0
  for _ in range(150):
    a = int(rng.integers(len(action_set)))
    before = env.ale.getEpisodeFrameNumber()
    ts = env.step(a)
    assert env.ale.getEpisodeFrameNumber() - before == 4
    reward, screens = 0, []
    for _ in range(4):
      reward += raw.act(action_set[a])
      screens.append(raw.getScreenGrayscale())
    expected = area_resize(np.maximum(screens[2], screens[3]))
    np.testing.assert_array_equal(ts.observation[..., -1], expected)
    assert env.last_raw_reward == reward
    pooled_differs_from_last += not np.array_equal(expected, area_resize(screens[3]))
  assert pooled_differs_from_last > 0  # the test sees flicker, so pooling matters


def test_noop_starts_are_seeded_and_bounded():
  noops = []
  for seed in range(4):
    env = AtariEnv('Pong', seed=seed)
    counts = []
    for _ in range(5):
      env.reset()
      counts.append(env.last_noops)
      assert env.ale.getEpisodeFrameNumber() == env.last_noops
    noops += counts
    again = AtariEnv('Pong', seed=seed)
    assert [again.reset() and again.last_noops for _ in range(5)] == counts
  assert all(0 <= n <= 30 for n in noops) and len(set(noops)) > 5
  env = AtariEnv('Pong', seed=0, noop_max=3)
  assert {env.reset() and env.last_noops for _ in range(40)} == {0, 1, 2, 3}


def test_same_seed_same_trajectory():
  actions = [int(a) for a in np.random.default_rng(1).integers(0, 6, 60)]
  a = _rollout(AtariEnv('Pong', seed=3), actions)
  b = _rollout(AtariEnv('Pong', seed=3), actions)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x.observation, y.observation)


def test_protocols():
  noop = AtariEnv('Pong', seed=0)
  assert noop.ale.getFloat('repeat_action_probability') == 0.0 and noop.noop_max == 30
  sticky = AtariEnv('Pong', seed=0, protocol='sticky')
  assert sticky.ale.getFloat('repeat_action_probability') == pytest.approx(0.25)
  assert sticky.noop_max == 0
  sticky.reset()
  assert sticky.last_noops == 0 and sticky.ale.getEpisodeFrameNumber() == 0
  custom = AtariEnv('Pong', seed=0, protocol='sticky', repeat_action_probability=0.1, noop_max=5)
  assert custom.ale.getFloat('repeat_action_probability') == pytest.approx(0.1) and custom.noop_max == 5
  full = AtariEnv('Pong', seed=0, full_action_space=True)
  assert full.action_spec().num_values == 18 and full.action_names()[:2] == ['NOOP', 'FIRE']
  with pytest.raises(ValueError, match='protocol'):
    AtariEnv('Pong', protocol='human_starts')


def test_rewards_are_clipped_and_raw_score_is_kept():
  env = AtariEnv('SpaceInvaders', seed=0)
  unclipped = AtariEnv('SpaceInvaders', seed=0, clip_rewards=False)
  env.reset(), unclipped.reset()
  rng = np.random.default_rng(0)
  raw_total, big = 0.0, 0
  for _ in range(400):
    a = int(rng.integers(env.action_spec().num_values))
    ts, ts_raw = env.step(a), unclipped.step(a)
    assert ts.reward.dtype == np.float32 and -1.0 <= ts.reward <= 1.0
    assert ts.reward == np.sign(env.last_raw_reward) and ts_raw.reward == env.last_raw_reward
    raw_total += env.last_raw_reward
    big += env.last_raw_reward > 1
    assert env.episode_score == raw_total
    if ts.last():
      break
  assert big > 0  # Space Invaders pays 5 to 30 points per alien


def test_episode_frame_limit_truncates_with_discount_one():
  env = AtariEnv('Pong', seed=0, max_episode_frames=42)  # 10.5 steps, rounded up to 11
  timesteps = _rollout(env, [0] * 11)
  assert all(ts.mid() for ts in timesteps[1:11])
  assert timesteps[11].last() and timesteps[11].discount == 1.0
  assert env.episode_steps == 11
  assert env.step(0).first()
  assert AtariEnv('Pong').max_episode_frames == 108_000


def test_life_loss_gives_discount_zero_without_ending_the_episode():
  env = AtariEnv('Breakout', seed=0, terminal_on_life_loss=True)
  plain = AtariEnv('Breakout', seed=0)
  env.reset(), plain.reset()
  rng = np.random.default_rng(0)
  losses = 0
  for _ in range(5000):
    a = int(rng.integers(4))
    ts, ts_plain = env.step(a), plain.step(a)
    np.testing.assert_array_equal(ts.observation, ts_plain.observation)  # the game is the same
    if ts.last():
      assert ts.discount == 0.0 and env.lives == 0
      break
    if env.life_lost:
      losses += 1
      assert ts.mid() and ts.discount == 0.0 and ts_plain.discount == 1.0
    else:
      assert ts.discount == 1.0
  assert ts.last() and losses == 4  # five lives: four losses, then game over
  assert env.episode_score == plain.episode_score


def test_pickle_resumes_the_same_trajectory():
  env = AtariEnv('Breakout', seed=5, protocol='sticky')
  _rollout(env, [1, 2, 3] * 10)
  copy = pickle.loads(pickle.dumps(env))
  actions = [int(a) for a in np.random.default_rng(2).integers(0, 4, 80)]
  for a in actions:
    x, y = env.step(a), copy.step(a)
    np.testing.assert_array_equal(x.observation, y.observation)
    assert x.reward == y.reward and x.step_type == y.step_type


def test_bad_arguments():
  with pytest.raises(ValueError, match='seed'):
    AtariEnv('Pong', seed=-1)
  with pytest.raises(ValueError, match='max_episode_frames'):
    AtariEnv('Pong', max_episode_frames=0)
  env = AtariEnv('Pong')
  env.reset()
  with pytest.raises(ValueError, match='action'):
    env.step(6)


# The vector form.


def test_vector_shapes_and_auto_reset():
  vec = AtariVector('Pong', 3, seed=0, max_episode_frames=20)
  assert vec.observation_spec().shape == (84, 84, 4) and vec.action_spec().num_values == 6
  ts = vec.reset()
  assert ts.observation.shape == (3, 84, 84, 4) and ts.observation.dtype == np.uint8
  assert np.all(ts.step_type == dm_env.StepType.FIRST)
  assert not ts.observation[..., :3].any()
  types = []
  for _ in range(7):
    ts = vec.step(np.zeros(3, np.int32))
    assert ts.reward.shape == (3,) and ts.discount.dtype == np.float32
    types.append(ts.step_type.copy())
  # 20 frames = 5 steps, truncated (discount 1); the next step resets.
  assert [int(t[0]) for t in types] == [1, 1, 1, 1, 2, 0, 1]
  assert np.all(ts.discount == 1.0)
  with pytest.raises(ValueError, match='actions'):
    vec.step(np.zeros(2, np.int32))


def test_vector_matches_single_envs():
  # Without no-op starts, copy i plays as AtariEnv(seed=seed + i): same frames up to a grey level of resizing
  # round-off, except on the steps that end an episode, where ale-py may pool frames of the step before.
  kwargs = dict(noop_max=0, max_episode_frames=800, terminal_on_life_loss=True)
  vec = AtariVector('Breakout', 2, seed=4, **kwargs)
  singles = [AtariEnv('Breakout', seed=4 + i, **kwargs) for i in range(2)]
  vt, sts = vec.reset(), [e.reset() for e in singles]
  rng = np.random.default_rng(0)
  lasts = life_losses = 0
  for _ in range(250):
    for i, st in enumerate(sts):
      assert vt.step_type[i] == st.step_type
      if not st.first():
        assert vt.reward[i] == st.reward and vt.discount[i] == st.discount
      if not st.last():
        diff = np.abs(vt.observation[i].astype(int) - st.observation.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
      lasts += st.last()
      life_losses += st.mid() and st.discount == 0.0
    actions = rng.integers(0, 4, 2)
    vt = vec.step(actions)
    sts = [e.step(int(a)) for e, a in zip(singles, actions)]
  assert lasts >= 2 and life_losses >= 2
  np.testing.assert_array_equal(vec.episode_score, [e.episode_score for e in singles])
