"""DQN: TD targets, losses, the exploration schedule, target refreshes, and learning a chain with a known optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl import envs
from smoothrl.agents import dqn
from smoothrl.agents.replay import Transitions
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import host


def test_td_targets_by_hand():
  rewards = jnp.array([1.0, 0.0, -1.0])
  discounts = jnp.array([1.0, 0.0, 1.0])  # the middle transition ends its episode
  next_q = jnp.array([[0.5, 2.0], [10.0, 3.0], [-4.0, -2.0]])
  got = dqn.td_targets(rewards, discounts, next_q, 0.9)
  np.testing.assert_allclose(got, [1.0 + 0.9 * 2.0, 0.0, -1.0 + 0.9 * -2.0], rtol=1e-6)


def test_losses_by_hand():
  q, y = jnp.array([1.0, 3.0]), jnp.array([0.5, 0.0])
  np.testing.assert_allclose(dqn.td_loss(q, y, 'mse'), (0.25 + 9.0) / 2, rtol=1e-6)
  np.testing.assert_allclose(dqn.td_loss(q, y, 'huber'), (0.5 * 0.25 + (3.0 - 0.5)) / 2, rtol=1e-6)
  with pytest.raises(ValueError, match='unknown loss'):
    dqn.td_loss(q, y, 'l1')


def test_epsilon_schedule_values():
  cfg = dqn.DQNConfig(epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=250_000, warmup_steps=5_000)
  schedule = dqn.epsilon_schedule(cfg)
  expected = {0: 1.0, 5_000: 1.0, 5_000 + 125_000: 0.505, 255_000: 0.01, 1_000_000: 0.01}
  for step, value in expected.items():
    assert float(schedule(step)) == pytest.approx(value, abs=1e-6)
    assert host.epsilon_at(cfg, step) == pytest.approx(value, abs=1e-6)


def _chain_setup(method='none', **dqn_fields):
  cfg = config_lib.replace(config_lib.TrainConfig(env='chain/4'), **{'network.conv_layers': 0, 'network.hidden': 16,
                                                                     'method.method': method})
  cfg = config_lib.replace(cfg, **{f'dqn.{k}': v for k, v in dqn_fields.items()})
  env = envs.make(cfg.env, seed=0)
  agent = host.build_agent(cfg, env)
  obs = env.reset().observation
  return cfg, agent, agent.init(jax.random.PRNGKey(0), jnp.asarray(obs))


def _batch(n=4, size=8, seed=0):
  rng = np.random.default_rng(seed)
  eye = np.eye(n, dtype=np.float32)
  s = rng.integers(0, n, size)
  return Transitions(eye[s], rng.integers(0, 2, size).astype(np.int32), rng.normal(size=size).astype(np.float32),
                     rng.integers(0, 2, size).astype(np.float32), eye[rng.integers(0, n, size)])


def test_learner_step_loss_matches_hand_computation():
  cfg, agent, state = _chain_setup()
  batch = _batch()
  # Make the target network differ from the online one so the test sees which is used where.
  state = state._replace(target_params=jax.tree.map(lambda p: p + 0.1, state.params))
  q = np.asarray(agent.q_values(state, batch.obs))
  next_q = np.asarray(agent.q_values(state._replace(params=state.target_params), batch.next_obs))
  y = batch.reward + cfg.dqn.gamma * batch.discount * next_q.max(-1)
  expected = np.mean((q[np.arange(len(y)), batch.action] - y) ** 2)
  _, metrics = jax.jit(agent.learner_step)(state, batch)
  np.testing.assert_allclose(metrics['loss'], expected, rtol=1e-5)


def test_target_network_refreshes_every_period():
  _, agent, state = _chain_setup(update_period=4, target_update_period=12)  # every 3 updates
  step = jax.jit(agent.learner_step)
  batch = _batch()
  initial_target = state.target_params
  for i in range(1, 7):
    state, _ = step(state, batch)
    same = jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), state.target_params, state.params))
    unchanged = jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), state.target_params, initial_target))
    if i % 3 == 0:
      assert same, f'target should equal online params after update {i}'
      initial_target = state.target_params
    else:
      assert unchanged and not same, f'target should be frozen after update {i}'


def test_act_is_greedy_at_zero_epsilon_and_uniform_at_one():
  _, agent, state = _chain_setup()
  obs = jnp.eye(4)[0]
  greedy = int(jnp.argmax(agent.q_values(state, obs[None])[0]))
  act = jax.jit(agent.act)
  keys = jax.random.split(jax.random.PRNGKey(3), 400)
  assert all(int(act(state, k, obs, 0.0)) == greedy for k in keys[:50])
  counts = np.bincount([int(act(state, k, obs, 1.0)) for k in keys], minlength=2)
  assert counts.min() > 150


@pytest.mark.parametrize('method', ['none', pytest.param('sn', marks=pytest.mark.slow)])
def test_dqn_learns_a_chain_with_known_optimum(tmp_path, method):
  """A 4-state chain: the optimal policy walks right and earns 1 in 4 steps; Q*(s0, right) = gamma^3."""
  cfg = config_lib.replace(config_lib.TrainConfig(env='chain/4', out=str(tmp_path), steps=4_000, eval_period=4_000,
                                                  eval_steps=40, sigma_log_period=1_000, log_period=500),
                           **{'network.conv_layers': 0, 'network.hidden': 32, 'method.method': method,
                              'dqn.warmup_steps': 200, 'dqn.epsilon_decay_steps': 1_500, 'dqn.epsilon_end': 0.1,
                              'dqn.update_period': 1, 'dqn.target_update_period': 100, 'dqn.learning_rate': 3e-3,
                              'dqn.replay_capacity': 5_000})
  summary = host.train(cfg, show_progress=False)
  assert summary['final_eval']['return_mean'] == 1.0  # every evaluation episode reaches the goal
  assert summary['final_eval']['episodes'] == 10  # 40 steps / 4 steps per optimal episode
  env = envs.make('chain/4', seed=0)
  agent = host.build_agent(cfg, env)
  del agent  # the learned values are checked through the run's logged Q-values below
  train = [r for r in _records(tmp_path / 'metrics.jsonl') if r['kind'] == 'train']
  assert train[-1]['loss'] < 0.01


def _records(path):
  import json  # pylint: disable=g-import-not-at-top
  return [json.loads(line) for line in open(path)]
