"""Frame replay: stacks rebuilt from single frames, episode boundaries, wrap-around, memory."""

import numpy as np
import pytest

from smoothrl.agents.frame_replay import FrameReplayBuffer, memory_bytes

SHAPE = (3, 2)  # small frames; pixel (0, 0) and (0, 1) encode a frame id


def _frame(frame_id):
  f = np.zeros(SHAPE, np.uint8)
  f[0, 0], f[0, 1], f[1, 0] = frame_id % 256, frame_id // 256, 1  # never all zeros
  return f


def _frame_id(f):
  return int(f[0, 0]) + 256 * int(f[0, 1]) if f.any() else None


def _stack(history):
  """The env's stack: the last 4 frames, zero-padded at the episode start."""
  frames = [np.zeros(SHAPE, np.uint8)] * (4 - len(history[-4:])) + [_frame(i) for i in history[-4:]]
  return np.stack(frames, axis=-1)


def _fill(buffer, episodes, life_loss_at=()):
  """Plays episodes of frame ids; returns {frame id: (episode, position)} and the transition truth."""
  where, truth, next_id = {}, {}, 0
  for e, length in enumerate(episodes):
    history = [next_id]
    where[next_id] = (e, 0)
    buffer.start_episode(_stack(history))
    for t in range(length):
      obs_id, next_id = next_id, next_id + 1
      history.append(next_id)
      where[next_id] = (e, t + 1)
      discount = 0.0 if t == length - 1 or obs_id in life_loss_at else 1.0
      buffer.add(obs_id % 5, float(obs_id), discount, _stack(history))
      truth[obs_id] = (obs_id % 5, float(obs_id), discount, next_id)
    next_id += 1
  return where, truth


def _ids(stack):
  return [_frame_id(stack[..., k]) for k in range(stack.shape[-1])]


def _check_stacks(batch, where, truth):
  for i in range(len(batch.action)):
    obs_ids, next_ids = _ids(batch.obs[i]), _ids(batch.next_obs[i])
    newest = obs_ids[-1]
    episode, pos = where[newest]
    # Exactly the episode's frames up to this one; zeros before the episode's start, none from another episode.
    expected = [None] * max(0, 3 - pos) + list(range(newest - min(pos, 3), newest + 1))
    assert obs_ids == expected
    assert all(where[j][0] == episode for j in obs_ids if j is not None)
    action, reward, discount, next_id = truth[newest]
    assert (batch.action[i], batch.reward[i], batch.discount[i]) == (action, reward, discount)
    assert next_ids == [None] * max(0, 2 - pos) + list(range(next_id - min(pos + 1, 3), next_id + 1))


def test_stacks_across_episode_boundaries():
  buffer = FrameReplayBuffer(100, SHAPE, check_stacks=True)
  where, truth = _fill(buffer, [1, 2, 6, 3, 5])
  batch = buffer.sample(np.random.default_rng(0), 3000)
  _check_stacks(batch, where, truth)
  assert set(_ids(s)[-1] for s in batch.obs) == set(truth)
  assert len(buffer) == len(truth) == 17


def test_wrap_around_never_samples_broken_or_overwritten_stacks():
  buffer = FrameReplayBuffer(13, SHAPE, check_stacks=True)
  where, truth = _fill(buffer, [4, 7, 3, 9, 5])  # 33 observations through 13 slots
  batch = buffer.sample(np.random.default_rng(1), 4000)
  _check_stacks(batch, where, truth)
  sampled = set(_ids(s)[-1] for s in batch.obs)
  # Ids 20..32 survive. Episode 3 is 17..26 and episode 4 is 27..32; 26 and 32 end episodes. The stacks of
  # 20, 21 and 22 read frames 17..19, which were overwritten.
  assert sampled == {23, 24, 25, 27, 28, 29, 30, 31}
  assert len(buffer) == len(sampled)


def test_episode_start_needs_no_history_after_wrap():
  buffer = FrameReplayBuffer(6, SHAPE)
  where, truth = _fill(buffer, [3, 4])  # ids 0..3 and 4..8: slots hold ids 3..8
  batch = buffer.sample(np.random.default_rng(2), 2000)
  _check_stacks(batch, where, truth)
  # Id 4 starts an episode, so its stack needs no earlier slot although it is the oldest-but-one.
  assert set(_ids(s)[-1] for s in batch.obs) == {4, 5, 6, 7}


