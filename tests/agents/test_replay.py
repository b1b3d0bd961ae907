"""Replay buffer: wrap-around, sampling validity, episode boundaries."""

import numpy as np
import pytest

from smoothrl.agents.replay import ReplayBuffer


def _fill(buffer, episodes):
  """Writes episodes of observation ids; obs value = global id, so successors are checkable."""
  next_id = 0
  truth = {}  # obs id -> (action, reward, discount, next id)
  for length in episodes:
    buffer.start_episode(np.full((2,), next_id, np.int64))
    for t in range(length):
      obs_id, next_id = next_id, next_id + 1
      discount = 0.0 if t == length - 1 else 1.0
      buffer.add(obs_id % 7, float(obs_id), discount, np.full((2,), next_id, np.int64))
      truth[obs_id] = (obs_id % 7, float(obs_id), discount, next_id)
    next_id += 1  # the terminal observation's slot holds no transition
  return truth


def test_every_sample_is_a_real_transition_after_wrap_around():
  buffer = ReplayBuffer(10, (2,), np.int64)
  truth = _fill(buffer, [4, 7, 3, 5])  # observation ids 0..22 (terminal ones: 4, 12, 16, 22) through 10 slots
  rng = np.random.default_rng(0)
  batch = buffer.sample(rng, 2000)
  ids = batch.obs[:, 0]
  # Only the newest 10 observations (ids 13..22) survive; terminal observations 16 and 22 start no transition.
  assert set(ids) == {13, 14, 15, 17, 18, 19, 20, 21}
  for i, obs_id in enumerate(ids):
    action, reward, discount, next_id = truth[obs_id]
    assert batch.action[i] == action and batch.reward[i] == reward and batch.discount[i] == discount
    assert batch.next_obs[i, 0] == next_id


def test_no_transition_straddles_episodes_and_terminals_are_not_starts():
  buffer = ReplayBuffer(100, (2,), np.int64)
  truth = _fill(buffer, [3, 3])  # ids 0,1,2 -> 3 (terminal obs 3), next episode starts at id 4
  batch = buffer.sample(np.random.default_rng(1), 500)
  ids = set(batch.obs[:, 0])
  assert ids == {0, 1, 2, 4, 5, 6}
  assert len(buffer) == 6
  terminal = batch.obs[:, 0] == 2
  assert np.all(batch.next_obs[terminal, 0] == 3) and np.all(batch.discount[terminal] == 0.0)
  assert set(truth) == ids


def test_never_samples_unwritten_slots():
  buffer = ReplayBuffer(1000, (2,), np.int64)
  _fill(buffer, [5])
  batch = buffer.sample(np.random.default_rng(2), 1000)
  assert set(batch.obs[:, 0]) == {0, 1, 2, 3, 4}


def test_uniform_over_valid_transitions():
  buffer = ReplayBuffer(50, (2,), np.int64)
  _fill(buffer, [10, 10])
  counts = np.bincount(buffer.sample(np.random.default_rng(3), 40000).obs[:, 0], minlength=22)
  valid = counts[counts > 0]
  assert len(valid) == 20
  assert valid.min() > 0.85 * 2000 and valid.max() < 1.15 * 2000


def test_capacity_counts_observations_not_duplicated_pairs():
  buffer = ReplayBuffer(100_000, (10, 10, 4))
  assert buffer.obs.nbytes == 100_000 * 400  # s' is the next slot, not a second copy


def test_errors():
  with pytest.raises(ValueError, match='capacity'):
    ReplayBuffer(1, (2,))
  buffer = ReplayBuffer(4, (2,))
  with pytest.raises(RuntimeError, match='start_episode'):
    buffer.add(0, 0.0, 1.0, np.zeros(2))
  buffer.start_episode(np.zeros(2))
  with pytest.raises(RuntimeError, match='no complete transition'):
    buffer.sample(np.random.default_rng(0), 1)
