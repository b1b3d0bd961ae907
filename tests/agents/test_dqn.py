"""DQN: TD targets, losses, the exploration schedule, target refreshes, and learning a chain with a known optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from smoothrl import envs
from smoothrl.agents import dqn
from smoothrl.agents.replay import Transitions
from smoothrl.launch.run import config as config_lib
from smoothrl.launch.run import host, policy


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
  # The decay steps count from step 0 (Table E.1; `dqn.epsilon_schedule`): halfway between warm-up and 250,000.
  expected = {0: 1.0, 5_000: 1.0, (5_000 + 250_000) // 2: 0.505, 255_000: 0.01, 1_000_000: 0.01}
  for step, value in expected.items():
    assert float(schedule(step)) == pytest.approx(value, abs=1e-6)
    assert host.epsilon_at(cfg, step) == pytest.approx(value, abs=1e-6)


def test_epsilon_reaches_its_end_at_exactly_epsilon_decay_steps_counted_from_the_start():
  """Thesis Table E.1: epsilon 1.0 -> 0.01 over 250,000 steps with 5,000 warm-up steps, the warm-up among them."""
  cfg = dqn.DQNConfig(epsilon_start=1.0, epsilon_end=0.01, epsilon_decay_steps=250_000, warmup_steps=5_000)
  schedule = dqn.epsilon_schedule(cfg)
  assert float(schedule(250_000)) == np.float32(0.01)
  before = 0.01 + 0.99 / 245_000  # one step of the linear decay from 1.0 at 5,000 to 0.01 at 250,000
  assert float(schedule(249_999)) == pytest.approx(before, abs=1e-7) and float(schedule(249_999)) > 0.01
  assert host.epsilon_at(cfg, 250_000) == 0.01
  assert host.epsilon_at(cfg, 249_999) == pytest.approx(before, rel=1e-12)
  first_end = next(t for t in range(249_000, 251_000) if float(schedule(t)) == np.float32(0.01))
  assert first_end == 250_000
  assert float(schedule(5_000)) == 1.0 and float(schedule(5_001)) < 1.0  # warm-up acts at epsilon_start


@pytest.mark.parametrize('warmup, decay', [(7, 30), (0, 12), (8, 9), (10, 10), (12, 5)])
def test_host_epsilon_matches_the_schedule_at_every_step(warmup, decay):
  cfg = dqn.DQNConfig(epsilon_start=0.9, epsilon_end=0.05, epsilon_decay_steps=decay, warmup_steps=warmup)
  schedule = jax.jit(dqn.epsilon_schedule(cfg))
  values = [float(schedule(t)) for t in range(max(warmup, decay) + 5)]
  for t, value in enumerate(values):
    assert host.epsilon_at(cfg, t) == pytest.approx(value, abs=1e-6), t
  assert values[warmup] == pytest.approx(0.9) and values[-1] == pytest.approx(0.05)
  # The end value first appears at epsilon_decay_steps, or one step after warm-up when the decay ends within it.
  assert values.index(min(values)) == max(decay, warmup + 1)


def _chain_setup(method='none', **dqn_fields):
  cfg = config_lib.replace(
    config_lib.TrainConfig(env='chain/4'), **{'network.conv_layers': 0, 'network.hidden': 16, 'method.method': method}
  )
  cfg = config_lib.replace(cfg, **{f'dqn.{k}': v for k, v in dqn_fields.items()})
  env = envs.make(cfg.env, seed=0)
  agent = host.build_agent(cfg, env)
  obs = env.reset().observation
  return cfg, agent, agent.init(jax.random.PRNGKey(0), jnp.asarray(obs))


def _batch(n=4, size=8, seed=0):
  rng = np.random.default_rng(seed)
  eye = np.eye(n, dtype=np.float32)
  s = rng.integers(0, n, size)
  return Transitions(
    eye[s],
    rng.integers(0, 2, size).astype(np.int32),
    rng.normal(size=size).astype(np.float32),
    rng.integers(0, 2, size).astype(np.float32),
    eye[rng.integers(0, n, size)],
  )


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
  cfg = config_lib.replace(
    config_lib.TrainConfig(
      env='chain/4',
      out=str(tmp_path),
      steps=4_000,
      eval_period=4_000,
      eval_steps=40,
      sigma_log_period=1_000,
      log_period=500,
    ),
    **{
      'network.conv_layers': 0,
      'network.hidden': 32,
      'method.method': method,
      'dqn.warmup_steps': 200,
      'dqn.epsilon_decay_steps': 1_500,
      'dqn.epsilon_end': 0.1,
      'dqn.update_period': 1,
      'dqn.target_update_period': 100,
      'dqn.learning_rate': 3e-3,
      'dqn.replay_capacity': 5_000,
    },
  )
  summary = host.train(cfg, show_progress=False)
  assert summary['final_eval']['return_mean'] == 1.0  # every evaluation episode reaches the goal
  assert summary['final_eval']['episodes'] == 10  # 40 steps / 4 steps per optimal episode
  env = envs.make('chain/4', seed=0)
  agent = host.build_agent(cfg, env)
  del agent  # the learned values are checked through the run's final parameters below
  train = [r for r in _records(tmp_path / 'metrics.jsonl') if r['kind'] == 'train']
  assert train[-1]['loss'] < 0.01
  # The closed form (`envs.chain`): right from s reaches the goal in n - s steps, the last one rewarded, and left from
  # s moves to max(s - 1, 0) with reward 0 (truncations bootstrap, discount 1), so with V*(s) = gamma^(n - 1 - s)
  #   Q*(s, right) = gamma^(n - 1 - s),   Q*(s, left) = gamma V*(max(s - 1, 0)) = gamma^(n - max(s - 1, 0)).
  n, gamma, s = 4, cfg.dqn.gamma, np.arange(4)
  q_star = np.stack([gamma ** (n - np.maximum(s - 1, 0)), gamma ** (n - 1 - s)], axis=1)  # columns: LEFT, RIGHT
  q = np.asarray(policy.load(tmp_path).q_values(jnp.eye(n)))
  # 1e-3 is a tenth of the smallest gap between two values of Q* (gamma^3 - gamma^4 = 0.0097) and a quarter of the
  # error of a learner that ignores gamma (1 - gamma^4 = 0.039); the learned values are within 1e-6 of Q*.
  np.testing.assert_allclose(q, q_star, atol=1e-3)


def _records(path):
  import json  # pylint: disable=g-import-not-at-top

  return [json.loads(line) for line in open(path)]