def test_never_samples_unwritten_slots():
  buffer = FrameReplayBuffer(1000, SHAPE)
  where, truth = _fill(buffer, [5])
  batch = buffer.sample(np.random.default_rng(3), 1000)
  assert set(_ids(s)[-1] for s in batch.obs) == {0, 1, 2, 3, 4}
  _check_stacks(batch, where, truth)


def test_life_loss_discount_does_not_cut_the_stack():
  buffer = FrameReplayBuffer(50, SHAPE, check_stacks=True)
  where, truth = _fill(buffer, [10], life_loss_at={4})
  batch = buffer.sample(np.random.default_rng(4), 1000)
  _check_stacks(batch, where, truth)
  after = [i for i in range(len(batch.action)) if _ids(batch.obs[i])[-1] == 6]
  assert after and _ids(batch.obs[after[0]]) == [3, 4, 5, 6]
  assert batch.discount[[i for i in range(len(batch.action)) if _ids(batch.obs[i])[-1] == 4]].max() == 0.0


def test_uniform_over_sampleable_transitions():
  buffer = FrameReplayBuffer(60, SHAPE)
  _fill(buffer, [10, 10])
  counts = np.bincount([_ids(s)[-1] for s in buffer.sample(np.random.default_rng(5), 40000).obs], minlength=22)
  valid = counts[counts > 0]
  assert len(valid) == 20 and valid.min() > 0.85 * 2000 and valid.max() < 1.15 * 2000


def test_rebuilt_stacks_equal_the_atari_env_stacks():
  atari = pytest.importorskip('smoothrl.envs.atari')
  pytest.importorskip('ale_py')
  env = atari.AtariEnv('Breakout', seed=0, max_episode_frames=4 * 23)
  buffer = FrameReplayBuffer(50, check_stacks=True)
  rng = np.random.default_rng(0)
  slots = {}  # slot -> (obs, action, reward, discount, next obs) as the env gave them
  ts = env.reset()
  buffer.start_episode(ts.observation)
  for _ in range(130):  # several episodes, wrapping the 50 slots twice
    action = int(rng.integers(4))
    nxt = env.step(action)
    slots[buffer.head] = (ts.observation, action, nxt.reward, nxt.discount, nxt.observation)
    buffer.add(action, nxt.reward, nxt.discount, nxt.observation)
    ts = nxt
    if ts.last():
      ts = env.reset()
      buffer.start_episode(ts.observation)
  indices = buffer.sample_indices(rng, 500)
  batch = buffer.gather(indices)
  assert batch.obs.shape == (500, 84, 84, 4) and batch.obs.dtype == np.uint8
  for i, slot in enumerate(indices):
    obs, action, reward, discount, next_obs = slots[slot]
    np.testing.assert_array_equal(batch.obs[i], obs)
    np.testing.assert_array_equal(batch.next_obs[i], next_obs)
    assert (batch.action[i], batch.reward[i], batch.discount[i]) == (action, reward, discount)


def test_memory():
  assert memory_bytes(1_000_000) == 1_000_000 * 84 * 84 + 14_000_000 == 7_070_000_000
  buffer = FrameReplayBuffer(1000)
  arrays = (buffer.frames, buffer.action, buffer.reward, buffer.discount, buffer.history, buffer.valid)
  assert sum(a.nbytes for a in arrays) == memory_bytes(1000)
  assert buffer.frames.shape == (1000, 84, 84)  # one frame per slot, not a stack


def test_errors():
  with pytest.raises(ValueError, match='capacity'):
    FrameReplayBuffer(4, SHAPE)
  buffer = FrameReplayBuffer(10, SHAPE, check_stacks=True)
  with pytest.raises(RuntimeError, match='start_episode'):
    buffer.add(0, 0.0, 1.0, _stack([0, 1]))
  with pytest.raises(ValueError, match='zero-padded'):
    buffer.start_episode(np.stack([_frame(0)] * 4, axis=-1))  # repeat-padded
  with pytest.raises(ValueError, match='shape'):
    buffer.start_episode(np.zeros((3, 2, 3), np.uint8))
  buffer.start_episode(_stack([0]))
  with pytest.raises(RuntimeError, match='no complete transition'):
    buffer.sample(np.random.default_rng(0), 1)
  with pytest.raises(ValueError, match='differs'):
    buffer.add(0, 0.0, 1.0, _stack([7, 1]))  # not the previous stack shifted by one frame
